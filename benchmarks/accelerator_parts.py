"""The parts of the accelerator kit (``accelerator.py``); each runs in a process of its own.

A part is a function ``(sizes) -> iterator of records``; ``sizes`` is :data:`FULL` or
:data:`TINY`. Records are dicts; the kit adds the part's name, the device and the versions.
"""
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
from common import timed
from train_throughput import make_step

from n2nskip_jax.configs import default
from n2nskip_jax import data as data_lib
from n2nskip_jax import network, pruning, train
from n2nskip_jax.connectivity import heat, network_graph
from n2nskip_jax.execution.xla_flags import minor_release
from n2nskip_jax.steps import replicate

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, 'results', 'accelerator_reference.json')

# What each part runs, at full size (a GPU) and tiny (toy sizes on a CPU, for the CI test).
FULL = {
    'name': 'full',
    'models': {'resnet50': 'resnet50', 'vgg19': 'vgg19'},
    'trajectory': dict(model='resnet50', width=0.25, batch=128, steps=10),
    'learning': dict(model='resnet50', width=0.25, batch=128, epochs=20, chance=0.1),
    'throughput': dict(width=1.0, batch=128, warmup=2, iters=10),
    'batch512': dict(width=1.0, batch=512, warmup=2, iters=5),
    'torch': dict(width=1.0, batch=128, warmup=3, iters=10),
    'loop': dict(model='resnet50', width=1.0, batch=128, examples=128 * 100, epochs=2),
    'heat': dict(models=('vgg19', 'resnet50'), width=1.0),
}
TINY = {
    'name': 'tiny',
    'models': {'resnet50': 'mlp', 'vgg19': 'mlp'},  # the conv nets' parts run the MLP
    'trajectory': dict(model='mlp', width=1.0, batch=32, steps=4),
    'learning': dict(model='mlp', width=1.0, batch=32, epochs=3, chance=0.1),
    'throughput': dict(width=1 / 32, batch=8, warmup=1, iters=2),
    'batch512': dict(width=1 / 32, batch=8, warmup=1, iters=2),  # reuses throughput's steps
    'torch': dict(width=1 / 32, batch=8, warmup=1, iters=2),
    'loop': dict(model='mlp', width=1.0, batch=32, examples=32 * 8, epochs=2),
    'heat': dict(models=('mlp',), width=1.0),
}
# N2NSkip-RP at 5 % (the paper's setting), and the variants the throughput parts compare.
DENSITY = 0.05
VARIANTS = {  # name: (pruned, skip kind, execution.skip, skip.kernel_size)
    'plain': (False, 'none', 'dense', 3),
    'rp': (True, 'none', 'dense', 3),
    'n2nskip_sparse': (True, 'n2nskip', 'sparse', 3),
    'n2nskip_dense': (True, 'n2nskip', 'dense', 3),
    # The paper's f x f skip is 3x3; 1x1 skips (the shape of ResNet's own projection shortcut)
    # tell how much of N2NSkip's step is the dense-shaped skips' FLOPs.
    'n2nskip_dense_k1': (True, 'n2nskip', 'dense', 1),
}


def run_config(model: str, width: float, dataset: str, batch: int, skip: str = 'n2nskip',
               bf16: bool = False):
  """N2NSkip-RP (or RP, ``skip='none'``) at 5 % for ``model`` on ``dataset``, its layers run
  as ``'auto'`` runs them on an accelerator (the core layers; skips as ``execution.skip``
  says), on a CPU too: ``--tiny`` runs the accelerator's code."""
  c = default.get_config()
  c.execution.update(conv='xla', batch_norm='flax', max_pool='flax', sequential='dense',
                     skip='dense')
  c.model, c.width_multiplier, c.dataset, c.half_precision = model, width, dataset, bf16
  c.vgg_head, c.batch_size, c.eval_batch_size = 'cifar', batch, 500
  c.pruning.method, c.pruning.density, c.skip.kind = 'rp', DENSITY, skip
  if model == 'mlp':
    c.mlp_hidden = (256, 128, 64)
  return c


def _memory() -> dict:
  stats = jax.devices()[0].memory_stats() or {}
  return {k: stats[k] for k in ('peak_bytes_in_use', 'bytes_limit') if k in stats}


# --- part 1: the environment ------------------------------------------------------------------

def environment(sizes):
  """Versions, the device, and the JAX APIs the project calls (present on this JAX?)."""
  del sizes
  needed = ['jax.export.export', 'jax.enable_x64', 'jax.ffi.ffi_call', 'jax.tree.map',
            'jax.lax.pmean', 'jax.experimental.multihost_utils.broadcast_one_to_all',
            'flax.jax_utils.replicate', 'flax.training.train_state.TrainState',
            'optax.add_decayed_weights', 'orbax.checkpoint.CheckpointManager']
  missing = [name for name in needed if not _resolves(name)]
  start = time.perf_counter()
  value = float(jax.jit(lambda x: (x @ x).sum())(np.ones((256, 256), np.float32)))
  yield {'apis_checked': needed, 'apis_missing': missing, 'first_jit_s': time.perf_counter() - start,
         'jit_ok': value == 256.0 ** 3, 'device_count': jax.device_count(),
         'python': sys.version.split()[0], **_memory()}


def _resolves(dotted: str) -> bool:
  parts = dotted.split('.')
  for i in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module('.'.join(parts[:i]))
    except ImportError:
      continue
    try:
      for name in parts[i:]:
        obj = getattr(obj, name)
      return True
    except AttributeError:
      return False
  return False


# --- part 2: correct there ---------------------------------------------------------------------

def trajectory_losses(s) -> list[float]:
  """The first ``steps`` training losses of N2NSkip-RP on digits32 (MLP: digits), float32,
  the core layers and step, full-precision matmuls."""
  config = run_config(s['model'], s['width'], 'digits' if s['model'] == 'mlp' else 'digits32',
                      s['batch'])
  dataset = data_lib.load(config)
  state, plan = train.create_train_state(config, dataset)
  p_train_step = plan.steps()[0]
  p_state, losses = replicate(state), []
  with jax.default_matmul_precision('float32'):
    for _, batch in zip(range(s['steps']), dataset.train_batches(0, 0)):
      p_state, metrics = p_train_step(p_state, train.shard(batch))
      losses.append(float(jax.device_get(metrics['loss'])[0]))
  return losses


def jax_minor(version: str | None = None) -> str:
  """``'0.11'`` for jax ``0.11.2`` (default: the installed jax)."""
  return '.'.join(map(str, minor_release(version or jax.__version__)))


def _references() -> dict:
  """``results/accelerator_reference.json``: ``{jax minor: {size: trajectory}}``."""
  with open(REFERENCE) as f:
    return json.load(f)


def reference_losses(size: str) -> dict:
  """The CPU's trajectory for ``size`` (``'full'`` or ``'tiny'``) recorded with the installed
  jax's minor release, else with the nearest one recorded (its ``jax`` field says which)."""
  by_minor = _references()
  mine = minor_release(jax.__version__)
  nearest = min(by_minor, key=lambda m: (abs(minor_release(m)[1] - mine[1]), minor_release(m)))
  return by_minor[nearest][size]


def tolerances(size: str, floor: float = 1e-4) -> np.ndarray:
  """Per step, the relative difference allowed against the CPU: ``max(floor, 2 * drift)``,
  where ``drift`` is the largest relative difference at that step between the CPU trajectories
  of the recorded jax releases (``floor`` at step 1, the initial network's loss, which they
  share). Another release's XLA only sums in another order, as a GPU does: their spread is the
  measured float32 drift of this trajectory (full size, jax 0.10.2 / 0.11.2 / 0.12.0.1: up to
  9.7e-3 at step 9, 5.5e-3 by step 5), and twice it leaves room for one more order."""
  runs = np.array([r[size]['losses'] for r in _references().values()])
  drift = (runs.max(0) - runs.min(0)) / np.abs(runs).min(0)
  return np.maximum(floor, 2 * drift)


def trajectory(sizes):
  """The first steps' losses against the CPU's of the same jax minor release, shipped in
  ``results/accelerator_reference.json`` (:func:`reference_losses`), each step within
  :func:`tolerances` (relative); and the same trajectory once more, whose difference from the
  first is the device's own run-to-run spread (0 where its kernels are deterministic)."""
  s = sizes['trajectory']
  losses, repeat = trajectory_losses(s), trajectory_losses(s)
  reference = reference_losses(sizes['name'])
  rel = np.abs(np.asarray(losses) - reference['losses']) / np.abs(reference['losses'])
  tol = tolerances(sizes['name'])
  yield {'losses': losses, 'cpu_losses': reference['losses'], 'cpu_device': reference['device'],
         'cpu_jax': reference['jax'], 'max_rel_diff_step1': float(rel[0]),
         'max_rel_diff': float(rel.max()), 'tolerance': tol.tolist(),
         'repeat_max_rel_diff': float(np.max(np.abs(np.subtract(repeat, losses)) /
                                             np.abs(losses))),
         'worst_step': int(np.argmax(rel / tol)) + 1, 'passed': bool(np.all(rel <= tol)),
         **{k: s[k] for k in s}}


def learning(sizes):
  """A short N2NSkip-RP training by ``train.train_and_evaluate`` (the loop ``main.py`` runs):
  test accuracy far above chance (at least 5x)."""
  s = sizes['learning']
  config = run_config(s['model'], s['width'], 'digits' if s['model'] == 'mlp' else 'digits32',
                      s['batch'])
  config.num_epochs, config.lr_decay_epochs = s['epochs'], max(1, s['epochs'] // 2)
  config.eval_every_epochs, config.log_every_steps = s['epochs'], 10 ** 6
  with tempfile.TemporaryDirectory() as workdir:
    summary = train.train_and_evaluate(config, workdir)
  yield {'test_accuracy': summary['test_accuracy'], 'steps': summary['steps'],
         'train_seconds': summary['train_seconds'], 'chance': s['chance'],
         'passed': summary['test_accuracy'] >= 5 * s['chance'], **s, **_memory()}


# --- part 3: step throughput -------------------------------------------------------------------

def throughput(model: str, bf16: bool, size: str):
  def part(sizes):
    s = sizes[size]
    for variant, (pruned, skip, skip_execution, kernel_size) in VARIANTS.items():
      config = run_config(sizes['models'][model], s['width'], 'cifar10', s['batch'], skip, bf16)
      config.execution.skip, config.skip.kernel_size = skip_execution, kernel_size
      if not pruned:
        config.pruning.method, config.pruning.density = 'dense', 1.0
      yield {'variant': variant, **step_time(config, variant == 'plain', s)}
  return part


def step_time(config, plain: bool, s) -> dict:
  """Compile seconds (first call less a step), then the median of ``iters`` steps, and XLA's
  own figures for the step (:func:`compiled_costs`)."""
  step, _ = make_step(config, plain, s['batch'])
  start = time.perf_counter()
  jax.block_until_ready(step())
  first = time.perf_counter() - start
  seconds = timed(step, s['warmup'], s['iters'])
  costs = compiled_costs(step.lower())
  return {'model': config.model, 'bf16': config.half_precision, 'batch': s['batch'],
          'width_multiplier': s['width'], 'skip_execution': config.execution.skip,
          'skip_kernel_size': config.skip.kernel_size, 'step_ms': 1e3 * seconds,
          'images_per_s': s['batch'] / seconds, 'compile_s': max(0.0, first - seconds),
          **costs, 'tflop_per_s': costs['gflop_per_step'] / seconds / 1e3, **_memory()}


def compiled_costs(lowered) -> dict:
  """One step's FLOPs from XLA's cost analysis of the lowered program, and the compiled
  program's memory (arguments, outputs, temporaries): figures of this variant alone, where
  ``peak_bytes_in_use`` is the process's peak so far."""
  costs = lowered.cost_analysis()
  costs = costs[0] if isinstance(costs, (list, tuple)) else costs
  memory = lowered.compile().memory_analysis()
  return {'gflop_per_step': float(costs.get('flops', float('nan'))) / 1e9,
          **({} if memory is None else {
              'program_temp_bytes': int(memory.temp_size_in_bytes),
              'program_argument_bytes': int(memory.argument_size_in_bytes),
              'program_output_bytes': int(memory.output_size_in_bytes)})}


# --- part 4: the PyTorch peer ------------------------------------------------------------------

def torch_peer(compile_: bool):
  def part(sizes):
    s = sizes['torch']
    try:
      import torch  # noqa: F401  (present on the GPU image; optional here)
    except ImportError:
      yield {'status': 'unavailable', 'reason': 'torch is not installed'}
      return
    for model in dict.fromkeys(sizes['models'].values()):
      cmd = [sys.executable, os.path.join(HERE, 'torch_peer.py'), f'--model={model}',
             '--vgg_head=cifar', f'--batch={s["batch"]}', f'--width={s["width"]}',
             f'--density={DENSITY}', '--channels_last', '--amp', f'--warmup={s["warmup"]}',
             f'--iters={s["iters"]}', *(['--compile'] if compile_ else [])]
      out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
      for line in out.splitlines():
        if line.startswith('{'):
          yield json.loads(line)
  return part


# --- part 5: the loop, not just the step --------------------------------------------------------

def loop(sizes):
  """``train.train_and_evaluate`` on CIFAR-shaped in-memory data (random: no tensorflow
  there) against the isolated step of the same config: the loop's share of the step's
  images/s."""
  s = sizes['loop']
  config = run_config(s['model'], s['width'], 'cifar10', s['batch'])
  config.num_epochs, config.eval_every_epochs, config.log_every_steps = s['epochs'], s['epochs'], 10
  shape = data_lib.spec(config)[1]
  rng = np.random.default_rng(0)
  arrays = (rng.normal(size=(s['examples'], *shape)).astype(np.float32),
            rng.integers(0, 10, s['examples']),
            rng.normal(size=(500, *shape)).astype(np.float32), rng.integers(0, 10, 500))
  in_memory = lambda cfg, index=0, count=1: data_lib._from_arrays(*arrays, cfg, index, count)
  with tempfile.TemporaryDirectory() as workdir, _patched(data_lib, 'load', in_memory):
    summary = train.train_and_evaluate(config, workdir)
    logged = [json.loads(line) for line in open(os.path.join(workdir, 'metrics.jsonl'))]
  loop_ips = [m['images_per_second'] for m in logged if 'images_per_second' in m][-1]
  step = step_time(config, False, {**s, 'warmup': 2, 'iters': 10})
  yield {'loop_images_per_s': loop_ips, 'step_images_per_s': step['images_per_s'],
         'loop_over_step': loop_ips / step['images_per_s'], 'steps': summary['steps'], **s}


@contextlib.contextmanager
def _patched(module, name, value):
  old = getattr(module, name)
  setattr(module, name, value)
  try:
    yield
  finally:
    setattr(module, name, old)


# --- part 6: the heat analysis at full size --------------------------------------------------------

def heat_analysis(sizes):
  """Dense float64 ``eigh`` of each model's channel graph (the paper's networks, RP 5 %), and
  the scree from its eigenvalues."""
  s = sizes['heat']
  for model in s['models']:
    config = run_config(model, s['width'], 'cifar10' if model != 'mlp' else 'digits', 32, 'none')
    config.vgg_head = 'paper'
    nc, shape = data_lib.spec(config)
    _, variables = network.init(config, nc, shape)
    masks = pruning.prune(config, variables)
    params = pruning.apply_masks(variables, masks)['params']
    w = network_graph(config, params, masks).adjacency(sparse=True)
    start = time.perf_counter()
    spectrum = heat.spectrum(w.toarray())
    seconds = time.perf_counter() - start
    scree = heat.scree_from_eigenvalues(spectrum.eigenvalues, (0.01, 0.1, 0.5), 1.0)
    yield {'model': model, 'nodes': w.shape[0], 'edges': w.nnz // 2, 'eigh_s': seconds,
           'lambda_2': float(spectrum.eigenvalues[1]), 'scree_t1': scree.tolist(), **_memory()}


PARTS = {  # in order of value: the budget runs them in this order and skips what cannot fit
    'environment': environment,
    'trajectory': trajectory,
    'learning': learning,
    'throughput_resnet50_fp32': throughput('resnet50', False, 'throughput'),
    'throughput_resnet50_bf16': throughput('resnet50', True, 'throughput'),
    'throughput_vgg19_fp32': throughput('vgg19', False, 'throughput'),
    'throughput_vgg19_bf16': throughput('vgg19', True, 'throughput'),
    'torch_amp': torch_peer(False),
    'loop': loop,
    'heat': heat_analysis,
    'throughput_resnet50_bf16_batch512': throughput('resnet50', True, 'batch512'),
    'torch_compile': torch_peer(True),
}
# Seconds each part takes on one H100 (compiles included; measured with jax 0.11.2, rounded up,
# the throughput parts' fifth variant and the trajectory's repeat added; the last two guessed):
# the budget's guide. The first ten take about 13 minutes: two calls where one is limited to 10.
ESTIMATES_S = {
    'environment': 10, 'trajectory': 60, 'learning': 60, 'throughput_resnet50_fp32': 160,
    'throughput_resnet50_bf16': 120, 'throughput_vgg19_fp32': 75, 'throughput_vgg19_bf16': 70,
    'torch_amp': 35, 'loop': 115, 'heat': 70, 'throughput_resnet50_bf16_batch512': 150,
    'torch_compile': 180,
}

"""The core is the paper on every backend: it never imports the execution package, it decides
nothing by backend, forward-mode autodiff works through it, and the step an accelerator runs
lowers for CUDA and TPU here, on the CPU, with no CPU-only operation in it."""
import ast
import os
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, make_config

from n2nskip_jax import execution, network, pruning, steps
from n2nskip_jax.execution import native, xla_flags
from n2nskip_jax.execution import step as by_nonzeros_step
from n2nskip_jax.models import create_model

PACKAGE = os.path.join(ROOT, 'n2nskip_jax')
CORE = ('steps', 'layers', 'models', 'network', 'pruning', 'methods', 'sparsity', 'checkpoints',
        'rundir', 'losses', 'data', 'errors', 'metrics')


def _module_files():
  """``{dotted module name: path}`` for every module of the package."""
  files = {}
  for folder, _, names in os.walk(PACKAGE):
    for name in names:
      if name.endswith('.py'):
        rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].replace(os.sep, '.')
        files[rel.removesuffix('.__init__')] = os.path.join(folder, name)
  return files


def _imports(path: str, known) -> set[str]:
  """The package's modules that the file at ``path`` imports (``from a import b`` counts ``a.b``
  where that is a module)."""
  found = set()
  for node in ast.walk(ast.parse(pathlib.Path(path).read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module:
      found |= {node.module} | {f'{node.module}.{a.name}' for a in node.names}
  return {m for m in found if m in known}


def test_no_core_module_imports_the_execution_package_even_indirectly():
  files = _module_files()
  graph = {m: _imports(p, files) for m, p in files.items()}
  for core in CORE:
    for start in [m for m in files if m == f'n2nskip_jax.{core}' or
                  m.startswith(f'n2nskip_jax.{core}.')]:
      seen, todo = set(), [start]
      while todo:
        module = todo.pop()
        if module not in seen:
          seen.add(module)
          todo += graph[module] | ({module.rpartition('.')[0]} - {'', 'n2nskip_jax'})
      assert not {m for m in seen if m.startswith('n2nskip_jax.execution')}, start
  # The test can fail: the training loop does import it.
  assert 'n2nskip_jax.execution' in graph['n2nskip_jax.train']


def test_the_core_decides_nothing_by_backend():
  for module, path in _module_files().items():
    if any(module == f'n2nskip_jax.{c}' or module.startswith(f'n2nskip_jax.{c}.') for c in CORE):
      text = pathlib.Path(path).read_text()
      for word in ('default_backend', 'platform_dependent', 'custom_vjp', 'custom_jvp'):
        assert word not in text, f'{path}: {word}'


def test_the_one_private_jax_import_still_works():
  """``xla_flags.backends_started`` is the only import from ``jax._src``: it fails here if JAX
  moves it."""
  assert xla_flags.backends_started() in (True, False)
  texts = {p: pathlib.Path(p).read_text() for p in _module_files().values()}
  assert [p for p, t in texts.items() if 'jax._src' in t] == [
      os.path.join(PACKAGE, 'execution', 'xla_flags.py')]


# --- forward mode through the model network.init returns, in train mode ---------------------

MODELS = {'mlp': dict(model='mlp', mlp_hidden=(16, 12, 8, 8)),
          'vgg19': dict(model='vgg19', vgg_head='cifar', width_multiplier=0.125),
          'resnet50': dict(model='resnet50', width_multiplier=0.125)}
SHAPES = {'mlp': (6,), 'vgg19': (32, 32, 3), 'resnet50': (8, 8, 3)}


def _loss(model_name, skip):
  """The model ``network.init`` builds (``create_model``), its loss in train mode (batch
  statistics, as training computes it) on a random batch, random variables (set with numpy: no
  initializer to compile), 30 % masks, and a random tangent."""
  config = make_config(**MODELS[model_name], skip__kind=skip)
  model = create_model(config, 10)
  rng = np.random.default_rng(0)
  abstract = network.abstract(config, 10, SHAPES[model_name])[1]
  params = jax.tree.map(
      lambda s: jnp.asarray(rng.normal(size=s.shape) / np.sqrt(np.prod(s.shape[:-1]) or 1),
                            s.dtype), abstract['params'])
  masks = jax.tree.map(lambda s: (rng.random(s.shape) < 0.3).astype(np.float32), abstract['masks'])
  variables = pruning.apply_masks({**abstract, 'params': params, 'masks': masks,
                                   'batch_stats': jax.tree.map(lambda s: jnp.ones(s.shape),
                                                               abstract.get('batch_stats', {}))},
                                  masks)
  x = jnp.asarray(rng.normal(size=(4, *SHAPES[model_name])), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 10, 4))

  def loss(params):
    logits, _ = model.apply({**variables, 'params': params}, x, train=True,
                            mutable=['batch_stats'])
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
  params = variables['params']
  tangent = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
  return loss, params, tangent


# A conv net without skips is a subgraph of the same net with them (every operation of the one
# is in the other), so VGG19 and ResNet50 run with skips only: fewer long compilations.
WITH_AND_WITHOUT_SKIPS = [('mlp', 'none'), ('mlp', 'n2nskip'), ('vgg19', 'n2nskip'),
                          ('resnet50', 'n2nskip')]


@pytest.mark.parametrize('model_name,skip', WITH_AND_WITHOUT_SKIPS)
def test_forward_mode_and_hessian_vector_products_through_the_model(model_name, skip):
  """``jax.jvp`` of the loss is the gradient's dot product with the tangent, and the
  Hessian-vector product by forward over reverse equals reverse over reverse. For ResNet50 the
  forward mode only: its two HVPs would triple the longest compilation of the suite, and its
  layers are VGG19's (conv, BatchNorm, skips) joined by sums."""
  loss, params, tangent = _loss(model_name, skip)
  vdot = lambda a, b: sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

  def derivatives(p, t):
    if model_name == 'resnet50':
      return jax.jvp(loss, (p,), (t,))[1], vdot(jax.grad(loss)(p), t), {}, {}
    # Forward over reverse: the tangent of (loss, grad) is (jvp of the loss, the HVP).
    (_, grad), (jvp, fwd_rev) = jax.jvp(jax.value_and_grad(loss), (p,), (t,))
    rev_rev = jax.grad(lambda q: vdot(jax.grad(loss)(q), t))(p)  # reverse over reverse
    return jvp, vdot(grad, t), fwd_rev, rev_rev
  # One compilation for all, without XLA's expensive passes (a third less compile time).
  compiled = jax.jit(derivatives).lower(params, tangent).compile(
      {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True})
  jvp, grad_dot, fwd_rev, rev_rev = compiled(params, tangent)
  np.testing.assert_allclose(jvp, grad_dot, rtol=2e-4, atol=1e-6)
  assert abs(float(jvp)) > 0
  for a, b in zip(jax.tree.leaves(fwd_rev), jax.tree.leaves(rev_rev)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4 * max(1e-6, float(jnp.abs(b).max())))
  assert model_name == 'resnet50' or any(float(jnp.abs(a).max()) > 0
                                         for a in jax.tree.leaves(fwd_rev))  # not all zero


# --- the accelerator's steps, lowered here ----------------------------------------------------

# Custom-call targets that exist on the CPU only: LAPACK, the native kernels, any 'cpu' target.
CPU_ONLY = re.compile(r'lapack|n2nskip|cpu|ducc', re.IGNORECASE)
FULL = {'mlp': dict(model='mlp', dataset='cifar10'),
        'vgg19': dict(model='vgg19', vgg_head='cifar', dataset='cifar10'),
        'resnet50': dict(model='resnet50', dataset='cifar10')}


# jax.export refuses custom calls it does not know unless told; so that the search below, not
# export, is what finds the native kernels.
UNCHECKED = [jax.export.DisabledSafetyCheck.custom_call(t)
             for t in (native.ACCUMULATE, native.SEGMENT_DOTS)]


def _abstract_state(config, model, shape):
  def build():
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape)), train=False)
    return steps.TrainState.create(apply_fn=model.apply, params=variables['params'],
                                   tx=steps.create_optimizer(config, 10),
                                   batch_stats=variables.get('batch_stats', {}),
                                   masks=variables['masks'])
  return jax.eval_shape(build)


def _per_device(tree):
  """A leading device axis of 1, as ``pmap`` sees its arguments."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct((1, *s.shape), s.dtype), tree)


def exported_targets(config, platforms, masks=None, batch: int = 8) -> set[str]:
  """The custom-call targets of the train and eval steps as ``platforms`` would run them
  (built from the plan for the first of them, for ``masks`` or, if none, the dense network's),
  exported with ``jax.export``."""
  shape = (32, 32, 3)
  abstract = network.abstract(config, 10, shape)[1]
  plan = execution.plan(config, abstract['masks'] if masks is None else masks, platforms[0])
  model = plan.model(config, 10, bn_axis_name=steps.AXIS)
  state = _per_device(_abstract_state(config, model, shape))
  images = jax.ShapeDtypeStruct((1, batch, *shape), jnp.float32)
  labels = jax.ShapeDtypeStruct((1, batch), jnp.int32)
  train_batch = {'image': images, 'label': labels}
  eval_batch = {**train_batch, 'mask': jax.ShapeDtypeStruct((1, batch), jnp.float32)}
  pairs = ((steps.train_step, train_batch), (steps.eval_step, eval_batch))
  args = (state,)
  if plan.tables:  # the steps by nonzeros, which take the tables too
    pairs = ((by_nonzeros_step.train_step, train_batch), (by_nonzeros_step.eval_step, eval_batch))
    args = (state, _per_device(jax.eval_shape(lambda: plan.tables)))
  targets = set()
  for step, batch_ in pairs:
    per_device = jax.vmap(step, axis_name=steps.AXIS)  # pmap's axis, bound for one device
    exported = jax.export.export(jax.jit(per_device), platforms=platforms,
                                 disabled_checks=UNCHECKED)(*args, batch_)
    text = exported.mlir_module()
    targets |= set(re.findall(r'custom_call @([\w.$-]+)', text))
    targets |= set(re.findall(r'call_target_name = "([^"]+)"', text))
  return targets


@pytest.mark.parametrize('half', [False, True], ids=['float32', 'bf16'])
@pytest.mark.parametrize('model_name,skip', WITH_AND_WITHOUT_SKIPS)
def test_the_accelerator_steps_export_for_cuda_and_tpu_without_cpu_only_calls(model_name, skip,
                                                                              half):
  config = make_config(**FULL[model_name], skip__kind=skip, half_precision=half)
  targets = exported_targets(config, ('cuda', 'tpu'))
  assert not {t for t in targets if CPU_ONLY.search(t)}, targets


def _pruned(**overrides):
  """A reduced VGG19 with N2NSkip skips and random masks of 5 % (shapes only: nothing runs)."""
  config = make_config(model='vgg19', vgg_head='cifar', width_multiplier=0.0625, dataset='cifar10',
                       skip__kind='n2nskip', **overrides)
  rng = np.random.default_rng(0)
  masks = jax.tree.map(lambda m: (rng.random(m.shape) < 0.05).astype(np.float32),
                       network.abstract(config, 10, (32, 32, 3))[1]['masks'])
  return config, masks


def test_skips_by_their_nonzeros_export_for_cuda_and_tpu_without_cpu_only_calls():
  """``execution.skip='sparse'`` on an accelerator: the scan, not the native kernels."""
  config, masks = _pruned(execution__skip='sparse')
  assert execution.plan(config, masks, 'cuda').tables
  targets = exported_targets(config, ('cuda', 'tpu'), masks)
  assert not {t for t in targets if CPU_ONLY.search(t)}, targets


@pytest.mark.skipif(not native.available(), reason='no native kernels here')
def test_the_export_check_finds_cpu_only_calls_in_the_cpu_plan():
  """The checks above can fail: the CPU's plan for the same run is not the core, and its step
  by nonzeros lowers to the native kernels, which the same search finds."""
  config, masks = _pruned()
  assert not execution.plan(config, masks, 'cpu').is_core
  assert execution.plan(config, masks, 'cuda').is_core
  targets = exported_targets(config, ('cpu',), masks)
  assert {native.ACCUMULATE, native.SEGMENT_DOTS} <= {t for t in targets if CPU_ONLY.search(t)}

"""End-to-end training: mock CIFAR-10, learning on MNIST-1D, kill, preemption and resume, data
parallel."""
import contextlib
import json
import os
import signal
import time

import jax
import numpy as np
from conftest import make_config, read_jsonl, run_main

from flax import traverse_util

from n2nskip_jax import data as data_lib
from n2nskip_jax import network, pruning, rundir, steps, train

TINY_RESNET = ['--config=configs/resnet50_c10.py', '--config.width_multiplier=0.0625',
               '--config.num_epochs=2', '--config.batch_size=32', '--config.eval_batch_size=64',
               '--config.download=True', '--config.log_every_steps=5']
TINY_VGG = ['--config=configs/vgg19_c10.py', '--config.vgg_head=cifar', '--config.dataset=digits32',
            '--config.width_multiplier=0.0625', '--config.num_epochs=2', '--config.batch_size=512',
            '--config.eval_batch_size=360', '--config.log_every_steps=1']  # 2 steps an epoch
QUICK = ['--config=configs/quickstart.py', '--config.dataset=digits', '--config.num_epochs=24',
         '--config.mlp_hidden=64,32,32,16', '--config.eval_every_epochs=24',
         '--config.log_every_steps=2']
TOTAL = 24 * (1437 // 128)  # steps: 11 an epoch


def final_params(workdir):
  step, restored = rundir.read_latest(str(workdir))
  return step, restored['state']['params']


def test_end_to_end_on_mock_cifar10(tmp_path):
  r = run_main(*TINY_RESNET, f'--workdir={tmp_path}', mock_examples=256)
  assert r.returncode == 0, r.stdout + r.stderr
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert summary['steps'] == 2 * (256 // 32) == summary['config']['num_epochs'] * 8
  assert 0.0 <= summary['test_accuracy'] <= 1.0 and summary['devices'] == 1
  assert summary['params_nonzero'] == summary['params_prunable_reference'] > 0
  assert summary['params_total'] > summary['params_prunable_reference']
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['16', '8']
  metrics = read_jsonl(tmp_path / 'metrics.jsonl')
  # Every 5 steps, and at the end of each epoch of 8.
  assert [m['step'] for m in metrics if 'train_loss' in m] == [5, 8, 10, 15, 16]
  assert [m['step'] for m in metrics if 'test_accuracy' in m] == [8, 16]
  assert os.listdir(tmp_path / 'tensorboard')
  assert 'epoch 2/2 step 16/16' in r.stderr
  assert f'Run directory: {tmp_path}' in r.stderr
  lines = r.stderr.splitlines()  # not a terminal: plain lines, one saying what waits
  compiling = [i for i, line in enumerate(lines) if 'Compiling the train step' in line]
  first = [i for i, line in enumerate(lines) if 'First step done in' in line]
  assert len(compiling) == len(first) == 1 and compiling[0] < first[0]
  assert '\r' not in r.stderr and 'img/s]' not in r.stderr  # no progress bar in a pipe


def test_dense_mlp_learns_mnist1d(tmp_path):
  config = make_config(model='mlp', dataset='mnist1d', num_epochs=15, lr_decay_epochs=10,
                       eval_every_epochs=15, log_every_steps=1000)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['test_accuracy'] > 0.55  # chance is 0.10; published MLP: 0.68


def test_train_step_is_compiled_once_per_run_and_resume(tmp_path, monkeypatch):
  """The replicated state is laid out as the step's outputs, so its first outputs (and a resumed
  run's state) reuse the compiled step: ``pmap`` traces the step once per compilation. A resumed
  run initializes no network (the checkpoint is restored into zeros of its shapes)."""
  traces = []

  def counted(state, batch):
    traces.append(1)
    return steps.train_step(state, batch)
  monkeypatch.setattr(steps, 'p_train_step',  # the plan's step for a dense MLP on CPU
                      jax.pmap(counted, axis_name=steps.AXIS, donate_argnums=(0,)))
  config = make_config(model='mlp', dataset='mnist1d', num_epochs=1, log_every_steps=1000)
  train.train_and_evaluate(config, str(tmp_path))
  assert len(traces) == 1
  config.num_epochs = 2  # resumes from the checkpoint of epoch 1
  # ... restored into zeros of the run's shapes: its network is not initialized again.
  monkeypatch.setattr(network, 'init', lambda *a, **k: (_ for _ in ()).throw(AssertionError()))
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert len(traces) == 1 and summary['steps'] == 2 * data_lib.load(config).steps_per_epoch


def test_quickstart_learns_and_masks_never_change(tmp_path):
  """N2NSkip-RP at 5 %: learns; masks bit-identical after training; pruned weights stay 0."""
  from n2nskip_jax.configs import quickstart
  config = quickstart.get_config()
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['test_accuracy'] > 0.2  # chance is 0.10
  budget = round(0.05 * summary['params_prunable_reference'])
  assert summary['params_nonzero'] == budget
  assert summary['params_nonzero_skip'] == round(0.5 * budget)
  data = data_lib.load(config)
  _, variables = network.init(config, data.num_classes, data.input_shape)
  before = traverse_util.flatten_dict(pruning.prune(config, variables))
  _, restored = rundir.read_latest(str(tmp_path))
  after = traverse_util.flatten_dict(restored['masks'])
  params = traverse_util.flatten_dict(restored['state']['params'])
  assert before.keys() == after.keys()
  for p in before:
    np.testing.assert_array_equal(before[p], after[p])
    assert np.all(params[p][before[p] == 0] == 0)
    assert np.count_nonzero(params[p][before[p] == 1]) == before[p].sum()


def _last_step(metrics) -> int:
  """The last step in a ``metrics.jsonl`` being written (a torn last line is skipped)."""
  steps = [0]
  for line in metrics.read_text().splitlines() if metrics.exists() else ():
    with contextlib.suppress(ValueError, KeyError):
      steps.append(json.loads(line)['step'])
  return max(steps)


def test_killed_or_preempted_runs_resume_to_the_same_parameters(tmp_path):
  """SIGKILL after a checkpoint; SIGTERM and SIGUSR1 mid-epoch, which checkpoint the step they
  stop at, say so in one line and exit 128 + the signal. Each rerun resumes, trains no step
  twice and ends bitwise equal to an uninterrupted run."""
  signals = {'whole': None, 'kill': signal.SIGKILL, 'term': signal.SIGTERM,
             'usr1': signal.SIGUSR1}
  procs = {name: run_main(*QUICK, f'--workdir={tmp_path / name}', wait=False)
           for name in signals}  # side by side
  waiting, deadline = {name for name in signals if signals[name]}, time.time() + 300
  while waiting and time.time() < deadline:  # each signalled mid-epoch 2, after a checkpoint
    for name in sorted(waiting):
      workdir = tmp_path / name
      if procs[name].poll() is not None or (_last_step(workdir / 'metrics.jsonl') >= 14
                                            and rundir.latest_step(str(workdir))):
        procs[name].send_signal(signals[name])
        waiting.remove(name)
    time.sleep(0.01)
  outputs = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
  assert procs['whole'].returncode == 0, outputs['whole'][-2000:]
  saved = {name: rundir.latest_step(str(tmp_path / name)) for name in signals if name != 'whole'}
  assert 0 < saved['kill'] < TOTAL, saved
  for name in ('term', 'usr1'):
    assert procs[name].returncode == 128 + signals[name], outputs[name][-2000:]
    said = [line for line in outputs[name].splitlines() if 'stopped by' in line]
    assert said == [f'error: stopped by {signals[name].name} at step {saved[name]}; checkpoint '
                    'written; rerun the same command to resume.'], said
    assert 14 <= saved[name] < TOTAL
  resumed = {name: run_main(*QUICK, f'--workdir={tmp_path / name}', wait=False)
             for name in saved}  # side by side
  step_b, params_b = final_params(tmp_path / 'whole')
  for name, proc in resumed.items():
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output[-2000:]
    assert f'Resuming from checkpoint at step {saved[name]}' in output
    step_a, params_a = final_params(tmp_path / name)
    assert step_a == step_b == TOTAL
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
      np.testing.assert_array_equal(a, b)
    logged = [m['step'] for m in read_jsonl(tmp_path / name / 'metrics.jsonl') if 'train_loss' in m]
    assert logged == sorted(set(logged)) and logged[-1] == TOTAL  # no step trained twice


def test_two_devices_follow_the_one_device_trajectory(tmp_path):
  """Same global batch on 2 devices (pmean of grads and of BatchNorm statistics) as on 1."""
  runs = {devices: run_main(*TINY_VGG, f'--workdir={tmp_path / str(devices)}', devices=devices,
                            wait=False) for devices in (1, 2)}  # side by side
  losses = {}
  for devices, proc in runs.items():
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    # 4 steps: the running statistics the test uses are mostly their initial values; said.
    assert "BatchNorm's running statistics, which the test numbers use, still weigh" in output
    workdir = tmp_path / str(devices)
    assert json.loads((workdir / 'summary.json').read_text())['devices'] == devices
    losses[devices] = [m['train_loss'] for m in read_jsonl(workdir / 'metrics.jsonl')
                       if 'train_loss' in m]
  assert len(losses[1]) == 4
  # The first loss is the same forward pass (BatchNorm on the global batch's statistics); the
  # updates after it round differently on 2 devices, and the difference grows step by step.
  np.testing.assert_allclose(losses[2][0], losses[1][0], rtol=1e-6)
  np.testing.assert_allclose(losses[2], losses[1], rtol=1e-3)

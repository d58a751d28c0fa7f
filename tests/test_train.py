"""End-to-end training: mock CIFAR-10, learning on MNIST-1D, kill-and-resume, data parallel."""
import json
import os
import signal
import time

import numpy as np
from conftest import make_config, read_jsonl, run_main

from flax import traverse_util

from n2nskip_jax import data as data_lib
from n2nskip_jax import network, pruning, rundir, steps, train

TINY_RESNET = ['--config=configs/resnet50_c10.py', '--config.width_multiplier=0.0625',
               '--config.num_epochs=2', '--config.batch_size=32', '--config.eval_batch_size=64',
               '--config.download=True', '--config.log_every_steps=4']
TINY_VGG = ['--config=configs/vgg19_c10.py', '--config.vgg_head=cifar',
            '--config.width_multiplier=0.0625', '--config.num_epochs=1', '--config.batch_size=16',
            '--config.eval_batch_size=16', '--config.download=True', '--config.log_every_steps=1']
QUICK = ['--config=configs/quickstart.py', '--config.num_epochs=30', '--config.eval_every_epochs=30']


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
  assert [m['step'] for m in metrics if 'train_loss' in m] == [4, 8, 12, 16]
  assert [m['step'] for m in metrics if 'test_accuracy' in m] == [8, 16]
  assert os.listdir(tmp_path / 'tensorboard')
  assert 'epoch 2/2 step 16/16' in r.stderr


def test_dense_mlp_learns_mnist1d(tmp_path):
  config = make_config(model='mlp', dataset='mnist1d', num_epochs=15, lr_decay_epochs=10,
                       eval_every_epochs=15, log_every_steps=1000)
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary['test_accuracy'] > 0.55  # chance is 0.10; published MLP: 0.68


def test_train_step_is_compiled_once_per_run_and_resume(tmp_path, monkeypatch):
  """The replicated state is laid out as the step's outputs, so its first outputs (and a resumed
  run's state) reuse the compiled step: ``pmap`` traces the step once per compilation."""
  import jax
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
  train.train_and_evaluate(config, str(tmp_path))
  assert len(traces) == 1


def test_quickstart_learns_and_masks_never_change(tmp_path):
  """N2NSkip-RP at 5 %: learns; masks bit-identical after training; pruned weights stay 0."""
  from configs import quickstart
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


def test_killed_run_resumes_to_the_same_parameters(tmp_path):
  killed, whole = tmp_path / 'killed', tmp_path / 'whole'
  ckpts = killed / 'checkpoints'
  uninterrupted = run_main(*QUICK, f'--workdir={whole}', wait=False)  # side by side
  proc = run_main(*QUICK, f'--workdir={killed}', wait=False)
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if ckpts.exists() and any(name.isdigit() for name in os.listdir(ckpts)):
      break
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()  # reaped, its pipe closed
  saved = rundir.latest_step(str(killed))
  total = 30 * (4000 // 128)
  assert saved is not None and 0 < saved < total, f'killed at {saved} of {total}'

  resumed = run_main(*QUICK, f'--workdir={killed}')
  assert resumed.returncode == 0, resumed.stderr
  assert f'Resuming from checkpoint at step {saved}' in resumed.stderr
  output = uninterrupted.communicate(timeout=600)[0]
  assert uninterrupted.returncode == 0, output
  step_a, params_a = final_params(killed)
  step_b, params_b = final_params(whole)
  assert step_a == step_b == total
  for layer in params_a:
    for name in params_a[layer]:
      np.testing.assert_array_equal(params_a[layer][name], params_b[layer][name])
  steps = [m['step'] for m in read_jsonl(killed / 'metrics.jsonl')]
  assert steps == sorted(steps)  # the interrupted run's tail was not duplicated


def test_two_devices_follow_the_one_device_trajectory(tmp_path):
  """Same global batch on 2 devices (pmean of grads and of BatchNorm statistics) as on 1."""
  runs = {devices: run_main(*TINY_VGG, f'--workdir={tmp_path / str(devices)}', devices=devices,
                            mock_examples=64, wait=False) for devices in (1, 2)}  # side by side
  losses = {}
  for devices, proc in runs.items():
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    workdir = tmp_path / str(devices)
    assert json.loads((workdir / 'summary.json').read_text())['devices'] == devices
    losses[devices] = [m['train_loss'] for m in read_jsonl(workdir / 'metrics.jsonl')
                       if 'train_loss' in m]
  assert len(losses[1]) == 4
  np.testing.assert_allclose(losses[2], losses[1], rtol=2e-4)

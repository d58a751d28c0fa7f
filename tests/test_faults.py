"""Faults and bad input: checkpoints that heal, divergence, untrainable budgets, nothing
written before the checks, no traceback for a user's mistake, resume edge cases."""
import asyncio
import contextlib
import gc
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import time

import jax
import ml_collections
import numpy as np
import pytest
from conftest import make_config, read_jsonl, run_main

from n2nskip_jax import cli, pruning, rundir, train
from n2nskip_jax.errors import ConfigError, Diverged, UserError
from n2nskip_jax.metrics import MetricsWriter

TINY = dict(model='mlp', dataset='digits', mlp_hidden=(32, 16, 8), num_epochs=2, batch_size=64,
            eval_batch_size=120, lr_decay_epochs=10, log_every_steps=5, pruning__method='rp',
            pruning__density=0.3)  # 1437 training digits: 22 steps per epoch
QUICK = ['--config=configs/quickstart.py', '--config.dataset=digits', '--config.num_epochs=2']


def tiny(**overrides):
  return make_config(**{**TINY, **overrides})


def largest_file(folder):
  files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
  return max(files, key=os.path.getsize)


@pytest.fixture(scope='module')
def two_epochs(tmp_path_factory):
  """A finished 2-epoch run (checkpoints at steps 22 and 44) and its 3-epoch continuation."""
  root = tmp_path_factory.mktemp('faults')
  train.train_and_evaluate(tiny(), str(root / 'run'))
  train.train_and_evaluate(tiny(num_epochs=3), str(root / 'whole'))
  return root


def copy_run(two_epochs, tmp_path):
  shutil.copytree(two_epochs / 'run', tmp_path / 'run')
  return tmp_path / 'run'


@pytest.mark.parametrize('damage', ['truncate', 'delete_default'])
def test_a_damaged_checkpoint_is_set_aside_and_the_previous_one_resumes(two_epochs, tmp_path,
                                                                        damage, caplog):
  workdir = copy_run(two_epochs, tmp_path)
  if damage == 'truncate':
    os.truncate(largest_file(workdir / 'checkpoints' / '44'), 100)
  else:
    shutil.rmtree(workdir / 'checkpoints' / '44' / 'default')
  summary = train.train_and_evaluate(tiny(num_epochs=3), str(workdir))
  assert (workdir / 'checkpoints' / 'corrupt-44').is_dir()
  assert 'Checkpoint at step 44' in caplog.text and 'corrupt-44' in caplog.text
  assert summary['steps'] == 66
  _, got = rundir.read_latest(str(workdir))
  _, want = rundir.read_latest(str(two_epochs / 'whole'))
  for a, b in zip(jax.tree.leaves(got['state']['params']), jax.tree.leaves(want['state']['params'])):
    np.testing.assert_array_equal(a, b)  # resumed from step 22: the uninterrupted trajectory



def test_a_resumed_run_removes_the_folders_of_saves_that_never_finished(two_epochs, tmp_path,
                                                                      caplog):
  workdir = copy_run(two_epochs, tmp_path)
  unfinished = workdir / 'checkpoints' / '66.orbax-checkpoint-tmp-1733400000000000'
  shutil.copytree(workdir / 'checkpoints' / '44', unfinished)  # a save killed midway
  summary = train.train_and_evaluate(tiny(num_epochs=3), str(workdir))
  assert summary['steps'] == 66 and not unfinished.exists()
  assert 'Removed 1 unfinished checkpoint folder: 66.orbax-checkpoint-tmp-' in caplog.text
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['44', '66']


def test_no_readable_checkpoint_exits_unless_restart_is_asked(two_epochs, tmp_path):
  workdir = copy_run(two_epochs, tmp_path)
  for step in ('22', '44'):
    shutil.rmtree(workdir / 'checkpoints' / step / 'default')
  with pytest.raises(UserError, match='restart_on_corrupt=True'):
    train.train_and_evaluate(tiny(), str(workdir))
  summary = train.train_and_evaluate(tiny(restart_on_corrupt=True), str(workdir))
  assert summary['steps'] == 44


def test_analyze_reads_the_newest_readable_checkpoint(two_epochs, tmp_path):
  from n2nskip_jax.connectivity import load_run
  workdir = copy_run(two_epochs, tmp_path)
  shutil.rmtree(workdir / 'checkpoints' / '44' / 'default')
  config, params, masks, _ = load_run(str(workdir), 'final')
  at_22 = rundir.checkpoints(str(two_epochs / 'run')).read(22)
  np.testing.assert_array_equal(params['dense1']['kernel'], at_22['state']['params']['dense1']['kernel'])



def test_divergence_stops_without_summary_or_non_finite_checkpoint(tmp_path):
  with pytest.raises(Diverged, match='Lower --config.learning_rate'):
    train.train_and_evaluate(tiny(learning_rate=1e4, num_epochs=3), str(tmp_path))
  assert not (tmp_path / 'summary.json').exists()
  for step in rundir.checkpoints(str(tmp_path)).manager.all_steps():
    payload = rundir.checkpoints(str(tmp_path)).read(step)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(payload['state']['params']))
  metrics = tmp_path / 'metrics.jsonl'
  for line in metrics.read_text().splitlines() if metrics.exists() else []:
    json.loads(line, parse_constant=lambda c: pytest.fail(f'non-strict JSON: {c}'))


@pytest.mark.parametrize('density', [1e-7, 1e-5])
def test_budgets_that_cannot_train_are_refused_before_anything_is_written(tmp_path, density):
  with pytest.raises(ConfigError, match='sequential layers') as e:
    train.train_and_evaluate(tiny(pruning__density=density), str(tmp_path / 'run'))
  assert e.value.key == 'pruning.density'
  assert not (tmp_path / 'run').exists()


def test_layer_collapse_and_most_units_dead_are_warnings(tmp_path):
  from n2nskip_jax import network
  config = tiny()
  _, variables = network.init(config, 10, (8, 8, 1))
  masks = pruning.prune(config, variables)
  masks['dense2']['kernel'] = np.zeros_like(masks['dense2']['kernel'])
  summary = train.train_and_evaluate(tiny(num_epochs=1), str(tmp_path / 'empty'), masks)
  assert any('layer collapse: pruning left dense2 with no weight' in w for w in summary['warnings'])
  summary = train.train_and_evaluate(tiny(pruning__density=0.05, num_epochs=1), str(tmp_path / 'dead'))  # 30 of 56 dead
  assert summary['warnings'] and 'most of the network is dead' in summary['warnings'][0]


def test_a_failed_start_leaves_nothing_that_blocks_the_corrected_command(tmp_path):
  with pytest.raises(UserError, match='larger than the training set'):
    train.train_and_evaluate(tiny(batch_size=5000), str(tmp_path))
  assert not os.listdir(tmp_path)
  assert train.train_and_evaluate(tiny(num_epochs=1), str(tmp_path))['steps'] == 22


def test_shrinking_num_epochs_below_the_checkpoint_is_refused(two_epochs, tmp_path):
  workdir = copy_run(two_epochs, tmp_path)
  with pytest.raises(UserError, match='num_epochs=1: .* step 44 .* num_epochs >= 2'):
    train.train_and_evaluate(tiny(num_epochs=1), str(workdir))


def test_execution_keys_may_change_on_resume_even_from_a_config_without_them(two_epochs,
                                                                              tmp_path):
  """A run started before the ``execution`` group existed (its config.json has the old keys
  ``conv_impl``, ``pruning.execution``, ``skip.execution``, or none of them), or with another
  execution, resumes; a key that changes the math is still refused."""
  workdir = copy_run(two_epochs, tmp_path)
  config = json.loads((workdir / 'config.json').read_text())
  del config['execution']
  config.update(conv_impl='auto')
  config['skip']['execution'] = 'auto'  # and no pruning.execution: older still
  for key in rundir.ADDED_KEYS:  # nor the keys added since
    group, name = key.split('.')
    del config[group][name]
  (workdir / 'config.json').write_text(json.dumps(config))
  resumed = train.train_and_evaluate(tiny(num_epochs=3, execution__sequential='sparse',
                                          execution__skip='dense', execution__batch_norm='flax'),
                                     str(workdir))
  assert resumed['steps'] == 66
  with pytest.raises(UserError, match=r"different config \(keys \['pruning.density'\]\)"):
    train.train_and_evaluate(tiny(num_epochs=4, pruning__density=0.2), str(workdir))


def test_keys_added_later_leave_the_default_run_folder_as_it_was():
  config = tiny()
  older = json.loads(config.to_json())
  for key in rundir.ADDED_KEYS:
    group, name = key.split('.')
    del older[group][name]
  name = rundir.default_workdir('configs/tiny.py', config)
  assert rundir.default_workdir('configs/tiny.py', ml_collections.ConfigDict(older)) == name
  assert rundir.default_workdir('configs/tiny.py', tiny(pruning__shuffle=True)) != name


def test_the_default_run_folder_names_the_overridden_keys_and_keeps_older_folders(
    tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = tiny(seed=3, pruning__density=0.2)
  unlabelled = rundir.default_workdir('tiny.py', config)
  digest = unlabelled.rsplit('-', 1)[1]  # the resume key: the overrides do not change it
  assert unlabelled == os.path.join('runs', f'tiny-{digest}') and digest not in (
      rundir.default_workdir('tiny.py', tiny()))
  overrides = {'seed': 3, 'pruning.density': 0.2, 'execution.conv': 'xla', 'model': 'a b/c'}
  name = rundir.default_workdir('tiny.py', config, overrides)
  assert name == os.path.join('runs', f'tiny-model=ab_c-pruning.density=0.2-seed=3-{digest}')
  assert rundir.default_workdir('tiny.py', config, dict(reversed(overrides.items()))) == name
  assert rundir.default_workdir('tiny.py', config, {'execution.conv': 'xla'}) == unlabelled
  assert rundir.default_workdir('tiny.py', config, {'mlp_hidden': (32, 16)}).startswith(
      os.path.join('runs', 'tiny-mlp_hidden=32,16-'))
  long = rundir.default_workdir('tiny.py', config, {'data_dir': 'x' * 500})
  assert len(os.path.basename(long)) < 120 and long.endswith(f'...-{digest}')
  os.makedirs(name)  # a run exists: the same config finds it under any label
  assert rundir.default_workdir('tiny.py', config, {'seed': 3, 'pruning.density': 0.2}) == name
  assert rundir.default_workdir('tiny.py', config) == name
  assert rundir.default_workdir('tiny-v2.py', config) == os.path.join('runs', f'tiny-v2-{digest}')
  os.rmdir(name)
  os.makedirs(unlabelled)  # a run stored before overrides were part of the name
  assert rundir.default_workdir('tiny.py', config, overrides) == unlabelled


def test_torn_metrics_line_is_dropped_and_broken_config_json_is_named(tmp_path):
  (tmp_path / 'metrics.jsonl').write_text('{"step": 5, "train_loss": 1.0}\n{"step": 10, "tr')
  MetricsWriter(str(tmp_path), resume_step=10).close()
  assert read_jsonl(tmp_path / 'metrics.jsonl') == [{'step': 5, 'train_loss': 1.0}]
  os.makedirs(tmp_path / 'checkpoints' / '22')
  (tmp_path / 'config.json').write_text('{"model": "ml')
  with pytest.raises(UserError, match='config.json is not valid JSON'):
    rundir.prepare(str(tmp_path), tiny())


def tensorboard_scalars(folder) -> dict[int, float]:
  """``train_loss`` by step as TensorBoard shows it: a START marker at step ``s`` (written on
  resume) hides the earlier files' events at steps ``>= s``."""
  import tensorflow as tf
  shown = {}
  for name in sorted(os.listdir(folder)):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
      if event.HasField('session_log') and event.session_log.status == event.session_log.START:
        shown = {s: v for s, v in shown.items() if s < event.step}
      for value in event.summary.value:
        shown[event.step] = value.simple_value
  return shown


def test_tensorboard_and_metrics_agree_after_a_resume(tmp_path):
  w = MetricsWriter(str(tmp_path))
  for step in (5, 10, 15):
    w.write(step, train_loss=float(step))
  w.close()
  time.sleep(1.1)  # event files are named by the second they are opened in
  w = MetricsWriter(str(tmp_path), resume_step=10)
  w.write(15, train_loss=-1.0)
  w.close()
  from_metrics = {m['step']: m['train_loss'] for m in read_jsonl(tmp_path / 'metrics.jsonl')}
  assert from_metrics == {5: 5.0, 10: 10.0, 15: -1.0}
  assert tensorboard_scalars(tmp_path / 'tensorboard') == from_metrics


def test_every_packaged_config_fits_and_a_size_that_cannot_is_refused_from_shapes():
  """The resource check on shapes alone: the packaged configs fit the 24 GiB of this project's
  CPU machines and an 80 GiB accelerator (ResNet50 on ImageNet at batch 128 needs at least
  13 GiB); a width that cannot fit is refused naming the keys and the figures."""
  from n2nskip_jax import data, network, resources

  def check(config, devices, memory):
    spec = data.spec(config)
    return resources.check(config, *network.abstract(config, *spec), spec.input_shape, devices,
                           memory)
  for name in ('default', 'quickstart', 'mlp_c10', 'resnet50_c10', 'resnet50_c100',
               'resnet50_imagenet', 'vgg19_c10', 'vgg19_c100'):
    config = __import__(f'n2nskip_jax.configs.{name}', fromlist=['x']).get_config()
    for memory in ((24 * resources.GIB, 'host memory'), (80 * resources.GIB, 'H100 memory')):
      need = check(config, 1, memory)
      assert need['state'] >= 16 * need['parameters'], name  # four float32 copies
  config = make_config(model='vgg19', dataset='digits32', width_multiplier=2.0, batch_size=64)
  need = resources.estimate(*network.abstract(config, *data.spec(config)), (32, 32, 3), 32)
  small = (need['state'] + need['activations'] - 1, 'a device')
  with pytest.raises(UserError, match=r"width_multiplier=2, batch_size=64: cannot fit: "
                     r"[\d,]+ parameters; at least [\d.]+ GiB per device .* at 32 images\) against "
                     r"[\d.]+ GiB of a device; lower width_multiplier or batch_size"):
    check(config, 2, small)
  assert check(config, 2, (small[0] + 1, 'a device')) == need
  have, what = resources.available()  # this CPU: its available RAM, read from /proc/meminfo
  assert what == 'available host memory' and 0 < have < 2 ** 50


def test_missing_tfds_data_names_tfds_data_dir(tmp_path, monkeypatch):
  from n2nskip_jax import data
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path))
  with pytest.raises(data.DataError, match=str(tmp_path)):
    data.load(make_config())


# --- the command line: one line and an exit code, never a traceback -------------------------

@pytest.mark.parametrize('flags,code,message', [
    (['--config=configs/quickstart.py', '--config.foo=1'], 2, '--config.foo: no such key'),
    (['--config=configs/quickstart.py', '--config.pruning.densty=0.1'], 2,
     'did you mean --config.pruning.density?'),
    (['--config=configs/nope.py'], 2, '--config=configs/nope.py: no such file'),
    (['--config=configs/quickstart.py', '--config.num_epochs=abc'], 2, 'num_epochs=abc'),
    ([*QUICK, '--config.learning_rate=1e4'], 3, 'training diverged'),
    ([*QUICK, '--config.pruning.density=1e-7'], 2, 'config.pruning.density=1e-07'),
    (['--config=configs/quickstart.py', '--config.model=vgg19', '--config.dataset=digits32',
      '--config.width_multiplier=64'], 2,
     "config.model='vgg19', width_multiplier=64, batch_size=128: cannot fit: 640,173,101,066 "
     'parameters; at least'),
])
def test_cli_errors_are_one_line(tmp_path, flags, code, message):
  r = run_main(*flags, f'--workdir={tmp_path / "run"}')
  assert r.returncode == code, r.stderr[-2000:]
  assert message in r.stderr and 'Traceback' not in r.stderr and 'libtpu' not in r.stderr


def test_ctrl_c_says_where_to_resume(tmp_path):
  """Ctrl-C as soon as the first checkpoint's directory appears, mostly while orbax is still
  writing it: the save completes, then the run stops and says to resume from it."""
  proc = run_main(*QUICK, '--config.num_epochs=30', f'--workdir={tmp_path}', wait=False)
  deadline, checkpoints = time.time() + 120, tmp_path / 'checkpoints'
  while time.time() < deadline and not (checkpoints.is_dir() and os.listdir(checkpoints)):
    time.sleep(0.002)
  proc.send_signal(signal.SIGINT)
  out, _ = proc.communicate(timeout=60)
  assert proc.returncode == 130, out[-2000:]
  assert 'interrupted at step' in out and 'rerun the same command to resume from step' in out
  assert 'Traceback' not in out


def test_a_signal_while_compiling_ends_the_run_at_once_with_its_line(tmp_path):
  """Before the first step there is nothing to checkpoint: SIGTERM while the first step
  compiles (VGG19's takes seconds) ends the process at once, with the documented line."""
  proc = run_main('--config=configs/quickstart.py', '--config.model=vgg19',
                  '--config.dataset=digits32', '--config.width_multiplier=0.125',
                  f'--workdir={tmp_path}', wait=False)
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if 'Compiling the train step' in line:
      break
  proc.send_signal(signal.SIGTERM)
  out = ''.join(lines) + proc.communicate(timeout=120)[0]
  assert proc.returncode == 143, out[-2000:]
  assert out.rstrip().endswith('error: stopped by SIGTERM before training began; nothing to '
                               'save; rerun the same command to start (or resume) the run.')
  assert 'Traceback' not in out and rundir.latest_step(str(tmp_path)) is None


def test_a_second_process_is_refused_while_a_run_trains_and_takes_over_a_dead_ones_lock(tmp_path):
  flags = [*QUICK[:2], '--config.num_epochs=500', f'--workdir={tmp_path}']
  first = run_main(*flags, wait=False)
  deadline = time.time() + 300
  while time.time() < deadline and first.poll() is None and not rundir.latest_step(str(tmp_path)):
    time.sleep(0.05)
  second = run_main(*flags)
  assert second.returncode == 2, second.stderr[-2000:]
  assert second.stderr.strip().splitlines()[-1].startswith(
      f"error: --workdir='{tmp_path}': another process is training this run (host ")
  assert f'pid {first.pid}, since ' in second.stderr
  first.kill()
  first.communicate()
  assert (tmp_path / 'lock').exists()  # left behind by the killed process
  third = run_main(*flags, wait=False)
  lines = []
  for line in third.stdout:  # until it has resumed; then it is stopped like a preempted job
    lines.append(line)
    if ' step ' in line and 'loss' in line:
      break
  third.send_signal(signal.SIGTERM)
  lines += third.communicate()[0].splitlines()
  text = '\n'.join(lines)
  assert 'Taking over the stale lock' in text and 'Resuming from checkpoint at step' in text
  assert third.returncode == 143, text[-2000:]
  assert not (tmp_path / 'lock').exists()  # released on exit


def test_of_two_processes_taking_over_a_stale_lock_one_holds_the_run(tmp_path, monkeypatch):
  from n2nskip_jax import runlock
  dead = subprocess.Popen(['true'])  # a process that has exited: its pid is not alive
  dead.wait()
  lock = tmp_path / runlock.LOCK
  lock.write_text(json.dumps({'host': socket.gethostname(), 'pid': dead.pid, 'since': 0}))
  live = {'host': socket.gethostname(), 'pid': os.getppid(), 'since': 1.0}
  judged = runlock.stale

  def faster_peer(path, holder):  # the peer takes the stale lock over after we judged it
    verdict = judged(path, holder)
    os.rename(path, f'{path}.peer')
    (tmp_path / 'peer').write_text(json.dumps(live))
    os.link(tmp_path / 'peer', path)
    monkeypatch.setattr(runlock, 'stale', judged)
    return verdict
  monkeypatch.setattr(runlock, 'stale', faster_peer)
  with pytest.raises(runlock.Held, match=f'pid {os.getppid()}, since '):
    runlock.RunLock(str(tmp_path)).acquire()
  assert json.loads(lock.read_text()) == live  # the peer's lock, put back, not removed


def test_a_lock_whose_pid_was_reused_by_another_process_is_stale(tmp_path):
  """A live process with the holder's pid but another start (a container restart reuses pids)
  does not hold the run; the holder itself does; a refusal names the lock file."""
  from n2nskip_jax import runlock
  other = subprocess.Popen(['sleep', '60'])  # alive, unrelated, 'reusing' the holder's pid
  try:
    lock = tmp_path / runlock.LOCK
    holder = {'host': socket.gethostname(), 'pid': other.pid, 'since': time.time() - 1860}
    lock.write_text(json.dumps({**holder, 'started': 'another-boot:12345'}))
    assert runlock.stale(str(lock), json.loads(lock.read_text()))
    lock.write_text(json.dumps({**holder, 'started': runlock.process_start(other.pid)}))
    assert not runlock.stale(str(lock), json.loads(lock.read_text()))
    with pytest.raises(runlock.Held, match=f'If that process has ended, remove {lock}$'):
      runlock.RunLock(str(tmp_path)).acquire()
    lock.write_text(json.dumps({**holder, 'started': 'another-boot:12345'}))
    with runlock.RunLock(str(tmp_path)) as taken:
      taken.acquire()
      assert taken.held and json.loads(lock.read_text())['pid'] == os.getpid()
      assert json.loads(lock.read_text())['started'] == runlock.process_start(os.getpid())
  finally:
    other.kill()
    other.wait()


def test_analyze_names_outputs_and_refuses_a_read_only_directory(two_epochs, tmp_path):
  from test_graph import run_analyze
  workdir = copy_run(two_epochs, tmp_path)
  for weights in ('final', 'initial'):
    r = run_analyze(f'--workdir={workdir}', f'--weights={weights}', '--num_times=3')
    assert r.returncode == 0, r.stderr[-2000:]
  assert (workdir / 'connectivity-final-weighted.json').exists()
  assert (workdir / 'connectivity-initial-weighted.json').exists()
  os.chmod(workdir, stat.S_IRUSR | stat.S_IXUSR)
  try:
    if os.access(workdir, os.W_OK):
      pytest.skip('running as a user who can write anywhere (root)')
    r = run_analyze(f'--workdir={workdir}')
    assert r.returncode == 2 and 'not a writable directory' in r.stderr and 'Traceback' not in r.stderr
  finally:
    os.chmod(workdir, stat.S_IRWXU)


def test_cli_reports_a_corrupt_checkpoint_in_one_line(tmp_path):
  assert run_main(*QUICK, f'--workdir={tmp_path}').returncode == 0
  os.truncate(largest_file(tmp_path / 'checkpoints' / '22'), 1000)
  r = run_main(*QUICK, f'--workdir={tmp_path}')
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'Checkpoint at step 22' in r.stderr and 'corrupt-22' in r.stderr
  assert 'Traceback' not in r.stderr and 'Event loop is closed' not in r.stderr


def _disk_usage(folder) -> int:
  """Bytes the files under ``folder`` take on a file system of 4 KiB pages."""
  files = [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]
  return sum(-(-os.path.getsize(f) // 4096) * 4096 for f in files)


@contextlib.contextmanager
def small_disk(path, size: int):
  """A tmpfs of ``size`` bytes at ``path`` (mounting needs root: skipped otherwise); yields a
  function that resizes it."""
  path.mkdir()
  r = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                     capture_output=True, text=True)
  if r.returncode != 0:
    pytest.skip(f'cannot mount a small file system here: {r.stderr.strip()}')
  try:
    yield lambda bytes_: subprocess.run(['mount', '-o', f'remount,size={bytes_}', str(path)],
                                        check=True)
  finally:
    subprocess.run(['umount', '-l', str(path)], check=False)


def test_a_full_disk_stops_in_one_line_and_loses_nothing(tmp_path):
  """A disk that fills while the run writes its second checkpoint: exit 2 and one line naming
  what was being written; the first checkpoint intact; with room again, the rerun resumes from
  it and ends bitwise equal to a run that never ran out of space."""
  three = [*QUICK[:2], '--config.num_epochs=3',  # checkpoints at steps 11, 22, 33
           '--config.eval_every_epochs=1']
  whole = tmp_path / 'whole'
  assert run_main(*three, f'--workdir={whole}').returncode == 0
  # Room for one checkpoint and a half (two are kept): the save at step 22 fills the disk.
  room = _disk_usage(whole) - _disk_usage(whole / 'checkpoints' / '33') // 2
  with small_disk(tmp_path / 'disk', room) as resize:
    workdir = tmp_path / 'disk' / 'run'
    r = run_main(*three, f'--workdir={workdir}')
    assert r.returncode == 2, r.stderr[-3000:]
    said = [line for line in r.stderr.splitlines() if line.startswith('error:')]
    assert len(said) == 1 and said[0].startswith(
        'error: no space left on the device while writing the checkpoint of step 22 in '), said
    assert 'Traceback' not in r.stderr
    assert 'epoch 2: test accuracy' in r.stderr and 'epoch 3: test accuracy' not in r.stderr
    assert rundir.latest_step(str(workdir)) == 11
    resize(8 * room)
    r = run_main(*three, f'--workdir={workdir}')
    assert r.returncode == 0 and 'Resuming from checkpoint at step 11' in r.stderr, r.stderr[-3000:]
    _, resumed = rundir.read_latest(str(workdir))
  _, reference = rundir.read_latest(str(whole))
  for a, b in zip(jax.tree.leaves(resumed['state']['params']),
                  jax.tree.leaves(reference['state']['params'])):
    np.testing.assert_array_equal(a, b)


def test_a_finished_run_logs_its_config_as_tensorboard_hyperparameters(two_epochs):
  folder = two_epochs / 'run' / 'tensorboard' / 'hparams'
  events = b''.join((folder / name).read_bytes() for name in os.listdir(folder))
  for text in (b'pruning.density', b'mlp_hidden', b'hparams/test_accuracy'):
    assert text in events


def test_the_sibling_copies_of_a_failed_save_print_no_traceback(caplog):
  """orbax writes one checkpoint in several asyncio tasks; when the disk fills, the error the
  run reports is one of them, and the others are reported by asyncio as "never retrieved"
  whenever they are garbage-collected (a traceback at a moment that depends on timing). The
  filter the tools install drops those copies, and only those."""
  asyncio_log = logging.getLogger('asyncio')
  asyncio_log.addFilter(cli.not_orbax_noise)

  async def write(message):
    raise ValueError(message)

  loop = asyncio.new_event_loop()
  try:
    for message in ('RESOURCE_EXHAUSTED: Error writing "state.params/0.0": Failed to write 25826 '
                    'bytes to file 15: No space left on device [os_error_code=28]',
                    'a write that failed for another reason'):
      task = loop.create_task(write(message))
      loop.run_until_complete(asyncio.sleep(0))
      del task
      gc.collect()
  finally:
    loop.close()
    asyncio_log.removeFilter(cli.not_orbax_noise)
  reported = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
  assert reported == ['a write that failed for another reason']

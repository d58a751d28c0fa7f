"""The study runner: grid, resume after a kill, shards, statistics, bad study configs."""
import json
import os
import signal
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest
from conftest import ROOT, make_config

from n2nskip_jax.errors import ConfigError, UserError
from n2nskip_jax.study import aggregate, grid

# One worker runs this module, so its module fixture runs the tiny study once
# (pytest -n 2 --dist loadgroup).
pytestmark = pytest.mark.xdist_group('study')

TINY_STUDY = '''
import ml_collections
from configs import quickstart


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.base = quickstart.get_config()
  c.base.mlp_hidden = (32, 32, 32)
  c.base.num_epochs, c.base.eval_every_epochs, c.base.lr_decay_epochs = 2, 1, 1
  c.axes = ml_collections.ConfigDict()
  c.axes.pruning = ml_collections.ConfigDict()
  c.axes.pruning.density = (0.2, 0.1)
  c.axes.skip = ml_collections.ConfigDict()
  c.axes.skip.kind = ('none', 'n2nskip')
  c.seeds = (0, 1)
  c.extra = ()
  c.analyze = True
  return c.base if arg == 'base' else c
'''


def study_cli(config_path, workdir, *flags, wait=True):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3', 'PYTHONUNBUFFERED': '1'}
  cmd = [sys.executable, '-m', 'n2nskip_jax.study', f'--config={config_path}',
         f'--workdir={workdir}', *flags]
  if not wait:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
  return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """The tiny study file, and one uninterrupted run of it."""
  root = tmp_path_factory.mktemp('study')
  path = root / 'tiny_study.py'
  path.write_text(TINY_STUDY)
  whole = root / 'whole'
  r = study_cli(path, whole)
  assert r.returncode == 0, r.stderr[-3000:]
  return path, whole, r.stderr


def load_study(path):
  import runpy
  return runpy.run_path(str(path))['get_config']()


def test_tiny_study_tables_equal_an_independent_recomputation(tiny):
  path, whole, log = tiny
  assert '[8/8] done' in log and 'ETA' in log
  table = json.loads((whole / 'table.json').read_text())
  assert table['runs_finished'] == 8 and table['runs_missing'] == 0
  accs = {}
  for name in os.listdir(whole / 'runs'):
    summary = json.loads((whole / 'runs' / name / 'summary.json').read_text())
    key = (summary['config']['pruning']['density'], summary['config']['skip']['kind'])
    accs.setdefault(key, []).append(100 * summary['test_accuracy'])
  assert len(table['groups']) == len(accs) == 4
  for g in table['groups']:
    mine = accs[(g['pruning.density'], g['skip.kind'])]
    assert g['n'] == len(mine) == 2
    assert g['mean'] == pytest.approx(np.mean(mine), abs=1e-9)
    assert g['std'] == pytest.approx(np.std(mine, ddof=1), abs=1e-9)
    if g['skip.kind'] == 'n2nskip':
      base = accs[(g['pruning.density'], 'none')]
      assert g['vs_none']['diff'] == pytest.approx(np.mean(mine) - np.mean(base), abs=1e-9)
  rows = (whole / 'results.csv').read_text().splitlines()
  assert rows[0].startswith('pruning.density,skip.kind,seed,test_accuracy,best_test_accuracy')
  assert len(rows) == 9
  for figure in ('accuracy_vs_epoch', 'error_vs_compression', 'F_vs_density', 'accuracy_vs_F',
                 'scree'):
    assert (whole / f'{figure}.png').stat().st_size > 10_000


def test_killed_study_resumes_without_retraining_and_shards_cover_every_run_once(tiny, tmp_path):
  path, whole, _ = tiny
  proc = study_cli(path, tmp_path, wait=False)
  deadline = time.time() + 300
  finished = []
  while time.time() < deadline and not finished and proc.poll() is None:
    runs = tmp_path / 'runs'
    finished = [d for d in (os.listdir(runs) if runs.exists() else [])
                if (runs / d / 'connectivity-initial-weighted.json').exists()]
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert finished, 'no run finished before the kill'
  first = tmp_path / 'runs' / finished[0] / 'summary.json'
  before = (first.stat().st_mtime_ns, first.read_text())
  logs = [study_cli(path, tmp_path, f'--shard={i}/2') for i in range(2)]
  assert all(r.returncode == 0 for r in logs), logs[0].stderr[-2000:] + logs[1].stderr[-2000:]
  started = [line.split(' start ')[1].strip() for r in logs for line in r.stderr.splitlines()
             if ' start ' in line]
  assert len(started) == len(set(started)) and finished[0] not in started
  assert (first.stat().st_mtime_ns, first.read_text()) == before
  r = study_cli(path, tmp_path, '--aggregate_only')
  assert r.returncode == 0
  resumed = json.loads((tmp_path / 'table.json').read_text())['groups']
  reference = json.loads((whole / 'table.json').read_text())['groups']
  assert [(g['mean'], g['std']) for g in resumed] == [(g['mean'], g['std']) for g in reference]


def test_shards_partition_the_runs():
  study = load_study_config()
  runs = grid.runs(study)
  shards = [grid.shard(runs, f'{i}/3') for i in range(3)]
  names = [r.name for s in shards for r in s]
  assert sorted(names) == sorted(r.name for r in runs) and len(set(names)) == len(runs)
  for bad in ('3/3', '2/2', '-1/2', 'x', '1/0'):
    with pytest.raises(UserError, match='--shard'):
      grid.shard(runs, bad)


def load_study_config(**axes):
  c = ml_collections.ConfigDict()
  c.base = make_config(model='mlp', dataset='mnist1d', pruning__method='rp', pruning__density=0.1)
  c.axes = ml_collections.ConfigDict()
  c.axes.pruning = ml_collections.ConfigDict()
  c.axes.pruning.density = (0.1, 0.05)
  c.axes.skip = ml_collections.ConfigDict()
  c.axes.skip.kind = ('none', 'n2nskip')
  for key, values in axes.items():
    group, leaf = key.split('__')
    if group not in c.axes:
      c.axes[group] = ml_collections.ConfigDict()
    c.axes[group][leaf] = values
  c.seeds = (0, 1, 2)
  c.extra = ({'pruning': {'method': 'dense', 'density': 1.0}, 'skip': {'kind': 'none'}},)
  c.analyze = True
  return c


def test_grid_counts_and_names():
  runs = grid.runs(load_study_config())
  assert len(runs) == (2 * 2 + 1) * 3
  assert runs[0].name == 'density-0.1__kind-none__seed-0'
  assert runs[-1].name == 'density-1.0__kind-none__method-dense__seed-2'
  assert runs[0].config(load_study_config().base).pruning.density == 0.1


@pytest.mark.parametrize('axes,key', [
    (dict(pruning__densty=(0.1,)), 'axes.pruning.densty'),
    (dict(pruning__method=()), 'axes.pruning.method'),
    (dict(pruning__method=('rp', 'lottery')), 'axes.pruning.method'),
    (dict(pruning__density=(0.1, 1.5)), 'axes.pruning.density'),
])
def test_bad_study_configs_fail_before_training(axes, key):
  with pytest.raises(ConfigError) as e:
    grid.runs(load_study_config(**axes))
  assert e.value.key == key, str(e.value)


def test_bad_seeds_and_extras_are_named():
  c = load_study_config()
  c.seeds = ()
  with pytest.raises(ConfigError, match='config.seeds'):
    grid.runs(c)
  c = load_study_config()
  c.extra = ({'pruning': {'methd': 'dense'}},)
  with pytest.raises(ConfigError, match=r'extra\[0\].pruning.methd'):
    grid.runs(c)


def test_cli_reports_bad_axis_without_traceback(tiny, tmp_path):
  path, _, _ = tiny
  r = study_cli(path, tmp_path, '--config.axes.pruning.density=0.1,2.0')
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert 'error: config.axes.pruning.density=2.0' in r.stderr
  assert not (tmp_path / 'runs').exists()


@pytest.mark.parametrize('case', ['a file', 'nothing to aggregate'])
def test_cli_refuses_a_workdir_it_cannot_use_in_one_line(tiny, tmp_path, case):
  path, _, _ = tiny
  if case == 'a file':
    (tmp_path / 'study').write_text('')
    r = study_cli(path, tmp_path / 'study')
  else:
    r = study_cli(path, tmp_path / 'missing', '--aggregate_only')
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert ('a file, not a directory' if case == 'a file' else 'no study there') in r.stderr


@pytest.mark.parametrize('name,count', [('paper_table1', 260), ('paper_table2', 65),
                                        ('paper_fig6', 125), ('offline_mlp', 185),
                                        ('offline_vgg_digits', 39), ('methods_mlp', 185),
                                        ('controls_mlp', 72), ('methods_vgg_digits', 111)])
def test_study_configs_list_the_right_number_of_runs(name, count):
  import importlib
  study = importlib.import_module(f'configs.studies.{name}').get_config()
  assert len(grid.runs(study)) == count


def test_dry_run_commands_run_with_main_py(tiny, tmp_path):
  path, _, _ = tiny
  r = study_cli(path, tmp_path, '--dry_run', '--config.seeds=0')
  assert r.returncode == 0 and r.stdout.strip().endswith('4 runs'), r.stderr[-2000:]
  command = r.stdout.splitlines()[1].split()
  assert command[:3] == ['python', 'main.py', '--config']
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  workdir = tmp_path / 'one'
  cmd = [sys.executable, *command[1:], f'--workdir={workdir}', '--config.num_epochs=1']
  out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['config']['mlp_hidden'] == [32, 32, 32]
  assert summary['config']['pruning']['density'] == 0.2 and summary['config']['seed'] == 0


def test_welch_interval_matches_scipy():
  from scipy import stats
  a, b = [70.1, 71.3, 69.8, 72.0], [65.2, 66.0, 64.1]
  res = aggregate.welch(a, b)
  ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
  assert res['ci'] == pytest.approx([ci.low, ci.high]) and res['verdict'] == 'better'
  assert aggregate.welch(b, a)['verdict'] == 'worse'
  assert aggregate.welch([1.0, 2.0], [1.5, 1.4])['verdict'] == 'inconclusive'
  assert aggregate.welch([1.0], [2.0, 3.0])['ci'] is None

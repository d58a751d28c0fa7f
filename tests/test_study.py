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


TINY_STUDY = '''
import ml_collections
from n2nskip_jax.configs import quickstart


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.base = quickstart.get_config()
  c.base.mlp_hidden = (32, 32, 32)
  c.base.num_epochs, c.base.eval_every_epochs, c.base.lr_decay_epochs = 2, 1, 1
  c.axes = ml_collections.ConfigDict()
  c.axes.pruning = ml_collections.ConfigDict()
  c.axes.pruning.density = (0.2,)
  c.axes.skip = ml_collections.ConfigDict()
  c.axes.skip.kind = ('none', 'n2nskip')
  c.seeds = (0, 1)
  c.extra = ()
  c.analyze = True
  return c.base if arg == 'base' else c
'''


def study_cli(config_path, workdir, *flags, wait=True, log=subprocess.DEVNULL):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3', 'PYTHONUNBUFFERED': '1'}
  cmd = [sys.executable, '-m', 'n2nskip_jax.study', f'--config={config_path}',
         f'--workdir={workdir}', *flags]
  if not wait:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
  return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture
def tiny(tmp_path):
  """The tiny study's config file."""
  path = tmp_path / 'tiny_study.py'
  path.write_text(TINY_STUDY)
  return path


def load_study(path):
  import runpy
  return runpy.run_path(str(path))['get_config']()


def check_tables(whole, log):
  """The tables of a finished tiny study equal an independent recomputation from its runs."""
  assert '[4/4] done' in log and 'ETA' in log
  table = json.loads((whole / 'table.json').read_text())
  assert table['runs_finished'] == 4 and table['runs_missing'] == 0
  accs = {}
  for name in os.listdir(whole / 'runs'):
    summary = json.loads((whole / 'runs' / name / 'summary.json').read_text())
    key = (summary['config']['pruning']['density'], summary['config']['skip']['kind'])
    accs.setdefault(key, []).append(100 * summary['test_accuracy'])
  assert len(table['groups']) == len(accs) == 2
  for g in table['groups']:
    mine = accs[(g['pruning.density'], g['skip.kind'])]
    assert g['n'] == len(mine) == 2
    assert g['mean'] == pytest.approx(np.mean(mine), abs=1e-9)
    assert g['std'] == pytest.approx(np.std(mine, ddof=1), abs=1e-9)
    assert 0 < g['accuracy_auc_mean'] <= 100  # 2 epochs, both evaluated
    if g['skip.kind'] == 'n2nskip':
      base = accs[(g['pruning.density'], 'none')]
      (versus,) = g['comparisons']
      assert versus['against'] == 'none'
      assert versus['diff'] == pytest.approx(np.mean(mine) - np.mean(base), abs=1e-9)
      assert versus['p_holm'] == versus['p_value']  # a family of one
  rows = (whole / 'results.csv').read_text().splitlines()
  assert rows[0].startswith('pruning.density,skip.kind,seed,test_accuracy,best_test_accuracy')
  assert len(rows) == 5
  for figure in ('accuracy_vs_epoch', 'error_vs_compression', 'F_vs_density', 'accuracy_vs_F',
                 'scree'):
    assert (whole / f'{figure}.png').stat().st_size > 10_000


def test_tiny_study_and_a_preempted_one_resumed_by_two_shards_give_the_same_tables(tiny, tmp_path):
  """The tiny study uninterrupted: its tables against a recomputation. Side by side, SIGTERM
  once a run has finished: the study stops (exit 143, one line); then shard 0/2 and the whole
  study, side by side on its workdir, finish it without training a run twice, and its tables
  equal the uninterrupted study's."""
  whole, stopped = tmp_path / 'whole', tmp_path / 'stopped'
  logs = {name: tmp_path / f'{name}.log' for name in ('whole', 'stopped', 'shard0', 'shard1')}
  with open(logs['whole'], 'w') as f, open(logs['stopped'], 'w') as g:
    uninterrupted = study_cli(tiny, whole, wait=False, log=f)
    proc = study_cli(tiny, stopped, wait=False, log=g)
  deadline = time.time() + 300
  finished = []
  while time.time() < deadline and not finished and proc.poll() is None:
    runs = stopped / 'runs'
    finished = [d for d in (os.listdir(runs) if runs.exists() else [])
                if (runs / d / 'connectivity-initial-weighted.json').exists()]
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  proc.wait(timeout=300)
  stderr = logs['stopped'].read_text()
  assert finished, 'no run finished before the signal'
  assert proc.returncode == 143, stderr[-2000:]
  assert stderr.strip().splitlines()[-1].startswith('error: stopped by SIGTERM ')
  analyzed = [d for d in os.listdir(stopped / 'runs')  # finished before the signal
              if (stopped / 'runs' / d / 'connectivity-initial-weighted.json').exists()]
  first = stopped / 'runs' / finished[0] / 'summary.json'
  before = (first.stat().st_mtime_ns, first.read_text())
  procs = []  # side by side on one workdir: they split the runs by the runs' locks
  for name, flags in (('shard0', ['--shard=0/2']), ('shard1', [])):
    with open(logs[name], 'w') as f:
      procs.append(study_cli(tiny, stopped, *flags, wait=False, log=f))
  assert [p.wait(timeout=600) for p in procs] == [0, 0], logs['shard0'].read_text()[-2000:]
  trained = [line.split('] done ')[1].split(':')[0] for name in ('shard0', 'shard1')
             for line in logs[name].read_text().splitlines() if '] done ' in line]
  assert len(trained) == len(set(trained)) and finished[0] not in trained  # each run once
  everything = os.listdir(stopped / 'runs')
  assert len(everything) == 4 and sorted(trained) == sorted(set(everything) - set(analyzed))
  assert (first.stat().st_mtime_ns, first.read_text()) == before
  assert study_cli(tiny, stopped, '--aggregate_only').returncode == 0
  assert uninterrupted.wait(timeout=600) == 0, logs['whole'].read_text()[-3000:]
  check_tables(whole, logs['whole'].read_text())
  resumed = json.loads((stopped / 'table.json').read_text())['groups']
  reference = json.loads((whole / 'table.json').read_text())['groups']
  assert [(g['mean'], g['std']) for g in resumed] == [(g['mean'], g['std']) for g in reference]


FAILING_STUDY = '''
import ml_collections
from n2nskip_jax.configs import quickstart


def get_config(arg=None):
  c = ml_collections.ConfigDict()
  c.base = quickstart.get_config()
  c.base.mlp_hidden, c.base.num_epochs = (32, 32, 32), 1
  c.axes = ml_collections.ConfigDict()
  c.axes.learning_rate = (1e4, 0.05)
  c.seeds = (0,)
  c.extra = ()
  c.analyze = False
  return c.base if arg == 'base' else c
'''


def test_a_failed_run_is_recorded_and_the_study_goes_on(tmp_path):
  """Learning rate 1e4 diverges: the other run still trains, the tables show the failure with
  its reason, exit 4; a rerun trains nothing; --retry_failed trains the failed run again."""
  path = tmp_path / 'failing.py'
  path.write_text(FAILING_STUDY)
  workdir = tmp_path / 'study'
  r = study_cli(path, workdir)
  assert r.returncode == 4 and 'Traceback' not in r.stderr, r.stderr[-3000:]
  failed = 'learning_rate-10000.0__seed-0'
  assert r.stderr.strip().splitlines()[-1].startswith(f'error: 1 run failed ({failed})')
  table = json.loads((workdir / 'table.json').read_text())
  assert (table['runs_finished'], table['runs_failed'], table['runs_missing']) == (1, 1, 0)
  cells = {g['learning_rate']: (g['n'], g['failed']) for g in table['groups']}
  assert cells == {10000.0: (0, 1), 0.05: (1, 0)}
  markdown = (workdir / 'table.md').read_text()
  assert f'- {failed}: training diverged' in markdown
  assert '\n| 10000 | 0 | 1 |' in markdown and '\n| 0.05 | 1 | 0 |' in markdown
  rows = (workdir / 'results.csv').read_text().splitlines()
  assert rows[0].endswith(',status,reason,run') and len(rows) == 3
  assert ',failed,training diverged' in rows[1] and rows[1].endswith(f',{failed}')
  assert rows[2].endswith(',finished,,learning_rate-0.05__seed-0')
  again = study_cli(path, workdir)
  assert again.returncode == 4 and ' start ' not in again.stderr
  retried = study_cli(path, workdir, '--retry_failed')
  started = [line for line in retried.stderr.splitlines() if ' start ' in line]
  assert retried.returncode == 4 and len(started) == 1 and 'learning_rate-10000.0' in started[0]


def test_a_study_process_keeps_nothing_jax_traced_for_its_finished_runs(tmp_path):
  """Each run's steps are shaped by its masks' nonzero tables, and JAX's caches keep every
  shape: the traced programs (counted in equations) must not pile up run after run. RSS over 20
  runs: ``benchmarks/study_memory.py``."""
  import gc

  from n2nskip_jax.study import run as run_lib
  c = ml_collections.ConfigDict()
  c.base = make_config(model='mlp', dataset='digits', mlp_hidden=(64, 32, 32), num_epochs=1,
                       log_every_steps=1000, pruning__method='rp', pruning__density=0.1)
  c.axes = ml_collections.ConfigDict({'skip': {'kind': ('n2nskip',)}})
  c.seeds, c.extra, c.analyze = (0, 1), (), False

  def equations():
    gc.collect()
    return sum(type(o).__name__ == 'JaxprEqn' for o in gc.get_objects())
  before = equations()
  assert run_lib.run_study(c, str(tmp_path)) == []
  assert equations() <= before + 100  # a run by its nonzeros traced about 1,500


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
  c.extra = ('dense',)
  with pytest.raises(ConfigError, match=r"extra\[0\]='dense': expected a dict"):
    grid.runs(c)


def test_cli_reports_bad_axis_without_traceback(tiny, tmp_path):
  path = tiny
  r = study_cli(path, tmp_path, '--config.axes.pruning.density=0.1,2.0')
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert 'error: config.axes.pruning.density=2.0' in r.stderr
  assert not (tmp_path / 'runs').exists()


@pytest.mark.parametrize('case', ['a file', 'nothing to aggregate'])
def test_cli_refuses_a_workdir_it_cannot_use_in_one_line(tiny, tmp_path, case):
  path = tiny
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
                                        ('controls_mlp', 72), ('methods_vgg_digits', 111),
                                        ('controls_vgg_digits', 48), ('collapse_mlp', 310),
                                        ('collapse_vgg_digits', 95), ('resnet50_digits', 55),
                                        ('resnet50_digits_rp5', 30),
                                        ('collapse_vgg_digits_rp10', 80), ('csp_vgg_digits', 60)])
def test_study_configs_list_the_right_number_of_runs(name, count):
  import importlib
  study = importlib.import_module(f'n2nskip_jax.configs.studies.{name}').get_config()
  assert len(grid.runs(study)) == count


@pytest.mark.parametrize('five,ten,count,same_names', [
    # The 10-seed ResNet50 study names its one extra run by fewer keys than the 5-seed one,
    # which has several extras (its seeds 0-4 were copied under the new names).
    ('resnet50_digits', 'resnet50_digits_rp5', 30, False),
    ('collapse_vgg_digits', 'collapse_vgg_digits_rp10', 80, True)])
def test_a_ten_seed_study_extends_its_five_seed_one_with_the_same_runs(five, ten, count,
                                                                       same_names):
  import importlib
  studies = [importlib.import_module(f'n2nskip_jax.configs.studies.{name}').get_config()
             for name in (five, ten)]
  runs = [{(r.name if same_names else '', r.seed, r.config(s.base).to_json())
           for r in grid.runs(s)} for s in studies]
  assert len(runs[1]) == count and {seed for _, seed, _ in runs[1]} == set(range(10))
  assert {x for x in runs[1] if x[1] < 5} <= runs[0]  # its first five seeds: runs already there


def test_dry_run_commands_run_as_printed(tiny, tmp_path):
  path = tiny
  r = study_cli(path, tmp_path, '--dry_run', '--config.seeds=0')
  assert r.returncode == 0 and r.stdout.strip().endswith('2 runs'), r.stderr[-2000:]
  command = r.stdout.splitlines()[1].split()
  assert command[:2] == ['n2nskip-train', '--config']  # installed with the package
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'TF_CPP_MIN_LOG_LEVEL': '3'}
  workdir = tmp_path / 'one'
  train = os.path.join(os.path.dirname(sys.executable), command[0])  # this environment's
  cmd = [train, *command[1:], f'--workdir={workdir}', '--config.num_epochs=1']
  out = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['config']['mlp_hidden'] == [32, 32, 32]
  assert summary['config']['pruning']['density'] == 0.2 and summary['config']['seed'] == 0


@pytest.mark.parametrize('reader', ['head -1', 'true'])
def test_a_dry_run_piped_into_head_ends_quietly(tmp_path, reader):
  """``true`` leaves before the first write, whatever the size of the output; ``head -1``
  after the first line, and paper_table1's listing (260 runs, over 64 KiB) outlasts a pipe's
  buffer."""
  study = f'{sys.executable} -m n2nskip_jax.study --config paper_table1 --dry_run'
  r = subprocess.run(['bash', '-c', f'set -o pipefail; {study} --workdir={tmp_path} | {reader}'],
                     cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0 and r.stdout.count('\n') == (reader == 'head -1'), r.stderr[-2000:]
  assert 'Traceback' not in r.stderr and 'BrokenPipe' not in r.stderr, r.stderr[-2000:]


def test_short_curves_are_drawn_with_markers(tmp_path, monkeypatch):
  """A 2-epoch study's accuracy curves: every line has both points and a marker, so a curve of
  one or two evaluations is visible."""
  from n2nskip_jax.study import figures
  drawn = []
  monkeypatch.setattr(figures, '_save', lambda fig, path: drawn.append(fig) or path)
  rows = [{'pruning.density': 0.1, 'skip.kind': kind, 'seed': seed,
           'curve': [(1, 0.2 + seed / 100), (2, 0.3)]} for kind in ('none', 'n2nskip')
          for seed in (0, 1)]
  figures.accuracy_vs_epoch(rows, ['pruning.density', 'skip.kind'], str(tmp_path / 'a.png'))
  lines = drawn[0].axes[0].get_lines()
  assert len(lines) == 2
  assert all(len(line.get_xdata()) == 2 and line.get_marker() == 'o' for line in lines)


@pytest.mark.parametrize('preset', [False, True])
def test_a_study_keeps_compiled_programs_in_its_folder_unless_jax_has_one(tmp_path, preset):
  env = {k: v for k, v in os.environ.items() if k != 'JAX_COMPILATION_CACHE_DIR'}
  if preset:
    env['JAX_COMPILATION_CACHE_DIR'] = str(tmp_path / 'preset')
  code = ('import sys, jax, jax.numpy as jnp\n'
          'from n2nskip_jax.study import run\n'
          'run.keep_compiled_programs(sys.argv[1])\n'
          "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
          'jax.jit(lambda x: jnp.sin(x) @ x.T)(jnp.ones((4, 4))).block_until_ready()\n')
  r = subprocess.run([sys.executable, '-c', code, str(tmp_path / 'study')], env=env,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  kept = tmp_path / ('preset' if preset else 'study/compile_cache')
  assert kept.is_dir() and os.listdir(kept)  # the compiled program, on disk
  assert preset != (tmp_path / 'study' / 'compile_cache').exists()

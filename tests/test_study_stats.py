"""A study's statistics: Welch tests Holm-corrected as one family, Spearman's rho within strata,
convergence from the accuracy curves, and tables rebuilt from ``results.csv`` alone."""
import glob
import json
import math
import os
import runpy
import shutil

import numpy as np
import pytest
from conftest import ROOT
from scipy import stats as scipy_stats

from n2nskip_jax.study import aggregate, grid, stats

KEYS = ['pruning.density', 'pruning.method', 'skip.kind']


def row(density, method, kind, seed, acc, f=None, **columns):
  """A finished run's result row; ``columns`` override the defaults (None)."""
  out = {'pruning.density': density, 'pruning.method': method, 'skip.kind': kind, 'seed': seed,
         'run': f'{density}-{method}-{kind}-{seed}', 'status': 'finished',
         **dict.fromkeys(aggregate.COLUMNS), 'test_accuracy': acc, 'F_t_star': f, 'curve': []}
  return {**out, **columns}


def test_welch_matches_scipy_and_defines_the_degenerate_cases():
  a, b = [70.1, 71.3, 69.8, 72.0], [65.2, 66.0, 64.1]
  res, ref = stats.welch(a, b), scipy_stats.ttest_ind(a, b, equal_var=False)
  ci = ref.confidence_interval(0.95)
  assert res['ci'] == pytest.approx([ci.low, ci.high]) and res['verdict'] == 'better'
  assert res['p_value'] == pytest.approx(ref.pvalue, rel=1e-9)
  rng = np.random.default_rng(0)
  for n_a, n_b in ((2, 2), (3, 5), (5, 3)):
    x, y = rng.normal(0, 1, n_a), rng.normal(0.5, 2, n_b)
    assert stats.welch(x, y)['p_value'] == pytest.approx(
        scipy_stats.ttest_ind(x, y, equal_var=False).pvalue, rel=1e-9)
  assert stats.welch(b, a)['verdict'] == 'worse'
  assert stats.welch([1.0, 2.0], [1.5, 1.4])['verdict'] == 'inconclusive'
  assert stats.welch([1.0], [2.0, 3.0])['ci'] is None
  assert stats.welch([1.0], [2.0, 3.0])['p_value'] is None
  same = stats.welch([8.06] * 3, [8.06] * 5)  # layer collapse on both sides
  assert (same['p_value'], same['ci'], same['verdict']) == (1.0, [0.0, 0.0], 'inconclusive')
  apart = stats.welch([8.06] * 3, [9.0] * 3)
  assert (apart['p_value'], apart['verdict']) == (0.0, 'worse')
  one_constant = stats.welch([8.06] * 3, [20.0, 25.0, 31.0])  # scipy warns of cancellation
  assert one_constant['p_value'] == pytest.approx(
      scipy_stats.ttest_1samp([20.0, 25.0, 31.0], 8.06).pvalue, rel=1e-6)


def test_holm_by_hand_and_its_corrected_verdicts():
  """p = 0.01, 0.04, 0.03, 0.005 (m = 4): sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 is
  0.02, 0.03, 0.06, 0.04; the running maximum 0.02, 0.03, 0.06, 0.06; in the given order 0.03,
  0.06, 0.06, 0.02. A comparison without a p-value is not in the family."""
  assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
  comparisons = [{'diff': 2.0, 'p_value': 0.01, 'verdict': 'better'},
                 {'diff': 1.0, 'p_value': 0.04, 'verdict': 'better'},
                 {'diff': -1.5, 'p_value': 0.03, 'verdict': 'worse'},
                 {'diff': -3.0, 'p_value': 0.005, 'verdict': 'worse'},
                 {'diff': 4.0, 'p_value': None, 'verdict': 'inconclusive'}]
  family = stats.holm_family(comparisons)
  assert [c['p_holm'] for c in family[:4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
  assert family[4]['p_holm'] is None
  assert [c['verdict'] for c in family] == [c['verdict'] for c in comparisons]  # raw kept
  assert [c['verdict_holm'] for c in family] == ['better', 'inconclusive', 'inconclusive',
                                                 'worse', 'inconclusive']
  assert stats.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
  assert stats.holm([0.3, 0.2]) == pytest.approx([0.4, 0.4])  # never below a smaller p's
  assert stats.holm([]) == []


def test_every_skip_kind_is_compared_and_the_family_is_the_whole_study():
  """Per density: n2nskip against none, resskip and sequential; resskip and sequential against
  none; 5 comparisons each. A group of one run has no p-value and stays out of the family."""
  rng = np.random.default_rng(1)
  offset = {'none': 0.0, 'n2nskip': 0.1, 'resskip': 0.05, 'sequential': 0.02}
  rows = [row(d, 'rp', kind, s, 0.5 + offset[kind] + 0.01 * rng.normal())
          for d in (0.1, 0.05) for kind in offset for s in range(3 if d == 0.1 else 1)]
  rows += [row(1.0, 'dense', 'none', s, 0.9) for s in range(3)]
  result = aggregate.table_json(rows, KEYS, 0)
  groups = {(g['pruning.density'], g['skip.kind']): g for g in result['groups']}
  assert [c['against'] for c in groups[0.1, 'n2nskip']['comparisons']] == [
      'none', 'resskip', 'sequential']
  assert [c['against'] for c in groups[0.1, 'sequential']['comparisons']] == ['none']
  assert groups[0.1, 'none']['comparisons'] == [] == groups[1.0, 'none']['comparisons']
  tested = [c for g in result['groups'] for c in g['comparisons']]
  assert len(tested) == 10 and result['family']['m'] == 5
  in_family = [c for c in tested if c['p_value'] is not None]
  assert {g['pruning.density'] for g in result['groups']
          if any(c['p_value'] is not None for c in g['comparisons'])} == {0.1}
  assert [c['p_holm'] for c in in_family] == pytest.approx(
      stats.holm([c['p_value'] for c in in_family]))
  mine = [r['test_accuracy'] * 100 for r in rows if r['skip.kind'] == 'n2nskip'
          and r['pruning.density'] == 0.1]
  theirs = [r['test_accuracy'] * 100 for r in rows if r['skip.kind'] == 'resskip'
            and r['pruning.density'] == 0.1]
  versus = groups[0.1, 'n2nskip']['comparisons'][1]
  assert versus['p_value'] == pytest.approx(
      scipy_stats.ttest_ind(mine, theirs, equal_var=False).pvalue, rel=1e-9)
  markdown = aggregate.markdown(result, rows)
  assert 'Holm correction over the 5 comparisons of this study' in markdown
  assert 'vs skip.kind=sequential: diff [95 % CI]' in markdown


def strata_rows():
  """Two strata (density 0.1, 0.05) where accuracy rises with F within each, but the stratum of
  higher F has the lower accuracy: the pooled rho is negative. Plus a stratum of 2 runs (no
  rho), the dense reference and a failed run (both left out)."""
  f_acc = {0.1: ([1, 2, 3, 4, 2.5], [0.80, 0.82, 0.81, 0.83, 0.815]),
           0.05: ([5, 6, 7, 8, 6.5], [0.50, 0.53, 0.51, 0.52, 0.50])}
  rows = [row(d, 'rp', ('none', 'n2nskip')[i % 2], i, acc, f, F_t_star_final=f / 2)
          for d, (fs, accs) in f_acc.items() for i, (f, acc) in enumerate(zip(fs, accs))]
  rows += [row(0.02, 'rp', kind, 0, 0.3, f, F_t_star_final=f / 2)
           for kind, f in (('none', 9), ('n2nskip', 10))]
  rows += [row(1.0, 'dense', 'none', 0, 0.9, 0.0),
           {**row(0.1, 'rp', 'none', 9, None), 'status': 'failed', 'reason': 'diverged'}]
  return rows, f_acc


def test_spearman_within_strata_against_scipy():
  rows, f_acc = strata_rows()
  corr = stats.correlation(rows, KEYS)
  pooled = scipy_stats.spearmanr(sum((f for f, _ in f_acc.values()), []) + [9, 10],
                                 sum((a for _, a in f_acc.values()), []) + [0.3, 0.3])
  assert corr['pooled']['spearman_rho'] == pytest.approx(pooled.statistic)
  assert corr['pooled']['p_value'] == pytest.approx(pooled.pvalue)
  assert corr['pooled']['n'] == 12 and corr['pooled']['spearman_rho'] < 0
  by_density = {s['pruning.density']: s for s in corr['strata']}
  assert set(by_density) == {0.1, 0.05, 0.02} and 'skip.kind' not in by_density[0.1]
  within = []
  for d, (f, acc) in f_acc.items():
    ref = scipy_stats.spearmanr(f, acc)
    assert by_density[d]['spearman_rho'] == pytest.approx(ref.statistic) and ref.statistic > 0
    assert by_density[d]['p_value'] == pytest.approx(ref.pvalue) and by_density[d]['n'] == 5
    within.append(ref.statistic)
  assert by_density[0.02] == {'pruning.density': 0.02, 'pruning.method': 'rp',
                              'spearman_rho': None, 'p_value': None, 'n': 2}
  assert corr['median_stratum_rho'] == pytest.approx(np.median(within))
  assert corr['strata_with_rho'] == 2
  final = stats.correlation(rows, KEYS, 'F_t_star_final')  # F / 2: the same ranks
  assert final['pooled'] == corr['pooled'] and final['strata'] == corr['strata']
  assert stats.correlation([{**r, 'F_t_star_final': None} for r in rows], KEYS,
                           'F_t_star_final') is None


def test_convergence_on_hand_made_curves():
  """Area (1)(0.5 + 0.7)/2 + (2)(0.7 + 0.9)/2 = 2.2 over epochs 1..4: mean 2.2 / 3. Dense runs
  at 0.9 and 1.0: 90 % of their mean is 0.855, first reached at epoch 4."""
  curve = [(1.0, 0.5), (2.0, 0.7), (4.0, 0.9)]
  assert stats.accuracy_auc(curve) == pytest.approx(2.2 / 3)
  assert stats.accuracy_auc([(3.0, 0.6)]) == 0.6 and stats.accuracy_auc([]) is None
  rows = [row(0.1, 'rp', 'none', 0, 0.9, curve=curve),
          row(0.1, 'rp', 'none', 1, 0.85, curve=[(1.0, 0.6), (2.0, 0.85)]),
          row(1.0, 'dense', 'none', 0, 0.9, curve=[(1.0, 0.8), (2.0, 0.9)]),
          row(1.0, 'dense', 'none', 1, 1.0, curve=[(1.0, 0.86), (2.0, 1.0)]),
          {**row(0.1, 'rp', 'none', 2, None), 'status': 'failed', 'reason': 'diverged'}]
  rows = stats.convergence(rows)
  assert [r['epochs_to_90pct_dense'] for r in rows] == [4.0, None, 2.0, 1.0, None]
  assert rows[1]['accuracy_auc'] == pytest.approx(0.725) and rows[4]['accuracy_auc'] is None
  no_dense = stats.convergence(rows[:2])
  assert [r['epochs_to_90pct_dense'] for r in no_dense] == [None, None]
  groups = aggregate.table(rows, KEYS)
  assert groups[0]['accuracy_auc_mean'] == pytest.approx(100 * (2.2 / 3 + 0.725) / 2)
  assert (groups[0]['epochs_to_90pct_dense_mean'], groups[0]['reached_90pct_dense']) == (4.0, 1)
  assert (groups[1]['epochs_to_90pct_dense_mean'], groups[1]['reached_90pct_dense']) == (1.5, 2)
  markdown = aggregate.markdown(aggregate.table_json(rows, KEYS, 0), rows)
  assert '| mean test acc. % over training | epochs to 90 % of dense |' in markdown
  assert f"| {groups[0]['accuracy_auc_mean']:.2f} | 4 (1/2) |" in markdown


def test_tables_from_rows_equal_tables_from_their_csv(tmp_path):
  """Every column type survives the csv: floats (0.005, 1e-05), ints, bools, strings, empty
  cells, a failure's reason with a comma and a newline; the tables are equal."""
  keys = ['pruning.density', 'pruning.method', 'pruning.rescale', 'skip.kind']
  rng = np.random.default_rng(2)
  rows = []
  for d in (0.005, 1e-05):
    for rescale in (False, True):
      for kind in ('none', 'n2nskip', 'resskip'):
        for s in range(3):
          curve = [(e, float(rng.uniform(0.1, 0.9))) for e in (1.0, 2.0, 3.0)]
          rows.append({**row(d, 'rp', kind, s, curve[-1][1], float(rng.uniform(0, 2)),
                             curve=curve, params_nonzero=1234, dead_units=int(s),
                             F_t_star_final=float(rng.uniform(0, 2)) if s else None),
                       'pruning.rescale': rescale})
  rows.append({**row(0.005, 'rp', 'n2nskip', 3, None), 'pruning.rescale': True,
               'status': 'failed', 'reason': 'training diverged, loss nan\nat step 12'})
  rows += [{**row(1.0, 'dense', 'none', s, 0.95, 0.0, curve=[(1.0, 0.9), (3.0, 0.95)]),
            'pruning.rescale': False} for s in range(3)]
  rows = stats.convergence(rows)
  path = tmp_path / 'results.csv'
  aggregate.write_csv(rows, keys, str(path))
  read, read_keys = aggregate.read_csv(str(path))
  assert read_keys == keys and len(read) == len(rows)
  assert read[0]['pruning.density'] == 0.005 and read[18]['pruning.density'] == 1e-05
  assert read[9]['pruning.rescale'] is True and read[0]['pruning.rescale'] is False
  assert read[0]['skip.kind'] == 'none' and isinstance(read[0]['params_nonzero'], int)
  assert read[0]['F_t_star_final'] is None and read[-4]['reason'] == rows[-4]['reason']
  for mine, theirs in zip(rows, read):
    assert {c: mine[c] for c in aggregate.COLUMNS} == {c: theirs[c] for c in aggregate.COLUMNS}
  from_rows = aggregate.table_json(rows, keys, 2)
  assert aggregate.table_json(read, keys, 2) == from_rows
  assert aggregate.markdown(from_rows, rows) == aggregate.markdown(from_rows, read)
  assert from_rows['groups'][0]['accuracy_auc_mean'] is not None


def _close(a, b, path='') -> None:
  """``a == b`` for parsed JSON, floats within 1e-9."""
  if isinstance(a, float) or isinstance(b, float):
    assert isinstance(a, (int, float)) and isinstance(b, (int, float)), path
    assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), f'{path}: {a} != {b}'
  elif isinstance(a, dict):
    assert isinstance(b, dict) and a.keys() == b.keys(), f'{path}: keys differ'
    for k in a:
      _close(a[k], b[k], f'{path}.{k}')
  elif isinstance(a, list):
    assert isinstance(b, list) and len(a) == len(b), f'{path}: lengths differ'
    for i, (x, y) in enumerate(zip(a, b)):
      _close(x, y, f'{path}[{i}]')
  else:
    assert a == b, f'{path}: {a!r} != {b!r}'


@pytest.mark.parametrize('folder', sorted(
    os.path.basename(os.path.dirname(p))
    for p in glob.glob(os.path.join(ROOT, 'docs', 'results', '*', 'results.csv'))))
def test_published_tables_are_those_of_their_csv(tmp_path, folder):
  """``docs/results/<folder>/table.json`` is what ``--aggregate_only`` rebuilds from its csv."""
  published = os.path.join(ROOT, 'docs', 'results', folder)
  shutil.copy(os.path.join(published, 'results.csv'), tmp_path)
  study = runpy.run_path(os.path.join(ROOT, 'configs', 'studies', f'{folder}.py'))['get_config']()
  assert aggregate.csv_only(str(tmp_path))
  aggregate.tables_from_csv(study, str(tmp_path))
  with open(os.path.join(published, 'table.json')) as f:
    committed = json.load(f)
  _close(json.loads((tmp_path / 'table.json').read_text()), committed)


def test_aggregate_only_without_run_folders_rebuilds_the_tables_from_the_csv(tmp_path):
  """A published study's folder (its csv, no runs/): the command says so, writes no figures,
  and its tables are the committed ones."""
  from test_study import study_cli
  published = os.path.join(ROOT, 'docs', 'results', 'offline_vgg_digits')
  shutil.copy(os.path.join(published, 'results.csv'), tmp_path)
  r = study_cli(os.path.join(ROOT, 'configs', 'studies', 'offline_vgg_digits.py'), tmp_path,
                '--aggregate_only')
  assert r.returncode == 0 and 'from results.csv alone' in r.stderr, r.stderr[-2000:]
  assert sorted(os.listdir(tmp_path)) == ['results.csv', 'table.json', 'table.md']
  with open(os.path.join(published, 'table.md')) as f:
    assert (tmp_path / 'table.md').read_text() == f.read()


def test_an_extra_that_sets_a_key_no_axis_varies_is_a_cell_of_its_own():
  """The fair-rescale arm of ``resnet50_digits`` (RP without skips, ``pruning.rescale=True``
  where no axis varies it) is its own row, not averaged into RP without skips; the axes cells
  still pair as before."""
  study = runpy.run_path(os.path.join(ROOT, 'configs', 'studies', 'resnet50_digits.py'))[
      'get_config']()
  keys = grid.cell_keys(study)
  assert keys == ['pruning.density', 'pruning.method', 'skip.kind', 'pruning.rescale',
                  'pruning.rescale_normalized']
  rows = []
  for s in range(3):
    for kind, rescale, acc in (('none', False, 0.1), ('n2nskip', False, 0.9), ('none', True, 0.95)):
      rows.append({**row(0.02, 'rp', kind, s, acc + 0.01 * s), 'pruning.rescale': rescale,
                   'pruning.rescale_normalized': not rescale})
  groups = aggregate.table_json(rows, keys, 0)['groups']
  by_cell = {(g['skip.kind'], g['pruning.rescale']): g for g in groups}
  assert len(groups) == 3 and by_cell[('none', True)]['n'] == 3
  assert math.isclose(by_cell[('none', False)]['mean'], 11.0)
  assert [c['against'] for g in groups for c in g['comparisons']] == ['none']

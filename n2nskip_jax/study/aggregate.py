"""A study's results: ``results.csv``, ``table.json``/``table.md`` and figures.

* ``results.csv``: one row per finished or failed run: every axis key, ``seed``, its figures
  (:data:`COLUMNS`: ``F_t_star_final`` where the run has its connectivity after training;
  ``accuracy_auc`` and ``epochs_to_90pct_dense`` from its accuracy curve,
  :func:`stats.convergence`), ``status`` (``finished`` or ``failed``), for a failed run the
  ``reason``, and the ``run``'s name.
* ``table.json``/``table.md`` (:func:`table_json`): runs grouped by every axis key but the seed:
  ``n``, ``mean`` and sample ``std`` (ddof 1) of test accuracy in % over the finished runs,
  ``failed`` (failed runs, listed with their reasons under the table), group means of the
  convergence columns; ``comparisons``: each group with ``skip.kind != 'none'`` against the
  group that differs only in ``skip.kind='none'``, and each ``'n2nskip'`` group against every
  other skip kind, by Welch's test, Holm-corrected over all the study's comparisons
  (:func:`stats.welch`, :func:`stats.holm_family`); and Spearman's rank correlation of test
  accuracy with F(t*), pooled and within strata (:func:`stats.correlation`).

The tables are a function of the csv's rows: :func:`tables_from_csv` rebuilds them for a
published study, which ships its ``results.csv`` without the run folders.
"""
import ast
import csv
import os

import numpy as np

from n2nskip_jax import checks, progress, rundir
from n2nskip_jax.errors import UserError
from n2nskip_jax.metrics import METRICS_FILE, read_metrics, write_json
from n2nskip_jax.study import grid, stats
from n2nskip_jax.study.run import CONNECTIVITY, CONNECTIVITY_FINAL, failure, read_json, run_dir
from n2nskip_jax.study.stats import SKIP_KEY

COLUMNS = ('test_accuracy', 'best_test_accuracy', 'params_nonzero', 'params_nonzero_sequential',
           'params_nonzero_skip', 'dead_units', 'F_t_star', 'F_inf', 'train_seconds',
           'F_t_star_final', 'accuracy_auc', 'epochs_to_90pct_dense', 'params_skip_extra')
RESULTS = 'results.csv'


def collect(study, workdir: str) -> tuple[list[dict], int]:
  """``(rows, missing)``: one row per finished or failed run (its values of
  :func:`grid.cell_keys`, ``seed``, ``run``, ``status``; a finished run's :data:`COLUMNS` and
  ``curve``, test accuracy per evaluated epoch; a failed run's ``reason``), and the number of
  runs neither finished nor failed."""
  keys = grid.cell_keys(study)
  rows, missing = [], 0
  for run in grid.runs(study):
    directory = run_dir(workdir, run.name)
    summary = read_json(os.path.join(directory, rundir.SUMMARY))
    failed = failure(directory) if summary is None else None
    if summary is None and failed is None:
      missing += 1
      continue
    config = run.config(study.base)
    row = {k: checks.value(config, k) for k in keys}
    row.update(seed=run.seed, run=run.name, status='failed' if failed else 'finished')
    if failed:
      rows.append({**row, **dict.fromkeys(COLUMNS), 'reason': failed['reason'], 'curve': []})
      continue
    evals = [m for m in read_metrics(os.path.join(directory, METRICS_FILE))
             if 'test_accuracy' in m]
    steps_per_epoch = summary['steps'] / summary['epochs']
    row['curve'] = [(m['step'] / steps_per_epoch, m['test_accuracy']) for m in evals]
    row['best_test_accuracy'] = max([a for _, a in row['curve']] + [summary['test_accuracy']])
    row['F_t_star_final'] = (read_json(os.path.join(directory, CONNECTIVITY_FINAL)) or {}).get(
        'F_t_star')
    conn = read_json(os.path.join(directory, CONNECTIVITY)) or {}
    for c in COLUMNS:
      row.setdefault(c, conn.get(c, summary.get(c)))
    rows.append(row)
  return stats.convergence(rows), missing


def write_csv(rows: list[dict], keys: list[str], path: str) -> None:
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow([*keys, 'seed', *COLUMNS, 'status', 'reason', 'run'])
    for r in rows:
      w.writerow([r[k] for k in keys] + [r['seed']] + ['' if r[c] is None else r[c] for c in COLUMNS]
                 + [r['status'], r.get('reason', ''), r['run']])


def _literal(text: str):
  """A csv cell back as the value written: ``''`` is ``None``; a Python literal its value
  (``0.02``, ``7``, ``True``); ``nan``/``inf`` a float; anything else the string (``none``)."""
  if text == '':
    return None
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    try:
      return float(text)
    except ValueError:
      return text


def read_csv(path: str) -> tuple[list[dict], list[str]]:
  """The rows of a ``results.csv`` as :func:`collect` made them, less the curves, and its axis
  keys (the columns before ``seed``). Columns an older csv lacks are ``None``, and its
  ``status`` is ``finished`` (failed runs were not recorded then)."""
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    keys = reader.fieldnames[:reader.fieldnames.index('seed')]
    rows = [{**{c: _literal(line.get(c, '')) for c in [*keys, 'seed', *COLUMNS]},
             'status': line.get('status') or 'finished', 'reason': line.get('reason') or None,
             'run': line.get('run') or None} for line in reader]
  return rows, keys


def _values(runs: list[dict], column: str) -> list:
  return [r[column] for r in runs if r[column] is not None]


def _mean(values) -> float | None:
  return float(np.mean(values)) if len(values) else None


def _group(values: tuple, keys: list[str], done: list[dict], failed: int) -> dict:
  """One group's statistics over its finished runs ``done``; :func:`table` adds its
  ``comparisons``."""
  acc = np.array([m['test_accuracy'] for m in done]) * 100
  reached = _values(done, 'epochs_to_90pct_dense')
  return {**dict(zip(keys, values)), 'n': len(acc), 'mean': _mean(acc),
          'std': float(acc.std(ddof=1)) if len(acc) > 1 else None, 'failed': failed,
          'F_t_star_mean': _mean(_values(done, 'F_t_star')),
          'F_t_star_final_mean': _mean(_values(done, 'F_t_star_final')),
          'params_nonzero': done[0]['params_nonzero'] if done else None,
          'params_skip_extra': done[0]['params_skip_extra'] if done else None,
          'seeds': sorted(m['seed'] for m in done),
          'accuracy_auc_mean': _mean(np.array(_values(done, 'accuracy_auc')) * 100),
          'epochs_to_90pct_dense_mean': _mean(reached), 'reached_90pct_dense': len(reached),
          'comparisons': []}


def _pairs(values: list[tuple], keys: list[str]) -> list[tuple[tuple, tuple, str]]:
  """``(group, other, other's skip kind)`` for each comparison: every group with ``skip.kind !=
  'none'`` against the one with ``'none'`` and otherwise equal axis values, and each
  ``'n2nskip'`` group against every other kind but ``'none'`` present likewise."""
  if SKIP_KEY not in keys:
    return []
  i = keys.index(SKIP_KEY)
  kinds = list(dict.fromkeys(v[i] for v in values))
  present = set(values)
  out = []
  for v in values:
    against = [] if v[i] == 'none' else ['none']
    if v[i] == 'n2nskip':
      against += [k for k in kinds if k not in ('none', 'n2nskip')]
    out += [(v, o, k) for k in against if (o := v[:i] + (k,) + v[i + 1:]) in present]
  return out


def table(rows: list[dict], keys: list[str]) -> list[dict]:
  """Groups of runs (every axis but the seed), in grid order, with their comparisons as one
  Holm-corrected family."""
  by_values: dict[tuple, list[dict]] = {}
  for r in rows:
    by_values.setdefault(tuple(r[k] for k in keys), []).append(r)
  done = {v: [m for m in members if m['status'] == 'finished'] for v, members in by_values.items()}
  groups = {v: _group(v, keys, done[v], len(by_values[v]) - len(done[v])) for v in by_values}
  acc = {v: [100 * m['test_accuracy'] for m in runs] for v, runs in done.items()}
  pairs = [p for p in _pairs(list(by_values), keys) if acc[p[0]] and acc[p[1]]]
  tested = stats.holm_family([{'against': kind, **stats.welch(acc[v], acc[o])}
                              for v, o, kind in pairs])
  for (v, _, _), comparison in zip(pairs, tested):
    groups[v]['comparisons'].append(comparison)
  return list(groups.values())


def table_json(rows: list[dict], keys: list[str], missing: int) -> dict:
  """``table.json``: run counts, the comparisons' ``family``, the groups, and Spearman's rho of
  test accuracy with F(t*) at initialization and, where measured, after training."""
  groups = table(rows, keys)
  finished = sum(r['status'] == 'finished' for r in rows)
  m = sum(c['p_value'] is not None for g in groups for c in g['comparisons'])
  return {'axes': keys, 'runs_finished': finished, 'runs_failed': len(rows) - finished,
          'runs_missing': missing,
          'family': {'test': "Welch's t-test, two-sided", 'correction': 'Holm',
                     'alpha': stats.ALPHA, 'm': m},
          'groups': groups, 'accuracy_vs_F_t_star': stats.correlation(rows, keys),
          'accuracy_vs_F_t_star_final': stats.correlation(rows, keys, 'F_t_star_final')}


def _fmt(v) -> str:
  """An axis value as the study config wrote it (0.005 stays 0.005, 1e-05 stays 1e-05)."""
  return f'{v:g}' if isinstance(v, float) else str(v)


def _comparison_cells(c: dict | None) -> list[str]:
  if c is None:
    return [''] * 4
  ci = f" [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]" if c['ci'] else ''
  p = f"{c['p_holm']:.3g}" if c['p_holm'] is not None else ''
  return [f"{c['diff']:+.2f}{ci}", c['verdict'], p, c['verdict_holm']]


def _epochs_cell(g: dict) -> str:
  """Mean epochs to 90 % of dense accuracy over the runs that reach it, with their share."""
  if not g['n']:
    return ''
  if not g['reached_90pct_dense']:
    return 'never'
  share = f" ({g['reached_90pct_dense']}/{g['n']})" if g['reached_90pct_dense'] < g['n'] else ''
  return f"{g['epochs_to_90pct_dense_mean']:.3g}{share}"


def _correlation_line(c: dict | None, measure: str) -> list[str]:
  if not c or c['pooled']['spearman_rho'] is None:
    return []
  pooled = c['pooled']
  line = (f"\nSpearman's rank correlation of test accuracy with {measure} over {pooled['n']} "
          f"pruned runs: rho = {pooled['spearman_rho']:+.3f}, p = {pooled['p_value']:.3g}")
  if c['strata_with_rho']:
    line += (f"; within strata (runs equal in every axis but skip.kind): median rho = "
             f"{c['median_stratum_rho']:+.3f} over {c['strata_with_rho']} strata")
  return [line + '.']


def markdown(result: dict, rows: list[dict]) -> str:
  """``table.md``: :func:`table_json`'s ``result`` as a table, then the correlations and the
  failed and missing runs."""
  keys, groups = result['axes'], result['groups']
  against = list(dict.fromkeys(c['against'] for g in groups for c in g['comparisons']))
  failed = [r for r in rows if r['status'] == 'failed']
  auc = any(g['accuracy_auc_mean'] is not None for g in groups)
  reach = any(g['reached_90pct_dense'] for g in groups)
  final = any(g.get('F_t_star_final_mean') is not None for g in groups)
  extra = any(g.get('params_skip_extra') is not None for g in groups)
  head = [*keys, 'n', *['failed'] * bool(failed), 'test acc. % (mean ± std)']
  for kind in against:
    head += [f'vs skip.kind={kind}: diff [95 % CI]', 'verdict', 'Holm p', 'Holm verdict']
  head += [*['mean test acc. % over training'] * auc, *['epochs to 90 % of dense'] * reach,
           'F(t*) at init', *['F(t*) trained'] * final, 'nonzero weights',
           *["skips' other parameters"] * extra]
  m = result['family']['m']
  lines = [f"Holm correction over the {m} comparisons of this study (two-sided Welch t-tests; "
           f"'Holm verdict' at alpha = {stats.ALPHA:g}; 'verdict' is the raw 95 % interval's).\n"
           ] if m else []
  lines += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for g in groups:
    std = f" ± {g['std']:.2f}" if g['std'] is not None else ''
    by_kind = {c['against']: c for c in g['comparisons']}
    cells = [*(_fmt(g[k]) for k in keys), str(g['n']), *[str(g['failed'])] * bool(failed),
             f"{g['mean']:.2f}{std}" if g['mean'] is not None else '']
    for kind in against:
      cells += _comparison_cells(by_kind.get(kind))
    if auc:
      cells.append(f"{g['accuracy_auc_mean']:.2f}" if g['accuracy_auc_mean'] is not None else '')
    if reach:
      cells.append(_epochs_cell(g))
    cells.append(_number(g['F_t_star_mean'], '.4g'))
    if final:
      cells.append(_number(g['F_t_star_final_mean'], '.4g'))
    cells.append(_number(g['params_nonzero'], ','))
    if extra:
      cells.append(_number(g['params_skip_extra'], ','))
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += _correlation_line(result['accuracy_vs_F_t_star'], 'F(t*)')
  lines += _correlation_line(result['accuracy_vs_F_t_star_final'], 'F(t*) after training')
  if failed:
    lines.append(f'\n{progress.counted(len(failed), "run")} failed:')
    lines += [f"- {r['run'] or ', '.join(f'{k}={_fmt(r[k])}' for k in [*keys, 'seed'])}: "
              f"{r['reason'].splitlines()[0]}" for r in failed]
  if result['runs_missing']:
    lines.append(f"\nPartial study: {progress.counted(result['runs_missing'], 'run')} not "
                 'finished yet.')
  return '\n'.join(lines) + '\n'


def _number(value, spec: str) -> str:
  return '' if value is None else format(value, spec)


def write_tables(result: dict, rows: list[dict], workdir: str) -> list[str]:
  """Writes ``table.json`` and ``table.md``; returns their paths."""
  paths = [os.path.join(workdir, n) for n in ('table.json', 'table.md')]
  write_json(paths[0], result)
  with open(paths[1], 'w') as f:
    f.write(markdown(result, rows))
  return paths


def csv_only(workdir: str) -> bool:
  """Whether ``workdir`` holds a ``results.csv`` and no run folders, as a published study."""
  return not os.path.isdir(run_dir(workdir, '')) and os.path.exists(os.path.join(workdir, RESULTS))


def tables_from_csv(study, workdir: str) -> list[str]:
  """Rewrites ``table.json`` and ``table.md`` from ``workdir/results.csv`` alone (no figures;
  the convergence columns are the csv's); the runs missing are the study's runs the csv lacks.
  Returns the paths."""
  path = os.path.join(workdir, RESULTS)
  rows, csv_keys = read_csv(path)
  keys = grid.cell_keys(study)
  if csv_keys != keys:
    raise UserError(f"{path}: its cell keys {csv_keys} are not the study config's {keys}")
  return write_tables(table_json(rows, keys, len(grid.runs(study)) - len(rows)), rows, workdir)


def aggregate(study, workdir: str, figures: bool = True) -> list[str]:
  """Writes the tables (and figures) of the runs finished so far; returns the paths."""
  keys = grid.cell_keys(study)
  rows, missing = collect(study, workdir)
  path = os.path.join(workdir, RESULTS)
  write_csv(rows, keys, path)
  result = table_json(rows, keys, missing)
  paths = [path, *write_tables(result, rows, workdir)]
  finished = [r for r in rows if r['status'] == 'finished']
  if figures and finished:
    from n2nskip_jax.study import figures as figures_lib  # matplotlib only when drawing
    corr = result['accuracy_vs_F_t_star']
    paths += figures_lib.draw(study, workdir, finished, keys, corr and corr['pooled'])
  return paths

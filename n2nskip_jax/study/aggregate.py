"""A study's results: ``results.csv``, ``table.json``/``table.md`` and figures.

* ``results.csv``: one row per finished or failed run: every axis key, ``seed``, its figures,
  ``status`` (``finished`` or ``failed``) and, for a failed run, the ``reason``.
* ``table.json``/``table.md``: runs grouped by every axis key but the seed: ``n``, ``mean``
  and sample ``std`` (ddof 1) of test accuracy in % over the finished runs, and ``failed``
  (failed runs, listed with their reasons under the table); each group with ``skip.kind != 'none'``
  is compared with the group that differs only in ``skip.kind='none'``: the difference of
  means with a 95 % Welch confidence interval and a verdict (``better``, ``worse``, or
  ``inconclusive`` where the interval holds 0 or a group has fewer than 2 runs); and
  Spearman's rank correlation of test accuracy with F(t*) over the pruned runs.
"""
import csv
import os

import numpy as np
from scipy import stats

from n2nskip_jax import rundir
from n2nskip_jax.metrics import METRICS_FILE, read_metrics, write_json
from n2nskip_jax.study import grid
from n2nskip_jax.study.run import CONNECTIVITY, failure, read_json, run_dir

COLUMNS = ('test_accuracy', 'best_test_accuracy', 'params_nonzero', 'params_nonzero_sequential',
           'params_nonzero_skip', 'dead_units', 'F_t_star', 'F_inf', 'train_seconds')
SKIP_KEY = 'skip.kind'


def collect(study, workdir: str) -> tuple[list[dict], int]:
  """``(rows, missing)``: one row per finished or failed run (axis values, ``seed``, ``status``;
  a finished run's figures and ``curve``, test accuracy per evaluated epoch; a failed run's
  ``reason``), and the number of runs neither finished nor failed."""
  keys = grid.axis_keys(study)
  rows, missing = [], 0
  for run in grid.runs(study):
    directory = run_dir(workdir, run.name)
    summary = read_json(os.path.join(directory, rundir.SUMMARY))
    failed = failure(directory) if summary is None else None
    if summary is None and failed is None:
      missing += 1
      continue
    config = run.config(study.base)
    row = {k: grid.value_at(config, k) for k in keys}
    row.update(seed=run.seed, run=run.name, status='failed' if failed else 'finished')
    if failed:
      rows.append({**row, **dict.fromkeys(COLUMNS), 'reason': failed['reason'], 'curve': []})
      continue
    evals = [m for m in read_metrics(os.path.join(directory, METRICS_FILE))
             if 'test_accuracy' in m]
    steps_per_epoch = summary['steps'] / summary['epochs']
    row['curve'] = [(m['step'] / steps_per_epoch, m['test_accuracy']) for m in evals]
    row['best_test_accuracy'] = max([a for _, a in row['curve']] + [summary['test_accuracy']])
    conn = read_json(os.path.join(directory, CONNECTIVITY)) or {}
    for c in COLUMNS:
      row.setdefault(c, conn.get(c, summary.get(c)))
    rows.append(row)
  return rows, missing


def write_csv(rows: list[dict], keys: list[str], path: str) -> None:
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow([*keys, 'seed', *COLUMNS, 'status', 'reason'])
    for r in rows:
      w.writerow([r[k] for k in keys] + [r['seed']] + ['' if r[c] is None else r[c] for c in COLUMNS]
                 + [r['status'], r.get('reason', '')])


def welch(a, b, level: float = 0.95) -> dict:
  """Difference of means ``mean(a) - mean(b)`` with its Welch confidence interval."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  diff = float(a.mean() - b.mean())
  if len(a) < 2 or len(b) < 2:
    return {'diff': diff, 'ci': None, 'verdict': 'inconclusive'}
  va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  se = np.sqrt(va + vb)
  if se == 0:
    lo = hi = diff
  else:
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
    lo, hi = diff - half, diff + half
  verdict = 'better' if lo > 0 else 'worse' if hi < 0 else 'inconclusive'
  return {'diff': diff, 'ci': [lo, hi], 'verdict': verdict}


def table(rows: list[dict], keys: list[str]) -> list[dict]:
  """Groups of runs (every axis but the seed) with statistics over their finished runs and the
  count of failed ones, in grid order."""
  groups: dict[tuple, list[dict]] = {}
  for r in rows:
    groups.setdefault(tuple(r[k] for k in keys), []).append(r)
  finished = {v: [m for m in members if m['status'] == 'finished'] for v, members in groups.items()}
  out = []
  for values, members in finished.items():
    acc = np.array([m['test_accuracy'] for m in members]) * 100
    f_star = [m['F_t_star'] for m in members if m['F_t_star'] is not None]
    out.append({**dict(zip(keys, values)), 'n': len(acc),
                'mean': float(acc.mean()) if len(acc) else None,
                'std': float(acc.std(ddof=1)) if len(acc) > 1 else None,
                'failed': len(groups[values]) - len(members),
                'F_t_star_mean': float(np.mean(f_star)) if f_star else None,
                'params_nonzero': members[0]['params_nonzero'] if members else None,
                'seeds': sorted(m['seed'] for m in members)})
  if SKIP_KEY in keys:
    index = {tuple(g[k] for k in keys): g for g in out}
    for g in out:
      if g[SKIP_KEY] == 'none' or not g['n']:
        continue
      base = index.get(tuple('none' if k == SKIP_KEY else g[k] for k in keys))
      if base is None or not base['n']:
        continue
      mine = [m['test_accuracy'] * 100 for m in finished[tuple(g[k] for k in keys)]]
      theirs = [m['test_accuracy'] * 100 for m in finished[tuple(base[k] for k in keys)]]
      g['vs_none'] = welch(mine, theirs)
  return out


def correlation(rows: list[dict]) -> dict | None:
  """Spearman's rank correlation of test accuracy with F(t*) over the pruned runs (the dense
  reference has F = 0 by definition and is left out)."""
  pts = [(r['F_t_star'], r['test_accuracy']) for r in rows
         if r['status'] == 'finished' and r['F_t_star'] is not None
         and r.get('pruning.method') != 'dense']
  if len(pts) < 3:
    return None
  f, acc = np.array(pts).T
  res = stats.spearmanr(f, acc)
  return {'spearman_rho': float(res.statistic), 'p_value': float(res.pvalue), 'n': len(pts)}


def _fmt(v) -> str:
  """An axis value as the study config wrote it (0.005 stays 0.005, 1e-05 stays 1e-05)."""
  return f'{v:g}' if isinstance(v, float) else str(v)


def markdown(groups: list[dict], keys: list[str], rows: list[dict], missing: int,
             corr: dict | None) -> str:
  head = [*keys, 'n', 'test acc. % (mean ± std)', 'vs skip.kind=none: diff [95 % CI]',
          'verdict', 'F(t*) at init', 'nonzero weights']
  failed = [r for r in rows if r['status'] == 'failed']
  if failed:
    head.insert(len(keys) + 1, 'failed')
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for g in groups:
    std = f" ± {g['std']:.2f}" if g['std'] is not None else ''
    cmp = g.get('vs_none')
    ci = (f"{cmp['diff']:+.2f} [{cmp['ci'][0]:+.2f}, {cmp['ci'][1]:+.2f}]" if cmp and cmp['ci']
          else f"{cmp['diff']:+.2f}" if cmp else '')
    f_star = f"{g['F_t_star_mean']:.4g}" if g['F_t_star_mean'] is not None else ''
    cells = [*(_fmt(g[k]) for k in keys), str(g['n']),
             f"{g['mean']:.2f}{std}" if g['mean'] is not None else '', ci,
             cmp['verdict'] if cmp else '', f_star,
             f"{g['params_nonzero']:,}" if g['params_nonzero'] is not None else '']
    if failed:
      cells.insert(len(keys) + 1, str(g['failed']))
    lines.append('| ' + ' | '.join(cells) + ' |')
  if corr:
    lines.append(f"\nSpearman's rank correlation of test accuracy with F(t*) over {corr['n']} "
                 f"pruned runs: rho = {corr['spearman_rho']:+.3f}, p = {corr['p_value']:.3g}.")
  if failed:
    lines.append(f'\n{len(failed)} runs failed:')
    lines += [f"- {r['run']}: {r['reason'].splitlines()[0]}" for r in failed]
  if missing:
    lines.append(f'\nPartial study: {missing} runs not finished yet.')
  return '\n'.join(lines) + '\n'


def aggregate(study, workdir: str, figures: bool = True) -> list[str]:
  """Writes the tables (and figures) of the runs finished so far; returns the paths."""
  keys = grid.axis_keys(study)
  rows, missing = collect(study, workdir)
  groups = table(rows, keys)
  corr = correlation(rows)
  paths = [os.path.join(workdir, n) for n in ('results.csv', 'table.json', 'table.md')]
  write_csv(rows, keys, paths[0])
  finished = [r for r in rows if r['status'] == 'finished']
  write_json(paths[1], {'axes': keys, 'runs_finished': len(finished),
                        'runs_failed': len(rows) - len(finished), 'runs_missing': missing,
                        'groups': groups, 'accuracy_vs_F_t_star': corr})
  with open(paths[2], 'w') as f:
    f.write(markdown(groups, keys, rows, missing, corr))
  if figures and finished:
    from n2nskip_jax.study import figures as figures_lib  # matplotlib only when drawing
    paths += figures_lib.draw(study, workdir, finished, keys, corr)
  return paths

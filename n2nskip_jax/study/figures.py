"""A study's figures (PNG): the paper's Figs. 4-6 and Table 3 as plots, and accuracy vs F(t*).

* ``accuracy_vs_epoch.png``: test accuracy per epoch, mean and a +-1 std band over seeds,
  one panel per (density, pruning method) (paper Fig. 5);
* ``error_vs_compression.png``: test error against compression rate ``1 / density``, one
  panel per pruning method, one line per other axis value (Fig. 6);
* ``F_vs_density.png``: F(t*) at initialization against density (Table 3);
* ``scree.png``: the scree ``alpha(K, t*)`` (Eq. 7) of one run per (method, skip kind), at the
  lowest density, against its dense reference (Fig. 4);
* ``accuracy_vs_F.png``: test accuracy against F(t*) over all pruned runs, with Spearman's
  rank correlation.
"""
import os

import matplotlib.pyplot as plt
import numpy as np

from n2nskip_jax.connectivity import analysis
from n2nskip_jax.connectivity import heat
from n2nskip_jax.connectivity.graph import network_graph
from n2nskip_jax.study import grid
from n2nskip_jax.study.run import run_dir

DENSITY, METHOD, SKIP = 'pruning.density', 'pruning.method', 'skip.kind'


def _label(row, keys) -> str:
  return ', '.join(f'{k.split(".")[-1]}={row[k]}' for k in keys) or 'all'


def _by(rows, keys) -> dict:
  out = {}
  for r in rows:
    out.setdefault(tuple(r[k] for k in keys), []).append(r)
  return out


def _panels(n, columns: int = 3):
  """A figure with ``n`` panels, at most ``columns`` a row; unused panels are hidden."""
  n = max(1, n)
  cols, rows = min(n, columns), -(-n // columns)
  fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4.2 * rows), squeeze=False)
  axes = list(axes.ravel())
  for ax in axes[n:]:
    ax.set_visible(False)
  return fig, axes[:n]


def _save(fig, path) -> str:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def accuracy_vs_epoch(rows, keys, path) -> str:
  panel_keys = [k for k in (DENSITY, METHOD) if k in keys]
  line_keys = [k for k in keys if k not in panel_keys]
  panels = _by([r for r in rows if r.get(METHOD) != 'dense'], panel_keys)
  fig, axes = _panels(len(panels))
  for ax, (pvals, members) in zip(axes, sorted(panels.items(), key=lambda kv: str(kv[0]))):
    for i, (lvals, runs) in enumerate(sorted(_by(members, line_keys).items(), key=lambda kv: str(kv[0]))):
      epochs = sorted({e for r in runs for e, _ in r['curve']})
      acc = np.array([[dict(r['curve']).get(e, np.nan) for e in epochs] for r in runs]) * 100
      mean, std = np.nanmean(acc, 0), np.nanstd(acc, 0)
      ax.plot(epochs, mean, color=f'C{i}', marker='o' if len(epochs) <= 30 else None,
              markersize=3, label=_label(dict(zip(line_keys, lvals)), line_keys))
      ax.fill_between(epochs, mean - std, mean + std, color=f'C{i}', alpha=0.2)
    ax.set_title(_label(dict(zip(panel_keys, pvals)), panel_keys))
    ax.set_xlabel('epoch')
    ax.set_ylabel('test accuracy (%)')
    ax.legend(fontsize=7)
  return _save(fig, path)


def _mean_std_lines(ax, rows, line_keys, x_of, y_of):
  for i, (lvals, runs) in enumerate(sorted(_by(rows, line_keys).items(), key=lambda kv: str(kv[0]))):
    xs = sorted({x_of(r) for r in runs})
    ys = [[y_of(r) for r in runs if x_of(r) == x] for x in xs]
    mean = [np.mean(y) for y in ys]
    std = [np.std(y, ddof=1) if len(y) > 1 else 0 for y in ys]
    ax.errorbar(xs, mean, yerr=std, color=f'C{i}', marker='o', capsize=3,
                label=_label(dict(zip(line_keys, lvals)), line_keys))


def _by_method(rows, keys, path, x_of, y_of, xlabel, ylabel, reference=None) -> str:
  """One panel per pruning method, one line (mean, +-1 std over seeds) per value of the other
  axes but density, against ``x_of(row)`` on a log axis; ``reference``: a dashed level."""
  panel_keys = [k for k in (METHOD,) if k in keys]
  line_keys = [k for k in keys if k not in (DENSITY, METHOD)]
  panels = _by([r for r in rows if r.get(METHOD) != 'dense' and y_of(r) is not None], panel_keys)
  fig, axes = _panels(len(panels))
  for ax, (pvals, members) in zip(axes, sorted(panels.items(), key=lambda kv: str(kv[0]))):
    _mean_std_lines(ax, members, line_keys, x_of, y_of)
    if reference is not None:
      ax.axhline(reference, color='k', ls='--', lw=1, label='dense')
    ax.set_xscale('log')
    ticks = sorted({x_of(r) for r in members})
    ax.set_xticks(ticks, [f'{t:g}' for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_label(dict(zip(panel_keys, pvals)), panel_keys))
    ax.legend(fontsize=7)
  return _save(fig, path)


def error_vs_compression(rows, keys, path) -> str:
  dense = [100 - 100 * r['test_accuracy'] for r in rows if r.get(METHOD) == 'dense']
  return _by_method(rows, keys, path, lambda r: round(1 / r[DENSITY], 6),
                    lambda r: 100 - 100 * r['test_accuracy'], 'compression rate (1 / density)',
                    'test error (%)', np.mean(dense) if dense else None)


def f_vs_density(rows, keys, path) -> str:
  return _by_method(rows, keys, path, lambda r: r[DENSITY], lambda r: r['F_t_star'], 'density',
                    'F(t*) at initialization (weighted)')


def accuracy_vs_f(rows, corr, path) -> str:
  fig, (ax,) = _panels(1)
  pruned = [r for r in rows if r.get(METHOD) != 'dense' and r['F_t_star'] is not None]
  for i, (kind, runs) in enumerate(sorted(_by(pruned, [SKIP] if SKIP in rows[0] else []).items())):
    ax.scatter([r['F_t_star'] for r in runs], [100 * r['test_accuracy'] for r in runs], s=12,
               color=f'C{i}', label=f'skip.kind={kind[0]}' if kind else 'runs')
  if corr and corr['spearman_rho'] is not None:
    ax.set_title(f"Spearman rho = {corr['spearman_rho']:+.3f} (p = {corr['p_value']:.2g}, "
                 f"n = {corr['n']})")
  ax.set_xlabel('F(t*) at initialization (weighted)')
  ax.set_ylabel('test accuracy (%)')
  ax.legend(fontsize=7)
  return _save(fig, path)


def scree(study, workdir, rows, keys, path) -> str | None:
  """Scree at t* of one run per (method, skip kind): lowest density, first seed, other axes at
  their first value. Needs the full spectrum, so graphs above ``heat.DENSE_MAX_NODES`` nodes
  are left out."""
  pruned = [r for r in rows if r.get(METHOD) != 'dense']
  if not pruned:
    return None
  low = min(r.get(DENSITY, 1) for r in pruned)
  first = {k: v[0] for k, v in grid.axis_values(study).items() if k not in (METHOD, SKIP, DENSITY)}
  chosen = {}
  for r in sorted(pruned, key=lambda r: r['seed']):
    if r.get(DENSITY, 1) == low and all(r[k] == v for k, v in first.items()):
      chosen.setdefault((r.get(METHOD), r.get(SKIP)), r)
  fractions = analysis.K_FRACTIONS
  fig, (ax,) = _panels(1)
  reference_drawn = False
  for i, ((method, kind), r) in enumerate(sorted(chosen.items())):
    config, params, masks, ref_params = analysis.load_run(run_dir(workdir, r['run']), 'initial')
    graph = network_graph(config, params, masks)
    if graph.num_nodes > heat.DENSE_MAX_NODES:
      plt.close(fig)
      return None
    lam = heat.spectrum(graph.adjacency()).eigenvalues
    if not reference_drawn:
      ref = network_graph(config, ref_params, masks, reference=True)
      lam_ref = heat.spectrum(ref.adjacency()).eigenvalues
      t_star = heat.times_from_eigenvalues(lam_ref[1], lam_ref[-1])['t_star']
      ax.plot(fractions, heat.scree_from_eigenvalues(lam_ref, fractions, t_star)[0], 'k--',
              label='dense reference')
      reference_drawn = True
    ax.plot(fractions, heat.scree_from_eigenvalues(lam, fractions, t_star)[0], color=f'C{i}',
            label=f'{method}, skip={kind}')
  ax.set_xlabel('K / (n - 1): fraction of eigenvalues')
  ax.set_ylabel('alpha(K, t*)')
  ax.set_title(f'scree at t* = {t_star:.3g}, density {low} (seed {min(r["seed"] for r in pruned)})')
  ax.set_ylim(0, 1.02)
  ax.legend(fontsize=7)
  return _save(fig, path)


def draw(study, workdir, rows, keys, corr) -> list[str]:
  """Every figure that the study's axes allow; returns the paths written."""
  out = [accuracy_vs_epoch(rows, keys, os.path.join(workdir, 'accuracy_vs_epoch.png'))]
  if DENSITY in keys:
    out.append(error_vs_compression(rows, keys, os.path.join(workdir, 'error_vs_compression.png')))
  if any(r['F_t_star'] is not None for r in rows):
    if DENSITY in keys:
      out.append(f_vs_density(rows, keys, os.path.join(workdir, 'F_vs_density.png')))
    out.append(accuracy_vs_f(rows, corr, os.path.join(workdir, 'accuracy_vs_F.png')))
    s = scree(study, workdir, rows, keys, os.path.join(workdir, 'scree.png'))
    if s:
      out.append(s)
  return [p for p in out if p]

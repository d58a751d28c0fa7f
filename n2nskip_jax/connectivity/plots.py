"""Figures like the paper's: adjacency matrices (Figure 3) and scree diagrams (Figure 4).

Importing this module selects no matplotlib backend (a notebook keeps its own); figures are
written to files and closed.
"""
import matplotlib.pyplot as plt
import numpy as np


def _downsample(a, size: int) -> np.ndarray:
  """Block-max of a (dense or sparse) 0/1 pattern to at most ``size x size`` pixels."""
  n = a.shape[0]
  f = max(1, -(-n // size))
  m = (a != 0).tocoo() if hasattr(a, 'tocoo') else None
  out = np.zeros((-(-n // f), -(-n // f)))
  if m is not None:
    out[m.row // f, m.col // f] = 1
  else:
    r, c = np.nonzero(a)
    out[r // f, c // f] = 1
  return out


def plot_adjacency(ref, pruned, path: str, title: str, size: int = 600,
                   groups: list[tuple[str, int]] | None = None) -> None:
  """Reference and pruned adjacency patterns side by side (nonzero = dark), nodes on both axes
  in network order; with ``groups`` ((name, units) in node order, as
  ``network_graph(...).groups``), each group's boundary is a line and its name a tick label
  (at most 30 names, evenly spread, on a deep network)."""
  fig, axes = plt.subplots(1, 2, figsize=(11, 5.5))
  n = ref.shape[0]
  f = max(1, -(-n // size))  # nodes per pixel
  for ax, a, name in zip(axes, (ref, pruned), ('reference (dense sequential)', 'pruned')):
    ax.imshow(_downsample(a, size), cmap='Greys', interpolation='nearest')
    ax.set_title(f'{name}\n{a.shape[0]} nodes, {int((a != 0).sum()) // 2} edges')
    ax.set_xlabel('node (unit), network order')
    ax.set_ylabel('node (unit), network order')
    if groups:
      _group_axes(ax, groups, f)
  fig.suptitle(title)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)


def _group_axes(ax, groups, nodes_per_pixel: int) -> None:
  starts = np.cumsum([0] + [units for _, units in groups]) / nodes_per_pixel - 0.5
  for edge in starts[1:-1]:
    ax.axhline(edge, color='C3', linewidth=0.4, alpha=0.6)
    ax.axvline(edge, color='C3', linewidth=0.4, alpha=0.6)
  shown = np.unique(np.linspace(0, len(groups) - 1, min(len(groups), 30)).round().astype(int))
  centers = [(starts[i] + starts[i + 1]) / 2 for i in shown]
  names = [groups[i][0] for i in shown]
  ax.set_xticks(centers, names, rotation=90, fontsize=6)
  ax.set_yticks(centers, names, fontsize=6)


def plot_scree(fractions, curves: dict, path: str, title: str) -> None:
  """``alpha(K, t)`` against ``K / (n - 1)``.

  ``curves``: time label -> ``{'reference': values, 'pruned': values}``; one colour per time,
  the reference dashed.
  """
  fig, ax = plt.subplots(figsize=(6, 4.5))
  for i, (label, pair) in enumerate(curves.items()):
    for name, style in (('reference', '--'), ('pruned', '-')):
      ax.plot(fractions, pair[name], style, color=f'C{i}', label=f'{name}, {label}')
  ax.set_xlabel('K / (n - 1): fraction of eigenvalues')
  ax.set_ylabel('alpha(K, t)')
  ax.set_ylim(0, 1.02)
  ax.legend(fontsize=8)
  ax.set_title(title)
  fig.savefig(path, dpi=120, bbox_inches='tight')
  plt.close(fig)

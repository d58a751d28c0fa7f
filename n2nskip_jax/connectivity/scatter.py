"""Scatter (Dey, Huang, Beerel, Chugg 2018): how evenly a sparse junction spreads its
connections over windows of adjacent units.

For a junction with binary adjacency ``A`` (``N_out x N_in``, ``A[r, l] = 1`` when input
``l`` feeds output ``r``) of density ``rho``, split the inputs into windows of ``w`` adjacent
units and count ``c_rj = sum_{l in window j} A[r, l]``. The forward scatter is
``S_f = mean_{r, j} min(1, c_rj / (w rho))``; the backward scatter ``S_b`` is the same with
windows on the outputs. A fully connected junction scores 1; outputs that each see a single
contiguous window score ``1 / #windows``.

For a whole network the junction is the path-count matrix ``P`` from the inputs to the
outputs (``A_L ... A_1``; with skips, paths are counted through the DAG), and the ideal
count of a window is ``w * mean(P)``: what it would hold if paths were spread evenly.
"""
import numpy as np

from n2nskip_jax.connectivity.graph import INPUT, Graph


def _windowed(counts: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
  """Column sums of ``counts`` over consecutive windows of ``window`` units, and each
  window's size (the last may be short)."""
  starts = np.arange(0, counts.shape[1], window)
  return np.add.reduceat(counts, starts, axis=1), np.diff(np.append(starts, counts.shape[1]))


def junction_scatter(adjacency: np.ndarray, window: int | None = None,
                     ideal: float | None = None) -> tuple[float, float]:
  """``(S_f, S_b)`` of one junction ``adjacency`` (``N_out x N_in``, counts or 0/1).

  Args:
    adjacency: connection (or path) counts, outputs by inputs.
    window: window size on both sides; default ``round(1 / rho)``, so that an ideal
      junction has one connection per window.
    ideal: the ideal count per unit pair (default: ``rho`` for 0/1, ``mean`` for counts).
  """
  a = np.asarray(adjacency, np.float64)
  if a.ndim != 2 or a.size == 0 or np.any(a < 0):
    raise ValueError(f'adjacency must be a nonnegative 2-D matrix, got shape {a.shape}')
  per_pair = a.mean() if ideal is None else ideal
  if per_pair == 0:
    return 0.0, 0.0
  if window is None:
    density = np.count_nonzero(a) / a.size
    window = max(1, int(round(1 / density)))

  def one_side(m):
    counts, sizes = _windowed(m, min(window, m.shape[1]))
    return float(np.mean(np.minimum(1.0, counts / (sizes * per_pair))))

  return one_side(a), one_side(a.T)


def layer_scatter(graph: Graph, window: int | None = None) -> list[dict]:
  """Forward and backward scatter of every edge (junction) of a binary channel graph."""
  rows = []
  for src, dst, w in graph.edges:
    sf, sb = junction_scatter((np.asarray(w) != 0).T.astype(float), window)
    rows.append({'junction': f'{src} -> {dst}', 'forward': sf, 'backward': sb})
  return rows


def path_counts(graph: Graph) -> tuple[np.ndarray, float]:
  """Paths from every input to every output node, through the DAG of ``graph``.

  Groups are in topological order. Counts grow geometrically with depth, so each group's
  counts are kept with a log-scale factor; returns ``(P / e^s, s)`` with ``P`` of shape
  ``(N_out, N_in)`` for the last group.
  """
  sizes = dict(graph.groups)
  counts = {INPUT: (np.eye(sizes[INPUT]), 0.0)}
  incoming = {}
  for src, dst, w in graph.edges:
    incoming.setdefault(dst, []).append((src, (np.asarray(w) != 0).astype(np.float64)))
  for name, _ in graph.groups[1:]:
    parts = [(w.T @ counts[src][0], counts[src][1]) for src, w in incoming.get(name, [])]
    scale = max(s for _, s in parts)
    total = sum(m * np.exp(s - scale) for m, s in parts)
    peak = total.max()
    counts[name] = (total / peak, scale + np.log(peak)) if peak > 0 else (total, scale)
  return counts[graph.groups[-1][0]]


def network_scatter(graph: Graph, window: int | None = None) -> tuple[float, float]:
  """``(S_f, S_b)`` of the whole network: the path-count junction from inputs to outputs."""
  p, _ = path_counts(graph)
  return junction_scatter(p, window, ideal=p.mean())

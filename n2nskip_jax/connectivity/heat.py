"""Heat diffusion on a network's graph (N2NSkip paper, section 3.2, Eqs. 3-7).

Pure functions on a symmetric, nonnegative adjacency ``W`` (numpy, jax or scipy.sparse):

* ``laplacian``: ``L = D - W`` (Eq. 3);
* ``heat_kernel``: ``H(t) = U exp(-t Lambda) U^T`` (Eq. 4);
* ``heat_signature``: ``S(t) = H(t) A``, ``A`` the 0/1 indicator of the heat sources (Eq. 5);
* ``connectivity_distance``: ``F(t) = ||S_ref(t) - S(t)||_2`` (Eq. 6);
* ``saturation_distance``: ``F(inf)``, exactly, from connected components;
* ``scree``: ``alpha(K, t) = sum_{k=2}^{K+1} e^{-t l_k} / sum_{k=2}^{n} e^{-t l_k}`` (Eq. 7).

The spectrum is computed once per graph with ``jnp.linalg.eigh`` in float64 (x64 enabled
only inside these functions): float32 errors of ``~1e-7 * lambda_max`` would hide a small
``lambda_2``. Graphs above ``DENSE_MAX_NODES`` nodes use a matrix-free path instead: a
Chebyshev expansion of ``exp(-tL)`` with scaled Bessel coefficients, on a sparse ``L``,
matvecs only.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax import lax
from jax.experimental import sparse as jsparse
from scipy.sparse.csgraph import connected_components
from scipy.special import ive

DENSE_MAX_NODES = 6000
# The Chebyshev series' length grows with t times the largest weighted degree: weights far
# above initialization's scale (a run that blew up) would need millions of terms, slow and
# no longer accurate; beyond this many the dense path is used, or the series refused.
MAX_CHEBYSHEV_TERMS = 20_000


def _check(adjacency):
  w = adjacency if sp.issparse(adjacency) else np.asarray(adjacency, np.float64)
  if w.ndim != 2 or w.shape[0] != w.shape[1]:
    raise ValueError(f'adjacency must be a square matrix, got shape {w.shape}')
  asym = abs(w - w.T).max()
  if asym > 1e-9 * max(1.0, abs(w).max()):
    raise ValueError(f'adjacency must be symmetric (max |W - W^T| = {asym:.3g})')
  if w.min() < 0:
    raise ValueError('adjacency must be nonnegative')
  return w


def _times(t):
  times = np.atleast_1d(np.asarray(t, np.float64))
  if times.ndim != 1 or np.any(times < 0) or not np.all(np.isfinite(times)):
    raise ValueError(f't must be a finite time >= 0 or a 1-D array of them, got {t!r}')
  return times


def laplacian(adjacency) -> np.ndarray:
  """``L = D - W`` (Eq. 3), ``D`` the diagonal of weighted degrees."""
  w = _check(adjacency)
  if sp.issparse(w):
    return (sp.diags(np.asarray(w.sum(1)).ravel()) - w).tocsr()
  return np.diag(w.sum(1)) - w


@dataclasses.dataclass
class Spectrum:
  """``L = U diag(eigenvalues) U^T``, eigenvalues ascending (float64)."""
  eigenvalues: np.ndarray
  eigenvectors: np.ndarray


def spectrum(adjacency) -> Spectrum:
  """Eigendecomposition of the Laplacian with ``jnp.linalg.eigh`` in float64."""
  lap = laplacian(adjacency)
  lap = lap.toarray() if sp.issparse(lap) else lap
  with jax.enable_x64(True):
    lam, u = jnp.linalg.eigh(jnp.asarray(lap, jnp.float64))
    lam, u = np.asarray(lam), np.asarray(u)
  return Spectrum(np.maximum(lam, 0.0), u)  # L is PSD: clip rounding below 0


def heat_kernel(adjacency, t: float) -> np.ndarray:
  """``H(t) = U exp(-t Lambda) U^T`` (Eq. 4), shape ``(n, n)``."""
  (time,) = _times(t)
  s = spectrum(adjacency)
  return (s.eigenvectors * np.exp(-time * s.eigenvalues)) @ s.eigenvectors.T


def signature_from_spectrum(s: Spectrum, sources, t) -> np.ndarray:
  """``S(t) = U exp(-t Lambda) U^T A`` for every time in ``t``: shape ``(len(t), n)``."""
  projected = s.eigenvectors.T @ np.asarray(sources, np.float64)
  decay = np.exp(-np.outer(_times(t), s.eigenvalues))
  return (decay * projected) @ s.eigenvectors.T


def chebyshev_signature(adjacency, sources, t, tol: float = 1e-13) -> np.ndarray:
  """``S(t) = exp(-tL) A`` for every time in ``t`` with matvecs only: shape ``(len(t), n)``.

  With ``b >= lambda_max`` (Gershgorin: twice the largest degree), ``x = 2L/b - I`` has its
  spectrum in ``[-1, 1]`` and ``exp(-tL) = sum_k c_k(t) T_k(x)`` with
  ``c_k = (2 - [k = 0]) (-1)^k e^{-a} I_k(a)``, ``a = t b / 2`` (``scipy.special.ive``).
  The series is cut where the remaining coefficients sum below ``tol``; one pass of the
  Chebyshev recurrence serves every ``t``.
  """
  w = sp.csr_matrix(_check(adjacency))
  times = _times(t)
  n = w.shape[0]
  bound = _degree_bound(w)
  a = times * bound / 2
  cap = _terms(float(a.max()), tol)
  if cap > MAX_CHEBYSHEV_TERMS:
    raise ValueError(f'the Chebyshev series needs up to {cap:,} terms (t up to {times.max():.3g}, '
                     f'weighted degrees up to {bound / 2:.3g}), more than {MAX_CHEBYSHEV_TERMS:,}: '
                     f'use the dense path (up to {DENSE_MAX_NODES} nodes)')
  k = np.arange(cap)
  coeffs = ive(k[None, :], a[:, None]) * np.where(k == 0, 1.0, 2.0) * (-1.0) ** k
  tail = np.cumsum(np.abs(coeffs[:, ::-1]), axis=1)[:, ::-1].max(0)
  terms = max(2, int(np.argmax(tail < tol)) if np.any(tail < tol) else cap)
  lap = laplacian(w).tocoo()
  with jax.enable_x64(True):
    x = jsparse.BCOO((jnp.asarray(2 * lap.data / bound), jnp.stack(
        [jnp.asarray(lap.row), jnp.asarray(lap.col)], 1)), shape=(n, n))
    v = jnp.asarray(sources, jnp.float64)
    c = jnp.asarray(coeffs[:, :terms])

    def body(i, carry):
      prev, cur, acc = carry
      nxt = 2 * (x @ cur - cur) - prev  # T_{k+1} = 2 x T_k - T_{k-1}, x = 2L/b - I
      return cur, nxt, acc + c[:, i + 1, None] * nxt[None, :]

    first = x @ v - v
    init = (v, first, c[:, 0, None] * v[None, :] + c[:, 1, None] * first[None, :])
    _, _, acc = lax.fori_loop(1, terms - 1, body, init)
    return np.asarray(acc)


def _degree_bound(w) -> float:
  """``b >= lambda_max`` of the Laplacian (Gershgorin: twice the largest weighted degree)."""
  return max(2.0 * float(np.asarray(w.sum(1)).max()), 1e-300)


def chebyshev_terms(adjacency, t, tol: float = 1e-13) -> int:
  """How many terms :func:`chebyshev_signature` allows itself for times ``t``."""
  return _terms(float(_times(t).max()) * _degree_bound(sp.csr_matrix(adjacency)) / 2, tol)


def _terms(a_max: float, tol: float) -> int:
  """With ``a = t b / 2``, ``I_k(a) e^{-a} ~ exp(-k^2 / 2a) / sqrt(2 pi a)``, so
  ``O(sqrt(a log 1/tol))`` terms suffice."""
  return int(50 + min(a_max + 20 * np.sqrt(a_max), 3 * np.sqrt(2 * a_max * np.log(1 / tol))))


def _signatures(adjacency, sources, t, method):
  n = adjacency.shape[0]
  if method == 'auto':
    method = 'dense' if n <= DENSE_MAX_NODES else 'chebyshev'
  if method == 'dense':
    return signature_from_spectrum(spectrum(adjacency), sources, t)
  if method == 'chebyshev':
    return chebyshev_signature(adjacency, sources, t)
  raise ValueError(f"method={method!r}: expected 'auto', 'dense' or 'chebyshev'")


def heat_signature(adjacency, sources, t, method: str = 'auto') -> np.ndarray:
  """``S(t) = H(t) A`` (Eq. 5): shape ``(n,)`` for a scalar ``t``, ``(len(t), n)`` for an array.

  ``method``: ``'dense'`` (eigh), ``'chebyshev'`` (matrix-free) or ``'auto'`` (dense up to
  ``DENSE_MAX_NODES`` nodes).
  """
  out = _signatures(adjacency, sources, t, method)
  return out[0] if np.ndim(t) == 0 else out


def connectivity_distance(ref_adjacency, adjacency, sources, t, method: str = 'auto'):
  """``F(t) = ||S_ref(t) - S(t)||_2`` (Eq. 6): a float for scalar ``t``, else one per ``t``."""
  if ref_adjacency.shape != adjacency.shape:
    raise ValueError(f'graphs differ in size: {ref_adjacency.shape} vs {adjacency.shape}')
  f = np.linalg.norm(_signatures(ref_adjacency, sources, t, method)
                     - _signatures(adjacency, sources, t, method), axis=-1)
  return float(f[0]) if np.ndim(t) == 0 else f


def saturation_signature(adjacency, sources) -> np.ndarray:
  """``S(inf)``: node ``i`` gets ``a_C / |C|``, the sources in its component over its size."""
  w = sp.csr_matrix(_check(adjacency))
  _, labels = connected_components(w, directed=False)
  totals = np.bincount(labels, weights=np.asarray(sources, np.float64))
  return totals[labels] / np.bincount(labels)[labels]


def saturation_distance(ref_adjacency, adjacency, sources) -> float:
  """``F(inf) = ||S_ref(inf) - S(inf)||_2``, exact: 0 for any connected graph pair."""
  return float(np.linalg.norm(saturation_signature(ref_adjacency, sources)
                              - saturation_signature(adjacency, sources)))


def scree_from_eigenvalues(eigenvalues, k_fraction, t) -> np.ndarray:
  """Eq. 7 on ascending eigenvalues: shape ``(len(t), len(k_fraction))``.

  ``K = max(1, round(k_fraction * (n - 1)))``. Computed as a cumulative softmax of
  ``-t * lambda_{2..n}``, so it stays finite when every ``exp`` underflows.
  """
  lam = np.asarray(eigenvalues, np.float64)[1:]
  fractions = np.atleast_1d(np.asarray(k_fraction, np.float64))
  if np.any((fractions <= 0) | (fractions > 1)):
    raise ValueError(f'k_fraction must lie in (0, 1], got {k_fraction!r}')
  ks = np.maximum(1, np.round(fractions * lam.size).astype(int))
  logits = -np.outer(_times(t), lam)
  weights = np.exp(logits - logits.max(1, keepdims=True))
  alpha = np.cumsum(weights, 1) / weights.sum(1, keepdims=True)
  return alpha[:, ks - 1]


def scree(adjacency, k_fraction, t):
  """``alpha(K, t)`` (Eq. 7); scalar in, scalar out; arrays give ``(len(t), len(k_fraction))``."""
  out = scree_from_eigenvalues(spectrum(adjacency).eigenvalues, k_fraction, t)
  if np.ndim(k_fraction) == 0:
    out = out[:, 0]
  if np.ndim(t) == 0:
    out = out[0]
  return float(out) if np.ndim(out) == 0 else out


def extreme_eigenvalues(adjacency) -> tuple[float, float]:
  """``(lambda_2, lambda_max)`` of the Laplacian; dense up to ``DENSE_MAX_NODES``, else Lanczos."""
  n = adjacency.shape[0]
  if n <= DENSE_MAX_NODES:
    lam = spectrum(adjacency).eigenvalues
    return float(lam[1]), float(lam[-1])
  from scipy.sparse.linalg import eigsh
  lap = laplacian(sp.csr_matrix(_check(adjacency))).tocsc()
  top = float(eigsh(lap, k=1, which='LA', return_eigenvectors=False)[0])
  low = eigsh(lap, k=2, sigma=-1e-6 * top, which='LM', return_eigenvectors=False)
  return float(np.sort(low)[1]), top


def diffusion_times(ref_adjacency, eps: float = 1e-3, num: int = 25) -> dict:
  """Principled times from the reference spectrum.

  ``t_star = ln(1/eps) / lambda_2`` (the slowest mode has decayed to ``eps``) and a log
  grid over ``[4 ln10 / lambda_max, 4 ln10 / lambda_2]``.
  """
  return times_from_eigenvalues(*extreme_eigenvalues(ref_adjacency), eps, num)


def times_from_eigenvalues(lam2: float, lam_max: float, eps: float = 1e-3, num: int = 25) -> dict:
  """:func:`diffusion_times` from the reference's ``lambda_2`` and ``lambda_max``."""
  if not 0 < eps < 1:
    raise ValueError(f'eps must lie in (0, 1), got {eps}')
  if lam2 <= 1e-12 * lam_max:
    raise ValueError('the reference graph is disconnected (lambda_2 = 0): no finite t*')
  grid = np.geomspace(4 * np.log(10) / lam_max, 4 * np.log(10) / lam2, num)
  return {'t_star': float(np.log(1 / eps) / lam2), 'grid': grid, 'lambda_2': lam2,
          'lambda_max': lam_max, 'eps': eps}


@dataclasses.dataclass
class Reference:
  """Heat diffusion on a reference graph, computed once and compared against many graphs.

  ``times``: :func:`times_from_eigenvalues` (``t_star``, ``grid``, ``lambda_2``,
  ``lambda_max``); ``t``: the grid with ``t_star`` appended; ``signatures``: ``S_ref(t)``,
  shape ``(len(t), n)``; ``saturation``: ``S_ref(inf)``; ``eigenvalues``: the full spectrum
  where the dense path was taken, else ``None``.
  """
  times: dict
  t: np.ndarray
  signatures: np.ndarray
  saturation: np.ndarray
  eigenvalues: np.ndarray | None


def reference_diffusion(ref_adjacency, sources, eps: float = 1e-3, num: int = 25,
                        method: str = 'auto') -> Reference:
  """:class:`Reference` of ``ref_adjacency``: dense ``eigh`` up to ``DENSE_MAX_NODES`` nodes
  (or ``method='dense'``), else Lanczos for the times and Chebyshev for the signatures."""
  n = ref_adjacency.shape[0]
  if method == 'dense' or (method == 'auto' and n <= DENSE_MAX_NODES):
    s = spectrum(ref_adjacency)
    times = times_from_eigenvalues(s.eigenvalues[1], s.eigenvalues[-1], eps, num)
    t = np.append(times['grid'], times['t_star'])
    signatures, eigenvalues = signature_from_spectrum(s, sources, t), s.eigenvalues
  else:
    times = diffusion_times(ref_adjacency, eps, num)
    t = np.append(times['grid'], times['t_star'])
    signatures, eigenvalues = chebyshev_signature(ref_adjacency, sources, t), None
  return Reference(times, t, signatures, saturation_signature(ref_adjacency, sources),
                   eigenvalues)


def distances_to_reference(reference: Reference, adjacency, sources,
                           signatures=None) -> tuple[np.ndarray, float]:
  """``(F(t) for t in reference.t, F(inf))`` (Eq. 6) of ``adjacency`` against ``reference``.

  ``signatures``: ``S(t)`` of ``adjacency`` at ``reference.t`` if already known; computed
  with the matrix-free Chebyshev path otherwise, or with dense ``eigh`` where the series would
  exceed :data:`MAX_CHEBYSHEV_TERMS` on a graph of at most :data:`DENSE_MAX_NODES` nodes.
  """
  if signatures is None:
    long = chebyshev_terms(adjacency, reference.t) > MAX_CHEBYSHEV_TERMS
    dense = long and adjacency.shape[0] <= DENSE_MAX_NODES
    signatures = _signatures(adjacency, sources, reference.t, 'dense' if dense else 'chebyshev')
  f = np.linalg.norm(reference.signatures - signatures, axis=-1)
  f_inf = float(np.linalg.norm(reference.saturation - saturation_signature(adjacency, sources)))
  return f, f_inf

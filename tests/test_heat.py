"""Heat diffusion (Eqs. 3-7) against closed forms, scipy's expm, and the matrix-free path."""
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

from n2nskip_jax.connectivity import heat


def complete(n, w=1.0):
  return w * (np.ones((n, n)) - np.eye(n))


def path(n):
  a = np.zeros((n, n))
  i = np.arange(n - 1)
  a[i, i + 1] = a[i + 1, i] = 1
  return a


def star(n):
  a = np.zeros((n, n))
  a[0, 1:] = a[1:, 0] = 1
  return a


def random_graph(n, density, seed, weighted=True):
  rng = np.random.default_rng(seed)
  upper = np.triu((rng.random((n, n)) < density) * (rng.random((n, n)) if weighted else 1), 1)
  return upper + upper.T


def test_laplacian_is_degree_minus_weights():
  a = random_graph(7, 0.5, 0)
  lap = heat.laplacian(a)
  np.testing.assert_allclose(lap.sum(1), 0, atol=1e-12)
  np.testing.assert_allclose(np.diag(lap), a.sum(1))
  np.testing.assert_allclose(lap - np.diag(np.diag(lap)), -a)


@pytest.mark.parametrize('n,t', [(5, 0.3), (9, 0.05), (4, 2.0)])
def test_complete_graph_closed_form(n, t):
  h = heat.heat_kernel(complete(n), t)
  np.testing.assert_allclose(np.diag(h), (1 + (n - 1) * np.exp(-n * t)) / n, rtol=1e-12)
  off = h[~np.eye(n, dtype=bool)]
  np.testing.assert_allclose(off, (1 - np.exp(-n * t)) / n, rtol=1e-10)
  for k in (0.2, 0.5, 1.0):
    kk = max(1, round(k * (n - 1)))
    assert heat.scree(complete(n), k, t) == pytest.approx(kk / (n - 1), rel=1e-12)


@pytest.mark.parametrize('w,t', [(1.0, 0.7), (2.5, 0.1), (0.3, 4.0)])
def test_two_nodes_closed_form(w, t):
  s = heat.heat_signature(complete(2, w), np.array([1.0, 0.0]), t)
  np.testing.assert_allclose(s, [(1 + np.exp(-2 * w * t)) / 2, (1 - np.exp(-2 * w * t)) / 2],
                             rtol=1e-12)


def test_path_and_star_spectra():
  n = 12
  np.testing.assert_allclose(heat.spectrum(path(n)).eigenvalues,
                             np.sort(2 - 2 * np.cos(np.pi * np.arange(n) / n)), atol=1e-12)
  np.testing.assert_allclose(heat.spectrum(star(n)).eigenvalues,
                             [0] + [1] * (n - 2) + [n], atol=1e-12)


def test_heat_kernel_identity_at_zero_and_columns_sum_to_one():
  a = random_graph(30, 0.2, 1)
  np.testing.assert_allclose(heat.heat_kernel(a, 0.0), np.eye(30), atol=1e-12)
  for t in (0.01, 1.0, 50.0):
    np.testing.assert_allclose(heat.heat_kernel(a, t).sum(0), 1.0, atol=1e-10)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_agrees_with_scipy_expm(seed):
  a = random_graph(40, 0.15, seed)
  lap = np.diag(a.sum(1)) - a
  src = (np.arange(40) < 6).astype(float)
  times = np.array([0.0, 0.03, 0.4, 3.0, 30.0])
  sig = heat.heat_signature(a, src, times)
  assert sig.shape == (5, 40)
  for t, s in zip(times, sig):
    h = scipy.linalg.expm(-t * lap)
    np.testing.assert_allclose(heat.heat_kernel(a, t), h, atol=1e-8)
    np.testing.assert_allclose(s, h @ src, atol=1e-8)


def test_connectivity_distance_is_the_norm_of_signature_differences():
  ref, pruned = random_graph(25, 0.6, 3), random_graph(25, 0.2, 4)
  src = (np.arange(25) < 5).astype(float)
  times = np.array([0.1, 1.0])
  f = heat.connectivity_distance(ref, pruned, src, times)
  want = [np.linalg.norm(scipy.linalg.expm(-t * heat.laplacian(ref)) @ src
                         - scipy.linalg.expm(-t * heat.laplacian(pruned)) @ src) for t in times]
  np.testing.assert_allclose(f, want, atol=1e-9)
  assert isinstance(heat.connectivity_distance(ref, pruned, src, 1.0), float)
  assert heat.connectivity_distance(ref, ref, src, 1.0) == 0


def test_saturation_distance_from_components():
  ref = complete(6)
  src = np.array([1.0, 1, 0, 0, 0, 0])
  connected = path(6)
  assert heat.saturation_distance(ref, connected, src) == 0.0
  # Node 5 isolated; the rest connected: S_inf = 2/5 on nodes 0-4, 0 on node 5.
  broken = path(6)
  broken[4, 5] = broken[5, 4] = 0
  want = np.linalg.norm(np.full(6, 2 / 6) - np.array([0.4] * 5 + [0.0]))
  assert heat.saturation_distance(ref, broken, src) == pytest.approx(want, rel=1e-12)
  # ... and it is the limit of F(t).
  assert heat.connectivity_distance(ref, broken, src, 400.0) == pytest.approx(want, rel=1e-6)


def test_scree_is_finite_and_monotone_for_huge_t():
  a = random_graph(60, 0.1, 5)
  fractions = np.linspace(0.05, 1, 20)
  alpha = heat.scree(a, fractions, 1e6)
  assert np.all(np.isfinite(alpha)) and np.all(np.diff(alpha) >= 0) and alpha[-1] == pytest.approx(1)
  grid = heat.scree(a, fractions, np.array([0.1, 1e6]))
  assert grid.shape == (2, 20)


def test_chebyshev_agrees_with_eigh_on_thousands_of_nodes():
  a = random_graph(2500, 0.004, 6)
  a[np.arange(2499), np.arange(1, 2500)] = a[np.arange(1, 2500), np.arange(2499)] = 0.5  # connect
  src = (np.arange(2500) < 100).astype(float)
  times = heat.diffusion_times(a, num=6)['grid']
  dense = heat.heat_signature(a, src, times, method='dense')
  cheb = heat.heat_signature(sp.csr_matrix(a), src, times, method='chebyshev')
  np.testing.assert_allclose(cheb, dense, atol=1e-9)


def test_diffusion_times_from_the_reference_spectrum():
  n = 10
  times = heat.diffusion_times(path(n), eps=1e-2, num=5)
  lam2 = 2 - 2 * np.cos(np.pi / n)
  assert times['t_star'] == pytest.approx(np.log(100) / lam2)
  assert times['grid'][-1] == pytest.approx(4 * np.log(10) / lam2)
  assert times['grid'][0] == pytest.approx(4 * np.log(10) / (2 - 2 * np.cos(np.pi * (n - 1) / n)))


@pytest.mark.parametrize('bad,match', [(np.ones((2, 3)), 'square'), (np.triu(np.ones((3, 3))), 'symmetric'),
                                       (-complete(3), 'nonnegative')])
def test_bad_adjacency_is_rejected(bad, match):
  with pytest.raises(ValueError, match=match):
    heat.laplacian(bad)


def test_bad_times_are_rejected():
  with pytest.raises(ValueError, match='t must be'):
    heat.heat_signature(complete(3), np.ones(3), -1.0)


def test_weights_far_above_initialization_take_the_dense_path_not_a_nan():
  # A run that blew up can end with weights of 1e8 and more: the Chebyshev series would need
  # millions of terms (and gave NaN); it is refused, and the distances use dense eigh instead.
  n = 40
  w = sp.diags([np.full(n - 1, 1e9)], [1], shape=(n, n))
  w = sp.csr_matrix(w + w.T)
  sources = np.arange(n, dtype=np.float64) % 3
  reference = heat.reference_diffusion(np.ones((n, n)) - np.eye(n), sources)
  assert heat.chebyshev_terms(w, reference.t) > heat.MAX_CHEBYSHEV_TERMS
  with pytest.raises(ValueError, match='dense path'):
    heat.chebyshev_signature(w, sources, reference.t)
  f, _ = heat.distances_to_reference(reference, w, sources)
  expected = np.linalg.norm(reference.signatures - heat.heat_signature(
      w.toarray(), sources, reference.t, method='dense'), axis=-1)
  assert np.all(np.isfinite(f)) and np.allclose(f, expected, rtol=1e-12, atol=0)

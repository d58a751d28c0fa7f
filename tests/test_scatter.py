"""Scatter (Dey et al.): closed-form patterns and whole-network path counts."""
import numpy as np
import pytest
from conftest import make_config

from n2nskip_jax import network
from n2nskip_jax.connectivity import network_graph
from n2nskip_jax.connectivity.graph import Graph
from n2nskip_jax.connectivity.scatter import junction_scatter, network_scatter, path_counts


def test_fully_connected_junction_scores_one():
  assert junction_scatter(np.ones((6, 12)), window=3) == (1.0, 1.0)


@pytest.mark.parametrize('windows', [2, 4, 8])
def test_contiguous_blocks_score_one_over_windows(windows):
  """Each output sees one contiguous window of inputs (and vice versa): 1 / #windows."""
  n = 24
  w = n // windows
  block = np.kron(np.eye(windows), np.ones((w, w)))  # outputs in group g see input window g
  sf, sb = junction_scatter(block, window=w)
  assert sf == pytest.approx(1 / windows) and sb == pytest.approx(1 / windows)


def test_spread_out_junction_beats_clumped_one_at_equal_density():
  spread = np.zeros((8, 8))
  spread[np.arange(8), (np.arange(8) * 3) % 8] = spread[np.arange(8), (np.arange(8) * 3 + 4) % 8] = 1
  clumped = np.zeros((8, 8))
  clumped[:, :2] = 1
  assert spread.sum() == clumped.sum()
  assert junction_scatter(spread, window=4)[0] > junction_scatter(clumped, window=4)[0]


def test_path_counts_match_matrix_products_and_count_skips():
  rng = np.random.default_rng(0)
  a1, a2 = (rng.random((4, 5)) < 0.5) * 1.0, (rng.random((5, 3)) < 0.5) * 1.0
  skip = (rng.random((4, 3)) < 0.5) * 1.0
  chain = Graph([('input', 4), ('h', 5), ('out', 3)], [('input', 'h', a1), ('h', 'out', a2)])
  p, s = path_counts(chain)
  np.testing.assert_allclose(p * np.exp(s), (a1 @ a2).T)
  with_skip = Graph(chain.groups, chain.edges + [('input', 'out', skip)])
  p, s = path_counts(with_skip)
  np.testing.assert_allclose(p * np.exp(s), (a1 @ a2 + skip).T)


def test_dense_networks_score_one_everywhere():
  for overrides in (dict(model='mlp', mlp_hidden=(16, 8)),
                    dict(model='vgg19', vgg_head='cifar', width_multiplier=1 / 16)):
    config = make_config(**overrides)
    _, variables = network.init(config, 10, (32, 32, 3))
    graph = network_graph(config, variables['params'], variables['masks'], mode='binary')
    assert network_scatter(graph) == pytest.approx((1.0, 1.0))

"""Channel graphs of networks: built by hand on tiny models, reference graphs, dead units."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, make_config, run_main

from n2nskip_jax import network, pruning
from n2nskip_jax.connectivity import network_graph


def tiny_mlp(kind='n2nskip', density=0.5):
  config = make_config(model='mlp', mlp_hidden=(3, 2), skip__kind=kind, skip__span=2,
                       pruning__method='rp', pruning__density=density)
  _, variables = network.init(config, 2, (4,))
  masks = pruning.prune(config, variables)
  return config, pruning.apply_masks(variables, masks)


def test_mlp_adjacency_by_hand():
  config, v = tiny_mlp()
  p, m = v['params'], v['masks']
  g = network_graph(config, p, m)
  assert [name for name, _ in g.groups] == ['input', 'dense1', 'dense2', 'head']
  want = np.zeros((11, 11))  # nodes: input 0-3, dense1 4-6, dense2 7-8, head 9-10
  blocks = [('dense1', 0, 4), ('dense2', 4, 7), ('head', 7, 9), ('skip0_2', 0, 7)]
  for name, r0, c0 in blocks:
    k = np.abs(p[name]['kernel'] * m[name]['kernel'])
    want[r0:r0 + k.shape[0], c0:c0 + k.shape[1]] += k
  want = want + want.T
  np.testing.assert_allclose(g.adjacency(), want)
  np.testing.assert_array_equal(g.sources(), [1] * 4 + [0] * 7)
  binary = network_graph(config, p, m, mode='binary').adjacency()
  np.testing.assert_array_equal(binary, (want != 0).astype(float))
  np.testing.assert_allclose(g.adjacency(sparse=True).toarray(), want)


def test_reference_graph_is_the_dense_sequential_parent():
  config, v = tiny_mlp()
  ref = network_graph(config, v['params'], v['masks'], mode='binary', reference=True).adjacency()
  assert ref.shape == (11, 11)
  assert ref[0:4, 4:7].all() and ref[4:7, 7:9].all() and ref[7:9, 9:11].all()
  assert not ref[0:4, 7:9].any()  # no skip edges
  assert ref.sum() == 2 * (4 * 3 + 3 * 2 + 2 * 2)


def test_conv_edges_sum_the_kernel_window_and_resnet_shortcuts_are_identity():
  config = make_config(model='resnet50', width_multiplier=1 / 16, skip__kind='n2nskip',
                       pruning__method='rp', pruning__density=0.3)
  _, v = network.init(config, 10, (8, 8, 3))
  masks = pruning.prune(config, v)
  v = pruning.apply_masks(v, masks)
  g = network_graph(config, v['params'], masks)
  by_pair = {}
  for s, d, w in g.edges:
    by_pair.setdefault((s, d), []).append(w)
  k = np.abs(v['params']['stem']['kernel'] * masks['stem']['kernel']).sum((0, 1))
  np.testing.assert_allclose(by_pair[('input', 'stem')][0], k)
  # stage1_block2 has an identity shortcut and a skip from stage1_block1.
  shortcut, skip = by_pair[('stage1_block1', 'stage1_block2')]
  np.testing.assert_array_equal(shortcut, np.eye(16))
  np.testing.assert_allclose(skip, np.abs(v['params']['stage1_block2']['skip']['kernel']
                                          * masks['stage1_block2']['skip']['kernel']).sum((0, 1)))
  blocks = 3 + 4 + 6 + 3
  widths = [4, 8, 16, 32]
  assert g.num_nodes == 3 + 4 + sum(n * 6 * w for n, w in zip((3, 4, 6, 3), widths)) + 10
  assert len(g.groups) == 2 + 3 * blocks + 1


def run_analyze(*flags):
  return subprocess.run([sys.executable, '-m', 'n2nskip_jax.analyze', *flags], capture_output=True,
                        text=True, env={**os.environ, 'PYTHONPATH': ROOT})


def test_analyze_cli_writes_json_and_plots(tmp_path):
  flags = ['--config=configs/quickstart.py', '--config.dataset=digits', '--config.num_epochs=1',
           '--config.mlp_hidden=(32,16,8)', '--config.pruning.density=0.2', f'--workdir={tmp_path}']
  assert run_main(*flags).returncode == 0
  r = run_analyze(f'--workdir={tmp_path}', '--weights=initial', '--num_times=5')
  assert r.returncode == 0, r.stderr
  out = json.loads((tmp_path / 'connectivity-initial-weighted.json').read_text())
  assert out['nodes'] == 64 + 32 + 16 + 8 + 10 and len(out['F_grid']) == 5
  assert out['weights'] == 'initial' and out['t_star'] > 0 and out['F_t_star'] > 0
  assert (out['F_inf'] == 0) == (out['components'] == 1)
  assert len(out['scree']['curves']) == 3 and 0 < out['scatter']['network_forward'] <= 1
  assert (tmp_path / 'adjacency-initial-weighted.png').stat().st_size > 0
  assert (tmp_path / 'scree-initial-weighted.png').stat().st_size > 0


def test_analyze_cli_without_a_run_fails_cleanly(tmp_path):
  r = run_analyze(f'--workdir={tmp_path}')
  assert r.returncode == 2 and 'train the run first' in r.stderr and 'Traceback' not in r.stderr


@pytest.mark.parametrize('flag', ['--eps=0', '--eps=2', '--num_times=0', '--num_times=-5'])
def test_analyze_cli_refuses_out_of_range_flags_in_one_line(tmp_path, flag):
  r = run_analyze(f'--workdir={tmp_path}', flag)
  assert r.returncode == 2 and 'Traceback' not in r.stderr
  assert r.stderr.strip().splitlines()[-1].startswith(f'error: flag {flag.split("=")[0]}=')


def test_adjacency_plot_marks_and_names_the_layers(tmp_path, monkeypatch):
  from n2nskip_jax.connectivity import plots
  kept = []
  monkeypatch.setattr(plots.plt, 'close', kept.append)
  groups = [('input', 3), ('dense1', 4), ('head', 2)]
  a = np.zeros((9, 9))
  a[0, 3] = a[3, 0] = a[4, 7] = a[7, 4] = 1
  plots.plot_adjacency(a, a, str(tmp_path / 'adjacency.png'), 'title', groups=groups)
  ax = kept[0].axes[0]
  assert [t.get_text() for t in ax.get_xticklabels()] == ['input', 'dense1', 'head']
  assert len(ax.lines) == 4  # a horizontal and a vertical line at each of the 2 boundaries
  assert ax.get_xlabel() and (tmp_path / 'adjacency.png').stat().st_size > 0

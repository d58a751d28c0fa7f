"""Counting masks: dead units over each model's structure, N_ref, nonzero counts."""
import jax
import numpy as np
import pytest
from conftest import make_config

from n2nskip_jax import network, pruning, sparsity


def tiny_mlp(kind='none'):
  config = make_config(model='mlp', mlp_hidden=(3, 2), skip__kind=kind, skip__span=2,
                       pruning__method='rp', pruning__density=1.0)
  _, variables = network.init(config, 2, (4,))
  return config, variables


def test_dead_units_counts_hidden_nodes_without_input_or_output():
  config, v = tiny_mlp()
  masks = {k: {'kernel': np.ones_like(m['kernel'])} for k, m in v['masks'].items()}
  masks['dense1']['kernel'][:, 0] = 0      # dense1 unit 0: no input
  masks['dense2']['kernel'][1, :] = 0      # dense1 unit 1: no output
  masks['head']['kernel'][0, :] = 0        # dense2 unit 0: no output
  assert sparsity.dead_units(config, masks) == 3



def test_dead_units_see_identity_shortcuts_and_skips():
  """A ResNet unit fed only by its identity shortcut is alive; an N2NSkip MLP unit fed only by
  its skip is alive."""
  config = make_config(model='resnet50', width_multiplier=1 / 16, pruning__method='rp',
                       pruning__density=0.5)
  _, v = network.init(config, 10, (8, 8, 3))
  masks = {k: {kk: {'kernel': np.ones_like(m['kernel'])} for kk, m in blk.items()}
           if 'kernel' not in blk else {'kernel': np.ones_like(blk['kernel'])}
           for k, blk in v['masks'].items()}
  assert sparsity.dead_units(config, masks) == 0
  masks['stage1_block2']['conv3']['kernel'][:] = 0
  # conv2's 4 units lose their only output; the block's output units live on the identity.
  assert sparsity.dead_units(config, masks) == 4
  config, v = tiny_mlp(kind='n2nskip')
  masks = {k: {'kernel': np.ones_like(m['kernel'])} for k, m in v['masks'].items()}
  masks['dense2']['kernel'][:] = 0  # dense2 fed by skip0_2 only; dense1 now has no output
  assert sparsity.dead_units(config, masks) == 3


def test_reference_weights_count_the_network_without_skips():
  config, v = tiny_mlp(kind='n2nskip')
  ref = network.abstract(make_config(model='mlp', mlp_hidden=(3, 2)), 2, (4,))[1]
  assert sparsity.reference_weights(v['masks']) == sparsity.count(ref['masks']) == 4 * 3 + 3 * 2 + 2 * 2
  assert sparsity.skip_weights(v['masks']) == 4 * 2
  config.pruning.density = 0.5
  masks = pruning.prune(config, v)
  assert sparsity.nonzero(masks) == round(0.5 * sparsity.reference_weights(masks))


@pytest.mark.parametrize('kind,reachable', [('none', 0), ('resskip', 10)])
def test_an_empty_layer_is_collapse_only_without_a_path_around_it(kind, reachable):
  """ResSkip's identity from dense1 to dense3 carries the signal around an emptied dense2."""
  config = make_config(model='mlp', mlp_hidden=(8, 8, 8), dataset='digits', skip__kind=kind,
                       skip__span=2)
  _, variables = network.init(config, 10, (8, 8, 1))
  masks = jax.tree.map(np.asarray, variables['masks'])
  masks['dense2']['kernel'] = np.zeros_like(masks['dense2']['kernel'])
  if kind == 'resskip':
    masks['skip0_2']['kernel'] = np.zeros_like(masks['skip0_2']['kernel'])
  assert sparsity.reachable_outputs(config, masks) == reachable


def test_the_layer_table_lists_sequential_layers_in_natural_order_then_skips():
  masks = {f'conv{i}': {'kernel': np.ones((3, 3, 2, 2))} for i in (1, 10, 2)}
  masks['skip1_4'] = {'kernel': np.ones((3, 3, 2, 2))}
  masks['head'] = {'kernel': np.ones((2, 10))}
  names = [r['layer'] for r in sparsity.layer_table(masks)]
  assert names == ['conv1', 'conv2', 'conv10', 'head', 'skip1_4']

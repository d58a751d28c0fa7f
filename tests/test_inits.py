"""Initializers of the paper's framework (config.init='torch') and pruning.rescale."""
import numpy as np
import pytest
from conftest import make_config
from flax import traverse_util

from n2nskip_jax import network, pruning


def kernels(config, input_shape):
  _, variables = network.init(config, 10, input_shape)
  return variables, traverse_util.flatten_dict(variables['params'])


def fans(kernel):
  receptive = int(np.prod(kernel.shape[:-2])) if kernel.ndim > 2 else 1
  return receptive * kernel.shape[-2], receptive * kernel.shape[-1]


def assert_std(values, expected, rel=0.05):
  assert np.std(values) == pytest.approx(expected, rel=rel), (np.std(values), expected)
  assert abs(np.mean(values)) < 0.1 * expected


def assert_linear_default(flat, layer):
  """nn.Linear's default: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  w, b = np.asarray(flat[layer + ('kernel',)]), np.asarray(flat[layer + ('bias',)])
  bound = 1 / np.sqrt(w.shape[0])
  assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
  assert_std(w, bound / np.sqrt(3))  # std of U(-a, a) is a / sqrt(3)
  assert np.abs(b).max() > 0.5 * bound  # a spread, not the zeros of Flax's default


def test_mlp_and_its_skips_use_nn_linear_default():
  config = make_config(model='mlp', mlp_hidden=(512, 256, 128, 64), skip__kind='n2nskip')
  _, flat = kernels(config, (40,))
  layers = {p[:-1] for p in flat}
  assert ('skip0_3',) in layers and ('skip1_4',) in layers
  for layer in layers:
    if flat[layer + ('kernel',)].size >= 10_000:
      assert_linear_default(flat, layer)


def test_vgg_convs_are_kaiming_fan_out_and_linears_normal_001():
  config = make_config(model='vgg19', vgg_head='paper', width_multiplier=0.25, skip__kind='n2nskip')
  variables, flat = kernels(config, (32, 32, 3))
  checked = set()
  for path, w in flat.items():
    w = np.asarray(w)
    if path[-1] != 'kernel' or w.size < 20_000:
      continue
    if w.ndim == 4:  # sequential and skip convs: N(0, 2 / fan_out)
      assert_std(w, np.sqrt(2 / fans(w)[1]))
      checked.add('skip' if path[0].startswith('skip') else 'conv')
    else:  # fc1, fc2, head: N(0, 0.01^2), zero bias
      assert_std(w, 0.01)
      assert not np.any(flat[path[:-1] + ('bias',)])
      checked.add('linear')
  assert checked == {'conv', 'skip', 'linear'}
  bn = traverse_util.flatten_dict(variables['params'])[('bn1', 'scale')]
  assert np.all(np.asarray(bn) == 1)


def test_resnet_convs_kaiming_fan_out_and_head_nn_linear():
  config = make_config(model='resnet50', width_multiplier=0.25, skip__kind='n2nskip')
  _, flat = kernels(config, (16, 16, 3))
  checked = set()
  for path, w in flat.items():
    w = np.asarray(w)
    if path[-1] == 'kernel' and w.ndim == 4 and w.size >= 20_000:
      assert_std(w, np.sqrt(2 / fans(w)[1]))
      checked.add(path[-2])
  assert {'conv1', 'conv2', 'conv3', 'proj', 'skip'} <= checked
  assert_linear_default(flat, ('head',))


def test_flax_init_keeps_lecun_normal():
  config = make_config(model='mlp', mlp_hidden=(512, 256, 128, 64), init='flax')
  _, flat = kernels(config, (40,))
  w = np.asarray(flat[('dense2', 'kernel')])
  assert_std(w, np.sqrt(1 / w.shape[0]))
  assert not np.any(flat[('dense2', 'bias')])


@pytest.mark.parametrize('kind', ['none', 'n2nskip'])
def test_rescale_restores_per_unit_fan_in_variance_and_keeps_the_count(kind):
  config = make_config(model='mlp', mlp_hidden=(512, 256, 128, 64), pruning__method='rp',
                       pruning__density=0.05, skip__kind=kind)
  _, variables = network.init(config, 10, (40,))
  masks = pruning.prune(config, variables)
  plain = traverse_util.flatten_dict(pruning.apply_masks(variables, masks)['params'])
  scaled = traverse_util.flatten_dict(
      pruning.apply_masks(variables, masks, rescale=True)['params'])
  flat_masks = traverse_util.flatten_dict(masks)
  assert sum(np.count_nonzero(w) for p, w in scaled.items() if p[-1] == 'kernel') == \
      pruning.budgets(config, masks)['total']
  x = np.random.default_rng(0).normal(size=(4096, 512))
  for path, m in flat_masks.items():
    kernel = np.asarray(traverse_util.flatten_dict(variables['params'])[path])
    m = np.asarray(m)
    surviving = m.sum(0)
    expected = np.where(surviving > 0, np.sqrt(m.shape[0] / np.maximum(surviving, 1)), 0)
    np.testing.assert_allclose(scaled[path], kernel * m * expected, rtol=1e-6)
    if path == ('dense2', 'kernel'):  # pre-activation variance per unit, on unit-variance input
      alive = surviving > 0
      var = lambda w: (x @ np.asarray(w, np.float64))[:, alive].var(0).mean()
      dense_var = var(kernel)
      assert var(scaled[path]) == pytest.approx(dense_var, rel=0.15)
      assert var(plain[path]) == pytest.approx(m.mean() * dense_var, rel=0.3)  # density x dense

"""Initializers of the paper's framework (config.init='torch') against their formulas."""
import numpy as np
import pytest
from conftest import TINY_MODELS, make_config
from flax import traverse_util

from n2nskip_jax import network


def kernels(config, input_shape):
  _, variables = network.init(config, 10, input_shape)
  return variables, traverse_util.flatten_dict(variables['params'])


def fans(kernel):
  receptive = int(np.prod(kernel.shape[:-2])) if kernel.ndim > 2 else 1
  return receptive * kernel.shape[-2], receptive * kernel.shape[-1]


def assert_std(values, expected, rel=0.05):
  """std within ``rel`` of ``expected``, or within 4 standard errors for a small sample (the
  standard error of a normal sample's std is about ``std / sqrt(2 n)``)."""
  rel = max(rel, 4 / np.sqrt(2 * np.size(values)))
  assert np.std(values) == pytest.approx(expected, rel=rel), (np.std(values), expected)
  assert abs(np.mean(values)) < max(0.1, 4 / np.sqrt(np.size(values))) * expected


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
  """At the tests' shared reduced width: every conv, each to the precision its size allows."""
  overrides, shape = TINY_MODELS['resnet50']
  _, flat = kernels(make_config(**overrides, skip__kind='n2nskip'), shape)
  checked = set()
  for path, w in flat.items():
    w = np.asarray(w)
    if path[-1] == 'kernel' and w.ndim == 4 and w.size >= 500:
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

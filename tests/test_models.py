"""Model shapes and parameter counts (jax.eval_shape, no compile) and masked-layer semantics."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_MODELS, make_config
from flax import traverse_util

from n2nskip_jax import network, pruning, sparsity
from n2nskip_jax.models import create_model
from n2nskip_jax.models.vgg import VGG19_LAYERS, adaptive_avg_pool


def shapes(config, num_classes, input_shape, **kw):
  model = create_model(config, num_classes, **kw)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)),
                                           train=False))


def vgg_count(num_classes, head):
  """VGG19-BN counted by hand: bias-free 3x3 convs, BN scale+bias, dense kernels+biases."""
  widths = [c for c in VGG19_LAYERS if c != 'M']
  convs = sum(9 * a * b for a, b in zip([3] + widths[:-1], widths)) + 2 * sum(widths)
  if head == 'cifar':
    return convs + 512 * num_classes + num_classes
  return convs + (512 * 49 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * num_classes


@pytest.mark.parametrize('overrides,num_classes,input_shape,expected', [
    (dict(model='resnet50'), 10, (32, 32, 3), 23_520_842),       # ResNet50-CIFAR-10
    (dict(model='resnet50', resnet_stem='imagenet'), 1000, (224, 224, 3), 25_557_032),
    (dict(model='vgg19'), 1000, (224, 224, 3), 143_678_248 - 5504),  # torchvision vgg19_bn - conv biases
    (dict(model='vgg19'), 10, (32, 32, 3), vgg_count(10, 'paper')),
    (dict(model='vgg19', vgg_head='cifar'), 10, (32, 32, 3), vgg_count(10, 'cifar')),
    (dict(model='mlp'), 10, (32, 32, 3),
     3072 * 512 + 512 * 256 + 256 * 128 + 128 * 64 + 64 * 10 + 512 + 256 + 128 + 64 + 10),
])
def test_parameter_counts(overrides, num_classes, input_shape, expected):
  variables = shapes(make_config(**overrides), num_classes, input_shape)
  assert sparsity.count(variables['params']) == expected


@pytest.mark.parametrize('model', ['mlp', 'vgg19', 'resnet50'])
def test_masks_mirror_kernels(model):
  variables = shapes(make_config(model=model), 10, (32, 32, 3))
  kernels = {p[:-1]: v.shape for p, v in traverse_util.flatten_dict(variables['params']).items()
             if p[-1] == 'kernel'}
  masks = {p[:-1]: v.shape for p, v in traverse_util.flatten_dict(variables['masks']).items()}
  assert masks == kernels and len(masks) > 0


@pytest.mark.parametrize('overrides,input_shape', [
    (dict(model='mlp', mlp_hidden=(16, 8)), (6, 6, 1)),
    TINY_MODELS['vgg19'], TINY_MODELS['resnet50'],
])
def test_masked_model_equals_plain_twin_with_masked_kernels(overrides, input_shape):
  """Masked forward pass == plain Flax twin run on ``kernel * mask``."""
  config = make_config(**overrides)
  model, variables = network.init(config, 10, input_shape)
  rng = np.random.default_rng(0)
  masks = jax.tree.map(lambda m: (rng.random(m.shape) < 0.5).astype(np.float32), variables['masks'])
  x = jnp.asarray(rng.normal(size=(4, *input_shape)), jnp.float32)
  twin = create_model(config, 10, plain=True)
  masked_params = pruning.apply_masks(variables, masks)['params']
  stats = {'batch_stats': variables['batch_stats']} if 'batch_stats' in variables else {}
  apply = jax.jit(lambda v: model.apply(v, x, train=False))
  got = apply({**variables, 'masks': masks})
  want = jax.jit(lambda v: twin.apply(v, x, train=False))({'params': masked_params, **stats})
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # And the mask matters: all-ones masks give a different output.
  assert not np.allclose(apply(variables), got, atol=1e-4)


def test_plain_twin_has_no_masks():
  variables = shapes(make_config(model='mlp'), 10, (8,), plain=True)
  assert set(variables) == {'params'}


@pytest.mark.parametrize('n_in', [1, 5, 14])
def test_adaptive_avg_pool_matches_direct_bins(n_in):
  x = np.random.default_rng(1).normal(size=(2, n_in, n_in, 3)).astype(np.float32)
  got = np.asarray(adaptive_avg_pool(jnp.asarray(x), 7))
  want = np.zeros((2, 7, 7, 3), np.float32)
  for i in range(7):
    for j in range(7):
      hs = slice(i * n_in // 7, -(-(i + 1) * n_in // 7))
      ws = slice(j * n_in // 7, -(-(j + 1) * n_in // 7))
      want[:, i, j] = x[:, hs, ws].mean(axis=(1, 2))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_bf16_compute_keeps_float32_params():
  config = make_config(model='mlp', mlp_hidden=(8,), half_precision=True)
  model, variables = network.init(config, 3, (5,))
  assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(variables['params']))
  assert model.apply(variables, jnp.ones((2, 5))).dtype == jnp.bfloat16


@pytest.mark.parametrize('size,channels,kernel,stride,padding', [
    (2, 8, 3, 1, 'SAME'), (5, 4, 3, 2, 'SAME'), (8, 3, 7, 2, [(3, 3), (3, 3)]),
    (4, 8, 1, 2, 'SAME'), (6, 5, 3, 1, 'VALID'), (4, 3, 1, 1, 'SAME')])
def test_conv_as_patches_matmul_equals_xla_conv_and_its_gradients(size, channels, kernel, stride,
                                                                  padding):
  from jax import lax

  from n2nskip_jax.execution.layers import conv_patches
  rng = np.random.default_rng(size + channels)
  x = jnp.asarray(rng.normal(size=(3, size, size, channels)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, channels, 6)), jnp.float32)
  xla = lambda x, w: lax.conv_general_dilated(x, w, (stride, stride), padding,
                                              dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  mine = lambda x, w: conv_patches(x, w, (stride, stride), padding)
  np.testing.assert_allclose(mine(x, w), xla(x, w), rtol=1e-5, atol=1e-5)
  loss = lambda f: lambda x, w: jnp.sum(f(x, w) ** 2)
  for a, b in zip(jax.grad(loss(mine), (0, 1))(x, w), jax.grad(loss(xla), (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_vgg_with_patches_convs_equals_xla_convs():
  """execution.conv changes how convolutions run, not what they compute (skips included)."""
  from n2nskip_jax import execution
  outs = {}
  for impl in ('xla', 'patches'):
    config = make_config(model='vgg19', vgg_head='cifar', width_multiplier=1 / 16,
                         skip__kind='n2nskip', execution__conv=impl)
    _, variables = network.init(config, 10, (32, 32, 3))
    model = execution.plan(config, variables['masks'], 'cpu').model(config, 10)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 32, 32, 3)), jnp.float32)
    loss = lambda p: jnp.sum(model.apply({**variables, 'params': p}, x, train=False) ** 2)
    run = jax.jit(lambda p: (model.apply({**variables, 'params': p}, x, train=False),
                             jax.grad(loss)(p)))
    outs[impl] = run(variables['params'])
  np.testing.assert_allclose(outs['patches'][0], outs['xla'][0], rtol=1e-4, atol=1e-4)
  for a, b in zip(jax.tree.leaves(outs['patches'][1]), jax.tree.leaves(outs['xla'][1])):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)


def test_auto_runs_1x1_convs_as_matmuls_on_cpu_with_xlas_result():
  """execution.conv='auto' on CPU ('small_maps'): a 1x1 conv (any map size) is a matmul, not an
  XLA convolution."""
  from n2nskip_jax.execution.layers import Conv
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 6)), jnp.float32)
  outs = {}
  for impl in ('small_maps', 'xla'):
    layer = Conv(8, (1, 1), strides=2, algorithm=impl)
    variables = layer.init(jax.random.PRNGKey(0), x)
    outs[impl] = layer.apply(variables, x)
    convs = str(jax.make_jaxpr(lambda x: layer.apply(variables, x))(x)).count('conv_general_dilated')
    assert convs == (impl == 'xla')
  np.testing.assert_allclose(outs['small_maps'], outs['xla'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('size', [(8, 8), (7, 5)])
def test_max_pool_2x2_equals_flax_max_pool_and_its_gradient(size):
  from n2nskip_jax.execution.layers import max_pool_2x2
  import flax.linen as nn
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, *size, 3)), jnp.float32)  # no ties
  flax_pool = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(max_pool_2x2(x), flax_pool(x))
  loss = lambda f: lambda x: jnp.sum(jnp.sin(f(x)))
  np.testing.assert_array_equal(jax.grad(loss(max_pool_2x2))(x), jax.grad(loss(flax_pool))(x))

"""Masked VGG19 with BatchNorm and optional skip connections.

Convolutions are 3x3, bias-free and followed by BatchNorm and ReLU; 2x2 max-pooling
follows the layers marked ``'M'``. Two heads:

* ``'paper'``: adaptive average pooling to 7x7 then 4096-4096-classes (the ImageNet-style
  classifier the paper's Table 1 counts, 143M parameters at 1000 classes; no dropout);
* ``'cifar'``: a single linear layer on the 1x1x512 map (~20M parameters).

Skip placement is :mod:`n2nskip_jax.models.skips` over the 16 conv layers; a skip's stride
is ``2 ** (number of poolings inside its span)``.
"""
import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from n2nskip_jax.layers import MaskedConv, MaskedDense, batch_norm, max_pool_2x2
from n2nskip_jax.models import inits
from n2nskip_jax.models.skips import Edge, chain_edges, skip_name, skip_sources

ModuleDef = Any

VGG19_LAYERS = (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M',
                512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M')
NUM_CONVS = sum(c != 'M' for c in VGG19_LAYERS)  # 16
HEADS = ('paper', 'cifar')


def _adaptive_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
  """Row ``i`` averages input bins ``[floor(i n_in / n_out), ceil((i+1) n_in / n_out))``."""
  p = np.zeros((n_out, n_in), np.float32)
  for i in range(n_out):
    lo, hi = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
    p[i, lo:hi] = 1.0 / (hi - lo)
  return p


def adaptive_avg_pool(x: jnp.ndarray, size: int) -> jnp.ndarray:
  """Average-pools an NHWC map to ``size x size`` (as PyTorch's AdaptiveAvgPool2d)."""
  ph = _adaptive_pool_matrix(x.shape[1], size)
  pw = _adaptive_pool_matrix(x.shape[2], size)
  return jnp.einsum('bhwc,ih,jw->bijc', x, ph.astype(x.dtype), pw.astype(x.dtype))


def conv_plan(layers, width_multiplier: float) -> tuple[list[int], list[bool]]:
  """``(widths of conv 1..L, pooled)``: ``pooled[l]`` says a max-pool follows layer ``l``
  (``l = 0`` is the input, never pooled)."""
  widths = [max(1, int(c * width_multiplier)) for c in layers if c != 'M']
  pooled = [False]
  for c in layers:
    if c == 'M':
      pooled[-1] = True
    else:
      pooled.append(False)
  return widths, pooled


def skip_stride(pooled, source: int, target: int) -> int:
  """A skip's stride: ``2 ** (poolings inside its span)``."""
  return 2 ** sum(pooled[source:target])


def edges(config, built: set[tuple[str, ...]]) -> list[Edge]:
  """VGG19's structure: ``input -> conv1 -> ... -> conv16 -> [fc1 -> fc2 ->] head``, skips;
  ``built``: the layers holding a kernel (:func:`chain_edges`)."""
  names = [f'conv{j}' for j in range(1, NUM_CONVS + 1)]
  names += ['head'] if config.vgg_head == 'cifar' else ['fc1', 'fc2', 'head']
  return chain_edges(names, NUM_CONVS, config.skip.kind, config.skip.span, built)


def max_skip_span(config) -> int:
  """A skip spans at most every conv layer (from the input to the last)."""
  del config
  return NUM_CONVS


class VGG(nn.Module):
  """VGG with masked layers. The layers are arguments (``conv``, ``dense``, ``norm`` and
  ``pool``, the 2x2 max-pooling): plain Flax layers for a twin, or the execution plan's.

  ``init_scheme='torch'``: torchvision's VGG scheme (:mod:`n2nskip_jax.models.inits`), skip and
  projection convs included. ``skip_affine=False``: the skips' BatchNorms normalize without
  scale and shift (nothing trainable in a skip but its masked kernel).
  """
  num_classes: int = 10
  head: str = 'paper'
  layers: Sequence[Any] = VGG19_LAYERS
  width_multiplier: float = 1.0
  skip_kind: str = 'none'
  skip_span: int = 3
  skip_kernel_size: int = 3
  skip_affine: bool = True
  dtype: Any = None
  init_scheme: str = 'torch'
  bn_axis_name: str | None = None
  conv: ModuleDef = MaskedConv
  dense: ModuleDef = MaskedDense
  norm: ModuleDef = nn.BatchNorm
  pool: Callable = max_pool_2x2

  @nn.compact
  def __call__(self, x, train: bool = True):
    norm = batch_norm(self.norm, train, self.dtype, self.bn_axis_name)
    widths, pooled = conv_plan(self.layers, self.width_multiplier)
    sources = skip_sources(len(widths), self.skip_span, self.skip_kind)
    acts, h = [x], x
    for j, width in enumerate(widths, start=1):
      z = self._conv(width, (3, 3), name=f'conv{j}')(h)
      z = norm(name=f'bn{j}')(z)
      if j in sources:
        src = sources[j]
        stride = skip_stride(pooled, src, j)
        z = z + self._skip(acts[src], width, stride, norm, skip_name(src, j))
      acts.append(nn.relu(z))
      h = self.pool(acts[-1]) if pooled[j] else acts[-1]
    linear = lambda width, name: self.dense(width, dtype=self.dtype, name=name,
                                            **inits.vgg_linear(self.init_scheme))
    if self.head == 'cifar':
      return linear(self.num_classes, 'head')(h.reshape((h.shape[0], -1)))
    h = adaptive_avg_pool(h, 7).reshape((h.shape[0], -1))
    fc = max(1, int(4096 * self.width_multiplier))
    h = nn.relu(linear(fc, 'fc1')(h))
    h = nn.relu(linear(fc, 'fc2')(h))
    return linear(self.num_classes, 'head')(h)

  def _conv(self, width, kernel_size, **kwargs):
    return self.conv(width, kernel_size, use_bias=False, dtype=self.dtype,
                     **inits.conv(self.init_scheme), **kwargs)

  def _skip(self, a, width, stride, norm, name):
    norm = functools.partial(norm, use_scale=self.skip_affine, use_bias=self.skip_affine)
    if self.skip_kind == 'n2nskip':  # Eq. 2: g(BN(conv_skip(a^l))).
      k = self.skip_kernel_size
      y = self._conv(width, (k, k), strides=stride, name=name)(a)
      return nn.relu(norm(name=f'{name}_bn')(y))
    if a.shape[-1] == width and stride == 1:  # Eq. 1, identity.
      return a
    y = self._conv(width, (1, 1), strides=stride, name=name)(a)
    return norm(name=f'{name}_bn')(y)


def build(config, num_classes: int, dtype, bn_axis_name, layers: dict) -> VGG:
  """VGG19 of ``config`` (``vgg_head``, ``width_multiplier``, ``skip.*``, ``init``), its
  BatchNorm averaged over ``bn_axis_name``; ``layers``: any of ``conv``, ``dense``, ``norm``,
  ``pool``."""
  return VGG(num_classes=num_classes, head=config.vgg_head,
             width_multiplier=config.width_multiplier, skip_kind=config.skip.kind,
             skip_span=config.skip.span, skip_kernel_size=config.skip.kernel_size,
             skip_affine=config.skip.affine, dtype=dtype, init_scheme=config.init,
             bn_axis_name=bn_axis_name, **layers)

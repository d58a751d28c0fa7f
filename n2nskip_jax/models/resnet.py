"""Masked ResNet50 (bottleneck v1.5: stride on the 3x3 conv), CIFAR or ImageNet stem.

CIFAR form: 3x3 stride-1 stem, no max-pool. ImageNet form: 7x7 stride-2 stem and a 3x3
stride-2 max-pool. Convolutions are bias-free and followed by BatchNorm; shortcuts are
identity, or a 1x1 projection + BatchNorm where the shape changes.

N2NSkip placement: one skip per bottleneck, spanning its three convs (``k = 3``): from the
block input ``a^l`` (``C_l`` channels) to the pre-activation of its last conv
(``C_{l+3}`` channels), an ``f x f`` masked conv with the block's stride, then BatchNorm and
ReLU (Eq. 2), added next to the residual: ``relu(bn3(conv3) + shortcut + relu(bn(skip(x))))``.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn

from n2nskip_jax import checks
from n2nskip_jax.layers import MaskedConv, MaskedDense, batch_norm
from n2nskip_jax.models import inits
from n2nskip_jax.models.skips import INPUT, SKIP_PREFIX, Edge

ModuleDef = Any
STEMS = ('cifar', 'imagenet')


def block_names(stage_sizes=(3, 4, 6, 3)) -> list[str]:
  return [f'stage{i + 1}_block{b + 1}' for i, n in enumerate(stage_sizes) for b in range(n)]


def edges(config, built: set[tuple[str, ...]], stage_sizes=(3, 4, 6, 3)) -> list[Edge]:
  """ResNet's structure: ``input -> stem``; per bottleneck ``b``: ``conv1`` and ``conv2``
  groups, then its output group ``b`` (``conv3``, the shortcut: its projection where one was
  built, in each stage's first block, else an identity; and the skip); then ``head``.
  ``built``: the layers holding a kernel."""
  out, prev = [Edge(INPUT, 'stem', ('stem',))], 'stem'
  for b in block_names(stage_sizes):
    proj = (b, 'proj')
    out += [Edge(prev, f'{b}/conv1', (b, 'conv1')), Edge(f'{b}/conv1', f'{b}/conv2', (b, 'conv2')),
            Edge(f'{b}/conv2', b, (b, 'conv3')), Edge(prev, b, proj if proj in built else None)]
    if config.skip.kind == 'n2nskip':
      out.append(Edge(prev, b, (b, SKIP_PREFIX)))
    prev = b
  return out + [Edge(prev, 'head', ('head',))]


def max_skip_span(config) -> int:
  """One skip per bottleneck, spanning its three convs."""
  del config
  return 3


def check_config(config) -> None:
  """ResNet50's own constraints on the skip keys."""
  checks.check(config, 'skip.span', lambda v: v == 3, '3 for resnet50 (one skip per bottleneck)')
  checks.check(config, 'skip.kind', lambda v: v != 'resskip',
               "'none', 'n2nskip' or 'sequential' for resnet50 (it already has residual "
               "shortcuts: 'resskip' would add a second identity)")


class Bottleneck(nn.Module):
  filters: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  skip_kind: str = 'none'
  skip_kernel_size: int = 3
  skip_affine: bool = True

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.norm(name='bn1')(self.conv(self.filters, (1, 1), name='conv1')(x)))
    y = self.conv(self.filters, (3, 3), strides=self.strides, name='conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.norm(name='bn3')(self.conv(4 * self.filters, (1, 1), name='conv3')(y))
    shortcut = x
    if x.shape[-1] != 4 * self.filters or self.strides != 1:
      shortcut = self.conv(4 * self.filters, (1, 1), strides=self.strides, name='proj')(x)
      shortcut = self.norm(name='proj_bn')(shortcut)
    if self.skip_kind == 'n2nskip':
      k = self.skip_kernel_size
      s = self.conv(4 * self.filters, (k, k), strides=self.strides, name=SKIP_PREFIX)(x)
      s = self.norm(use_scale=self.skip_affine, use_bias=self.skip_affine,
                    name=f'{SKIP_PREFIX}_bn')(s)
      y = y + nn.relu(s)
    return nn.relu(y + shortcut)


class ResNet(nn.Module):
  """ResNet with masked layers. The layers are arguments (``conv``, ``dense``, ``norm``):
  plain Flax layers for a twin, or the execution plan's.

  ``init_scheme='torch'``: torchvision's ResNet scheme (:mod:`n2nskip_jax.models.inits`): every
  conv (skips and projections too) ``kaiming_normal_`` fan-out, the classifier ``nn.Linear``'s.
  ``skip_affine=False``: the skips' BatchNorms normalize without scale and shift.
  """
  num_classes: int = 10
  stage_sizes: Sequence[int] = (3, 4, 6, 3)
  stem: str = 'cifar'
  width_multiplier: float = 1.0
  skip_kind: str = 'none'
  skip_kernel_size: int = 3
  skip_affine: bool = True
  dtype: Any = None
  init_scheme: str = 'torch'
  bn_axis_name: str | None = None
  conv: ModuleDef = MaskedConv
  dense: ModuleDef = MaskedDense
  norm: ModuleDef = nn.BatchNorm

  @nn.compact
  def __call__(self, x, train: bool = True):
    conv = functools.partial(self.conv, use_bias=False, dtype=self.dtype, **inits.conv(self.init_scheme))
    norm = batch_norm(self.norm, train, self.dtype, self.bn_axis_name)
    width = max(1, int(64 * self.width_multiplier))
    if self.stem == 'cifar':
      x = nn.relu(norm(name='stem_bn')(conv(width, (3, 3), name='stem')(x)))
    else:
      x = conv(width, (7, 7), strides=2, padding=[(3, 3), (3, 3)], name='stem')(x)
      x = nn.relu(norm(name='stem_bn')(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    names = iter(block_names(self.stage_sizes))
    for i, blocks in enumerate(self.stage_sizes):
      for b in range(blocks):
        x = Bottleneck(width * 2**i, 2 if (i > 0 and b == 0) else 1, conv, norm,
                       self.skip_kind, self.skip_kernel_size, self.skip_affine,
                       name=next(names))(x)
    x = x.mean(axis=(1, 2))
    return self.dense(self.num_classes, dtype=self.dtype, name='head',
                      **inits.linear(self.init_scheme, x.shape[-1]))(x)


def build(config, num_classes: int, dtype, bn_axis_name, layers: dict) -> ResNet:
  """ResNet50 of ``config`` (``resnet_stem``, ``width_multiplier``, ``skip.*``, ``init``), its
  BatchNorm averaged over ``bn_axis_name``; ``layers``: any of ``conv``, ``dense``, ``norm``."""
  return ResNet(num_classes=num_classes, stem=config.resnet_stem,
                width_multiplier=config.width_multiplier, skip_kind=config.skip.kind,
                skip_kernel_size=config.skip.kernel_size, skip_affine=config.skip.affine,
                dtype=dtype, init_scheme=config.init, bn_axis_name=bn_axis_name, **layers)

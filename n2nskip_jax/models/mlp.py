"""Masked MLP (paper: 3072-512-256-128-64-classes) with optional skip connections."""
from typing import Any, Sequence

import flax.linen as nn

from n2nskip_jax.layers import MaskedDense
from n2nskip_jax.models import inits
from n2nskip_jax.models.skips import Edge, chain_edges, skip_name, skip_sources

ModuleDef = Any


class MLP(nn.Module):
  """ReLU MLP; ``dense`` is the layer class (``MaskedDense``, or ``nn.Dense`` for a twin).

  Skips follow :mod:`n2nskip_jax.models.skips`: hidden layer ``j`` gets one from ``a^{j-k}``
  (``a^0`` being the flattened input). Every layer, skips included, is initialized as
  ``nn.Linear`` (``init_scheme='torch'``, :mod:`n2nskip_jax.models.inits`) or with Flax's defaults.
  ``skip_affine=False``: N2NSkip's skip layers have no bias (nothing trainable but their
  masked kernel).
  """
  hidden: Sequence[int] = (512, 256, 128, 64)
  num_classes: int = 10
  skip_kind: str = 'none'
  skip_span: int = 3
  skip_affine: bool = True
  dtype: Any = None
  init_scheme: str = 'torch'
  dense: ModuleDef = MaskedDense

  @nn.compact
  def __call__(self, x, train: bool = True):
    del train  # No BatchNorm or dropout.
    acts = [x.reshape((x.shape[0], -1))]
    sources = skip_sources(len(self.hidden), self.skip_span, self.skip_kind)
    for j, width in enumerate(self.hidden, start=1):
      z = self._linear(width, acts[-1], name=f'dense{j}')
      if j in sources:
        z = z + self._skip(acts[sources[j]], width, skip_name(sources[j], j))
      acts.append(nn.relu(z))
    return self._linear(self.num_classes, acts[-1], name='head')

  def _linear(self, width, x, **kwargs):
    return self.dense(width, dtype=self.dtype, **inits.linear(self.init_scheme, x.shape[-1]),
                      **kwargs)(x)

  def _skip(self, a, width, name):
    if self.skip_kind == 'n2nskip':  # Eq. 2: g(skip(a^l)).
      return nn.relu(self._linear(width, a, use_bias=self.skip_affine, name=name))
    if a.shape[-1] == width:  # Eq. 1, identity.
      return a
    return self._linear(width, a, use_bias=False, name=name)


def build(config, num_classes: int, dtype, bn_axis_name, layers: dict) -> MLP:
  """The MLP of ``config`` (``mlp_hidden``, ``skip.*``, ``init``); it has no BatchNorm, so
  ``bn_axis_name`` is unused; ``layers``: ``dense`` or nothing."""
  del bn_axis_name
  return MLP(hidden=tuple(config.mlp_hidden), num_classes=num_classes,
             skip_kind=config.skip.kind, skip_span=config.skip.span,
             skip_affine=config.skip.affine, dtype=dtype, init_scheme=config.init, **layers)


def edges(config, built: set[tuple[str, ...]]) -> list[Edge]:
  """The MLP's structure: ``input -> dense1 -> ... -> head`` and its skips (Eq. 1-2);
  ``built``: the layers holding a kernel (:func:`chain_edges`)."""
  hidden = len(config.mlp_hidden)
  return chain_edges([f'dense{j}' for j in range(1, hidden + 1)] + ['head'], hidden,
                     config.skip.kind, config.skip.span, built)


def max_skip_span(config) -> int:
  """A skip spans at most every hidden layer (from the input to the last)."""
  return len(config.mlp_hidden)

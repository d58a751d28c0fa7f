"""Masked Flax layers: the effective kernel is ``kernel * mask`` (DESIGN.md, section 1).

Each layer keeps its binary mask in the ``masks`` variable collection, under the same
path and with the same shape as the kernel it gates, so ``params`` and ``masks`` line up
under ``jax.tree`` utilities. Masks are created as all ones (the dense network); pruning
(:mod:`n2nskip_jax.pruning`) replaces them before training and the train step never
updates them. Masks are float so that SNIP's mask multiplier ``c`` can be differentiated.

The constructor signatures match ``flax.linen.Dense`` and ``flax.linen.Conv`` for the
arguments the models use, so a model can be built unmasked by swapping the classes
(the benchmark's plain-Flax twin).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

MASKS = 'masks'

default_kernel_init = nn.initializers.lecun_normal()


def _masked_kernel(module: nn.Module, shape: Sequence[int]) -> jnp.ndarray:
  kernel = module.param('kernel', module.kernel_init, tuple(shape), jnp.float32)
  mask = module.variable(MASKS, 'kernel', jnp.ones, tuple(shape), jnp.float32)
  return kernel * mask.value


class MaskedDense(nn.Module):
  """``y = x @ (kernel * mask) + bias``."""
  features: int
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    kernel = _masked_kernel(self, (x.shape[-1], self.features))
    bias = self.param('bias', self.bias_init, (self.features,)) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
    return y if bias is None else y + bias


class MaskedConv(nn.Module):
  """2-D convolution, NHWC, with kernel ``(kh, kw, in, out) * mask``."""
  features: int
  kernel_size: Sequence[int]
  strides: int | Sequence[int] = 1
  padding: str | Sequence[tuple[int, int]] = 'SAME'
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    kernel = _masked_kernel(self, (*self.kernel_size, x.shape[-1], self.features))
    bias = self.param('bias', self.bias_init, (self.features,)) if self.use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = lax.conv_general_dilated(
        x, kernel, strides, self.padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y if bias is None else y + bias

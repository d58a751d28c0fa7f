"""Masked Flax layers: the effective kernel is ``kernel * mask`` (docs/DESIGN.md, section 2).

Each layer keeps its binary mask in the ``masks`` variable collection, under the same
path and with the same shape as the kernel it gates, so ``params`` and ``masks`` line up
under ``jax.tree`` utilities. Masks are created as all ones (the dense network); pruning
(:mod:`n2nskip_jax.pruning`) replaces them before training and the train step never
updates them. Masks are float so that SNIP's mask multiplier ``c`` can be differentiated.

The constructor signatures match ``flax.linen.Dense`` and ``flax.linen.Conv`` for the
arguments the models use, so a model can be built unmasked by swapping the classes
(the benchmark's plain-Flax twin).
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

MASKS = 'masks'

default_kernel_init = nn.initializers.lecun_normal()


def _operands(module: nn.Module, x, kernel_shape: Sequence[int]):
  """``(x, kernel * mask, bias or None)``, promoted to the module's compute dtype."""
  shape = tuple(kernel_shape)
  kernel = module.param('kernel', module.kernel_init, shape, jnp.float32)
  mask = module.variable(MASKS, 'kernel', jnp.ones, shape, jnp.float32)
  bias = module.param('bias', module.bias_init, (module.features,)) if module.use_bias else None
  return nn.dtypes.promote_dtype(x, kernel * mask.value, bias, dtype=module.dtype)


def batch_norm(train: bool, dtype: Any, axis_name: str | None):
  """BatchNorm with PyTorch's defaults (running-average momentum 0.1 in PyTorch's convention,
  0.9 in Flax's; eps 1e-5), averaging batch statistics over ``axis_name`` under ``pmap``."""
  return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, dtype=dtype, axis_name=axis_name)


class MaskedDense(nn.Module):
  """``y = x @ (kernel * mask) + bias``."""
  features: int
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    x, kernel, bias = _operands(self, x, (x.shape[-1], self.features))
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
    x, kernel, bias = _operands(self, x, (*self.kernel_size, x.shape[-1], self.features))
    y = lax.conv_general_dilated(
        x, kernel, strides, self.padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y if bias is None else y + bias

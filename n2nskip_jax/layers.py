"""Masked Flax layers: the effective kernel is ``kernel * mask`` (docs/DESIGN.md, section 2).

Each layer keeps its binary mask in the ``masks`` variable collection, under the same
path and with the same shape as the kernel it gates, so ``params`` and ``masks`` line up
under ``jax.tree`` utilities. Masks are created as all ones (the dense network); pruning
(:mod:`n2nskip_jax.pruning`) replaces them before training and the train step never
updates them. Masks are float so that SNIP's mask multiplier ``c`` can be differentiated.

The constructor signatures match ``flax.linen.Dense`` and ``flax.linen.Conv`` for the
arguments the models use, so a model can be built unmasked by swapping the classes
(the benchmark's plain-Flax twin). The models take their layers as arguments (``conv``,
``dense``, ``norm``, ``pool``), as the Flax ImageNet example does, so a faster way to run the
same layers can be injected without the model knowing (``n2nskip_jax.execution``).
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

MASKS = 'masks'

default_kernel_init = nn.initializers.lecun_normal()


def masked_variables(module: nn.Module, kernel_shape: Sequence[int]):
  """Declares a masked layer's variables: ``(kernel, mask, bias or None)``, the mask in the
  ``masks`` collection under the kernel's name, all ones until pruning replaces it."""
  shape = tuple(kernel_shape)
  kernel = module.param('kernel', module.kernel_init, shape, jnp.float32)
  mask = module.variable(MASKS, 'kernel', jnp.ones, shape, jnp.float32).value
  bias = module.param('bias', module.bias_init, (module.features,)) if module.use_bias else None
  return kernel, mask, bias


class MaskedDense(nn.Module):
  """``y = x @ (kernel * mask) + bias``."""
  features: int
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    kernel, mask, bias = masked_variables(self, (x.shape[-1], self.features))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel * mask, bias, dtype=self.dtype)
    y = linear(x, kernel)
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

  @property
  def stride_pair(self) -> tuple[int, int]:
    return (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)

  @nn.compact
  def __call__(self, x):
    kernel, mask, bias = masked_variables(self, (*self.kernel_size, x.shape[-1], self.features))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel * mask, bias, dtype=self.dtype)
    y = convolution(x, kernel, self.stride_pair, self.padding)
    return y if bias is None else y + bias


def linear(x, kernel):
  """``x @ kernel`` over the last axis of ``x``."""
  return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def convolution(x, kernel, strides, padding):
  """``lax.conv_general_dilated`` in NHWC/HWIO."""
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


BN_MOMENTUM = 0.9  # the running averages' weight (Flax's convention; PyTorch's 0.1)


def batch_norm(norm, train: bool, dtype: Any, axis_name: str | None):
  """``norm`` (``flax.linen.BatchNorm`` or a module with its fields) with PyTorch's defaults:
  running-average momentum 0.1 in PyTorch's convention (:data:`BN_MOMENTUM` in Flax's), eps
  1e-5; batch statistics in training, averaged over ``axis_name`` under ``pmap``."""
  return functools.partial(norm, use_running_average=not train, momentum=BN_MOMENTUM,
                           epsilon=1e-5, dtype=dtype, axis_name=axis_name)


def max_pool_2x2(x):
  """2x2 max-pooling, stride 2 (an odd last row or column is dropped)."""
  return nn.max_pool(x, (2, 2), strides=(2, 2))

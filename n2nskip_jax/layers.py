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
import jax
import jax.numpy as jnp
from jax import lax

from n2nskip_jax import normalization, sparse

MASKS = 'masks'

default_kernel_init = nn.initializers.lecun_normal()


def _operands(module: nn.Module, x, kernel_shape: Sequence[int]):
  """``(x, kernel * mask, bias or None, tables)``, promoted to the module's compute dtype.

  ``tables``: the mask's nonzero index tables when the ``nonzeros`` collection holds them;
  then the layer runs by its nonzeros (:mod:`n2nskip_jax.sparse`) and, in place of the masked
  kernel, gets the kernel's weights at the nonzeros (``sparse.nonzero_weights``), perturbed
  under the name ``kernel`` (``nn.Module.perturb``: the train step's gradient with respect to
  the ``perturbations`` collection is the kernel's gradient at its nonzeros). Else ``None``.
  """
  shape = tuple(kernel_shape)
  kernel = module.param('kernel', module.kernel_init, shape, jnp.float32)
  mask = module.variable(MASKS, 'kernel', jnp.ones, shape, jnp.float32)
  bias = module.param('bias', module.bias_init, (module.features,)) if module.use_bias else None
  tables = module.get_variable(sparse.NONZEROS, 'kernel')
  if tables is None:
    kernel = kernel * mask.value
  else:
    kernel = module.perturb('kernel', sparse.nonzero_weights(kernel, tables))
  return (*nn.dtypes.promote_dtype(x, kernel, bias, dtype=module.dtype), tables)


def batch_norm(train: bool, dtype: Any, axis_name: str | None):
  """BatchNorm with PyTorch's defaults (running-average momentum 0.1 in PyTorch's convention,
  0.9 in Flax's; eps 1e-5), averaging batch statistics over ``axis_name`` under ``pmap``:
  :class:`n2nskip_jax.normalization.BatchNorm`, Flax's with a closed-form gradient on CPU."""
  return functools.partial(normalization.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, dtype=dtype, axis_name=axis_name)


class MaskedDense(nn.Module):
  """``y = x @ (kernel * mask) + bias`` (by the mask's nonzeros where the ``nonzeros``
  collection holds its tables: the 1x1 conv of a 1x1 map)."""
  features: int
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = nn.initializers.zeros

  @nn.compact
  def __call__(self, x):
    x, kernel, bias, tables = _operands(self, x, (x.shape[-1], self.features))
    if tables is not None:
      y = sparse.conv(x.reshape(-1, 1, 1, x.shape[-1]), kernel, tables,
                      (1, 1, x.shape[-1], self.features))
      y = y.reshape(*x.shape[:-1], self.features)
    else:
      y = lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))
    return y if bias is None else y + bias


CONV_IMPLS = ('auto', 'xla', 'patches')
# 'auto' uses the patches matmul on the CPU backend for 1x1 kernels (a plain matmul: XLA:CPU's
# convolution gradients transpose whole activations) and for output maps of at most this many
# positions, where XLA:CPU's convolution is slowest (docs/PERFORMANCE.md).
PATCHES_MAX_POSITIONS = 16


def conv_patches(x, kernel, strides, padding):
  """The convolution as one matmul: the ``kh * kw`` shifted, strided views of the padded
  input concatenated along channels (order ``dy, dx, c``, as the HWIO kernel flattens), times
  the ``(kh * kw * in, out)`` kernel. Equal to ``lax.conv_general_dilated`` in NHWC/HWIO."""
  kh, kw, _, out = kernel.shape
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(x.shape[1:3], (kh, kw), strides, padding)
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  ho = (x.shape[1] - kh) // strides[0] + 1
  wo = (x.shape[2] - kw) // strides[1] + 1
  views = [x[:, dy:dy + (ho - 1) * strides[0] + 1:strides[0],
             dx:dx + (wo - 1) * strides[1] + 1:strides[1]]
           for dy in range(kh) for dx in range(kw)]
  patches = jnp.concatenate(views, axis=-1) if len(views) > 1 else views[0]
  return patches_matmul(patches, kernel.reshape(-1, out))


@jax.custom_vjp
def patches_matmul(patches, kernel):
  """``patches @ kernel`` over the last axis, with the kernel's gradient ``patches^T @ dy``
  summed over positions by whichever operand is narrower transposed: XLA:CPU moves the
  positions axis of the left operand of that contraction to the minor side with a copy, and
  JAX's own transpose rule puts ``dy`` there, the wider of the two for a bottleneck's
  expanding 1x1 convs (docs/PERFORMANCE.md)."""
  return patches @ kernel


def _patches_matmul_fwd(patches, kernel):
  return patches @ kernel, (patches, kernel)


def _patches_matmul_bwd(residuals, dy):
  patches, kernel = residuals
  a, d = patches.reshape(-1, kernel.shape[0]), dy.reshape(-1, kernel.shape[1])
  over_positions = (((0,), (0,)), ((), ()))
  if kernel.shape[0] <= kernel.shape[1]:
    d_kernel = lax.dot_general(a, d, over_positions)
  else:
    d_kernel = lax.dot_general(d, a, over_positions).T
  return dy @ kernel.T, d_kernel.astype(kernel.dtype)


patches_matmul.defvjp(_patches_matmul_fwd, _patches_matmul_bwd)


class MaskedConv(nn.Module):
  """2-D convolution, NHWC, with kernel ``(kh, kw, in, out) * mask``.

  ``impl``: ``'xla'`` (``lax.conv_general_dilated``), ``'patches'`` (:func:`conv_patches`,
  one matmul) or ``'auto'`` (patches on the CPU backend for 1x1 kernels and for output maps of
  at most ``PATCHES_MAX_POSITIONS`` positions, XLA's convolution elsewhere). Where the ``nonzeros``
  collection holds the mask's tables, the layer runs by its nonzeros (:func:`sparse.conv`).
  """
  features: int
  kernel_size: Sequence[int]
  strides: int | Sequence[int] = 1
  padding: str | Sequence[tuple[int, int]] = 'SAME'
  use_bias: bool = True
  dtype: Any = None
  kernel_init: Any = default_kernel_init
  bias_init: Any = nn.initializers.zeros
  impl: str = 'xla'

  @nn.compact
  def __call__(self, x):
    strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    shape = (*self.kernel_size, x.shape[-1], self.features)
    x, kernel, bias, tables = _operands(self, x, shape)
    if tables is not None:
      y = sparse.conv(x, kernel, tables, shape, strides, self.padding)
    else:
      y = dense_conv(x, kernel, strides, self.padding, self.impl)
    return y if bias is None else y + bias


def dense_conv(x, kernel, strides: Sequence[int], padding, impl: str = 'auto'):
  """``conv(x, kernel)`` in NHWC/HWIO as :class:`MaskedConv` runs it without tables, by
  ``impl``: :func:`conv_patches` or ``lax.conv_general_dilated``."""
  positions = -(-x.shape[1] // strides[0]) * -(-x.shape[2] // strides[1])
  if impl == 'patches' or (impl == 'auto' and jax.default_backend() == 'cpu'
                           and (positions <= PATCHES_MAX_POSITIONS or kernel.shape[:2] == (1, 1))):
    return conv_patches(x, kernel, strides, padding)
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

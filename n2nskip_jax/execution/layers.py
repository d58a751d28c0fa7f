"""The execution plan's masked layers: the core's (:mod:`n2nskip_jax.layers`), same variables
and results, computed faster where the plan says so.

* :class:`Conv` and :class:`Dense`: a kernel with index tables in the ``nonzeros`` collection
  runs by its nonzeros (:mod:`n2nskip_jax.execution.by_nonzeros`), reading its weights there
  perturbed under the name ``kernel`` (the plan's train step differentiates the perturbation:
  :mod:`n2nskip_jax.execution.step`). Without tables, :class:`Conv` computes ``kernel * mask``
  by ``algorithm``: ``'xla'`` (``lax.conv_general_dilated``, the core's), ``'patches'``
  (:func:`conv_patches`, one matmul) or ``'small_maps'`` (patches for 1x1 kernels and output
  maps of at most ``PATCHES_MAX_POSITIONS`` positions, XLA's convolution elsewhere: the
  fastest on XLA:CPU, docs/PERFORMANCE.md).
* :func:`max_pool_2x2`: as a max over a reshape.
* BatchNorm with a closed-form backward: :mod:`n2nskip_jax.execution.batch_norm`.

Custom VJPs live here only (the patches matmul, the closed-form BatchNorm, the sparse conv):
the core model keeps forward-mode autodiff on every backend.
"""
import jax
import jax.numpy as jnp
from jax import lax
import flax.linen as nn

from n2nskip_jax.execution import by_nonzeros
from n2nskip_jax.layers import MaskedConv, MaskedDense, convolution, linear, masked_variables

PATCHES_MAX_POSITIONS = 16


def _operands(module, x, kernel_shape):
  """``(x, kernel, bias, tables)`` promoted to the compute dtype; ``kernel`` is ``kernel *
  mask``, or the perturbed weights at the nonzeros where the ``nonzeros`` collection holds the
  layer's ``tables`` (else ``None``)."""
  kernel, mask, bias = masked_variables(module, kernel_shape)
  tables = module.get_variable(by_nonzeros.NONZEROS, 'kernel')
  if tables is None:
    kernel = kernel * mask
  else:
    kernel = module.perturb('kernel', by_nonzeros.weights_by_output(kernel, tables))
  return (*nn.dtypes.promote_dtype(x, kernel, bias, dtype=module.dtype), tables)


class Dense(MaskedDense):
  """:class:`MaskedDense`, by its nonzeros where it has tables (the 1x1 conv of a 1x1 map);
  ``native``: with the native CPU kernels."""
  native: bool = False

  @nn.compact
  def __call__(self, x):
    shape = (x.shape[-1], self.features)
    x, kernel, bias, tables = _operands(self, x, shape)
    if tables is None:
      y = linear(x, kernel)
    else:
      y = by_nonzeros.conv(x.reshape(-1, 1, 1, x.shape[-1]), kernel, tables, (1, 1, *shape),
                           native=self.native)
      y = y.reshape(*x.shape[:-1], self.features)
    return y if bias is None else y + bias


class Conv(MaskedConv):
  """:class:`MaskedConv` by its nonzeros where it has tables, else by ``algorithm`` (module
  docstring); ``native``: the native CPU kernels for the former."""
  algorithm: str = 'xla'
  native: bool = False

  @nn.compact
  def __call__(self, x):
    shape = (*self.kernel_size, x.shape[-1], self.features)
    x, kernel, bias, tables = _operands(self, x, shape)
    if tables is not None:
      y = by_nonzeros.conv(x, kernel, tables, shape, self.stride_pair, self.padding,
                           native=self.native)
    else:
      y = dense_conv(x, kernel, self.stride_pair, self.padding, self.algorithm)
    return y if bias is None else y + bias


def dense_conv(x, kernel, strides, padding, algorithm: str):
  """``conv(x, kernel)`` in NHWC/HWIO by ``algorithm`` (module docstring)."""
  positions = -(-x.shape[1] // strides[0]) * -(-x.shape[2] // strides[1])
  if algorithm == 'patches' or (algorithm == 'small_maps' and (
      positions <= PATCHES_MAX_POSITIONS or kernel.shape[:2] == (1, 1))):
    return conv_patches(x, kernel, strides, padding)
  return convolution(x, kernel, strides, padding)


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


def max_pool_2x2(x):
  """2x2 max-pooling, stride 2 (an odd last row or column is dropped, as ``nn.max_pool``), as a
  max over a reshape: its gradient is elementwise, where XLA:CPU expands ``reduce_window``'s
  into scatters (docs/PERFORMANCE.md). Exact ties share the gradient equally."""
  n, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))

"""BatchNorm with a hand-written backward pass (the plan's ``batch_norm='closed_form'``).

Same variables, defaults, statistics and results as ``flax.linen.BatchNorm`` (batch mean and
``E[x^2] - E[x]^2`` variance over every axis but the last, averaged over ``axis_name`` under
``pmap``; running averages in ``batch_stats``), so checkpoints and models are unchanged. In
training, the output is written as ``y = x * a + b`` with ``a = scale / sqrt(var + eps)`` and
``b = bias - mean * a``, and its gradient is the closed form of Ioffe and Szegedy (2015,
Sec. 3; ``x_hat = (x - mean) / sqrt(var + eps)``, ``M`` positions):

    d_bias = sum(dy),   d_scale = sum(dy * x_hat),
    d_x = a * (dy - d_bias / M - x_hat * d_scale / M)

with the sums over the global batch in ``d_x``. Autodiff of Flax's formulation keeps ``x -
mean`` as an extra activation-sized array and reduces over four arrays; this takes two sums
(of ``dy`` and ``dy * x``) and one elementwise pass, faster on XLA:CPU (docs/PERFORMANCE.md).
The closed form is itself differentiable (second derivatives in reverse mode), but as a custom
VJP it has no forward mode (``jax.jvp``); the core model (Flax's BatchNorm) has both.
"""
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def statistics(x, axis_name=None):
  """Per-channel batch mean and ``E[x^2] - E[x]^2`` variance (clipped at 0) of ``x`` over
  every axis but the last, in at least float32, averaged over ``axis_name`` if given."""
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  axes = tuple(range(x.ndim - 1))
  moments = jnp.stack([x.mean(axes), jnp.square(x).mean(axes)])
  if axis_name is not None:
    moments = lax.pmean(moments, axis_name)
  return moments[0], jnp.maximum(0.0, moments[1] - jnp.square(moments[0]))


def normalize(x, scale, bias, epsilon: float, axis_name=None, dtype=None):
  """``(y, mean, var)``: ``x`` normalized by its batch statistics (:func:`statistics`), then
  scaled and shifted; ``y`` in ``dtype`` (default: the promoted dtype of ``x``, ``scale`` and
  ``bias``). Its gradient is the closed form of the module docstring."""
  return _normalize_closed_form(x, scale, bias, epsilon, axis_name, dtype)


def _forward(x, scale, bias, epsilon, axis_name, dtype):
  mean, var = statistics(x, axis_name)
  rstd = lax.rsqrt(var + epsilon)
  a = scale * rstd
  y = (x * a + (bias - mean * a)).astype(dtype or jnp.result_type(x, scale, bias))
  return (y, mean, var), (x, scale, mean, rstd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _normalize_closed_form(x, scale, bias, epsilon, axis_name, dtype):
  return _forward(x, scale, bias, epsilon, axis_name, dtype)[0]


def _backward(epsilon, axis_name, dtype, residuals, cotangents):
  """The closed form of the module docstring, with the cotangents of the returned statistics
  (zero unless something differentiates the running averages) added where they enter."""
  del epsilon, dtype
  x, scale, mean, rstd = residuals
  dy, d_mean, d_var = (c.astype(rstd.dtype) for c in cotangents)
  axes = tuple(range(x.ndim - 1))
  sum_dy, sum_dy_x = dy.sum(axes), (dy * x).sum(axes)
  d_scale = rstd * (sum_dy_x - mean * sum_dy)  # sum(dy * x_hat)
  a = scale * rstd
  # Cotangents of the two moments E[x] and E[x^2] (var = E[x^2] - E[x]^2), over the global
  # batch; each position then gets d E[x] / dx = 1 / M and d E[x^2] / dx = 2 x / M.
  g_var = d_var - 0.5 * a * rstd * d_scale
  g_mean = d_mean - a * sum_dy - 2 * mean * g_var
  if axis_name is not None:
    g_mean, g_var = lax.pmean(jnp.stack([g_mean, g_var]), axis_name)
  count = x.size // x.shape[-1]
  d_x = a * dy + (g_mean + 2 * g_var * x) / count
  return d_x.astype(x.dtype), d_scale.astype(scale.dtype), sum_dy.astype(scale.dtype)


_normalize_closed_form.defvjp(_forward, _backward)


class BatchNorm(nn.Module):
  """``flax.linen.BatchNorm`` over the last axis (its variables, defaults and results) with
  :func:`normalize` in training. ``use_running_average``: normalize by the running averages
  in ``batch_stats`` (evaluation) instead of the batch's statistics, which update them
  (``momentum``: the running averages' weight, Flax's convention). ``use_scale=False`` /
  ``use_bias=False``: no ``scale`` / ``bias`` parameter (1 and 0), as in Flax."""
  use_running_average: bool = False
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  axis_name: str | None = None
  use_scale: bool = True
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    features = x.shape[-1:]
    scale = (self.param('scale', nn.initializers.ones, features, jnp.float32) if self.use_scale
             else jnp.ones(features, jnp.float32))
    bias = (self.param('bias', nn.initializers.zeros, features, jnp.float32) if self.use_bias
            else jnp.zeros(features, jnp.float32))
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, features, jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, features, jnp.float32)
    if self.use_running_average:
      y = (x - ra_mean.value) * (lax.rsqrt(ra_var.value + self.epsilon) * scale) + bias
      return y.astype(self.dtype or y.dtype)
    # At init the pmap axis need not exist, and the running averages keep their initial values.
    axis_name = None if self.is_initializing() else self.axis_name
    y, mean, var = normalize(x, scale, bias, self.epsilon, axis_name, self.dtype)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y

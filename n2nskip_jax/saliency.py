"""The scores preliminary pruning methods rank weights by (docs/DESIGN.md, section 2).

Each is a pure function of a model's ``apply`` and its variables, returning one score array
per masked kernel (the paths of the ``masks`` collection); :mod:`n2nskip_jax.pruning` turns
scores into masks. ``c`` below is a layer's mask multiplier (effective kernel ``w * c``).

* :func:`snip`, SNIP (Lee et al., ICLR 2019): ``|dL/dc|`` at ``c = 1``, i.e. ``|w * dL/dw|``.
* :func:`grasp`, GraSP (Wang et al., ICLR 2020, Eq. 8): ``-w * (H g)``, with ``g = dL/dw`` and
  ``H`` the Hessian of the loss in the kernels, the loss's logits divided by a temperature.
* :func:`synflow`, SynFlow (Tanaka et al., NeurIPS 2020, Eq. 4): ``|c * dR/dc|`` with
  ``R = 1^T f(1; |theta|)``, the summed outputs on an all-ones input of the network whose
  every variable is replaced by its absolute value, BatchNorm in inference mode.
"""
import functools

import jax
import jax.numpy as jnp
from flax import traverse_util

from n2nskip_jax.losses import cross_entropy


def _loss(apply_fn, variables, batch, temperature=1.0):
  logits, _ = apply_fn(variables, batch['image'], train=True, mutable=['batch_stats'])
  return cross_entropy(logits / temperature, batch['label']).mean()


@functools.partial(jax.jit, static_argnums=0)
def snip(apply_fn, variables, batch) -> dict:
  """``|dL/dc|`` at ``c = 1`` for every mask multiplier ``c``: one ``jax.grad`` over masks.

  Since the effective kernel is ``w * c``, this equals ``|w * dL/dw|`` (SNIP's connection
  sensitivity). The network runs in training mode (batch statistics), as in training.
  """
  ones = jax.tree.map(jnp.ones_like, variables['masks'])
  grad = jax.grad(lambda masks: _loss(apply_fn, {**variables, 'masks': masks}, batch))(ones)
  return jax.tree.map(jnp.abs, grad)


def _kernels(variables) -> dict:
  """The masked kernels of ``variables['params']``, by their ``masks`` paths."""
  params = traverse_util.flatten_dict(variables['params'])
  return {p: params[p] for p in traverse_util.flatten_dict(variables['masks'])}


def _with_kernels(variables, kernels: dict):
  params = {**traverse_util.flatten_dict(variables['params']), **kernels}
  return {**variables, 'params': traverse_util.unflatten_dict(params)}


def hessian_gradient(apply_fn, variables, batch, temperature: float = 1.0) -> dict:
  """``(g, H g)`` over the masked kernels: ``g = dL/dw`` and the Hessian-gradient product
  by forward-over-reverse (``jax.jvp`` of ``jax.grad``), ``g`` held constant as GraSP's
  ``d(g^T stop_gradient(g))/dw`` does."""
  def grad(kernels):
    return jax.grad(lambda k: _loss(apply_fn, _with_kernels(variables, k), batch, temperature))(
        kernels)

  kernels = _kernels(variables)
  g = grad(kernels)
  return g, jax.jvp(grad, (kernels,), (g,))[1]


@functools.partial(jax.jit, static_argnums=0)
def grasp(apply_fn, variables, batch, temperature: float) -> dict:
  """GraSP's ``-w * (H g)`` by kernel path (flat ``masks`` paths). Removing the highest
  scores is what the method prescribes: they reduce the gradient norm the most."""
  kernels = _kernels(variables)
  hg = hessian_gradient(apply_fn, variables, batch, temperature)[1]
  return {p: -kernels[p] * hg[p] for p in kernels}


@functools.partial(jax.jit, static_argnums=(0, 3))
def _synflow(apply_fn, variables, masks, input_shape) -> dict:
  positive = jax.tree.map(jnp.abs, {c: v for c, v in variables.items() if c != 'masks'})

  def flow(c):
    out = apply_fn({**positive, 'masks': c}, jnp.ones((1, *input_shape), jnp.float64),
                   train=False)
    return jnp.sum(out)

  grad = jax.grad(flow)(masks)
  return jax.tree.map(lambda c, d: jnp.abs(c * d), masks, grad)


def synflow(apply_fn, variables, masks, input_shape: tuple[int, ...]) -> dict:
  """``|c * dR/dc|`` at the current masks ``c`` (SynFlow's synaptic saliency; pruned weights
  score 0), in float64: with every weight positive, ``R`` grows like the product of the
  layers' gains (for ResNet50 far beyond float32's range). Returns float64 numpy arrays.

  ``apply_fn`` must compute in its inputs' dtype (a model built with ``dtype=None``).
  """
  with jax.enable_x64(True):
    as64 = lambda tree: jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), tree)
    scores = _synflow(apply_fn, as64(variables), as64(masks), tuple(input_shape))
    return jax.device_get(scores)

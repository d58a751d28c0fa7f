"""Pruning at initialization: the owner of the masks (paper Sec. 3; docs/DESIGN.md, section 2).

Budget: ``B = round(density * N_ref)`` nonzero prunable weights, ``N_ref`` the prunable
weights of the reference network (:func:`n2nskip_jax.models.reference`: the sequential
model, no skip layers). With ``skip.kind='n2nskip'``, ``round(fraction * B)`` of it goes to
the skip layers, chosen uniformly at random over all their weights, and the rest to the
sequential layers, chosen by the method ``pruning.method`` names in :data:`METHODS`:

* ``rp``: a uniformly random subset, global over layers;
* ``csp`` (SNIP, Lee et al. 2019): saliency ``|dL/dc|`` at ``c = 1`` for the mask multiplier
  ``c`` (``= |w * dL/dw|``), on one training batch of the reference network; global top-k,
  ties broken by position (stable sort);
* ``structured`` (Dey et al. 2018): every output unit gets the same fan-in (up to one, so
  the budget is met exactly), every input unit the same fan-out where the shapes allow;
  per-layer budgets proportional to layer size.

A method is one function ``(shapes, budget, rng, saliency) -> masks`` registered with
:func:`register`: ``shapes`` maps each kernel path to be pruned to its shape, ``budget`` is
how many weights to keep among them, ``rng`` a ``numpy.random.Generator`` seeded by the
config, and ``saliency()`` returns SNIP's scores for those paths (computed only if called).

With ``skip.kind='resskip'`` the projection kernels are pruned with the sequential ones on
the full model, out of the same ``B``. Kernels matching a ``pruning.exclude`` pattern stay
dense and count against the sequential budget.
"""
import functools
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from n2nskip_jax import checks, data, models, network, sparsity
from n2nskip_jax.errors import ConfigError
from n2nskip_jax.losses import cross_entropy

Path = tuple[str, ...]
Method = Callable[[dict, int, np.random.Generator, Callable[[], dict]], dict]
METHODS: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
  """Registers a pruning method under ``name`` (then ``--config.pruning.method=name``)."""
  def add(fn: Method) -> Method:
    METHODS[name] = fn
    return fn
  return add


def check_config(config) -> None:
  """Checks the pruning keys and the skips' share of the budget."""
  checks.choice(config, 'pruning.method', ('dense', *METHODS))
  checks.check(config, 'pruning.density', lambda v: checks.is_number(v) and 0 < v <= 1,
               'a number in (0, 1]')
  checks.positive_int(config, 'pruning.snip_batch_size')
  checks.check(config, 'pruning.exclude', lambda v: all(checks.is_regex(p) for p in v),
               'a sequence of regular expressions')
  checks.boolean(config, 'pruning.rescale')
  if config.pruning.method == 'dense' and config.pruning.density != 1:
    raise ConfigError('pruning.density', config.pruning.density,
                      "1.0 with pruning.method='dense' (choose 'rp', 'csp' or 'structured' to prune)")
  checks.check(config, 'skip.fraction', lambda v: checks.is_number(v) and 0 <= v < 1,
               'a number in [0, 1)')
  if config.skip.kind == 'n2nskip' and config.pruning.method == 'dense':
    raise ConfigError('pruning.method', 'dense',
                      "'rp', 'csp' or 'structured' with skip.kind='n2nskip' (skips share the budget)")


def _split(keep: np.ndarray, shapes: dict) -> dict:
  out, start = {}, 0
  for p, shape in shapes.items():
    n = int(np.prod(shape))
    out[p] = keep[start:start + n].reshape(shape)
    start += n
  return out


def _total(shapes: dict) -> int:
  return sum(int(np.prod(s)) for s in shapes.values())


@register('rp')
def random_masks(shapes, budget, rng, saliency=None) -> dict:
  """RP: ``budget`` weights drawn uniformly at random over all of ``shapes``."""
  del saliency
  keep = np.zeros(_total(shapes), np.float32)
  keep[rng.choice(keep.size, size=budget, replace=False)] = 1
  return _split(keep, shapes)


@register('csp')
def snip_masks(shapes, budget, rng, saliency) -> dict:
  """CSP (SNIP): the ``budget`` most salient weights over all of ``shapes``; ties go to the
  lower position."""
  del rng
  scores = saliency()
  flat = np.concatenate([np.asarray(scores[p], np.float32).ravel() for p in shapes])
  keep = np.zeros(flat.size, np.float32)
  keep[np.argsort(-flat, kind='stable')[:budget]] = 1
  return _split(keep, shapes)


def _proportional(sizes: list[int], total: int) -> list[int]:
  """Integer shares of ``total`` proportional to ``sizes`` (largest remainder), summing exactly."""
  raw = np.asarray(sizes, np.float64) * total / sum(sizes)
  share = np.floor(raw).astype(np.int64)
  share[np.argsort(share - raw, kind='stable')[:total - share.sum()]] += 1
  return [int(s) for s in share]


def structured_mask(rng: np.random.Generator, shape: tuple[int, ...], k: int) -> np.ndarray:
  """Dey et al.'s predefined sparsity for one kernel, ``k`` nonzeros in all.

  The kernel is viewed as ``(fan_in_size, out_units)``. Output unit ``r`` takes ``k // U``
  inputs (``U`` units; ``k % U`` random units take one more) from a contiguous, cyclic
  window of a random permutation of the inputs, so fan-outs differ by at most one.
  """
  n_in, units = int(np.prod(shape[:-1])), shape[-1]
  fan_in = np.full(units, k // units)
  fan_in[rng.permutation(units)[:k % units]] += 1
  perm = rng.permutation(n_in)
  starts = np.concatenate([[0], np.cumsum(fan_in)[:-1]])
  mask = np.zeros((n_in, units), np.float32)
  for r in range(units):
    mask[perm[(starts[r] + np.arange(fan_in[r])) % n_in], r] = 1
  return mask.reshape(shape)


@register('structured')
def structured_masks(shapes, budget, rng, saliency=None) -> dict:
  """Predefined structured sparsity: per-layer budgets proportional to layer size."""
  del saliency
  sizes = [int(np.prod(s)) for s in shapes.values()]
  return {p: structured_mask(rng, s, k)
          for (p, s), k in zip(shapes.items(), _proportional(sizes, budget))}


def budgets(config, masks) -> dict:
  """Budget arithmetic: ``B``, its sequential/skip split and the capacities, validated."""
  n_ref = sparsity.reference_weights(masks)
  skip_capacity = sparsity.skip_weights(masks)
  total = round(config.pruning.density * n_ref)
  skip = round(config.skip.fraction * total) if config.skip.kind == 'n2nskip' else 0
  if skip > skip_capacity:
    raise ConfigError('skip.fraction', config.skip.fraction,
                      f'at most {skip_capacity / total:.4f} at pruning.density='
                      f'{config.pruning.density}: the skip layers hold {skip_capacity} weights '
                      f'but the skip budget is {skip}')
  return {'total': total, 'sequential': total - skip, 'skip': skip, 'reference': n_ref,
          'skip_capacity': skip_capacity}


def check_budget(config) -> dict | None:
  """:func:`budgets` from shapes alone (``jax.eval_shape``), before anything is compiled;
  ``None`` for a dense run. Raises a ``ConfigError`` for a budget the skip layers cannot hold,
  and for one that cannot train: 0 weights, or fewer sequential weights than sequential
  layers (some layer of the sequential path would keep no weight at all)."""
  if config.pruning.method == 'dense':
    return None
  masks = network.abstract_variables(config, *data.spec(config))['masks']
  b = budgets(config, masks)
  layers = sum(1 for p in traverse_util.flatten_dict(masks) if not models.is_skip_path(p))
  if b['sequential'] < layers:
    raise ConfigError('pruning.density', config.pruning.density,
                      f'a density whose budget round(density * {b["reference"]}) = {b["total"]} '
                      f'leaves at least one weight in each of the {layers} sequential layers '
                      f'(sequential budget: {b["sequential"]})')
  return b


def empty_layers(masks) -> list[str]:
  """Sequential layers (not skips) that pruning left with no weight: the network cannot train."""
  return [sparsity.path_name(p[:-1]) for p, m in traverse_util.flatten_dict(masks).items()
          if not models.is_skip_path(p) and not np.any(m)]


@functools.partial(jax.jit, static_argnums=0)
def snip_saliency(apply_fn, variables, batch) -> dict:
  """``|dL/dc|`` at ``c = 1`` for every mask multiplier ``c``: one ``jax.grad`` over masks.

  Since the effective kernel is ``w * c``, this equals ``|w * dL/dw|`` (SNIP's connection
  sensitivity). The network runs in training mode (batch statistics), as in training.
  """

  def loss(masks):
    logits, _ = apply_fn({**variables, 'masks': masks}, batch['image'], train=True,
                         mutable=['batch_stats'])
    return cross_entropy(logits, batch['label']).mean()

  ones = jax.tree.map(jnp.ones_like, variables['masks'])
  return jax.tree.map(jnp.abs, jax.grad(loss)(ones))


def _saliency(config, variables, batch, layers=None) -> dict:
  """SNIP scores by path, on the reference network for N2NSkip (the paper's preliminary
  pruning), on the model itself otherwise."""
  if batch is None:
    raise ValueError("pruning.method='csp' needs a training batch: prune(config, variables, "
                     "batch) with batch = {'image': ..., 'label': ...}")
  n2n = config.skip.kind == 'n2nskip'
  net_config = models.reference(config) if n2n else config
  apply_fn = models.create_model(net_config, data.spec(config)[0], layers=layers).apply
  scores = snip_saliency(apply_fn, models.without_skips(variables) if n2n else variables, batch)
  return traverse_util.flatten_dict(jax.device_get(scores))


def prune(config, variables, batch=None, *, layers: dict | None = None) -> dict:
  """Returns the ``masks`` pytree (float 0/1) for ``variables`` at the config's budget.

  Args:
    config: a validated config (``pruning.*``, ``skip.*`` and ``seed``).
    variables: the initialized variables, including an all-ones ``masks`` collection.
    batch: one training batch ``{'image', 'label'}``, for saliency-based methods (``csp``).
    layers: the layers saliency is computed with (``create_model``'s argument; default: the
      model's own). The training loop passes those it trains with, so that SNIP's scores,
      and the masks at their threshold, are float for float those of the model trained.
  """
  masks = variables['masks']
  method = config.pruning.method
  if method == 'dense':
    return jax.tree.map(np.ones_like, masks)
  if method not in METHODS:
    raise ConfigError('pruning.method', method, f"one of {('dense', *METHODS)}")
  flat = {p: tuple(v.shape) for p, v in traverse_util.flatten_dict(masks).items()}
  b = budgets(config, masks)
  rng = np.random.default_rng([config.seed, 0x5EED])
  n2n = config.skip.kind == 'n2nskip'
  skip_shapes = {p: s for p, s in flat.items() if n2n and models.is_skip_path(p)}
  main = {p: s for p, s in flat.items() if p not in skip_shapes}
  excluded = {p: s for p, s in main.items() if any(
      re.search(pat, sparsity.path_name(p)) for pat in config.pruning.exclude)}
  chosen = {p: s for p, s in main.items() if p not in excluded}
  free = b['sequential'] - _total(excluded)
  if free < 0:
    raise ConfigError('pruning.exclude', tuple(config.pruning.exclude),
                      f'patterns whose dense layers fit in the budget of {b["sequential"]} weights')
  out = {p: np.ones(s, np.float32) for p, s in excluded.items()}
  out.update(METHODS[method](chosen, free, rng, lambda: _saliency(config, variables, batch, layers)))
  if skip_shapes:
    out.update(random_masks(skip_shapes, b['skip'], rng))
  return traverse_util.unflatten_dict({p: out[p] for p in flat})


def fan_in_rescale(mask) -> np.ndarray:
  """Per-output-unit factor ``sqrt(dense fan-in / surviving fan-in)`` of one kernel mask
  (0 for a unit with no surviving input), broadcastable against the kernel.

  With i.i.d. zero-mean weights of variance ``v`` and unit-variance inputs, unit ``j`` of a
  pruned kernel has pre-activation variance ``n_j v`` instead of the dense ``n v``; scaling
  its ``n_j`` surviving weights by ``sqrt(n / n_j)`` restores ``n v`` (``pruning.rescale``).
  """
  mask = np.asarray(mask)
  flat = mask.reshape(-1, mask.shape[-1])
  surviving = flat.sum(0)
  return np.where(surviving > 0, np.sqrt(flat.shape[0] / np.maximum(surviving, 1)), 0.0)


def apply_masks(variables, masks, rescale: bool = False):
  """Sets ``masks`` and zeroes pruned kernel entries, so pruned weights are exactly 0.

  ``rescale=True`` (``config.pruning.rescale``) also multiplies every surviving weight by
  :func:`fan_in_rescale` of its unit, per kernel (a skip kernel and the sequential kernel
  into the same unit are rescaled separately).
  """
  flat_masks = traverse_util.flatten_dict(masks)

  def masked(path, value):
    if path[-1] != 'kernel':
      return value
    mask = flat_masks[path]
    scale = fan_in_rescale(mask).astype(np.float32) if rescale else 1.0
    return value * mask * scale

  params = {p: masked(p, v) for p, v in traverse_util.flatten_dict(variables['params']).items()}
  return {**variables, 'params': traverse_util.unflatten_dict(params), 'masks': masks}

"""Pruning at initialization: the owner of the masks (paper Sec. 3; docs/DESIGN.md, section 2).

Budget: ``B = round(density * N_ref)`` nonzero prunable weights, ``N_ref`` the prunable
weights of the reference network (:func:`n2nskip_jax.models.reference`: the sequential
model, no skip layers). With ``skip.kind='n2nskip'``, ``round(fraction * B)`` of it goes to
the skip layers, chosen uniformly at random over all their weights, and the rest to the
sequential layers, chosen by the method ``pruning.method`` names in
:data:`n2nskip_jax.methods.METHODS`, on the reference network (the paper's preliminary
pruning). A new method is one function registered with :func:`register`
(:mod:`n2nskip_jax.methods`).

With ``skip.kind='sequential'`` (the budget control: no skip layers) the method keeps
``B - round(fraction * B)`` weights and the other ``round(fraction * B)`` are drawn uniformly
at random among the positions it pruned (:func:`top_up`): the same budget and the same method
as N2NSkip's, the skip share spent on ordinary sequential weights.

With ``skip.kind='resskip'`` the projection kernels are pruned with the sequential ones on
the full model, out of the same ``B``. Kernels matching a ``pruning.exclude`` pattern stay
dense and count against the sequential budget. Two controls (Frankle et al., ICLR 2021)
keep each layer's density and change what survives: ``pruning.shuffle`` permutes each pruned
layer's mask at random (:func:`shuffle`); ``pruning.reinit`` re-draws the surviving weights
(the training loop initializes the weights from another seed; the masks stay).
"""
import re

import jax
import numpy as np
from flax import traverse_util

from n2nskip_jax import checks, methods, models, sparsity
from n2nskip_jax.errors import ConfigError
# The notebook API (@pruning.register('name'), pruning.METHODS) is the methods registry's.
from n2nskip_jax.methods import METHODS, Scoring, register  # noqa: F401


def check_config(config) -> None:
  """Checks the pruning keys and the skips' share of the budget."""
  checks.choice(config, 'pruning.method', ('dense', *METHODS))
  checks.check(config, 'pruning.density', lambda v: checks.is_number(v) and 0 < v <= 1,
               'a number in (0, 1]')
  checks.positive_int(config, 'pruning.snip_batch_size')
  checks.check(config, 'pruning.exclude', lambda v: all(checks.is_regex(p) for p in v),
               'a sequence of regular expressions')
  checks.boolean(config, 'pruning.rescale')
  checks.boolean(config, 'pruning.rescale_normalized')
  checks.positive_int(config, 'pruning.synflow_iterations')
  checks.check(config, 'pruning.grasp_temperature',
               lambda v: checks.is_number(v) and v > 0, 'a number > 0')
  checks.boolean(config, 'pruning.shuffle')
  checks.boolean(config, 'pruning.reinit')
  if config.pruning.method == 'dense' and config.pruning.density != 1:
    raise ConfigError('pruning.density', config.pruning.density,
                      f"1.0 with pruning.method='dense' (choose one of {tuple(METHODS)} to prune)")
  checks.check(config, 'skip.fraction', lambda v: checks.is_number(v) and 0 <= v < 1,
               'a number in [0, 1)')
  if config.skip.kind in models.SHARED_BUDGET_KINDS and config.pruning.method == 'dense':
    raise ConfigError('pruning.method', 'dense',
                      f'one of {tuple(METHODS)} with skip.kind={config.skip.kind!r} (its skip '
                      'share is part of the budget)')

def top_up(masks: dict, extra: int, rng: np.random.Generator) -> dict:
  """``masks`` with ``extra`` more nonzeros, drawn uniformly at random among their zeros over
  all layers (``skip.kind='sequential'``): every kept weight stays kept."""
  flat = np.concatenate([m.ravel() for m in masks.values()])
  flat[rng.choice(np.flatnonzero(flat == 0), size=extra, replace=False)] = 1
  return methods.split(flat, {p: m.shape for p, m in masks.items()})


def budgets(config, masks) -> dict:
  """Budget arithmetic, validated: ``total`` (``B``), its ``sequential`` and ``skip`` split,
  ``method``: what the preliminary method keeps (the sequential share less ``top_up``, the
  random extra weights of ``skip.kind='sequential'``), and the capacities."""
  n_ref = sparsity.reference_weights(masks)
  total = round(config.pruning.density * n_ref)
  share = round(config.skip.fraction * total) if config.skip.kind in models.SHARED_BUDGET_KINDS else 0
  extra = share if config.skip.kind == 'sequential' else 0
  skip, skip_capacity = share - extra, sparsity.skip_weights(masks)
  if skip > skip_capacity:
    raise ConfigError('skip.fraction', config.skip.fraction,
                      f'at most {skip_capacity / total:.4f} at pruning.density='
                      f'{config.pruning.density}: the skip layers hold {skip_capacity} weights '
                      f'but the skip budget is {skip}')
  return {'total': total, 'sequential': total - skip, 'skip': skip,
          'method': total - skip - extra, 'top_up': extra, 'reference': n_ref,
          'skip_capacity': skip_capacity}


def check_budget(config, masks) -> dict | None:
  """:func:`budgets` from the shapes of the model's ``masks`` (those of
  :func:`n2nskip_jax.network.abstract`), before anything is compiled; ``None`` for a dense
  run. Raises a ``ConfigError`` for a budget the skip layers cannot hold, and for one that
  cannot train: 0 weights, or fewer sequential weights than sequential layers (some layer of
  the sequential path would keep no weight at all)."""
  if config.pruning.method == 'dense':
    return None
  b = budgets(config, masks)
  layers = sum(1 for p in traverse_util.flatten_dict(masks) if not models.is_skip_path(p))
  if b['method'] < layers:
    raise ConfigError('pruning.density', config.pruning.density,
                      f'a density whose budget round(density * {b["reference"]}) = {b["total"]} '
                      f'leaves at least one weight in each of the {layers} sequential layers '
                      f'(the preliminary method\'s budget: {b["method"]})')
  return b


def empty_layers(masks) -> list[str]:
  """Sequential layers (not skips) that pruning left with no weight: the network cannot train."""
  return [sparsity.path_name(p[:-1]) for p, m in traverse_util.flatten_dict(masks).items()
          if not models.is_skip_path(p) and not np.any(m)]


def shuffle(masks: dict, rng: np.random.Generator) -> dict:
  """Each mask's entries permuted uniformly at random: every layer keeps its nonzero count
  (its density), the positions are new (the "shuffle" control of Frankle et al. 2021)."""
  return {p: rng.permutation(m.ravel()).reshape(m.shape) for p, m in masks.items()}


def needs_batch(config) -> bool:
  """Whether ``prune`` needs a training batch for this config's method."""
  return config.pruning.method in METHODS and METHODS[config.pruning.method].needs_batch


def prune(config, variables, batch=None, *, input_shape: tuple[int, ...] | None = None,
          layers: dict | None = None) -> dict:
  """Returns the ``masks`` pytree (float 0/1) for ``variables`` at the config's budget.

  Args:
    config: a validated config (``pruning.*``, ``skip.*`` and ``seed``).
    variables: the initialized variables, including an all-ones ``masks`` collection.
    batch: one training batch ``{'image', 'label'}``, for the methods that score with data
      (:func:`needs_batch`: ``csp``, ``grasp``).
    input_shape: the shape of one example (``data.spec(config).input_shape``), for the
      methods that run the network on an all-ones input (``synflow``).
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
  free = b['method'] - methods.num_entries(excluded)
  if free < 0:
    raise ConfigError('pruning.exclude', tuple(config.pruning.exclude),
                      f'patterns whose dense layers fit in the budget of {b["method"]} weights')
  out = {p: np.ones(s, np.float32) for p, s in excluded.items()}
  scored = ((models.reference(config), models.without_skips(variables)) if n2n
            else (config, variables))
  scoring = Scoring(*scored, batch, layers, input_shape)
  chosen_masks = METHODS[method].fn(chosen, free, rng, scoring)
  if config.pruning.shuffle:
    chosen_masks = shuffle(chosen_masks, rng)
  out.update(top_up(chosen_masks, b['top_up'], rng) if b['top_up'] else chosen_masks)
  if skip_shapes:
    out.update(methods.random_masks(skip_shapes, b['skip'], rng))
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


def apply_config_masks(config, variables, masks):
  """:func:`apply_masks` with the config's ``pruning.rescale`` and ``rescale_normalized``."""
  return apply_masks(variables, masks, config.pruning.rescale, config.pruning.rescale_normalized)


def apply_masks(variables, masks, rescale: bool = False, rescale_normalized: bool = True):
  """Sets ``masks`` and zeroes pruned kernel entries, so pruned weights are exactly 0.

  ``rescale=True`` (``config.pruning.rescale``) also multiplies every surviving weight by
  :func:`fan_in_rescale` of its unit, per kernel (a skip kernel and the sequential kernel
  into the same unit are rescaled separately); with ``rescale_normalized=False``
  (``config.pruning.rescale_normalized``) only the kernels no BatchNorm follows
  (:func:`models.feeds_batch_norm`): BatchNorm undoes a kernel's scale in the forward pass
  (but through its epsilon), so there it changes mostly the weights' effective learning rate.
  """
  flat_masks = traverse_util.flatten_dict(masks)

  def masked(path, value):
    if path[-1] != 'kernel':
      return value
    mask = flat_masks[path]
    scaled = rescale and (rescale_normalized or not models.feeds_batch_norm(mask))
    return value * mask * (fan_in_rescale(mask).astype(np.float32) if scaled else 1.0)

  params = {p: masked(p, v) for p, v in traverse_util.flatten_dict(variables['params']).items()}
  return {**variables, 'params': traverse_util.unflatten_dict(params), 'masks': masks}

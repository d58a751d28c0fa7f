"""Pruning at initialization: binary masks for every prunable kernel (DESIGN.md, section 1).

Budget: ``B = round(density * N_ref)`` nonzero prunable weights, ``N_ref`` the prunable
weights of the reference network (the sequential model, no skip layers). With
``skip.kind='n2nskip'``, ``round(fraction * B)`` of it goes to the skip layers, chosen
uniformly at random over all their weights, and the rest to the sequential layers, chosen
by ``pruning.method``:

* ``rp``: a uniformly random subset, global over layers;
* ``csp`` (SNIP, Lee et al. 2019): saliency ``|dL/dc|`` at ``c = 1`` for the mask multiplier
  ``c`` (``= |w * dL/dw|``), on one training batch of the reference network; global top-k,
  ties broken by position (stable sort);
* ``structured`` (Dey et al. 2018): every output unit gets the same fan-in (up to one, so
  the budget is met exactly), every input unit the same fan-out where the shapes allow;
  per-layer budgets proportional to layer size.

With ``skip.kind='resskip'`` the projection kernels are pruned with the sequential ones by
``pruning.method`` on the full model, out of the same ``B``. Kernels matching a
``pruning.exclude`` pattern stay dense and count against the sequential budget.
"""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from n2nskip_jax.config import ConfigError
from n2nskip_jax.models import is_skip_path
from n2nskip_jax.steps import cross_entropy

Path = tuple[str, ...]


def path_name(path: Path) -> str:
  return '/'.join(path)


def count_reference_weights(masks) -> int:
  """``N_ref``: prunable weights outside skip layers (identical in the reference network)."""
  flat = traverse_util.flatten_dict(masks)
  return sum(int(np.prod(v.shape)) for p, v in flat.items() if not is_skip_path(p))


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


def _keep_top(scores: np.ndarray, k: int) -> np.ndarray:
  """0/1 vector keeping the ``k`` largest scores; ties go to the lower position."""
  keep = np.zeros(scores.size, np.float32)
  keep[np.argsort(-scores, kind='stable')[:k]] = 1
  return keep


def _keep_random(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
  keep = np.zeros(n, np.float32)
  keep[rng.choice(n, size=k, replace=False)] = 1
  return keep


def _split(keep: np.ndarray, shapes: dict) -> dict:
  out, start = {}, 0
  for p, shape in shapes.items():
    n = int(np.prod(shape))
    out[p] = keep[start:start + n].reshape(shape)
    start += n
  return out


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


def budgets(config, masks) -> dict:
  """Budget arithmetic: ``B``, its sequential/skip split and the capacities, validated."""
  flat = traverse_util.flatten_dict(masks)
  n_ref = count_reference_weights(masks)
  skip_capacity = sum(int(np.prod(v.shape)) for p, v in flat.items() if is_skip_path(p))
  total = round(config.pruning.density * n_ref)
  skip = round(config.skip.fraction * total) if config.skip.kind == 'n2nskip' else 0
  if skip > skip_capacity:
    raise ConfigError('skip.fraction', config.skip.fraction,
                      f'at most {skip_capacity / total:.4f} at pruning.density='
                      f'{config.pruning.density}: the skip layers hold {skip_capacity} weights '
                      f'but the skip budget is {skip}')
  return {'total': total, 'sequential': total - skip, 'skip': skip, 'reference': n_ref,
          'skip_capacity': skip_capacity}


def prune(config, variables, saliency_apply_fn=None, batch=None) -> dict:
  """Returns the ``masks`` pytree (float 0/1) for ``variables`` at the config's budget.

  Args:
    config: validated config (``pruning.*``, ``skip.*`` and ``seed``).
    variables: the initialized variables, including an all-ones ``masks`` collection.
    saliency_apply_fn: ``apply`` of the network SNIP scores (``csp`` only): the reference
      network (no skips) for ``n2nskip``, the model itself otherwise.
    batch: one training batch ``{'image', 'label'}`` (``csp`` only).
  """
  masks = variables['masks']
  if config.pruning.method == 'dense':
    return jax.tree.map(np.ones_like, masks)
  flat = {p: v.shape for p, v in traverse_util.flatten_dict(masks).items()}
  b = budgets(config, masks)
  rng = np.random.default_rng([config.seed, 0x5EED])
  n2n = config.skip.kind == 'n2nskip'
  skip_shapes = {p: s for p, s in flat.items() if n2n and is_skip_path(p)}
  main = {p: s for p, s in flat.items() if p not in skip_shapes}
  excluded = {p: s for p, s in main.items()
              if any(re.search(pat, path_name(p)) for pat in config.pruning.exclude)}
  chosen = {p: s for p, s in main.items() if p not in excluded}
  free = b['sequential'] - sum(int(np.prod(s)) for s in excluded.values())
  if free < 0:
    raise ConfigError('pruning.exclude', tuple(config.pruning.exclude),
                      f'patterns whose dense layers fit in the budget of {b["sequential"]} weights')
  out = {p: np.ones(s, np.float32) for p, s in excluded.items()}
  sizes = [int(np.prod(s)) for s in chosen.values()]
  if config.pruning.method == 'rp':
    out.update(_split(_keep_random(rng, sum(sizes), free), chosen))
  elif config.pruning.method == 'csp':
    if batch is None or saliency_apply_fn is None:
      raise ValueError("pruning.method='csp' needs saliency_apply_fn and a training batch")
    vars_ = _without_skips(variables) if n2n else variables
    saliency = snip_saliency(saliency_apply_fn, vars_, batch)
    scores = traverse_util.flatten_dict(jax.device_get(saliency))
    flat_scores = np.concatenate([np.asarray(scores[p], np.float32).ravel() for p in chosen])
    out.update(_split(_keep_top(flat_scores, free), chosen))
  else:  # structured
    for (p, s), k in zip(chosen.items(), _proportional(sizes, free)):
      out[p] = structured_mask(rng, s, k)
  if skip_shapes:
    out.update(_split(_keep_random(rng, b['skip_capacity'], b['skip']), skip_shapes))
  return traverse_util.unflatten_dict({p: out[p] for p in flat})


def _without_skips(variables):
  """The reference network's variables: every collection minus the skip layers."""
  return {col: traverse_util.unflatten_dict(
      {p: v for p, v in traverse_util.flatten_dict(tree).items() if not is_skip_path(p)})
          for col, tree in variables.items()}

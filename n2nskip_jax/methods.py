"""Pruning methods: the one registry, :data:`METHODS`, of the preliminary methods that choose
which weights a budget keeps (paper Sec. 3; docs/DESIGN.md, section 2), and their scores.

:mod:`n2nskip_jax.pruning` sets the budget and the kernels a method prunes (the reference
network's for N2NSkip: the paper's preliminary pruning) and calls the method ``pruning.method``
names. Every method is global over layers and keeps exactly its budget; score ties go to the
lower position (stable sort):

* ``rp``: a uniformly random subset;
* ``magnitude``: the largest ``|w|`` at initialization;
* ``csp`` or ``snip`` (SNIP, Lee et al. 2019; the paper calls it CSP): the largest
  ``|dL/dc|`` at ``c = 1`` for the mask multiplier ``c`` (``= |w * dL/dw|``), on one training
  batch;
* ``grasp`` (Wang et al. 2020): the lowest ``-w * (H g)`` on one training batch (the highest
  scores are removed), the loss's logits divided by ``pruning.grasp_temperature``;
* ``synflow`` (Tanaka et al. 2020): the largest ``|c * dR/dc|``, data-free, pruned over
  ``pruning.synflow_iterations`` rounds to densities ``d^(k/n)``, each round scored with the
  masks so far;
* ``structured`` (Dey et al. 2018): every output unit gets the same fan-in (up to one, so
  the budget is met exactly), every input unit the same fan-out where the shapes allow;
  per-layer budgets proportional to layer size.

The scores are :mod:`n2nskip_jax.saliency`'s. A method is one function
``(shapes, budget, rng, scoring) -> masks`` registered with :func:`register`: ``shapes`` maps
each kernel path to be pruned to its shape, ``budget`` is how many weights to keep among them,
``rng`` a ``numpy.random.Generator`` seeded by the config, and ``scoring`` a :class:`Scoring`
that computes the network's scores for those paths when asked.
"""
import copy
import dataclasses
from typing import Any, Callable

import jax
import numpy as np
from flax import traverse_util

from n2nskip_jax import models, saliency, sparsity


@dataclasses.dataclass(frozen=True)
class Method:
  """A registered pruning method.

  Attributes:
    fn: ``(shapes, budget, rng, scoring) -> masks``: one float 0/1 mask per path of
      ``shapes``, ``budget`` nonzeros in all.
    needs_batch: it scores with a training batch (the training loop then passes one).
  """
  fn: Callable[..., dict]
  needs_batch: bool = False


METHODS: dict[str, Method] = {}


def register(*names: str, needs_batch: bool = False) -> Callable:
  """Registers a pruning method under each of ``names`` (then ``--config.pruning.method=name``);
  ``needs_batch``: it scores with a training batch (the training loop then passes one)."""
  def add(fn):
    method = Method(fn, needs_batch)
    for name in names:
      METHODS[name] = method
    return fn
  return add


@dataclasses.dataclass(frozen=True)
class Scoring:
  """The scores of the network being pruned (the reference network for N2NSkip), by kernel
  path, each computed only when a method asks for it (:mod:`n2nskip_jax.saliency`).

  Attributes:
    config: the network's config.
    variables: its variables (``params``, all-ones ``masks``, ``batch_stats``).
    batch: a training batch ``{'image', 'label'}`` or ``None``.
    layers: the layers data-dependent scores are computed with (``create_model``'s argument).
    input_shape: the shape of one example, for the scores computed on an all-ones input
      (SynFlow's), or ``None``.
  """
  config: Any
  variables: dict
  batch: dict | None = None
  layers: dict | None = None
  input_shape: tuple[int, ...] | None = None

  def _model(self, config=None, layers=None):
    """The network (of ``config``, default its own), for the classes its variables have."""
    num_classes = sparsity.output_units(self.config, self.variables['masks'])
    return models.create_model(self.config if config is None else config, num_classes,
                               layers=layers)

  def _data(self) -> dict:
    if self.batch is None:
      raise ValueError(f'pruning.method={self.config.pruning.method!r} needs a training batch: '
                       "prune(config, variables, batch) with batch = {'image': ..., 'label': ...}")
    return self.batch

  def weights(self) -> dict:
    """The kernels at initialization."""
    flat = traverse_util.flatten_dict(self.variables['params'])
    return {p: np.asarray(flat[p]) for p in traverse_util.flatten_dict(self.variables['masks'])}

  def snip(self) -> dict:
    """SNIP's ``|dL/dc|`` (:func:`saliency.snip`)."""
    scores = saliency.snip(self._model(layers=self.layers).apply, self.variables, self._data())
    return traverse_util.flatten_dict(jax.device_get(scores))

  def grasp(self) -> dict:
    """GraSP's ``-w * (H g)`` (:func:`saliency.grasp`), on the core model (``H g`` by
    forward mode, which the core layers support on every backend)."""
    scores = saliency.grasp(self._model().apply, self.variables, self._data(),
                            float(self.config.pruning.grasp_temperature))
    return jax.device_get(scores)

  def synflow(self, masks: dict) -> dict:
    """SynFlow's ``|c * dR/dc|`` at the flat ``masks`` (:func:`saliency.synflow`), in float64
    on a float32 copy of the model."""
    if self.input_shape is None:
      raise ValueError(f'pruning.method={self.config.pruning.method!r} runs the network on an '
                       'all-ones input: prune(config, variables, input_shape=...) with the shape '
                       'of one example')
    config = copy.deepcopy(self.config)
    config.half_precision = False
    scores = saliency.synflow(self._model(config).apply, self.variables,
                              traverse_util.unflatten_dict(masks), self.input_shape)
    return traverse_util.flatten_dict(scores)


def split(flat: np.ndarray, shapes: dict) -> dict:
  """The flat vector ``flat`` as one array per path of ``shapes``, in their order."""
  out, start = {}, 0
  for p, shape in shapes.items():
    n = int(np.prod(shape))
    out[p] = flat[start:start + n].reshape(shape)
    start += n
  return out


def num_entries(shapes: dict) -> int:
  """Entries over all of ``shapes``."""
  return sum(int(np.prod(s)) for s in shapes.values())


@register('rp')
def random_masks(shapes, budget, rng, scoring=None) -> dict:
  """RP: ``budget`` weights drawn uniformly at random over all of ``shapes``."""
  del scoring
  keep = np.zeros(num_entries(shapes), np.float32)
  keep[rng.choice(keep.size, size=budget, replace=False)] = 1
  return split(keep, shapes)


def top_k(scores: dict, shapes: dict, budget: int, dtype=np.float32) -> dict:
  """Masks keeping the ``budget`` highest ``scores`` over all of ``shapes`` (global); ties go
  to the lower position. ``dtype`` is the precision the scores are compared in."""
  flat = np.concatenate([np.asarray(scores[p], dtype).ravel() for p in shapes])
  keep = np.zeros(flat.size, np.float32)
  keep[np.argsort(-flat, kind='stable')[:budget]] = 1
  return split(keep, shapes)


@register('magnitude')
def magnitude_masks(shapes, budget, rng, scoring) -> dict:
  """Magnitude: the ``budget`` largest ``|w|`` at initialization."""
  del rng
  return top_k({p: np.abs(w) for p, w in scoring.weights().items()}, shapes, budget)


@register('csp', 'snip', needs_batch=True)
def snip_masks(shapes, budget, rng, scoring) -> dict:
  """CSP (SNIP): the ``budget`` most salient weights."""
  del rng
  return top_k(scoring.snip(), shapes, budget)


@register('grasp', needs_batch=True)
def grasp_masks(shapes, budget, rng, scoring) -> dict:
  """GraSP: the ``budget`` lowest scores ``-w * (H g)`` (the others are removed)."""
  del rng
  return top_k({p: -s for p, s in scoring.grasp().items()}, shapes, budget)


def synflow_budgets(total: int, budget: int, rounds: int) -> list[int]:
  """Weights kept after each of SynFlow's ``rounds``: ``round(total * d^(k/n))`` for the
  density ``d = budget / total``, ``k = 1..n``, the last exactly ``budget``."""
  density = budget / total
  kept = [round(total * density ** (k / rounds)) for k in range(1, rounds)]
  return [max(min(b, total), budget) for b in kept] + [budget]


@register('synflow')
def synflow_masks(shapes, budget, rng, scoring) -> dict:
  """SynFlow: iterative, data-free; each round keeps the highest ``|c * dR/dc|`` among the
  weights still kept (pruned weights never return) at the schedule's next budget."""
  del rng
  outside = {p: np.ones_like(w) for p, w in scoring.weights().items() if p not in shapes}
  masks = {p: np.ones(s, np.float32) for p, s in shapes.items()}
  rounds = scoring.config.pruning.synflow_iterations
  for kept in synflow_budgets(num_entries(shapes), budget, rounds):
    scores = scoring.synflow({**outside, **masks})
    masks = top_k({p: np.where(masks[p] > 0, scores[p], -np.inf) for p in shapes}, shapes, kept,
                  np.float64)
  return masks


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
def structured_masks(shapes, budget, rng, scoring=None) -> dict:
  """Predefined structured sparsity: per-layer budgets proportional to layer size."""
  del scoring
  sizes = [int(np.prod(s)) for s in shapes.values()]
  return {p: structured_mask(rng, s, k)
          for (p, s), k in zip(shapes.items(), _proportional(sizes, budget))}

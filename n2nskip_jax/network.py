"""Build and initialize a masked network from a config (the notebook API's first step).

    from n2nskip_jax import network, pruning, sparsity
    model, variables = network.init(config, num_classes=10, input_shape=(40,))
    masks = pruning.prune(config, variables, batch, input_shape=(40,))  # csp, grasp; synflow
    variables = pruning.apply_masks(variables, masks)
    print(sparsity.format_layers(sparsity.layer_table(masks)))
"""
import functools

import jax
import jax.numpy as jnp

from n2nskip_jax import pruning
from n2nskip_jax.models import create_model


def init(config, num_classes: int, input_shape: tuple[int, ...], *,
         bn_axis_name: str | None = None, rng: jax.Array | None = None):
  """Creates the model of ``config`` and initializes its variables from ``rng`` (default:
  ``jax.random.PRNGKey(config.seed)``).

  Returns ``(model, variables)``: the plain masked model (``kernel * mask``, Flax's BatchNorm;
  the same on every backend, forward- and reverse-mode differentiable) and its variables:
  ``params``, ``masks`` (all ones) and, for BatchNorm models, ``batch_stats``.
  """
  model = create_model(config, num_classes, bn_axis_name=bn_axis_name)
  dummy = jnp.zeros((1, *input_shape), jnp.float32)
  rng = jax.random.PRNGKey(config.seed) if rng is None else rng
  variables = jax.jit(lambda k: model.init(k, dummy, train=False))(rng)
  return model, jax.device_get(variables)


def trained_weights(config, variables, num_classes: int, input_shape: tuple[int, ...]) -> dict:
  """The unpruned weights a run trains from: ``variables`` (from :func:`init`), or with
  ``pruning.reinit`` (the control of Frankle et al. 2021) variables drawn from another seed,
  ``fold_in(PRNGKey(seed), 1)``, whose ``params`` replace them
  (:func:`initial_variables` applies the masks)."""
  if not config.pruning.reinit:
    return variables
  redrawn = init(config, num_classes, input_shape,
                 rng=jax.random.fold_in(jax.random.PRNGKey(config.seed), 1))[1]
  return {**variables, 'params': redrawn['params']}


def initial_variables(config, variables, masks, num_classes: int,
                      input_shape: tuple[int, ...]) -> tuple[dict, dict]:
  """``(unpruned, pruned)`` for a run with ``masks``: the dense-shaped variables it trains
  from (``variables`` from :func:`init`, or re-drawn for ``pruning.reinit``:
  :func:`trained_weights`), and those with ``masks`` applied and rescaled as the config says
  (:func:`pruning.apply_config_masks`), the run's initial variables. Training and the
  connectivity analysis (so the study runner too) start from this one function."""
  unpruned = trained_weights(config, variables, num_classes, input_shape)
  return unpruned, pruning.apply_config_masks(config, unpruned, masks)


def abstract(config, num_classes: int, input_shape: tuple[int, ...]):
  """:func:`init` from shapes alone: ``(model, variables)``, the variables' shapes and dtypes
  (``jax.eval_shape``: nothing is compiled or allocated). A run derives them once, for its
  memory check and its budget."""
  model = create_model(config, num_classes)
  shapes = _abstract_variables(model, tuple(input_shape))
  return model, jax.tree.map(lambda s: s, shapes)  # a copy the caller may change


@functools.lru_cache(maxsize=256)
def _abstract_variables(model, input_shape):
  """Traced once per model and input shape: a study validates every run's budget."""
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)),
                                           train=False))

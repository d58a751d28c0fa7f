"""Build and initialize a masked network from a config (the notebook API's first step).

    from n2nskip_jax import network, pruning, sparsity
    model, variables = network.init(config, num_classes=10, input_shape=(40,))
    masks = pruning.prune(config, variables, batch)        # batch only for 'csp'
    variables = pruning.apply_masks(variables, masks)
    print(sparsity.format_layers(sparsity.layer_table(masks)))
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from n2nskip_jax import sparse
from n2nskip_jax.models import create_model, is_skip_path


def init(config, num_classes: int, input_shape: tuple[int, ...], *,
         bn_axis_name: str | None = None):
  """Creates the model of ``config`` and initializes its variables from ``config.seed``.

  Returns ``(model, variables)``; ``variables`` holds ``params``, ``masks`` (all ones) and,
  for BatchNorm models, ``batch_stats``.
  """
  model = create_model(config, num_classes, bn_axis_name=bn_axis_name)
  dummy = jnp.zeros((1, *input_shape), jnp.float32)
  variables = jax.jit(lambda k: model.init(k, dummy, train=False))(jax.random.PRNGKey(config.seed))
  return model, jax.device_get(variables)


def abstract_variables(config, num_classes: int, input_shape: tuple[int, ...]):
  """Shapes and dtypes of the variables (``jax.eval_shape``: nothing is compiled or allocated)."""
  model = create_model(config, num_classes)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape)),
                                           train=False))


def sparse_execution(config, masks) -> dict:
  """The ``nonzeros`` variable collection (:mod:`n2nskip_jax.sparse`): index tables for the
  masked layers that run by their nonzeros, chosen per layer by ``config.skip.execution`` for
  the skip layers and ``config.pruning.execution`` for the others.

  ``'sparse'``: the layer runs by its nonzeros; ``'dense'``: it does not; ``'auto'``: on the
  CPU backend, if at most ``sparse.auto_max_density(dtype)`` of its kernel is nonzero, for the
  compute dtype of ``config.half_precision`` (elsewhere not: accelerators keep XLA's dense
  convolutions, which no device measurement has beaten yet).
  """
  tables = {}
  dtype = jnp.bfloat16 if config.half_precision else jnp.float32
  for path, mask in traverse_util.flatten_dict(jax.device_get(masks)).items():
    execution = config.skip.execution if is_skip_path(path) else config.pruning.execution
    if _by_nonzeros(execution, mask, dtype):
      tables[path] = sparse.nonzero_tables(mask)
  return traverse_util.unflatten_dict(tables)


def _by_nonzeros(execution: str, mask, dtype) -> bool:
  if execution == 'auto':  # (the threshold's check builds the native kernels: only if needed)
    density = np.mean(mask)
    return (jax.default_backend() == 'cpu' and density <= max(sparse.AUTO_MAX_DENSITY.values())
            and density <= sparse.auto_max_density(dtype))
  return execution == 'sparse'

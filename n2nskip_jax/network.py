"""Build, prune and inspect a masked network from Python (the notebook API).

    from n2nskip_jax import network
    model, variables = network.init(config, num_classes=10, input_shape=(40,))
    masks = network.prune(config, variables, batch)        # batch only for 'csp'
    variables = network.apply_masks(variables, masks)
    print(network.format_layers(network.layer_table(masks)))
"""
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from n2nskip_jax import data, pruning
from n2nskip_jax.connectivity.graph import network_graph
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


def check_budget(config) -> dict | None:
  """:func:`pruning.budgets` from shapes alone (``jax.eval_shape``): raises a ``ConfigError``
  for a budget the skip layers cannot hold before anything is compiled; ``None`` if dense."""
  if config.pruning.method == 'dense':
    return None
  return pruning.budgets(config, abstract_variables(config, *data.spec(config))['masks'])


def prune(config, variables, batch=None, num_classes: int | None = None) -> dict:
  """Masks at the budget of ``config.pruning`` / ``config.skip`` (see :mod:`pruning`).

  ``csp`` needs one training ``batch`` and ``num_classes``: saliency is taken on the
  reference network for N2NSkip, on the model itself otherwise.
  """
  apply_fn = None
  if config.pruning.method == 'csp':
    if batch is None or num_classes is None:
      raise ValueError("pruning.method='csp' needs a training batch and num_classes")
    apply_fn = create_model(config, num_classes, with_skips=config.skip.kind != 'n2nskip').apply
  return pruning.prune(config, variables, apply_fn, batch)


def dead_units(config, params, masks) -> int:
  """Hidden channels or neurons left with no input or no output connection (layer collapse)."""
  return network_graph(config.model, params, masks, mode='binary').dead_units()


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
  kernels = traverse_util.flatten_dict(variables['params'])
  flat_masks = traverse_util.flatten_dict(masks)

  def masked(path, value):
    if path[-1] != 'kernel':
      return value
    mask = flat_masks[path[:-1] + ('kernel',)]
    scale = fan_in_rescale(mask).astype(np.float32) if rescale else 1.0
    return value * mask * scale

  params = {p: masked(p, v) for p, v in kernels.items()}
  return {**variables, 'params': traverse_util.unflatten_dict(params), 'masks': masks}


def count(tree) -> int:
  """Number of scalars in a pytree."""
  return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(tree))


def nonzero(masks, skip: bool | None = None) -> int:
  """Nonzero mask entries; ``skip=True``/``False`` restricts to skip/sequential layers."""
  return sum(int(np.count_nonzero(v)) for p, v in traverse_util.flatten_dict(masks).items()
             if skip is None or is_skip_path(p) == skip)


def layer_table(masks) -> list[dict]:
  """One row per masked kernel: ``layer``, ``shape``, ``weights``, ``nonzero``, ``density``, ``skip``."""
  rows = []
  for p, m in traverse_util.flatten_dict(masks).items():
    nz = int(np.count_nonzero(m))
    rows.append({'layer': pruning.path_name(p[:-1]), 'shape': list(np.shape(m)),
                 'weights': int(np.size(m)), 'nonzero': nz,
                 'density': nz / max(1, int(np.size(m))), 'skip': is_skip_path(p)})
  return rows


def format_layers(rows: list[dict]) -> str:
  """The per-layer density table as text."""
  lines = [f'{"layer":<34} {"shape":<22} {"weights":>11} {"nonzero":>11} {"density":>8}']
  for r in rows:
    lines.append(f'{r["layer"]:<34} {str(tuple(r["shape"])):<22} {r["weights"]:>11,} '
                 f'{r["nonzero"]:>11,} {r["density"]:>8.4f}')
  return '\n'.join(lines)

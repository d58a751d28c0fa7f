"""Whether a run can fit in memory, decided from shapes before anything is allocated or compiled.

:func:`estimate` counts, with ``jax.eval_shape`` (nothing is allocated), what one device holds at
least while training: the train state (parameters, their masks, SGD's momentum and the
gradients: four copies of the parameters) and the activations of one per-device batch (every
module's output, which the backward pass keeps). :func:`check` compares it with the memory the
backend reports (:func:`available`: the device's on an accelerator, the host's available RAM on
the CPU) and refuses a run that cannot fit in one line, naming the keys that size it. The
estimate is a lower bound: XLA's temporaries and the data pipeline come on top, so a run that
passes may still run out of memory, but one that is refused cannot fit.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from n2nskip_jax.errors import UserError

STATE_COPIES = 4  # parameters, masks, momentum, gradients
GIB = 2 ** 30


def _bytes(tree) -> int:
  return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def estimate(model, variables, input_shape: tuple[int, ...], batch: int) -> dict:
  """Bytes one device holds at least while training ``model`` (its ``variables``' shapes:
  :func:`network.abstract`) on batches of ``batch`` examples of ``input_shape``: ``state``
  (:data:`STATE_COPIES` times the parameters' bytes, plus BatchNorm's statistics) and
  ``activations`` (every module's output at that batch), from shapes alone."""
  x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
  _, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, capture_intermediates=True,
                               mutable=['intermediates', 'batch_stats']), variables, x)
  params = _bytes(variables['params'])
  return {'parameters': sum(math.prod(p.shape) for p in jax.tree.leaves(variables['params'])),
          'state': STATE_COPIES * params + _bytes(variables.get('batch_stats', {})),
          'activations': _bytes(state['intermediates'])}


def available() -> tuple[int | None, str]:
  """``(bytes, what)``: the memory of the first local device on an accelerator (its allocator's
  limit), or the host's available RAM on the CPU (``MemAvailable``); ``None`` where the backend
  does not say."""
  device = jax.local_devices()[0]
  if device.platform != 'cpu':
    limit = (device.memory_stats() or {}).get('bytes_limit')
    return limit, f'{device.device_kind} memory'
  try:
    with open('/proc/meminfo') as f:
      kib = next(int(line.split()[1]) for line in f if line.startswith('MemAvailable:'))
    return kib * 1024, 'available host memory'
  except (OSError, StopIteration, ValueError):
    return None, 'host memory'


def check(config, model, variables, input_shape: tuple[int, ...], devices: int,
          memory: tuple[int | None, str] | None = None) -> dict:
  """:func:`estimate` of ``config``'s ``model`` and ``variables`` (:func:`network.abstract`) at
  the per-device batch (``batch_size / devices``) against ``memory`` (default
  :func:`available`); raises a :class:`UserError` naming the keys that size the run where the
  estimate exceeds it. Returns the estimate."""
  batch = max(1, config.batch_size // devices)
  need = estimate(model, variables, input_shape, batch)
  have, what = available() if memory is None else memory
  total = need['state'] + need['activations']
  if have is not None and total > have:
    raise UserError(
        f'config.model={config.model!r}, width_multiplier={config.width_multiplier:g}, '
        f'batch_size={config.batch_size}: cannot fit: {need["parameters"]:,} parameters; at least '
        f'{total / GIB:,.1f} GiB per device ({need["state"] / GIB:,.1f} GiB of train state, '
        f'{need["activations"] / GIB:,.1f} GiB of activations at {batch} images) against '
        f'{have / GIB:,.1f} GiB of {what}; lower width_multiplier or batch_size')
  return need

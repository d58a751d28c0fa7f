"""Joining a multi-process run: the one place that chooses the processes' collectives."""
import jax
from absl import logging


def initialize(config) -> None:
  """Joins a multi-process run: ``config.coordinator_address``, ``num_processes`` and
  ``process_id`` where set, else what JAX reads from the cluster's environment. On CPU the
  processes' collectives go through gloo. A process that loses a peer for
  ``heartbeat_timeout`` seconds stops instead of waiting forever."""
  if jax.distributed.is_initialized():
    return
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  given = {'coordinator_address': config.coordinator_address or None,
           'num_processes': config.num_processes or None,
           'process_id': config.process_id if config.process_id >= 0 else None}
  jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None},
                             heartbeat_timeout_seconds=config.heartbeat_timeout)
  logging.info('Process %d of %d, %d local of %d devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())

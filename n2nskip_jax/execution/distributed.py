"""Joining a multi-process run: the one place that chooses the processes' collectives."""
import re

import jax
from absl import logging

from n2nskip_jax import checks


def check_config(config) -> None:
  """Checks the keys :func:`initialize` reads (``ConfigError`` naming the first bad one)."""
  is_int = checks.is_int
  checks.check(config, 'coordinator_address',
               lambda v: v == '' or re.fullmatch(r'[^:\s]+:\d+', v), "'' or 'host:port'")
  checks.check(config, 'num_processes', lambda v: is_int(v) and v >= 0,
               'an integer >= 0 (0: from the environment)')
  checks.check(config, 'process_id', lambda v: is_int(v) and v >= -1,
               'an integer >= -1 (-1: from the environment)')
  checks.check(config, 'heartbeat_timeout', lambda v: is_int(v) and v > 0,
               'an integer >= 1 (seconds)')


def initialize(config) -> None:
  """Joins a multi-process run: ``config.coordinator_address``, ``num_processes`` and
  ``process_id`` where set, else what JAX reads from the cluster's environment (the keys are
  checked first: :func:`check_config`). On CPU the processes' collectives go through gloo. A
  process that loses a peer for ``heartbeat_timeout`` seconds stops instead of waiting
  forever."""
  if jax.distributed.is_initialized():
    return
  check_config(config)
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  given = {'coordinator_address': config.coordinator_address or None,
           'num_processes': config.num_processes or None,
           'process_id': config.process_id if config.process_id >= 0 else None}
  jax.distributed.initialize(**{k: v for k, v in given.items() if v is not None},
                             heartbeat_timeout_seconds=config.heartbeat_timeout)
  logging.info('Process %d of %d, %d local of %d devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())

"""Process settings for the CPU backend that must come before the first JAX computation.

:func:`before_jax` applies every one of them, on the CPU backend only; the command-line tools
(``cli.run``) and the benchmarks (``benchmarks/common.py``) call it, and a notebook may. The
library itself (``network``, ``pruning``, ``train``) never changes process-wide settings. A new
setting of this kind belongs here, so that every tool gets it.
"""
import importlib.util
import os

from n2nskip_jax.execution import host_memory, xla_flags

ACCELERATOR_PLUGINS = ('jax_plugins', 'libtpu')  # JAX's GPU plugins and TPU runtime


def cpu_backend() -> bool:
  """Whether JAX will run on its CPU backend, decided without starting JAX: ``JAX_PLATFORMS``
  if set (its first entry), else whether no accelerator plugin is installed."""
  platforms = os.environ.get('JAX_PLATFORMS', '')
  if platforms:
    return platforms.split(',')[0].strip() == 'cpu'
  return not any(importlib.util.find_spec(name) for name in ACCELERATOR_PLUGINS)


def before_jax() -> dict[str, bool]:
  """On the CPU backend: freed host memory kept for reuse
  (:func:`host_memory.reuse_freed_memory`) and XLA:CPU's convolutions by XLA's own code
  (:func:`xla_flags.convolutions_by_xla`); whether each is in effect, by name (both ``False``
  elsewhere, where nothing is changed). Call it before the first JAX computation; later calls
  change nothing and return the same (the benchmarks record it with their results)."""
  if not cpu_backend():
    return {'reuse_freed_memory': False, 'convolutions_by_xla': False}
  return {'reuse_freed_memory': host_memory.reuse_freed_memory(),
          'convolutions_by_xla': xla_flags.convolutions_by_xla()}

"""Process settings for the CPU backend that must come before the first JAX computation.

:func:`before_jax` applies every one of them; the command-line tools (``cli.run``), the
benchmarks (``benchmarks/common.py``) and the quickstart notebook call it, and a new setting of
this kind belongs here, so that all of them get it. Accelerators ignore both settings.
"""
from n2nskip_jax import host_memory, xla_flags


def before_jax() -> dict[str, bool]:
  """Freed host memory kept for reuse (:func:`host_memory.reuse_freed_memory`) and XLA:CPU's
  convolutions by XLA's own code (:func:`xla_flags.convolutions_by_xla`); whether each is in
  effect, by name. Call it before the first JAX computation; later calls change nothing and
  return the same (the benchmarks record it with their results)."""
  return {'reuse_freed_memory': host_memory.reuse_freed_memory(),
          'convolutions_by_xla': xla_flags.convolutions_by_xla()}

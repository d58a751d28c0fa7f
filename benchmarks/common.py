"""Shared pieces of the benchmarks: configs from flags, and timing of a jitted call."""
import json
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from n2nskip_jax import host_memory, xla_flags  # noqa: E402  (this checkout's package)

host_memory.reuse_freed_memory()  # before the first JAX computation, as the tools do
xla_flags.convolutions_by_xla()


def timed(fn, warmup: int, iters: int) -> float:
  """Median seconds per call of ``fn`` (which returns JAX arrays to block on, or ``None`` when
  it finishes its work before returning, as the PyTorch peer's step)."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return sorted(times)[len(times) // 2]


def device_info() -> dict:
  """The backend, whether sparse skip layers get the native CPU kernels (``N2NSKIP_NATIVE``),
  whether freed host memory is reused (``N2NSKIP_MALLOC``) and whether XLA:CPU runs its
  convolutions itself (``N2NSKIP_XLA_FLAGS``)."""
  from n2nskip_jax import native
  d = jax.devices()[0]
  return {'backend': jax.default_backend(), 'device': d.device_kind, 'devices': jax.device_count(),
          'native_kernels': native.available(),
          'reuse_freed_memory': host_memory.reuse_freed_memory(),
          'convolutions_by_xla': xla_flags.convolutions_by_xla()}


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)

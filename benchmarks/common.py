"""Shared pieces of the benchmarks: configs from flags, and timing of a jitted call."""
import json
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from n2nskip_jax import execution  # noqa: E402  (this checkout's package)

execution.before_jax()  # before the first JAX computation, as the tools do


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
  and which settings of :func:`execution.before_jax` are in effect: freed host memory reused
  (``N2NSKIP_MALLOC``), XLA:CPU's own convolutions (``N2NSKIP_XLA_FLAGS``)."""
  from n2nskip_jax.execution import native
  d = jax.devices()[0]
  return {'backend': jax.default_backend(), 'device': d.device_kind, 'devices': jax.device_count(),
          'native_kernels': native.available(), **execution.before_jax()}


def emit(record: dict) -> None:
  print(json.dumps(record), flush=True)

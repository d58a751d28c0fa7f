"""Host memory on the CPU backend: freed buffers kept for reuse, not handed back to the kernel.

Every execution of a jitted step on XLA:CPU allocates its temporaries as one buffer, 1.4 GB for
ResNet50's train step at batch 32, from one of XLA's worker threads. glibc's malloc serves a
request that large from a fresh ``mmap`` (outside the main arena it has no other way) and
``munmap``s it when it is freed, so each step faults in every page of it again: 374k page
faults and about 0.6 s of kernel time per step on the development machine
(docs/PERFORMANCE.md). :func:`reuse_freed_memory` makes every thread allocate from the main
arena (``M_ARENA_MAX=1``), which grows with ``brk`` instead of ``mmap`` (``M_MMAP_MAX=0``) and
never gives memory back (``M_TRIM_THRESHOLD=-1``): from the second step on, the step's buffer
is the previous step's, already mapped. The price: the process keeps its peak memory until it
exits, and that peak is higher (docs/PERFORMANCE.md); and threads that allocate much at the same
time wait for each other's lock on the one arena (under ``jax.profiler``, traced operations take
about twice as long, so ``benchmarks/profile_step.py`` turns this off).

The command-line tools and benchmarks apply it first thing on the CPU backend, with the other
settings of ``execution.before_jax``; in a notebook, call that before the first JAX computation
(threads that have allocated already keep their own arenas). Only for glibc on Linux; ``N2NSKIP_MALLOC=0`` turns it off.
"""
import ctypes
import functools
import os
import platform

# mallopt(3) parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))


@functools.lru_cache(maxsize=None)
def reuse_freed_memory() -> bool:
  """Sets glibc's malloc to keep and reuse freed memory (module docstring); whether it did
  (``False`` off glibc, or with ``N2NSKIP_MALLOC=0``)."""
  if os.environ.get('N2NSKIP_MALLOC', '1') == '0' or platform.system() != 'Linux':
    return False
  if platform.libc_ver()[0] != 'glibc':
    return False
  mallopt = ctypes.CDLL(None).mallopt
  return all(mallopt(param, value) == 1 for param, value in SETTINGS)

"""XLA:CPU's convolutions by XLA itself, not by YNNPACK (docs/PERFORMANCE.md).

jaxlib 0.10 to 0.12's XLA:CPU hands dots, reductions and convolutions to YNNPACK: its default
``--xla_cpu_experimental_ynn_fusion_type`` is ``individual_dot,individual_convolution,reduce``.
YNNPACK's convolutions are the slower of the two on this project's shapes, their gradients
most: forward + backward of a 3x3 conv, batch 32, 32x32x64 -> 64, took 36-37 ms against 21.5 ms
by XLA's own convolution on the development machine (``benchmarks/conv_layers.py``), and every
3x3 conv of VGG19 and ResNet50 but the 3-channel stems' (0.8 ms slower) was faster by XLA's.
:func:`convolutions_by_xla` keeps YNNPACK's dots and reductions and drops its convolutions
(``individual_dot,reduce``).

XLA reads ``XLA_FLAGS`` once, when JAX starts its first backend: the command-line tools and
benchmarks apply this first thing on the CPU backend, with the other settings of
``execution.before_jax``; in a notebook, call that before the first JAX computation. A setting of the flag already in ``XLA_FLAGS`` is kept;
``N2NSKIP_XLA_FLAGS=0`` leaves XLA's default. Accelerators ignore the flag.

XLA aborts the process on a flag it does not know, so the flag is set only for the jaxlib
releases known to have it (:data:`JAXLIB_WITH_FLAG`, read from the installed version at run
time); another jaxlib runs with XLA's default.
"""
import functools
import os
import re
from importlib import metadata

FLAG = '--xla_cpu_experimental_ynn_fusion_type'
VALUE = 'individual_dot,reduce'
# [first, last] minor releases whose XLA:CPU has FLAG (checked: 0.10.2, 0.11.2, 0.12.0.1).
JAXLIB_WITH_FLAG = ((0, 10), (0, 12))


@functools.lru_cache(maxsize=None)
def convolutions_by_xla() -> bool:
  """Adds ``FLAG=VALUE`` to ``XLA_FLAGS`` (module docstring); whether XLA:CPU will run with it:
  ``False`` with ``N2NSKIP_XLA_FLAGS=0``, with another setting of the flag in ``XLA_FLAGS``, or
  once a backend has started (then nothing is changed)."""
  flags = os.environ.get('XLA_FLAGS', '')
  if os.environ.get('N2NSKIP_XLA_FLAGS', '1') == '0' or FLAG in flags:
    return f'{FLAG}={VALUE}' in flags.split()
  if backends_started() or not jaxlib_has_flag():
    return False
  os.environ['XLA_FLAGS'] = f'{flags} {FLAG}={VALUE}'.strip()
  return True


def minor_release(version: str) -> tuple[int, int]:
  """``(0, 12)`` for ``'0.12.0.1'`` (or ``'0.12.0rc1'``): a release's major and minor numbers."""
  return tuple(int(x) for x in re.findall(r'\d+', version)[:2])


def jaxlib_minor() -> tuple[int, int]:
  """The installed jaxlib's :func:`minor_release` (read without importing JAX)."""
  return minor_release(metadata.version('jaxlib'))


def jaxlib_has_flag(version: str | None = None) -> bool:
  """Whether jaxlib ``version`` (default: the installed one) is in :data:`JAXLIB_WITH_FLAG`."""
  minor = jaxlib_minor() if version is None else minor_release(version)
  return JAXLIB_WITH_FLAG[0] <= minor <= JAXLIB_WITH_FLAG[1]


def backends_started() -> bool:
  """Whether JAX has started a backend (then ``XLA_FLAGS`` is read already). JAX has no public
  way to ask; this is the project's one import from ``jax._src`` (a test fails if it moves)."""
  from jax._src import xla_bridge  # here: importing this module does not import JAX
  return xla_bridge.backends_are_initialized()

"""Native XLA:CPU kernels for the sparse skip convs (``sparse_kernels.cc``), called through
XLA's FFI.

The two loops of :mod:`n2nskip_jax.sparse` that XLA:CPU runs slowest as ``lax.scan`` (the
gather-multiply-adds, which write their sums position-major, and the weight gradients' segment
dot products) have float32 CPU kernels here. Both read their operands position-major (the
layer's input, the output gradient), gathering the channel-major layout a tile at a time in
cache, so no layout change of an activation-sized array is written out. They are
compiled from the package's C++ source with the system's C++ compiler on first use (``$CXX``,
else ``c++``; about 2 s), cached under ``$XDG_CACHE_HOME/n2nskip_jax`` (else
``~/.cache/n2nskip_jax``) per source, compiler flags, jaxlib and CPU, with a SHA-256 beside
each library that is checked before it is loaded (a damaged file is rebuilt, with a warning),
and registered with XLA once their symbols are found. ``N2NSKIP_NATIVE=0`` turns them off.
Under ``jax.vmap`` they run once per batch element
(``vmap_method='sequential'``). Where they cannot be built, one warning says why and the
sparse path runs as ``lax.scan``: same results, slower. Accelerators always run the scan.
"""
import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shlex
import subprocess
import tempfile
import warnings

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

SOURCE = pathlib.Path(__file__).with_name('sparse_kernels.cc')
FLAGS = ('-O3', '-march=native', '-std=c++17', '-shared', '-fPIC', '-fopenmp-simd', '-w')
ACCUMULATE, SEGMENT_DOTS = 'n2nskip_accumulate', 'n2nskip_segment_dots'
_SYMBOLS = {ACCUMULATE: 'N2nskipAccumulate', SEGMENT_DOTS: 'N2nskipSegmentDots'}


@functools.lru_cache(maxsize=None)
def available() -> bool:
  """Whether the kernels are built and registered for the CPU backend (builds them once)."""
  if os.environ.get('N2NSKIP_NATIVE', '1') == '0':
    return False
  try:
    library = load()
  except (OSError, subprocess.SubprocessError) as e:
    warnings.warn(f'n2nskip_jax: native sparse kernels unavailable ({e}); sparse skip layers '
                  'run as lax.scan (same results, slower). Set CXX to a C++17 compiler, or '
                  'N2NSKIP_NATIVE=0 to silence this.', RuntimeWarning, stacklevel=2)
    return False
  for target, symbol in _SYMBOLS.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)),
                                platform='cpu')
  return True


def load() -> ctypes.CDLL:
  """The built library, loaded; an ``OSError`` naming the file if it lacks a kernel."""
  path = build()
  library = ctypes.cdll.LoadLibrary(str(path))
  missing = [symbol for symbol in _SYMBOLS.values() if not hasattr(library, symbol)]
  if missing:
    raise OSError(f'{path} lacks the symbols {missing}')
  return library


def _digest(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _checksum(path: pathlib.Path) -> pathlib.Path:
  return path.with_name(path.name + '.sha256')


def build() -> pathlib.Path:
  """The compiled shared library, from the cache if its checksum holds, or compiled now
  (atomically, so concurrent processes never load a half-written file)."""
  compiler = shlex.split(os.environ.get('CXX', 'c++'))
  key = hashlib.sha256('\0'.join([SOURCE.read_text(), *compiler, *FLAGS, jaxlib.__version__,
                                  platform.machine(), _cpu_flags()]).encode()).hexdigest()[:16]
  cache = pathlib.Path(os.environ.get('XDG_CACHE_HOME', pathlib.Path.home() / '.cache'))
  path = cache / 'n2nskip_jax' / f'sparse_kernels-{key}.so'
  checksum = _checksum(path)
  if path.exists() and checksum.exists():  # (without one: built by an older version)
    if checksum.read_text() == _digest(path):
      return path
    warnings.warn(f'n2nskip_jax: the cached native library {path} does not match its '
                  'checksum (damaged); rebuilding it', RuntimeWarning, stacklevel=3)
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
    out = pathlib.Path(tmp) / path.name
    done = subprocess.run([*compiler, *FLAGS, '-I', jax.ffi.include_dir(), str(SOURCE), '-o',
                           str(out)], capture_output=True, text=True)
    if done.returncode:
      raise subprocess.SubprocessError(f'{compiler[0]} failed: {done.stderr.strip()[-500:]}')
    digest = _checksum(out)
    digest.write_text(_digest(out))
    os.replace(out, path)  # a reader that sees the old checksum with it rebuilds: no harm
    os.replace(digest, _checksum(path))
  return path


def _cpu_flags() -> str:
  """The CPU's feature flags (``-march=native`` code runs only where they are the same)."""
  try:
    info = pathlib.Path('/proc/cpuinfo').read_text()
  except OSError:
    return platform.processor()
  return next((line for line in info.splitlines() if line.startswith(('flags', 'Features'))), '')


def accumulate(src, weights, rows, phases, taps, out_rows, index=None, span: int = 0):
  """``out[m, g] = sum_k weights[q, g, k] * src[rows[g, k], phases[g, k] * length + taps[g, k]
  + t]`` where ``out_rows[q * length + t] == m`` (``weights``: ``(P, G, K)``, one set per range of
  ``length = len(out_rows) // P`` positions; ``out_rows`` maps every row of ``out`` exactly
  once, ``-1`` for positions not computed; zero weights are skipped; float32). With ``index``,
  ``src`` is position-major and read as ``src[index].T`` (0 where ``index`` is one past its
  last row), gathered a tile at a time and never written out; ``index`` then holds the phases
  of ``length`` columns and ``span`` more, the largest ``taps``."""
  num_out = int((np.asarray(out_rows) >= 0).sum())
  call = jax.ffi.ffi_call(ACCUMULATE, jax.ShapeDtypeStruct((num_out, weights.shape[1]),
                                                           jnp.float32), vmap_method='sequential')
  return call(src, _index(index), weights, *_ints(rows, phases, taps),
              jnp.asarray(out_rows, jnp.int32), span=span)


def segment_dots(src, table, rows, phases, taps, d, shift: int, length: int, index=None,
                 span: int = 0, d_index=None):
  """``out[g, k] = sum_{t < length} src[rows[g, k], phases[g, k] * length + taps[g, k] + t] *
  d[g, shift + t]`` where ``table[g, k] >= 0``, else 0 (float32; ``index``, ``span``: as
  :func:`accumulate`'s). With ``d_index`` (``length`` entries; then ``shift`` is 0), ``d`` is
  position-major too and read as ``d[d_index].T`` the same way."""
  call = jax.ffi.ffi_call(SEGMENT_DOTS, jax.ShapeDtypeStruct(table.shape, jnp.float32),
                         vmap_method='sequential')
  return call(src, _index(index), *_ints(table, rows, phases, taps), d, _index(d_index),
              shift=shift, length=length, span=span)


def _index(index):
  return jnp.zeros((0,), jnp.int32) if index is None else jnp.asarray(index, jnp.int32)


def _ints(*arrays):
  return [a.astype(jnp.int32) for a in arrays]

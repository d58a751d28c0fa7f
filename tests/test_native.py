"""The native CPU kernels of the sparse skip convs (n2nskip_jax.execution.native): equal to the lax.scan
they replace, refuse tables that read outside their rows, and fall back with a warning where
they cannot be built."""
import os
import shlex
import shutil
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from n2nskip_jax.execution import by_nonzeros as sparse
from n2nskip_jax.execution import native


@pytest.fixture(scope='module')
def built():
  if shutil.which(os.environ.get('CXX', 'c++')) is None:
    pytest.skip('no C++ compiler: the sparse path runs as lax.scan')
  assert native.available(), 'a compiler is present, so the kernels must build'


def random_tables(rng, groups, width, num_rows, phases, max_tap):
  """A padded table (-1 after each row's count), its rows, phases and taps, and its weights (0
  at the padding), like by_nonzeros.conv's."""
  counts = rng.integers(0, width + 1, groups)
  table = np.where(np.arange(width) < counts[:, None], rng.integers(0, 10**6, (groups, width)),
                   -1).astype(np.int32)
  rows = rng.integers(0, num_rows, table.shape).astype(np.int32)
  phase = rng.integers(0, phases, table.shape).astype(np.int32)
  tap = rng.integers(0, max_tap + 1, table.shape).astype(np.int32)
  weights = np.where(table >= 0, rng.normal(size=table.shape), 0).astype(np.float32)
  return table, rows, phase, tap, weights


@pytest.mark.parametrize('gathered', [False, True])
def test_native_kernels_equal_the_scan_across_tiles(built, gathered):
  """Reading a channel-major array, or gathering it a tile at a time from a position-major one
  through an index (zeros where it points one past the end)."""
  # 1300 positions: two full 512-position tiles and a part of one, with a part-filled block.
  rng = np.random.default_rng(0)
  length, shift = 1300, 9
  table, rows, phase, tap, weights = random_tables(rng, 70, 5, 4, 2, shift)  # panels: 64 + 6
  positions = 2000  # gathered: src = a[index].T, the index over 2 phases and the shift
  a = jnp.asarray(rng.normal(size=(positions, 4)), jnp.float32)
  index = rng.integers(0, positions + 1, 2 * length + shift).astype(np.int32)
  src = sparse._channel_major(a, index)
  read, source = (a, index) if gathered else (src, None)
  # Two ranges with their own weights; written position-major, to 2000 rows in random order
  # (the other 600 positions are not computed).
  by_range = np.stack([weights, np.where(table >= 0, rng.normal(size=table.shape), 0)])
  columns = rng.permutation(2 * length)[:2000].astype(np.int32)
  sums = lambda *a: sparse._sum_to_positions(*a, columns, length, source, shift, True)
  operands = (read, by_range.astype(np.float32), rows, phase, tap)
  out = jax.jit(sums)(*operands)
  assert 'n2nskip_accumulate' in jax.jit(sums).lower(*operands).as_text()
  ref = sparse._scan_sum_to_positions(src, by_range, rows, phase * length + tap, columns, length)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)

  # The output gradient: channel-major and read from column `shift` on, or gathered from a
  # position-major array like the input.
  d = jnp.asarray(rng.normal(size=(70, length + 2 * shift)), jnp.float32)
  d_positions = jnp.asarray(rng.normal(size=(1500, 70)), jnp.float32)
  d_index = rng.integers(0, 1501, length).astype(np.int32)
  if gathered:
    operands, options = (read, table, rows, phase, tap, d_positions), dict(d_index=d_index)
    d_ref, d_shift = sparse._channel_major(d_positions, d_index), 0
  else:
    operands, options, d_ref, d_shift = (read, table, rows, phase, tap, d), {}, d, shift
  dots = jax.jit(lambda *a: native.segment_dots(*a, d_shift, length, source, shift, **options))(
      *operands)
  ref = sparse._scan_segment_dots(src, table, rows, phase * length + tap, d_ref, d_shift, length)
  np.testing.assert_allclose(np.where(table >= 0, dots, 0), np.where(table >= 0, ref, 0),
                             rtol=1e-4, atol=1e-3)
  assert np.all(np.asarray(dots)[table < 0] == 0)


def test_sparse_conv_lowers_to_the_native_kernels_in_float32_only(built):
  mask = (np.random.default_rng(1).random((3, 3, 4, 4)) < 0.3).astype(np.float32)
  tables = sparse.nonzero_tables(mask)
  grad = jax.grad(lambda x, w: jnp.sum(sparse.conv(x, w, tables, mask.shape, native=True) ** 2),
                  (0, 1))
  # float32: the forward and input-gradient sums and the weight gradient, and no layout pass
  # (the kernels gather the input and the output gradient a tile at a time); bfloat16: none,
  # the scan.
  for dtype, calls in ((jnp.float32, (2, 1)), (jnp.bfloat16, (0, 0))):
    x, w = jnp.ones((2, 5, 5, 4), dtype), jnp.ones(tables['by_output'].shape, dtype)
    text = jax.jit(grad).lower(x, w).as_text()
    targets = (native.ACCUMULATE, native.SEGMENT_DOTS)
    assert tuple(text.count(f'@{t}(') for t in targets) == calls, dtype


def test_native_kernel_refuses_bad_segments_and_output_maps(built):
  src, weights = jnp.zeros((2, 10), jnp.float32), np.ones((1, 1, 1), np.float32)
  rows, phases, taps = np.zeros((1, 1), np.int32), np.zeros((1, 1), np.int32), np.full((1, 1), 5)
  with pytest.raises(Exception, match='reads outside its source row'):
    jax.block_until_ready(native.accumulate(src, weights, rows, phases, taps, np.arange(6)))
  with pytest.raises(Exception, match='not one-to-one'):  # two positions write row 0
    jax.block_until_ready(native.accumulate(src, weights, rows, phases, taps * 0,
                                            np.array([0, 1, 0, -1])))
  with pytest.raises(Exception, match='do not match'):  # 2 ranges cannot split 3 positions
    jax.block_until_ready(native.accumulate(src, np.ones((2, 1, 1), np.float32), rows, phases,
                                            taps * 0, np.arange(3)))
  # Gathered from a position-major (10, 2) array: index values in [0, 10], taps within span.
  a = jnp.zeros((10, 2), jnp.float32)
  with pytest.raises(Exception, match='outside'):
    jax.block_until_ready(native.accumulate(a, weights, rows, phases, taps * 0, np.arange(4),
                                            index=np.full(5, 11), span=1))
  with pytest.raises(Exception, match='reads outside its source row'):
    jax.block_until_ready(native.accumulate(a, weights, rows, phases, taps, np.arange(4),
                                            index=np.zeros(5), span=1))
  # A gathered output gradient: as many channels as the table has rows, read from column 0.
  table = np.zeros((2, 1), np.int32)
  dots = lambda d, shift: jax.block_until_ready(native.segment_dots(
      a, table, table, table, table, d, shift, 4, index=np.zeros(5), span=1,
      d_index=np.zeros(4)))
  assert dots(jnp.ones((3, 2), jnp.float32), 0).shape == (2, 1)
  with pytest.raises(Exception, match='gradient rows do not match'):
    dots(jnp.ones((3, 5), jnp.float32), 0)
  with pytest.raises(Exception, match='reads outside its source row'):
    dots(jnp.ones((3, 2), jnp.float32), 1)


def test_failed_build_warns_once_and_falls_back_to_the_scan(monkeypatch, tmp_path):
  monkeypatch.setenv('CXX', 'false')  # a "compiler" that always fails
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  with pytest.warns(RuntimeWarning, match='native sparse kernels unavailable .*false failed'):
    assert native.available.__wrapped__() is False
  monkeypatch.setenv('N2NSKIP_NATIVE', '0')
  assert native.available.__wrapped__() is False  # switched off: no build, no warning
  assert not any(tmp_path.rglob('*.so'))


def test_a_damaged_cached_library_is_rebuilt_with_a_warning(built, monkeypatch, tmp_path):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  path = native.build()
  size = path.stat().st_size
  with open(path, 'r+b') as f:  # truncated, as by a full disk or a killed copy
    f.truncate(size // 2)
  with pytest.warns(RuntimeWarning, match=f'{path} does not match its checksum'):
    assert native.build() == path
  assert path.stat().st_size == size and native.load()


def test_a_cached_library_without_the_kernels_is_refused_by_name(built, monkeypatch, tmp_path):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  path = native.build()
  source = tmp_path / 'other.cc'
  source.write_text('extern "C" int unrelated() { return 0; }\n')
  subprocess.run([*shlex.split(os.environ.get('CXX', 'c++')), '-shared', '-fPIC', str(source),
                  '-o', str(path)], check=True)
  native._checksum(path).write_text(native._digest(path))  # a checksum that holds
  with pytest.raises(OSError, match=f'{path} lacks the symbols'):
    native.load()
  with pytest.warns(RuntimeWarning, match='native sparse kernels unavailable .* lacks the symbols'):
    assert native.available.__wrapped__() is False

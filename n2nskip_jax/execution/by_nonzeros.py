"""Masked kernels executed by their nonzeros: work that scales with the nonzero count.

A masked conv ``y = conv(x, kernel * mask)`` (a dense layer is the 1x1 conv of a 1x1 map) is
computed as a sum over the mask's nonzero entries ``e = (dy, dx, ci, co)``:

    y[n, h, w, co] = sum_e  kernel[e] * x_pad[n, s*h + dy, s*w + dx, ci]

The input is laid out channel-major with its ``s x s`` stride phases side by side (a grid
of positions, :class:`_Grid`), so every entry reads one contiguous segment of its input
channel's row, at an offset set by its tap and phase. Entries are grouped by output channel
into a padded table (``by_output``, ELL format); the forward pass runs over the table's
columns, each a gather of one segment per output channel and a multiply-add, and the sums at
the output positions are written position-major (NHWC). The gradient with respect to the
input is the same operation over the entries grouped by input channel (``by_input``), reading
the output gradient, one stride phase at a time; the gradient of each entry's weight is one
segment dot product. The conv reads the kernel only through its entries at the nonzeros
(:func:`weights_by_output`), so a gradient taken with respect to those is compact; one taken
with respect to the dense kernel is zero at every pruned entry. On the CPU backend, in
float32, these loops and the layout changes can run as native kernels
(:mod:`n2nskip_jax.execution.native`; the plan says whether, ``native=True``); else as
``lax.scan`` and XLA gathers, on any backend.

The kernel and mask stay dense-shaped (checkpoints, counting and analysis are unchanged);
the index tables are built once from the mask (:func:`nonzero_tables`) and travel with the
execution plan to the step, which passes them in their own variable collection,
:data:`NONZEROS`. A layer with tables there runs this path; without, the dense masked one.
Pruned entries get no gradient either way, so they stay exactly 0. Which layers get tables:
``execution.plan``, from ``config.execution.sequential`` and ``config.execution.skip``.
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from n2nskip_jax.execution import native

NONZEROS = 'nonzeros'
# 'auto' runs a masked layer by its nonzeros on the CPU backend when at most this share of its
# kernel is nonzero, with the native kernels or with the scan (docs/PERFORMANCE.md: the
# measured per-layer crossover against the dense path, skip and main-path shapes).
AUTO_MAX_DENSITY = {'native': 0.08, 'scan': 0.02}


def auto_max_density(dtype=jnp.float32) -> float:
  """The density up to which ``'auto'`` (``config.execution.sequential`` and ``.skip``) runs a
  masked layer computing in ``dtype`` by its nonzeros on the CPU (the native kernels are float32
  only)."""
  kernels = jnp.dtype(dtype) == jnp.float32 and native.available()
  return AUTO_MAX_DENSITY['native' if kernels else 'scan']


def nonzero_tables(mask) -> dict:
  """Index tables of a mask's nonzero entries (numpy, built once per run).

  ``by_output`` ``(out, K)`` and ``by_input`` ``(in, K')``: row ``g`` lists the flat kernel
  indices of the nonzeros of output (input) channel ``g``, then ``-1`` up to the longest row.
  ``slots_by_input`` ``(in, K')``: where each ``by_input`` entry sits in the flattened
  ``by_output`` table (``-1`` for the padding). ``ascending`` ``(out * K,)``: the flattened
  ``by_output`` table's entries in ascending order, its padding last as ``mask.size`` (one past
  the end), so that gathers and scatters at the nonzeros sweep the kernel once, in order;
  ``order``: the slot of the flattened ``by_output`` table each ``ascending`` entry comes from,
  and ``rank`` its inverse. A dense ``(in, out)`` kernel is indexed as ``(1, 1, in, out)`` (the
  same flat order).
  """
  mask = np.asarray(mask)
  shape = (1,) * (4 - mask.ndim) + mask.shape
  entries = np.flatnonzero(mask)
  _, _, ci, co = np.unravel_index(entries, shape)
  by_output, slots = _rows_of(entries, co, shape[3])
  by_input, _ = _rows_of(entries, ci, shape[2])
  # `entries` ascend, so a sorted search finds each one's rank; the padding gets -1.
  rank = np.where(by_input >= 0, np.searchsorted(entries, by_input), len(entries))
  slots_by_input = np.append(slots, -1)[rank].astype(np.int32)
  flat = np.where(by_output >= 0, by_output, mask.size).ravel()
  order = np.argsort(flat, kind='stable').astype(np.int32)
  return {'by_output': by_output, 'by_input': by_input, 'slots_by_input': slots_by_input,
          'ascending': flat[order], 'order': order, 'rank': np.argsort(order).astype(np.int32)}


def _rows_of(entries: np.ndarray, group: np.ndarray, n: int):
  """``(n, K)`` table whose row ``g`` holds ``entries[group == g]`` in order, padded with
  ``-1``, and where each entry went in the flattened table."""
  counts = np.bincount(group, minlength=n)
  order = np.argsort(group, kind='stable')
  slot = np.arange(len(group)) - np.repeat(np.cumsum(counts) - counts, counts)
  table = np.full((n, max(1, counts.max(initial=0))), -1, np.int32)
  table[group[order], slot] = entries[order]
  where = np.empty(len(group), np.int64)
  where[order] = group[order] * table.shape[1] + slot
  return table, where


def weights_by_output(kernel, tables: dict):
  """``(out, K)``: the kernel's entries listed by ``tables['by_output']``, 0 at the padding:
  the weights :func:`conv` reads. Differentiating the train step's loss with respect to these
  (not the dense kernel) gives the gradient at the nonzeros only (``steps.train_step``).
  Gathered in ascending order (:func:`at_nonzeros`, the optimizer's own gather, which XLA
  computes once for both), then put in table order."""
  return at_nonzeros(kernel, tables['ascending'])[tables['rank']].reshape(
      tables['by_output'].shape)


def at_nonzeros(kernel, ascending):
  """``kernel``'s flat entries at ``ascending`` (a table of :func:`nonzero_tables`), 0 where
  it points one past the end."""
  return jnp.take(jnp.ravel(kernel), ascending, mode='fill', fill_value=0)


def conv(x, weights, tables: dict, kernel_shape, strides=(1, 1), padding='SAME',
         native: bool = False):
  """``lax.conv_general_dilated(x, kernel * mask, strides, padding)`` in NHWC/HWIO, computed
  from the mask's ``tables`` (:func:`nonzero_tables`) and the kernel's ``weights`` at its
  nonzeros (:func:`weights_by_output`); ``kernel_shape``: ``(kh, kw, in, out)``; ``native``: run its loops as the native CPU kernels
  (float32 operands only; :func:`native.available` must have returned ``True``)."""
  kh, kw, _, cout = kernel_shape
  n, h, w, c = x.shape
  if isinstance(padding, str):
    padding = lax.padtype_to_pads((h, w), (kh, kw), strides, padding)
  grid = _grid(n, h, w, (kh, kw), tuple(strides), tuple(map(tuple, padding)))
  (sy, sx), wq = grid.strides, grid.shape[1]

  def segments(table, row_axis):
    """Each entry's row (its input channel, or output channel for ``by_input``), its stride
    phase, and its tap's shift on the phase grid: it reads the segment at ``phase * length +
    shift``."""
    dy, dx, *channels = jnp.unravel_index(jnp.maximum(table, 0), kernel_shape)
    return channels[row_axis], (dy % sy) * sx + dx % sx, (dy // sy) * wq + dx // sx

  out = _gather_sum(grid, native)(x.reshape(-1, c), weights.astype(x.dtype), tables['by_output'],
                          *segments(tables['by_output'], 0), tables['slots_by_input'],
                          *segments(tables['by_input'], 1))
  return out.reshape(n, *grid.output, cout)


class _Grid(NamedTuple):
  """Where a conv's input is laid out channel-major (:func:`_source_index`): per input channel,
  the zero-padded input's ``s_y x s_x`` stride phases one after another, each ``(N, H_q, W_q)``
  (``shape``) flattened, then ``tail`` zeros (the largest tap shift), so that every entry's
  segment of ``length = N * H_q * W_q`` positions lies inside the row."""
  images: tuple  # (N, H, W)
  strides: tuple
  padding: tuple
  output: tuple  # (H_o, W_o)
  shape: tuple  # (H_q, W_q)
  tail: int

  @property
  def length(self) -> int:
    return self.images[0] * self.shape[0] * self.shape[1]

  @property
  def phases(self) -> int:
    return self.strides[0] * self.strides[1]


def _grid(n, h, w, kernel_size, strides, padding) -> _Grid:
  (kh, kw), (sy, sx), ((top, bottom), (left, right)) = kernel_size, strides, padding
  ho, wo = (h + top + bottom - kh) // sy + 1, (w + left + right - kw) // sx + 1
  if (sy, sx) == (1, 1):
    # One phase: the images' rows one after another, neighbours sharing the zeros between
    # their data (max(top, bottom) rows: the one's bottom padding and the next's top), likewise
    # columns. A read past a row's or an image's end lands on zeros (past the last image, on
    # the row's zero tail). A 4x4 map takes 5x5 positions, not 6x6; a 32x32 one 33x33.
    hq, wq = max(h + max(top, bottom), ho), max(w + max(left, right), wo)
  else:  # phases side by side: an entry's reads stay inside its own phase
    hq, wq = -(-(h + top + bottom) // sy), -(-(w + left + right) // sx)
  tail = ((kh - 1) // sy) * wq + (kw - 1) // sx
  return _Grid((n, h, w), strides, padding, (ho, wo), (hq, wq), tail)


def _source_index(grid: _Grid) -> np.ndarray:
  """Column ``j`` of the channel-major layout (:class:`_Grid`) copies input position
  ``index[j]`` (flat ``n, h, w``), or is a zero where ``index[j] == N * H * W``."""
  (n, h, w), (sy, sx), (hq, wq) = grid.images, grid.strides, grid.shape
  (top, _), (left, _) = grid.padding
  py, px, b, a, q = np.meshgrid(np.arange(sy), np.arange(sx), np.arange(n), np.arange(hq),
                                np.arange(wq), indexing='ij')
  y, z = sy * a + py - top, sx * q + px - left
  inside = (y >= 0) & (y < h) & (z >= 0) & (z < w)
  index = np.where(inside, (b * h + y) * w + z, n * h * w).reshape(-1)
  return np.concatenate([index, np.full(grid.tail, n * h * w)]).astype(np.int32)


def _output_index(grid: _Grid) -> np.ndarray:
  """The columns of the phase grid ``(N, H_q, W_q)`` that hold the outputs ``(N, H_o, W_o)``."""
  (ho, wo), (hq, wq) = grid.output, grid.shape
  b, y, z = np.meshgrid(np.arange(grid.images[0]), np.arange(ho), np.arange(wo), indexing='ij')
  return ((b * hq + y) * wq + z).reshape(-1).astype(np.int32)


@functools.lru_cache(maxsize=None)
def _gather_sum(grid: _Grid, native_kernels: bool):
  """The sparse conv's core on ``grid``:

      out[m, g] = sum_k weights[g, k] * src[rows[g, k], phases[g, k] * length + taps[g, k]
                                           + columns[m]]

  for the flat input ``x`` ``(N * H * W, in)``, its channel-major layout ``src``
  (:class:`_Grid`; the native kernels gather it from ``x`` a tile at a time instead of writing
  it out), and ``columns`` the positions of the grid that hold outputs; the padding of
  ``by_output`` weighs 0. Differentiable in ``x`` and ``weights``: ``slots_in`` lists the same
  entries by input channel (as slots of the flat ``weights``), ``rows_in``, ``phase_in`` and
  ``tap_in`` saying where each one writes.
  """
  length, tail = grid.length, grid.tail
  source, columns = _source_index(grid), _output_index(grid)
  padded_columns = _inverse(columns, length, margin=tail)
  inputs = _inverse(source, int(np.prod(grid.images)))

  @jax.custom_vjp
  def gather_sum(x, weights, by_output, rows, phases, taps, slots_in, rows_in, phase_in, tap_in):
    return fwd(x, weights, by_output, rows, phases, taps, slots_in, rows_in, phase_in, tap_in)[0]

  def fwd(x, weights, by_output, rows, phases, taps, slots_in, rows_in, phase_in, tap_in):
    out = _sum_to_positions(x, weights[None], rows, phases, taps, columns, length, source, tail,
                            native_kernels)
    return out, (x, weights, by_output, rows, phases, taps, slots_in, rows_in, phase_in, tap_in)

  def bwd(residuals, d_out):
    x, weights, by_output, rows, phases, taps, slots_in, rows_in, phase_in, tap_in = residuals
    # d_x at the input position of column q * length + t of src: the sum over the entries e of
    # phase q reading its row of weight[e] * d_pos[g_e, t - tap_e], with d_pos the gradient at
    # every position of the phase grid, zero-padded by `tail` on each side so that every
    # shifted segment lies inside it: d_out read through `padded_columns`. An entry's weight
    # counts in its own phase only.
    weights_in = jnp.where(slots_in >= 0, jnp.ravel(weights)[jnp.maximum(slots_in, 0)], 0)
    by_phase = jnp.stack([jnp.where(phase_in == q, weights_in, 0) for q in range(grid.phases)])
    d_x = _sum_to_positions(d_out, by_phase, rows_in, jnp.zeros_like(tap_in), tail - tap_in,
                            inputs, length, padded_columns, 2 * tail, native_kernels)
    d_weights = _segment_dots(x, by_output, rows, phases, taps, d_out, tail, length, source,
                              tail, padded_columns, native_kernels)
    return (d_x, jnp.where(by_output >= 0, d_weights, 0).astype(weights.dtype)) + (None,) * 8

  gather_sum.defvjp(fwd, bwd)
  return gather_sum


def _channel_major(a, index=None):
  """``a[index].T``, zero where ``index`` is one past the last row (``a`` where no index)."""
  return a if index is None else jnp.take(a, index, axis=0, mode='fill', fill_value=0).T


def _inverse(index: np.ndarray, size: int, margin: int = 0) -> np.ndarray:
  """For each of ``size`` positions, with ``margin`` more on each side, the ``j`` with
  ``index[j]`` at that position, or ``len(index)`` where none (each position at most once)."""
  inside = index < size
  inverse = np.full(size + 2 * margin, len(index), np.int32)
  inverse[margin + index[inside]] = np.flatnonzero(inside)
  return inverse


def _sum_to_positions(src, weights, rows, phases, taps, columns: np.ndarray, length: int,
                      source: np.ndarray | None = None, span: int = 0, native_kernels=False):
  """``out[m, g] = sum_k weights[q, g, k] * src[rows[g, k], phases[g, k] * length + taps[g, k]
  + t]`` where ``columns[m] = q * length + t``: ``len(weights)`` sums over ``length``
  positions, each with its own weights, read at ``columns`` and written position-major. With
  ``source``, ``src`` is position-major and read as ``_channel_major(src, source)`` (``span``:
  the largest tap)."""
  out_rows = _inverse(columns, len(weights) * length)
  out_rows = np.where(out_rows < len(columns), out_rows, -1)

  def scan(src, weights, rows, phases, taps):
    return _scan_sum_to_positions(_channel_major(src, source), weights, rows,
                                  phases * length + taps, columns, length)
  kernel = functools.partial(native.accumulate, out_rows=out_rows, index=source, span=span)
  return _native_or_scan(native_kernels, kernel, scan, src, weights, rows, phases, taps)


def _scan_sum_to_positions(src, weights, rows, offsets, columns, length):
  sums = [_scan_accumulate(src, w, rows, offsets, length) for w in weights]
  return jnp.take(jnp.concatenate(sums, 1), columns, axis=1).T


def _segments(src, rows, offsets, length):
  """``(len(rows), length)``: ``src[rows[i], offsets[i]:offsets[i] + length]``."""
  take = lambda r, o: lax.dynamic_slice(src, (r, o), (1, length))[0]
  return jax.vmap(take)(rows, offsets)


def _scan_accumulate(src, weights, rows, offsets, length):
  """``out[g, t] = sum_k weights[g, k] * src[rows[g, k], offsets[g, k] + t]`` for ``t <
  length``, as one gather-and-multiply-add per table column, accumulated in at
  least float32."""
  def column(acc, k):
    w, r, o = k
    return acc + w[:, None] * _segments(src, r, o, length), None
  dtype = jnp.result_type(src, weights)
  init = jnp.zeros((weights.shape[0], length), jnp.promote_types(dtype, jnp.float32))
  return lax.scan(column, init, (weights.T, rows.T, offsets.T))[0].astype(dtype)


def _segment_dots(src, table, rows, phases, taps, d, shift, length, source, span, d_source,
                  native_kernels):
  """``out[g, k] = sum_{t < length} src[rows[g, k], phases[g, k] * length + taps[g, k] + t] *
  d[g, shift + t]`` (any value where ``table[g, k] < 0``): the weight gradient of each table
  entry, with ``src`` and ``d`` position-major, read as ``_channel_major(src, source)`` and
  ``_channel_major(d, d_source)`` (``span``: as :func:`_sum_to_positions`'). The scan takes
  the same channel-major ``d`` as the input gradient's scan (XLA computes it once)."""
  def scan(src, table, rows, phases, taps, d):
    return _scan_segment_dots(_channel_major(src, source), table, rows, phases * length + taps,
                              _channel_major(d, d_source), shift, length)
  kernel = functools.partial(native.segment_dots, shift=0, length=length, index=source,
                             span=span, d_index=d_source[shift:shift + length])
  return _native_or_scan(native_kernels, kernel, scan, src, table, rows, phases, taps, d)


def _scan_segment_dots(src, table, rows, offsets, d, shift, length):
  """:func:`_segment_dots` on channel-major ``src`` and ``d``, as one segment product per table
  column."""
  del table  # the padding's products are computed and ignored
  ones = jnp.ones((length,), d.dtype)

  def column(_, k):
    d_pos = d[:, shift:shift + length]  # sliced in the loop: not copied out of `d`
    # Row sums as a matrix-vector product: in the ResNet50 step XLA:CPU runs it faster than
    # jnp.sum or a batched dot_general (docs/PERFORMANCE.md).
    return None, (_segments(src, *k, length) * d_pos) @ ones
  return lax.scan(column, None, (rows.T, offsets.T))[1].T


def _native_or_scan(native_kernels: bool, kernel, scan, *operands):
  """``kernel(*operands)`` if ``native_kernels`` and the operands are float32 (the native
  kernels, :mod:`n2nskip_jax.execution.native`), else ``scan(*operands)``."""
  floats = [a.dtype for a in operands if jnp.issubdtype(a.dtype, jnp.floating)]
  if native_kernels and all(dtype == jnp.float32 for dtype in floats):
    return kernel(*operands)
  return scan(*operands)

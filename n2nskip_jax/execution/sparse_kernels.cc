// XLA:CPU kernels for the sparse skip convs of n2nskip_jax/sparse.py, called through XLA's FFI.
//
// The two loops that sparse.py writes as lax.scan over table columns (Accumulate, SegmentDots)
// run here over tiles of positions, so that a tile of every source row stays in cache while all
// the table's entries read it. Both read their inputs (the layer's input, the output gradient)
// position-major, gathering and transposing a tile at a time in cache (Source), and Accumulate
// writes its sums position-major: no layout change of an activation-sized array is written
// out. Work is shared among XLA's
// intra-op threads; every result is computed in a fixed order (the same bits whatever the
// thread count or schedule). Built on first use by n2nskip_jax/native.py.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kTile = 512;   // positions per tile: a tile of one row is 2 KiB
constexpr int64_t kParts = 8;    // SegmentDots: ranges of tiles summed apart (not per thread)
constexpr int64_t kBlock = 128;  // Accumulate: positions summed in registers per entry
constexpr int64_t kPanel = 64;   // Accumulate: groups written together to each output row

// Calls body(c) for c in [0, n), on the calling thread and on up to (threads - 1) tasks of
// XLA's pool. Returns when every c is done; tasks that start later find nothing left to do.
template <typename Body>
void ParallelFor(ffi::ThreadPool& pool, int64_t n, const Body& body) {
  struct Counters {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto counters = std::make_shared<Counters>();
  auto work = [counters, n, body = &body] {
    for (int64_t c; (c = counters->next.fetch_add(1)) < n;) {
      (*body)(c);
      counters->done.fetch_add(1, std::memory_order_release);
    }
  };
  int64_t helpers = std::min<int64_t>(pool.num_threads(), n) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule(decltype(work)(work));
  work();
  while (counters->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

typedef float Vector16 __attribute__((vector_size(64)));

// out[j][i] = in[i][j] for i, j < 16 (16 floats read from each in[i]); a null out[j] is
// skipped. In vector registers: rows interleaved one, two, four, then eight elements at a time
// (GCC and Clang vector extensions: AVX-512 shuffles where there are, narrower ones elsewhere).
inline void Transpose16(const float* const in[16], float* const out[16]) {
  Vector16 a[16], b[16];
  for (int i = 0; i < 16; ++i) std::memcpy(&a[i], in[i], sizeof(Vector16));
  for (int i = 0; i < 16; i += 2) {
    b[i] = __builtin_shufflevector(a[i], a[i + 1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25,
                                   12, 28, 13, 29);
    b[i + 1] = __builtin_shufflevector(a[i], a[i + 1], 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11,
                                       27, 14, 30, 15, 31);
  }
  for (int i = 0; i < 16; i += 4) {
    for (int h = 0; h < 2; ++h) {
      a[i + 2 * h] = __builtin_shufflevector(b[i + h], b[i + h + 2], 0, 1, 16, 17, 4, 5, 20, 21,
                                             8, 9, 24, 25, 12, 13, 28, 29);
      a[i + 2 * h + 1] = __builtin_shufflevector(b[i + h], b[i + h + 2], 2, 3, 18, 19, 6, 7, 22,
                                                 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
  }
  for (int i = 0; i < 16; i += 8) {
    for (int h = 0; h < 4; ++h) {
      b[i + h] = __builtin_shufflevector(a[i + h], a[i + h + 4], 0, 1, 2, 3, 8, 9, 10, 11, 16,
                                         17, 18, 19, 24, 25, 26, 27);
      b[i + h + 4] = __builtin_shufflevector(a[i + h], a[i + h + 4], 4, 5, 6, 7, 12, 13, 14, 15,
                                             20, 21, 22, 23, 28, 29, 30, 31);
    }
  }
  for (int h = 0; h < 8; ++h) {
    a[h] = __builtin_shufflevector(b[h], b[h + 8], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24,
                                   25, 26, 27);
    a[h + 8] = __builtin_shufflevector(b[h], b[h + 8], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22,
                                       23, 28, 29, 30, 31);
  }
  for (int j = 0; j < 16; ++j) {
    if (out[j]) std::memcpy(out[j], &a[j], sizeof(Vector16));
  }
}

// out[t] = sum_{k in [begin, end)} w[k] * base[at[k] + start + t] for t < kBlock, entries of
// zero weight skipped: the sums held in vector registers throughout.
inline void SumBlock(const float* base, const float* w, const int64_t* at, int64_t begin,
                     int64_t end, int64_t start, float* out) {
  constexpr int kVectors = kBlock / 16;
  Vector16 acc[kVectors] = {};
  for (int64_t k = begin; k < end; ++k) {
    if (w[k] == 0.0f) continue;
    const float* seg = base + at[k] + start;
#pragma GCC unroll 8
    for (int i = 0; i < kVectors; ++i) {
      Vector16 v;
      std::memcpy(&v, seg + 16 * i, sizeof v);
      acc[i] += w[k] * v;
    }
  }
  std::memcpy(out, acc, sizeof acc);
}

// out[c * stride + j] = a[index[j], c] for j < n (at most 16), c < channels: 0 where index[j]
// is `zeros`' row (one past the last). In 16 x 16 blocks, transposed in vector registers.
void GatherTransposed(const float* a, int64_t positions, int64_t channels, const int32_t* index,
                      int64_t n, const float* zeros, float* out, int64_t stride) {
  constexpr int64_t kSide = 16;
  const float* from[kSide];  // per column j, its source row (the zero row for the padding)
  for (int64_t j = 0; j < kSide; ++j) {
    const int64_t p = index[std::min(j, n - 1)];
    from[j] = p != positions ? a + p * channels : zeros;
  }
  for (int64_t c0 = 0; c0 < channels; c0 += kSide) {
    if (n == kSide && c0 + kSide <= channels) {
      const float* in[kSide];
      float* to[kSide];
      for (int64_t i = 0; i < kSide; ++i) {
        in[i] = from[i] + c0;
        to[i] = out + (c0 + i) * stride;
      }
      Transpose16(in, to);
      continue;
    }
    for (int64_t c = c0; c < std::min(channels, c0 + kSide); ++c) {  // a part block
      for (int64_t j = 0; j < n; ++j) out[c * stride + j] = from[j][c];
    }
  }
}

// Index values must lie in [0, positions]: `positions` stands for a zero.
ffi::Error CheckIndex(const int32_t* index, int64_t n, int64_t positions) {
  for (int64_t j = 0; j < n; ++j) {
    if (index[j] < 0 || index[j] > positions) {
      return ffi::Error::InvalidArgument("sparse kernel: index " + std::to_string(index[j]) +
                                         " outside [0, " + std::to_string(positions) + "]");
    }
  }
  return ffi::Error::Success();
}

// The channel-major array src[row, column] (a row per channel) that the sums and the dot
// products read: entry e reads row rows[e] at columns phases[e] * length + taps[e] + t, for
// t < length. Either `data` itself (rows x columns), or, where `index` is not empty, gathered
// from the position-major `data` (positions x channels), src[c, j] = data[index[j], c] (0 where
// index[j] == positions), a tile at a time: columns [t0, t0 + n + span) of every phase are
// transposed into a buffer of the calling thread's (in cache), and the channel-major array is
// never written out.
class Source {
 public:
  Source(ffi::Buffer<ffi::F32>& data, ffi::Buffer<ffi::S32>& index, int64_t length,
         int64_t span)
      : data_(data.typed_data()), index_(index.typed_data()), length_(length), span_(span),
        gathered_(index.element_count() > 0), columns_(index.element_count()) {
    rows_ = gathered_ ? data.dimensions()[1] : data.dimensions()[0];
    positions_ = data.dimensions()[0];
    if (!gathered_) columns_ = data.dimensions()[1];
    phases_ = gathered_ ? (columns_ - span_) / std::max<int64_t>(1, length_) : 0;
    zeros_.assign(gathered_ ? rows_ : 0, 0.0f);
  }

  // Every entry's segment must lie inside its row (gathered: inside its tile), every index
  // value in range. Returns each entry's offset from a tile's base (Load).
  ffi::Error Offsets(const int32_t* rows, const int32_t* phases, const int32_t* taps,
                     int64_t entries, std::vector<int64_t>& at) const {
    if (gathered_) {
      if (span_ < 0 || phases_ < 1 || phases_ * length_ + span_ != columns_) {
        return ffi::Error::InvalidArgument("sparse kernel: index is not phases x length + span");
      }
      if (ffi::Error e = CheckIndex(index_, columns_, positions_); e.failure()) return e;
    }
    at.resize(entries);
    for (int64_t e = 0; e < entries; ++e) {
      const int64_t column = int64_t{phases[e]} * length_ + taps[e];
      const bool outside_tile = gathered_ && (phases[e] >= phases_ || taps[e] > span_);
      if (rows[e] < 0 || rows[e] >= rows_ || phases[e] < 0 || taps[e] < 0 ||
          column + length_ > columns_ || outside_tile) {
        return ffi::Error::InvalidArgument("sparse kernel: entry " + std::to_string(e) +
                                           " reads outside its source row");
      }
      at[e] = gathered_ ? (phases[e] * rows_ + rows[e]) * Width() + taps[e]
                        : rows[e] * columns_ + column;
    }
    return ffi::Error::Success();
  }

  int64_t rows() const { return rows_; }

  // The base that entry e's offset is added to, reading columns from t0 on: `data` itself, or
  // the tile of columns [t0, t0 + n) gathered into `tile`.
  const float* Load(int64_t t0, int64_t n, std::vector<float>& tile) const {
    if (!gathered_) return data_ + t0;
    const int64_t width = Width();
    tile.resize(phases_ * rows_ * width);
    for (int64_t p = 0; p < phases_; ++p) {
      for (int64_t j = 0; j < n + span_; j += 16) {
        GatherTransposed(data_, positions_, rows_, index_ + p * length_ + t0 + j,
                         std::min<int64_t>(16, n + span_ - j), zeros_.data(),
                         tile.data() + p * rows_ * width + j, width);
      }
    }
    return tile.data();
  }

 private:
  int64_t Width() const { return kTile + span_; }

  const float* data_;
  const int32_t* index_;
  int64_t length_, span_;
  bool gathered_;
  int64_t columns_, rows_, positions_, phases_;
  std::vector<float> zeros_;
};

// out[m, g] = sum_k weights[q, g, k] * src[rows[g, k], phases[g, k] * length + taps[g, k] + t]
// for the m with out_rows[q * length + t] == m (src: see Source; `index` and `span` gather it
// from a position-major `src`): sums over P ranges of `length` positions, each range with its
// own weights (zero weights, the tables' padding, are skipped), written position-major
// (transposed) straight into the rows of `out` that the positions map to; positions mapped to
// -1 are not computed. Every row of `out` is mapped exactly once (checked).
ffi::Error Accumulate(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> src,
                      ffi::Buffer<ffi::S32> index, ffi::Buffer<ffi::F32> weights,
                      ffi::Buffer<ffi::S32> rows, ffi::Buffer<ffi::S32> phases,
                      ffi::Buffer<ffi::S32> taps, ffi::Buffer<ffi::S32> out_rows, int64_t span,
                      ffi::ResultBuffer<ffi::F32> out) {
  const int64_t ranges = weights.dimensions()[0], groups = weights.dimensions()[1];
  const int64_t width = weights.dimensions()[2];
  const int64_t length = out_rows.dimensions()[0] / ranges, num_out = out->dimensions()[0];
  const int32_t* to = out_rows.typed_data();
  float* y = out->typed_data();
  const int64_t entries = groups * width;
  if (static_cast<int64_t>(rows.element_count()) != entries ||
      static_cast<int64_t>(phases.element_count()) != entries ||
      static_cast<int64_t>(taps.element_count()) != entries ||
      static_cast<int64_t>(out_rows.element_count()) != ranges * length) {
    return ffi::Error::InvalidArgument("sparse kernel: tables and weights do not match");
  }
  const Source source(src, index, length, span);
  std::vector<int64_t> at;
  if (ffi::Error e = source.Offsets(rows.typed_data(), phases.typed_data(), taps.typed_data(),
                                    entries, at);
      e.failure()) {
    return e;
  }
  std::vector<char> mapped(num_out, 0);
  int64_t count = 0;
  for (int64_t j = 0; j < ranges * length; ++j) {
    if (to[j] < -1 || to[j] >= num_out || (to[j] >= 0 && mapped[to[j]]++)) {
      return ffi::Error::InvalidArgument("sparse kernel: output row map is not one-to-one");
    }
    count += to[j] >= 0;
  }
  if (count != num_out || out->dimensions()[1] != groups) {
    return ffi::Error::InvalidArgument("sparse kernel: output rows not all mapped");
  }
  const int64_t tiles = (length + kTile - 1) / kTile;
  ParallelFor(pool, ranges * tiles, [&](int64_t task) {
    const int64_t q = task / tiles, t0 = (task % tiles) * kTile;
    const int64_t n = std::min(kTile, length - t0);
    thread_local std::vector<float> tile;
    const float* base = source.Load(t0, n, tile);
    const float* w = weights.typed_data() + q * groups * width;
    const int32_t* dst_rows = to + q * length + t0;
    for (int64_t b = 0; b < n; b += kBlock) {
      const int64_t m = std::min(kBlock, n - b);
      for (int64_t g0 = 0; g0 < groups; g0 += kPanel) {
        const int64_t gn = std::min(kPanel, groups - g0);
        // A block of kBlock positions of kPanel groups, summed in registers group by group,
        // then written row by row: kPanel consecutive floats of each output row.
        float panel[kPanel][kBlock];
        for (int64_t gi = 0; gi < gn; ++gi) {
          const int64_t g = g0 + gi;
          if (m == kBlock) {
            SumBlock(base, w, at.data(), g * width, (g + 1) * width, b, panel[gi]);
            continue;
          }
          float acc[kBlock] = {};  // a part block: the tile's last positions
          for (int64_t k = g * width; k < (g + 1) * width; ++k) {
            const float* seg = base + at[k] + b;
            for (int64_t t = 0; t < m; ++t) acc[t] += w[k] * seg[t];
          }
          std::copy(acc, acc + kBlock, panel[gi]);
        }
        for (int64_t t = 0; t < m; t += 16) {  // the panel in 16 x 16 blocks, transposed
          for (int64_t gi = 0; gi < gn; gi += 16) {
            const float* in[16];
            float* dst[16];
            for (int i = 0; i < 16; ++i) {
              in[i] = panel[std::min<int64_t>(gi + i, gn - 1)] + t;
              const int32_t row = t + i < m ? dst_rows[b + t + i] : -1;
              dst[i] = row >= 0 ? y + row * groups + g0 + gi : nullptr;
            }
            if (t + 16 <= m && gi + 16 <= gn) {
              Transpose16(in, dst);
              continue;
            }
            for (int i = 0; i < 16; ++i) {  // a part block: the last positions or channels
              for (int64_t j = 0; dst[i] && j < std::min<int64_t>(16, gn - gi); ++j) {
                dst[i][j] = panel[gi + j][t + i];
              }
            }
          }
        }
      }
    }
  });
  return ffi::Error::Success();
}

// out[g, k] = sum_{t < length} src[rows[g, k], phases[g, k] * length + taps[g, k] + t] *
// d[g, shift + t] for the entries with table[g, k] >= 0, 0 for the padding (src: see Source).
// Where `d_index` is not empty, d is position-major too, read as d[g, j] = d[d_index[j], g]
// (one phase, no span: shift 0), a tile at a time like src. Each of kParts contiguous ranges of
// tiles is summed in double on its own; the ranges are added in order.
ffi::Error SegmentDots(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> src,
                       ffi::Buffer<ffi::S32> index, ffi::Buffer<ffi::S32> table,
                       ffi::Buffer<ffi::S32> rows, ffi::Buffer<ffi::S32> phases,
                       ffi::Buffer<ffi::S32> taps, ffi::Buffer<ffi::F32> d,
                       ffi::Buffer<ffi::S32> d_index, int64_t shift, int64_t length,
                       int64_t span, ffi::ResultBuffer<ffi::F32> out) {
  const int64_t groups = table.dimensions()[0], width = table.dimensions()[1];
  const int32_t* tb = table.typed_data();
  const Source source(src, index, length, span), gradient(d, d_index, length, 0);
  std::vector<int64_t> at, d_at;
  if (ffi::Error e = source.Offsets(rows.typed_data(), phases.typed_data(), taps.typed_data(),
                                    groups * width, at);
      e.failure()) {
    return e;
  }
  // Row g of the gradient read from column `shift` on: an entry (g, phase 0, tap shift).
  std::vector<int32_t> d_rows(groups), d_phases(groups, 0), d_taps(groups, shift);
  for (int64_t g = 0; g < groups; ++g) d_rows[g] = static_cast<int32_t>(g);
  if (gradient.rows() != groups) {
    return ffi::Error::InvalidArgument("sparse kernel: gradient rows do not match the table");
  }
  if (ffi::Error e = gradient.Offsets(d_rows.data(), d_phases.data(), d_taps.data(), groups,
                                      d_at);
      e.failure()) {
    return e;
  }
  const int64_t tiles = (length + kTile - 1) / kTile;
  const int64_t parts = std::max<int64_t>(1, std::min(kParts, tiles));
  std::vector<double> partial(parts * groups * width, 0.0);
  ParallelFor(pool, parts, [&](int64_t part) {
    double* sums = partial.data() + part * groups * width;
    thread_local std::vector<float> tile, d_tile;
    for (int64_t t = part * tiles / parts; t < (part + 1) * tiles / parts; ++t) {
      const int64_t t0 = t * kTile, n = std::min(kTile, length - t0);
      const float* base = source.Load(t0, n, tile);
      const float* d_base = gradient.Load(t0, n, d_tile);
      for (int64_t g = 0; g < groups; ++g) {
        const float* dg = d_base + d_at[g];
        int64_t k[4], found = 0;  // four entries at a time share each load of the gradient
        for (int64_t e = g * width; e < (g + 1) * width; ++e) {
          if (tb[e] < 0) continue;
          k[found++] = e;
          if (found < 4) continue;
          const float* s0 = base + at[k[0]];
          const float* s1 = base + at[k[1]];
          const float* s2 = base + at[k[2]];
          const float* s3 = base + at[k[3]];
          float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
          for (int64_t i = 0; i < n; ++i) {
            d0 += s0[i] * dg[i];
            d1 += s1[i] * dg[i];
            d2 += s2[i] * dg[i];
            d3 += s3[i] * dg[i];
          }
          sums[k[0]] += d0;
          sums[k[1]] += d1;
          sums[k[2]] += d2;
          sums[k[3]] += d3;
          found = 0;
        }
        for (int64_t i = 0; i < found; ++i) {  // the row's last one to three entries
          const float* seg = base + at[k[i]];
          float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
          for (int64_t u = 0; u < n; ++u) dot += seg[u] * dg[u];
          sums[k[i]] += dot;
        }
      }
    }
  });
  float* y = out->typed_data();
  for (int64_t k = 0; k < groups * width; ++k) {
    double sum = 0.0;
    for (int64_t part = 0; part < parts; ++part) sum += partial[part * groups * width + k];
    y[k] = static_cast<float>(sum);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(N2nskipAccumulate, Accumulate,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("span")
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(N2nskipSegmentDots, SegmentDots,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("shift")
                                  .Attr<int64_t>("length")
                                  .Attr<int64_t>("span")
                                  .Ret<ffi::Buffer<ffi::F32>>());

// Direct convolution on the CPU: no im2col matrix, a register-tiled kernel
// that reads the input where it lies.
//
// Every pass is one shape of sum:
//   c[i, 0:N] (+)= sum_j  src[row_off[i] + col_off[j]] * b[j, 0:N]
// with the src value broadcast into a SIMD register and b[j] a row of vectors.
//   forward          i = output pixel, j = filter tap (fy, fx, c_in), b = w (K, out_c), c = y
//   filter gradient  i = filter tap,   j = output pixel,             b = dy (P, out_c), c = dw
//   input gradient   (stride 1) the forward pass over dy, zero-padded by filter - 1 - pad,
//                    with w flipped and transposed: w'[fy', fx', o, c] = w[fh-1-fy', fw-1-fx', c, o]
// `Tile` keeps an MR x NV block of vectors of c in registers while j runs, so
// each loaded b vector feeds MR multiply-adds and nothing but the result is
// stored. The kernel never tests a border. The forward pass (and so the input
// gradient) reads the image where it lies and skips the taps that padding would
// supply, in blocks of pixels that all read the same taps (ForwardRows); like
// oneDNN, it does no multiply-adds with padding's zeros. The filter gradient
// reads a "band", the input rows that a run of output rows needs, zero-padded
// where padding reaches it. Where N is below
// one vector but the channels summed over fill vectors (the input gradient of
// a first layer, a convolution down to one channel), `ChannelDot` runs the
// vectors along the channels instead.
//
// Plain C++ (GCC/Clang vector extensions), no TensorFlow: lab_conv_cpu.cc
// threads it and picks the kernel; `Applies` says when N is a whole number of vectors.
#ifndef CNNLAB_LAB_CONV_DIRECT_H_
#define CNNLAB_LAB_CONV_DIRECT_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "conv_geometry.h"

namespace cnnlab {
namespace direct {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr int kRegisters = 32;
#else
constexpr int kVectorBytes = 32;
constexpr int kRegisters = 16;
#endif

template <typename T>
struct Simd {
  typedef T Vector __attribute__((vector_size(kVectorBytes), aligned(sizeof(T))));
  static constexpr int kLanes = kVectorBytes / static_cast<int>(sizeof(T));

  // One vector from / to memory aligned only to T. Through a may_alias vector
  // type, not memcpy: with AVX2, GCC 12 kept memcpy'd vectors and every
  // accumulator on the stack, and the kernels ran at a sixth of their speed.
  typedef T Unaligned __attribute__((vector_size(kVectorBytes), aligned(sizeof(T)), may_alias));
  static Vector Load(const T* p) { return *reinterpret_cast<const Unaligned*>(p); }
  static void Store(T* p, const Vector& v) { *reinterpret_cast<Unaligned*>(p) = v; }

  // Epilogue<T>::Of for a vector of sums: `bias` holds the vector's bias (zeros where there is none).
  static Vector Finish(Vector sum, const Vector& bias, bool relu) {
    sum += bias;  // + 0 where there is no bias: a sum of -0 becomes +0, as TensorFlow's would
    return relu ? (sum < Vector{} ? Vector{} : sum) : sum;  // NaN stays NaN
  }
  // The bias vector of outputs [column, column + lanes), zeros where the epilogue has no bias.
  static Vector BiasAt(const Epilogue<T>& epilogue, int64_t column) {
    return epilogue.bias != nullptr ? Load(epilogue.bias + column) : Vector{};
  }
};

// Output pixels per band: enough rows of work per unit for a thread, few
// enough that a band of the input stays in the L2 cache.
constexpr int64_t kPixelsPerBand = 1024;

// acc += (*scalar in every lane) * b. With AVX-512 the broadcast is the FMA's
// own memory operand ({1toN}), as in oneDNN's kernels: no broadcast instruction
// per pixel and tap (GCC would load the scalar into a register once for the NV
// products, an extra instruction on the FP pipes that costs most where NV is 1
// or 2). Elsewhere plain vector code: x - (+0) is a broadcast of x, where
// 0 + x would need an add to turn -0 into +0.
template <typename V, typename T>
__attribute__((always_inline)) inline void MultiplyAddBroadcast(V& acc, const V& b, const T* scalar) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && sizeof(V) == 64) {
    asm("vfmadd231ps %[s]%{1to16%}, %[b], %[acc]" : [acc] "+v"(acc) : [b] "v"(b), [s] "m"(*scalar));
    return;
  } else if constexpr (std::is_same_v<T, double> && sizeof(V) == 64) {
    asm("vfmadd231pd %[s]%{1to8%}, %[b], %[acc]" : [acc] "+v"(acc) : [b] "v"(b), [s] "m"(*scalar));
    return;
  }
#endif
  acc += (*scalar - V{}) * b;
}

// c[c_off[i] + 0 : NV*lanes] (+)= sum_{j < J} src[row_off[i] + col_off[j]] * b[j * b_stride + 0 : NV*lanes]
// for i < MR, each sum finished by `epilogue` (none when null) in registers before it is stored.
template <typename T, int MR, int NV>
__attribute__((always_inline)) inline void Tile(const T* src, const int64_t* row_off, const int64_t* col_off,
                                                int64_t J, const T* b, int64_t b_stride, T* c, const int64_t* c_off,
                                                bool accumulate, const Epilogue<T>* epilogue) {
  using V = typename Simd<T>::Vector;
  constexpr int L = Simd<T>::kLanes;
  const T* a[MR];
  for (int i = 0; i < MR; ++i) a[i] = src + row_off[i];
  V acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      if (accumulate) {
        acc[i][v] = Simd<T>::Load(c + c_off[i] + v * L);
      } else {
        acc[i][v] = V{};
      }
    }
  }
  for (int64_t j = 0; j < J; ++j) {
    const int64_t offset = col_off[j];
    const T* bj = b + j * b_stride;
    V bv[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bv[v] = Simd<T>::Load(bj + v * L);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) MultiplyAddBroadcast(acc[i][v], bv[v], a[i] + offset);
    }
  }
  if (epilogue != nullptr) {
    V bias[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bias[v] = Simd<T>::BiasAt(*epilogue, v * L);
    const bool relu = epilogue->relu;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[i][v] = Simd<T>::Finish(acc[i][v], bias[v], relu);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) Simd<T>::Store(c + c_off[i] + v * L, acc[i][v]);
  }
}

// A tile of exactly `rows` rows (rows <= MR): a last tile, or a product with fewer rows than
// a full tile (a first layer's filter gradient has 9), computes no row it does not store.
template <typename T, int MR, int NV>
inline void TileOf(int rows, const T* src, const int64_t* row_off, const int64_t* col_off, int64_t J, const T* b,
                   int64_t b_stride, T* c, const int64_t* c_off, bool accumulate, const Epilogue<T>* epilogue) {
  if constexpr (MR > 1) {
    if (rows < MR) {
      return TileOf<T, MR - 1, NV>(rows, src, row_off, col_off, J, b, b_stride, c, c_off, accumulate, epilogue);
    }
  }
  // A constant flag, so that the accumulators stay in registers and the loads and stores unroll.
  if (accumulate) {
    Tile<T, MR, NV>(src, row_off, col_off, J, b, b_stride, c, c_off, true, epilogue);
  } else {
    Tile<T, MR, NV>(src, row_off, col_off, J, b, b_stride, c, c_off, false, epilogue);
  }
}

// Memory that the next unit of work will read and write, brought into the
// cache a few lines per tile while this unit computes. Without it, a unit's
// first touches of its input and output wait on DRAM (a batch of 128 images
// does not fit any cache), and the wait is a few percent of the time.
struct Ahead {
  static constexpr int64_t kLine = 64;
  const char* read = nullptr;
  int64_t read_lines = 0;
  const char* write = nullptr;
  int64_t write_lines = 0;

  // Spreads the lines over `steps` calls of Step().
  void Spread(int64_t steps) {
    steps = std::max<int64_t>(1, steps);
    read_per_step_ = (read_lines + steps - 1) / steps;
    write_per_step_ = (write_lines + steps - 1) / steps;
  }

  void Step() {
    for (int64_t end = std::min(read_lines, read_done_ + read_per_step_); read_done_ < end; ++read_done_) {
      __builtin_prefetch(read + read_done_ * kLine, /*rw=*/0, /*locality=*/2);
    }
    for (int64_t end = std::min(write_lines, write_done_ + write_per_step_); write_done_ < end; ++write_done_) {
      __builtin_prefetch(write + write_done_ * kLine, /*rw=*/1, /*locality=*/2);
    }
  }

 private:
  int64_t read_per_step_ = 0, write_per_step_ = 0, read_done_ = 0, write_done_ = 0;
};

// Registers: MR * NV accumulators + NV for b (the broadcast is a memory operand with AVX-512, one more register without).
constexpr int kRows4 = (kRegisters - 5) / 4, kRows2 = (kRegisters - 3) / 2, kRows1 = std::min(kRegisters - 2, 14);

// The widest tile that fits the `columns` left of a product: (rows per tile, vectors per tile).
template <typename T>
std::pair<int, int> TileShape(int64_t columns) {
  const int64_t vectors = columns / Simd<T>::kLanes;
  if (vectors >= 4 && kRegisters >= 32) return {kRows4, 4};
  if (vectors >= 2) return {kRows2, 2};
  return {kRows1, 1};
}

// How many tiles Product runs for n_rows x n_cols.
template <typename T>
int64_t TileCount(int64_t n_rows, int64_t n_cols) {
  int64_t tiles = 0;
  for (int64_t col = 0; col < n_cols;) {
    const auto [rows, vectors] = TileShape<T>(n_cols - col);
    tiles += (n_rows + rows - 1) / rows;
    col += vectors * Simd<T>::kLanes;
  }
  return tiles;
}

// All rows [0, n_rows) of c, columns [0, n_cols), row i at c + c_off[i]: tiles
// of MR rows by up to four vectors, with MR as large as the registers allow for
// that width. `epilogue`, if given, finishes every sum as it is stored (this
// product must then add the last terms); `ahead`, if given, takes one Step() per tile.
template <typename T>
void Product(const T* src, const int64_t* row_off, int64_t n_rows, const int64_t* col_off, int64_t J, const T* b,
             int64_t b_stride, T* c, const int64_t* c_off, int64_t n_cols, bool accumulate,
             const Epilogue<T>* epilogue = nullptr, Ahead* ahead = nullptr) {
  for (int64_t col = 0; col < n_cols;) {
    const auto [tile_rows, vectors] = TileShape<T>(n_cols - col);
    const T* b_col = b + col;
    T* c_col = c + col;
    Epilogue<T> epilogue_col;
    if (epilogue != nullptr) epilogue_col = epilogue->At(col);
    const Epilogue<T>* f = epilogue != nullptr ? &epilogue_col : nullptr;
    for (int64_t r = 0; r < n_rows; r += tile_rows) {
      if (ahead != nullptr) ahead->Step();
      const int rows = static_cast<int>(std::min<int64_t>(tile_rows, n_rows - r));
      if (vectors == 4) {
        TileOf<T, kRows4, 4>(rows, src, row_off + r, col_off, J, b_col, b_stride, c_col, c_off + r, accumulate, f);
      } else if (vectors == 2) {
        TileOf<T, kRows2, 2>(rows, src, row_off + r, col_off, J, b_col, b_stride, c_col, c_off + r, accumulate, f);
      } else {
        TileOf<T, kRows1, 1>(rows, src, row_off + r, col_off, J, b_col, b_stride, c_col, c_off + r, accumulate, f);
      }
    }
    col += vectors * Simd<T>::kLanes;
  }
}

// For few outputs per row (c[i, 0:N], N less than a vector) with a reduction
// over channels that fill whole vectors:
//   c[i, n] = sum_t sum_ch src[row_off[i] + tap_off[t] + ch] * wt[(n * taps + t) * channels + ch]
// Vectors run along the channels; each sum ends in one horizontal add.
template <typename T>
void ChannelDot(const T* src, const int64_t* row_off, int64_t n_rows, const int64_t* tap_off, int64_t taps,
                int64_t channels, const T* wt, int64_t n_cols, T* c, int64_t c_stride) {
  using V = typename Simd<T>::Vector;
  constexpr int L = Simd<T>::kLanes, MR = 4;
  for (int64_t r = 0; r < n_rows; r += MR) {
    const int rows = static_cast<int>(std::min<int64_t>(MR, n_rows - r));
    const T* a[MR];
    for (int i = 0; i < MR; ++i) a[i] = src + row_off[r + std::min(i, rows - 1)];
    for (int64_t n = 0; n < n_cols; ++n) {
      V acc[MR] = {};
      const T* wn = wt + n * taps * channels;
      for (int64_t t = 0; t < taps; ++t) {
        for (int64_t ch = 0; ch < channels; ch += L) {
          const V wv = Simd<T>::Load(wn + t * channels + ch);
#pragma GCC unroll 4
          for (int i = 0; i < MR; ++i) acc[i] += Simd<T>::Load(a[i] + tap_off[t] + ch) * wv;
        }
      }
      for (int i = 0; i < rows; ++i) {
        T sum = 0;
        for (int lane = 0; lane < L; ++lane) sum += acc[i][lane];
        c[(r + i) * c_stride + n] = sum;
      }
    }
  }
}

// Whether the direct kernels handle a product with `columns` outputs per row.
template <typename T>
bool Applies(int64_t columns) {
  return columns > 0 && columns % Simd<T>::kLanes == 0;
}

// Output rows per band for geometry g.
// The fewest bands of at most kPixelsPerBand pixels (one row at least), of equal height.
inline int64_t BandRows(const ConvGeometry& g) {
  const int64_t most = std::max<int64_t>(1, std::min<int64_t>(g.out_h, kPixelsPerBand / std::max<int64_t>(1, g.out_w)));
  const int64_t bands = (g.out_h + most - 1) / most;
  return (g.out_h + bands - 1) / bands;
}

// The input that output rows [oh0, oh1) of one image read, as a pointer, a
// row pitch (elements between input rows) and the position of tap (0, 0) of
// output pixel (oh0, 0). Copies into `scratch`, zero-padded, only if some tap
// falls outside the image.
template <typename T>
struct Band {
  const T* data;
  int64_t pitch;

  Band(const ConvGeometry& g, const T* image, int64_t oh0, int64_t oh1, std::vector<T>* scratch) {
    const int64_t ih0 = oh0 * g.stride_h - g.pad_top;
    const int64_t ih1 = (oh1 - 1) * g.stride_h - g.pad_top + g.filter_h;  // exclusive
    const int64_t iw0 = -g.pad_left;
    const int64_t iw1 = (g.out_w - 1) * g.stride_w - g.pad_left + g.filter_w;
    if (ih0 >= 0 && ih1 <= g.in_h && iw0 >= 0 && iw1 <= g.in_w) {
      data = image + ih0 * g.in_w * g.in_c;
      pitch = g.in_w * g.in_c;
      return;
    }
    const int64_t width = iw1 - iw0, c = g.in_c;
    pitch = width * c;
    // Every element is written once: zeros where a tap falls outside the image, the image elsewhere.
    scratch->resize(static_cast<size_t>((ih1 - ih0) * pitch));
    const int64_t first = std::max<int64_t>(0, iw0), last = std::max(first, std::min(g.in_w, iw1));  // columns kept
    const int64_t before = (first - iw0) * c, kept = (last - first) * c;
    for (int64_t ih = ih0; ih < ih1; ++ih) {
      T* row = scratch->data() + (ih - ih0) * pitch;
      if (ih < 0 || ih >= g.in_h) {
        std::fill(row, row + pitch, T(0));
        continue;
      }
      std::fill(row, row + before, T(0));
      std::memcpy(row + before, image + (ih * g.in_w + first) * c, sizeof(T) * static_cast<size_t>(kept));
      std::fill(row + before + kept, row + pitch, T(0));
    }
    data = scratch->data();
  }

  // Offsets of every filter tap (fy, fx, c) from a pixel's tap (0, 0): (K,).
  static void TapOffsets(const ConvGeometry& g, int64_t pitch, std::vector<int64_t>* out) {
    out->resize(static_cast<size_t>(g.patch_size()));
    int64_t k = 0;
    for (int64_t fy = 0; fy < g.filter_h; ++fy)
      for (int64_t fx = 0; fx < g.filter_w; ++fx)
        for (int64_t c = 0; c < g.in_c; ++c) (*out)[k++] = fy * pitch + fx * g.in_c + c;
  }

  // Offsets of every filter tap (fy, fx) from a pixel's tap (0, 0), channel 0: (fh * fw,).
  static void SpatialTapOffsets(const ConvGeometry& g, int64_t pitch, std::vector<int64_t>* out) {
    out->resize(static_cast<size_t>(g.filter_h * g.filter_w));
    for (int64_t fy = 0; fy < g.filter_h; ++fy)
      for (int64_t fx = 0; fx < g.filter_w; ++fx) (*out)[fy * g.filter_w + fx] = fy * pitch + fx * g.in_c;
  }

  // Offsets of tap (0, 0) of output pixels (oh0.., all columns) within the band: (rows * out_w,).
  static void PixelOffsets(const ConvGeometry& g, int64_t pitch, int64_t rows, std::vector<int64_t>* out) {
    out->resize(static_cast<size_t>(rows * g.out_w));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t ow = 0; ow < g.out_w; ++ow) (*out)[r * g.out_w + ow] = r * g.stride_h * pitch + ow * g.stride_w * g.in_c;
  }
};

// The filter taps along one axis that output o reads inside the input: [lo, hi), empty when hi <= lo.
struct TapRange {
  int64_t lo, hi;
};

inline TapRange TapsInside(int64_t o, int64_t stride, int64_t pad, int64_t filter, int64_t in) {
  const int64_t first = o * stride - pad;  // the input position of tap 0
  return {std::clamp<int64_t>(-first, 0, filter), std::clamp<int64_t>(in - first, 0, filter)};
}

// Outputs [begin, end) along one axis, as runs of consecutive outputs that read the same taps inside the input.
struct Run {
  int64_t begin, end;
  TapRange taps;
};

inline void Runs(int64_t begin, int64_t end, int64_t stride, int64_t pad, int64_t filter, int64_t in,
                 std::vector<Run>* runs) {
  runs->clear();
  for (int64_t o = begin; o < end; ++o) {
    const TapRange t = TapsInside(o, stride, pad, filter, in);
    if (!runs->empty() && runs->back().taps.lo == t.lo && runs->back().taps.hi == t.hi) {
      runs->back().end = o + 1;
    } else {
      runs->push_back({o, o + 1, t});
    }
  }
}

// Per-thread buffers, reused across the units a thread runs in one call of the op
// (one geometry).
template <typename T>
struct Scratch {
  std::vector<T> band;
  std::vector<int64_t> taps, pixels, outputs;
  std::vector<Run> rows, cols;
  std::vector<int64_t> filter_taps;  // ForwardRows's table of tap offsets, laid out by its first unit
};

// y rows [oh0, oh1) of one image: image (in_h, in_w, in_c), w (K, out_c), y_image (out_h, out_w, out_c).
//
// The image is read where it lies, and the taps that padding would supply (zeros)
// are skipped rather than multiplied: the output is cut into blocks whose pixels
// all read the same taps inside the image (the inside, each row and column of
// the rim, the corners), and each block sums only its own taps. A block whose
// taps cover whole filter rows is one product; otherwise one per filter row,
// each adding to the last.
template <typename T>
void ForwardRows(const ConvGeometry& g, const T* image, int64_t oh0, int64_t oh1, const T* w, T* y_image,
                 Scratch<T>* s, const Epilogue<T>* epilogue = nullptr, Ahead* ahead = nullptr) {
  Runs(oh0, oh1, g.stride_h, g.pad_top, g.filter_h, g.in_h, &s->rows);
  Runs(0, g.out_w, g.stride_w, g.pad_left, g.filter_w, g.in_w, &s->cols);
  if (ahead != nullptr) ahead->Spread(TileCount<T>((oh1 - oh0) * g.out_w, g.out_c));
  const int64_t c = g.in_c, pitch = g.in_w * c;
  // Where each tap (fy, fx, ch) of the filter lies from a pixel's tap (0, 0), in the filter's
  // order. Every block's taps are a prefix of this table: the first taps_fx columns of one
  // filter row, or the first taps_fy whole rows. Laid out once per runner, not per block.
  if (s->filter_taps.empty()) {
    for (int64_t fy = 0; fy < g.filter_h; ++fy)
      for (int64_t fx = 0; fx < g.filter_w; ++fx)
        for (int64_t ch = 0; ch < c; ++ch) s->filter_taps.push_back(fy * pitch + fx * c + ch);
  }
  for (const Run& row : s->rows) {
    for (const Run& col : s->cols) {
      s->pixels.clear();
      s->outputs.clear();
      for (int64_t oh = row.begin; oh < row.end; ++oh)
        for (int64_t ow = col.begin; ow < col.end; ++ow) {
          // Where the pixel's first tap inside the image lies, and where its output goes.
          const int64_t ih = oh * g.stride_h - g.pad_top + row.taps.lo, iw = ow * g.stride_w - g.pad_left + col.taps.lo;
          s->pixels.push_back(ih * pitch + iw * c);
          s->outputs.push_back((oh * g.out_w + ow) * g.out_c);
        }
      const int64_t pixels = static_cast<int64_t>(s->pixels.size());
      if (row.taps.hi <= row.taps.lo || col.taps.hi <= col.taps.lo) {  // every tap is padding: a sum of no terms
        for (int64_t i = 0; i < pixels; ++i)
          for (int64_t o = 0; o < g.out_c; ++o) y_image[s->outputs[i] + o] = epilogue ? epilogue->Of(o, T(0)) : T(0);
        continue;
      }
      const bool whole_rows = col.taps.lo == 0 && col.taps.hi == g.filter_w;
      const int64_t taps_fx = col.taps.hi - col.taps.lo, taps_fy = whole_rows ? row.taps.hi - row.taps.lo : 1;
      const int64_t J = taps_fy * taps_fx * c;
      for (int64_t fy = row.taps.lo; fy < row.taps.hi; fy += taps_fy) {
        // Filter rows from tap (fy, col.taps.lo); the pixels' taps one filter row further down for each fy.
        const bool last = fy + taps_fy >= row.taps.hi;
        Product(image + (fy - row.taps.lo) * pitch, s->pixels.data(), pixels, s->filter_taps.data(), J,
                w + (fy * g.filter_w + col.taps.lo) * c * g.out_c, g.out_c, y_image, s->outputs.data(), g.out_c,
                /*accumulate=*/fy > row.taps.lo, last ? epilogue : nullptr, ahead);
      }
    }
  }
}

// What ForwardRows of output rows [oh0, oh1) of one image reads of the image and writes of y_image.
template <typename T>
Ahead RowsAhead(const ConvGeometry& g, const T* image, int64_t oh0, int64_t oh1, T* y_image) {
  const int64_t ih0 = std::max<int64_t>(0, oh0 * g.stride_h - g.pad_top);
  const int64_t ih1 = std::min(g.in_h, (oh1 - 1) * g.stride_h - g.pad_top + g.filter_h);
  Ahead ahead;
  ahead.read = reinterpret_cast<const char*>(image + ih0 * g.in_w * g.in_c);
  ahead.read_lines = std::max<int64_t>(0, (ih1 - ih0) * g.in_w * g.in_c * int64_t{sizeof(T)} / Ahead::kLine);
  ahead.write = reinterpret_cast<const char*>(y_image + oh0 * g.out_w * g.out_c);
  ahead.write_lines = (oh1 - oh0) * g.out_w * g.out_c * int64_t{sizeof(T)} / Ahead::kLine;
  return ahead;
}

// As ForwardRows, for out_c below one vector and in_c a whole number of vectors;
// wt is w transposed to (out_c, fh * fw, in_c).
template <typename T>
void ForwardRowsFewOutputs(const ConvGeometry& g, const T* image, int64_t oh0, int64_t oh1, const T* wt, T* y_image,
                           Scratch<T>* s) {
  const Band<T> band(g, image, oh0, oh1, &s->band);
  Band<T>::SpatialTapOffsets(g, band.pitch, &s->taps);
  Band<T>::PixelOffsets(g, band.pitch, oh1 - oh0, &s->pixels);
  ChannelDot(band.data, s->pixels.data(), (oh1 - oh0) * g.out_w, s->taps.data(), g.filter_h * g.filter_w, g.in_c,
             wt, g.out_c, y_image + oh0 * g.out_w * g.out_c, g.out_c);
}

// dw (K, out_c) += the contribution of output rows [oh0, oh1) of one image.
template <typename T>
void BackpropFilterRows(const ConvGeometry& g, const T* image, int64_t oh0, int64_t oh1, const T* dy_image, T* dw,
                        Scratch<T>* s) {
  const Band<T> band(g, image, oh0, oh1, &s->band);
  Band<T>::TapOffsets(g, band.pitch, &s->taps);
  Band<T>::PixelOffsets(g, band.pitch, oh1 - oh0, &s->pixels);
  s->outputs.resize(static_cast<size_t>(g.patch_size()));  // row k of dw
  for (int64_t k = 0; k < g.patch_size(); ++k) s->outputs[k] = k * g.out_c;
  Product(band.data, s->taps.data(), g.patch_size(), s->pixels.data(), (oh1 - oh0) * g.out_w,
          dy_image + oh0 * g.out_w * g.out_c, g.out_c, dw, s->outputs.data(), g.out_c, /*accumulate=*/true);
}

// The input gradient of a stride-1 convolution is a forward convolution of dy:
// its geometry (dy as the input, dx as the output) ...
inline ConvGeometry TransposedGeometry(const ConvGeometry& g) {
  ConvGeometry t = g;
  t.in_h = g.out_h;
  t.in_w = g.out_w;
  t.in_c = g.out_c;
  t.out_c = g.in_c;
  t.out_h = g.in_h;
  t.out_w = g.in_w;
  t.pad_top = g.filter_h - 1 - g.pad_top;
  t.pad_left = g.filter_w - 1 - g.pad_left;
  return t;
}

// ... and its filter: w (fh, fw, in_c, out_c) -> w' (fh, fw, out_c, in_c), flipped in both axes,
// laid out for ForwardRows; or, with `for_few_outputs`, as (in_c, fh, fw, out_c) for ForwardRowsFewOutputs.
template <typename T>
void FlipTranspose(const ConvGeometry& g, const T* w, T* flipped, bool for_few_outputs = false) {
  const int64_t taps = g.filter_h * g.filter_w;
  for (int64_t fy = 0; fy < g.filter_h; ++fy)
    for (int64_t fx = 0; fx < g.filter_w; ++fx) {
      const int64_t t = fy * g.filter_w + fx;
      const T* tap = w + ((g.filter_h - 1 - fy) * g.filter_w + (g.filter_w - 1 - fx)) * g.in_c * g.out_c;
      for (int64_t c = 0; c < g.in_c; ++c)
        for (int64_t o = 0; o < g.out_c; ++o) {
          const int64_t at = for_few_outputs ? (c * taps + t) * g.out_c + o : (t * g.out_c + o) * g.in_c + c;
          flipped[at] = tap[c * g.out_c + o];
        }
    }
}

}  // namespace direct
}  // namespace cnnlab

#endif  // CNNLAB_LAB_CONV_DIRECT_H_

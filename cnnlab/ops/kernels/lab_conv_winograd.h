// Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016) for 3x3, stride-1 convolutions on the CPU.
//
// A 4x4 tile d of the input gives a 2x2 tile of the output. For one input channel
// c and one output channel o, with g the 3x3 filter w[:, :, c, o],
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A
// where .* multiplies element by element. Summed over c, the 16 element-wise
// products become 16 matrix products, one per position xi of the 4x4 grid:
//   M[xi] (tiles, out_c) = V[xi] (tiles, in_c) * U[xi] (in_c, out_c)
//   U[xi] = (G g G^T)[xi]   the filter, transformed once per call
//   V[xi] = (B^T d B)[xi]   every input tile, transformed
//   y tile = A^T M A        every output tile, transformed back
// That is 16 multiply-adds per (tile, c, o) for 4 outputs, where the direct
// kernel needs 36: 2.25 times fewer. The transforms are additions (and halves,
// in G), a few per tile and channel, and the matrix products run on the direct
// kernel's register tiles (direct::Product). The price is rounding: the sums
// are reordered and G has halves, so float results differ from the direct
// kernel's in the last bits (tests/test_ops_winograd.py bounds the difference).
//
// Matrices (Lavin & Gray, section 4.1):
//   B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
//         [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
//         [0 -1  1  0]         [1/2 -1/2  1/2]
//         [0  1  0 -1]         [ 0    0    1 ]
//
// Plain C++ (GCC/Clang vector extensions), no TensorFlow: lab_conv_cpu.cc runs
// one unit of work per (image, band of tile rows) and picks this kernel where
// `Applies` says so.
#ifndef CNNLAB_LAB_CONV_WINOGRAD_H_
#define CNNLAB_LAB_CONV_WINOGRAD_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "conv_geometry.h"
#include "lab_conv_direct.h"

namespace cnnlab {
namespace winograd {

constexpr int kTile = 4;                // input tile: 4x4
constexpr int kOut = 2;                 // output tile: 2x2
constexpr int kPoints = kTile * kTile;  // positions xi of the transformed tile: 16

// Whether F(2x2, 3x3) computes y = conv(x, w) for geometry g: a 3x3 filter with
// stride 1, and both channel counts whole numbers of vectors (the transforms run
// along the channels, and the products' outputs fill whole vectors).
template <typename T>
bool Applies(const ConvGeometry& g) {
  return g.filter_h == 3 && g.filter_w == 3 && g.stride_h == 1 && g.stride_w == 1 &&
         direct::Applies<T>(g.in_c) && direct::Applies<T>(g.out_c) && g.out_h > 0 && g.out_w > 0;
}

// Output tiles along each axis; the last one may reach one row or column past the output.
inline int64_t TilesH(const ConvGeometry& g) { return (g.out_h + kOut - 1) / kOut; }
inline int64_t TilesW(const ConvGeometry& g) { return (g.out_w + kOut - 1) / kOut; }

// Tile rows per unit of work: as many as keep V and M (16 x tiles x channels each)
// near 384 KiB, so that a unit's transformed tiles stay in the L2 cache; one at least.
template <typename T>
int64_t BandTileRows(const ConvGeometry& g) {
  const int64_t per_tile_row = kPoints * TilesW(g) * (g.in_c + g.out_c) * int64_t{sizeof(T)};
  return std::clamp<int64_t>(384 * 1024 / per_tile_row, 1, TilesH(g));
}

// U[xi] = G g G^T for every (c, o): w (3, 3, in_c, out_c) HWIO -> u (16, in_c, out_c).
template <typename T>
void TransformFilter(const ConvGeometry& g, const T* w, T* u) {
  const int64_t pair = g.in_c * g.out_c;  // elements per filter tap, and per xi
  const T half = T(0.5);
  for (int64_t e = 0; e < pair; ++e) {
    T tap[3][3];
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 3; ++j) tap[i][j] = w[(i * 3 + j) * pair + e];
    T gg[4][3];  // G g: 4 rows of 3
    for (int j = 0; j < 3; ++j) {
      gg[0][j] = tap[0][j];
      gg[1][j] = half * (tap[0][j] + tap[1][j] + tap[2][j]);
      gg[2][j] = half * (tap[0][j] - tap[1][j] + tap[2][j]);
      gg[3][j] = tap[2][j];
    }
    for (int i = 0; i < 4; ++i) {  // (G g) G^T: 4 columns
      u[(i * 4 + 0) * pair + e] = gg[i][0];
      u[(i * 4 + 1) * pair + e] = half * (gg[i][0] + gg[i][1] + gg[i][2]);
      u[(i * 4 + 2) * pair + e] = half * (gg[i][0] - gg[i][1] + gg[i][2]);
      u[(i * 4 + 3) * pair + e] = gg[i][2];
    }
  }
}

// Per-thread buffers: V (16, tiles, in_c), M (16, tiles, out_c), and the products' row offsets.
template <typename T>
struct Scratch {
  std::vector<T> v, m;
  std::vector<int64_t> v_rows, m_rows, channels;
};

// B^T d B along one axis, for four vectors: t = B^T d.
template <typename V>
__attribute__((always_inline)) inline void InputAxis(const V d[4], V t[4]) {
  t[0] = d[0] - d[2];
  t[1] = d[1] + d[2];
  t[2] = d[2] - d[1];
  t[3] = d[1] - d[3];
}

// Output tile rows [th0, th1) of one image: image (in_h, in_w, in_c), u from
// TransformFilter, y_image (out_h, out_w, out_c); each output finished by
// `epilogue` (none when null) as it is stored.
template <typename T>
void ForwardTileRows(const ConvGeometry& g, const T* image, int64_t th0, int64_t th1, const T* u, T* y_image,
                     Scratch<T>* s, const Epilogue<T>* epilogue = nullptr) {
  using Vec = typename direct::Simd<T>::Vector;
  constexpr int L = direct::Simd<T>::kLanes;
  const int64_t tiles_w = TilesW(g), tiles = (th1 - th0) * tiles_w;
  const int64_t c_in = g.in_c, c_out = g.out_c;
  s->v.resize(static_cast<size_t>(kPoints * tiles * c_in));
  s->m.resize(static_cast<size_t>(kPoints * tiles * c_out));

  // V[xi][p] = B^T d B for every tile p; taps outside the image (padding) read as zeros.
  for (int64_t p = 0; p < tiles; ++p) {
    const int64_t th = th0 + p / tiles_w, tw = p % tiles_w;
    const int64_t ih0 = th * kOut - g.pad_top, iw0 = tw * kOut - g.pad_left;
    const T* at[kTile][kTile];  // where d[r][q] lies, or null for a zero
    for (int r = 0; r < kTile; ++r)
      for (int q = 0; q < kTile; ++q) {
        const int64_t ih = ih0 + r, iw = iw0 + q;
        at[r][q] = (ih >= 0 && ih < g.in_h && iw >= 0 && iw < g.in_w) ? image + (ih * g.in_w + iw) * c_in : nullptr;
      }
    T* v_tile = s->v.data() + p * c_in;
    for (int64_t c = 0; c < c_in; c += L) {
      Vec d[kTile][kTile], t[kTile][kTile];
      for (int r = 0; r < kTile; ++r)
        for (int q = 0; q < kTile; ++q) d[r][q] = at[r][q] != nullptr ? direct::Simd<T>::Load(at[r][q] + c) : Vec{};
      for (int q = 0; q < kTile; ++q) {  // B^T d: along the rows of each column
        Vec column[kTile] = {d[0][q], d[1][q], d[2][q], d[3][q]}, out[kTile];
        InputAxis(column, out);
        for (int r = 0; r < kTile; ++r) t[r][q] = out[r];
      }
      for (int r = 0; r < kTile; ++r) {  // (B^T d) B: along the columns of each row
        Vec out[kTile];
        InputAxis(t[r], out);
        for (int q = 0; q < kTile; ++q) direct::Simd<T>::Store(v_tile + (r * kTile + q) * tiles * c_in + c, out[q]);
      }
    }
  }

  // M[xi] = V[xi] U[xi]: 16 products of (tiles, in_c) by (in_c, out_c), on the direct kernel's tiles.
  s->v_rows.resize(static_cast<size_t>(tiles));
  s->m_rows.resize(static_cast<size_t>(tiles));
  for (int64_t p = 0; p < tiles; ++p) {
    s->v_rows[p] = p * c_in;
    s->m_rows[p] = p * c_out;
  }
  s->channels.resize(static_cast<size_t>(c_in));
  for (int64_t c = 0; c < c_in; ++c) s->channels[c] = c;
  for (int xi = 0; xi < kPoints; ++xi) {
    direct::Product(s->v.data() + xi * tiles * c_in, s->v_rows.data(), tiles, s->channels.data(), c_in,
                    u + xi * c_in * c_out, c_out, s->m.data() + xi * tiles * c_out, s->m_rows.data(), c_out,
                    /*accumulate=*/false);
  }

  // y tile = A^T M A, finished by the epilogue, stored where it lies inside the output.
  for (int64_t p = 0; p < tiles; ++p) {
    const int64_t th = th0 + p / tiles_w, tw = p % tiles_w;
    const int64_t rows = std::min<int64_t>(kOut, g.out_h - th * kOut), cols = std::min<int64_t>(kOut, g.out_w - tw * kOut);
    const T* m_tile = s->m.data() + p * c_out;
    T* y_tile = y_image + (th * kOut * g.out_w + tw * kOut) * c_out;
    for (int64_t o = 0; o < c_out; o += L) {
      Vec m[kTile][kTile];
      for (int r = 0; r < kTile; ++r)
        for (int q = 0; q < kTile; ++q) m[r][q] = direct::Simd<T>::Load(m_tile + (r * kTile + q) * tiles * c_out + o);
      Vec a[kOut][kTile];  // A^T m
      for (int q = 0; q < kTile; ++q) {
        a[0][q] = m[0][q] + m[1][q] + m[2][q];
        a[1][q] = m[1][q] - m[2][q] - m[3][q];
      }
      Vec out[kOut][kOut];  // (A^T m) A
      for (int r = 0; r < kOut; ++r) {
        out[r][0] = a[r][0] + a[r][1] + a[r][2];
        out[r][1] = a[r][1] - a[r][2] - a[r][3];
      }
      if (epilogue != nullptr) {
        const Vec bias = direct::Simd<T>::BiasAt(*epilogue, o);
        for (int r = 0; r < kOut; ++r)
          for (int q = 0; q < kOut; ++q) out[r][q] = direct::Simd<T>::Finish(out[r][q], bias, epilogue->relu);
      }
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t q = 0; q < cols; ++q) direct::Simd<T>::Store(y_tile + (r * g.out_w + q) * c_out + o, out[r][q]);
    }
  }
}

}  // namespace winograd
}  // namespace cnnlab

#endif  // CNNLAB_LAB_CONV_WINOGRAD_H_

// CUDA kernels for the three convolution passes, as implicit GEMMs.
// Includes no TensorFlow header; see lab_conv_launchers.h for the C API.
//
// Each pass is a matrix product C (M x N) = A (M x K) * B (K x N) whose A or B
// is never materialised: a "problem" struct computes any element from the
// NHWC / HWIO tensors on the fly (im2col done in the tile loader).
//
//   pass              M                      N       K                       A                  B
//   forward           batch*out_h*out_w      out_c   fh*fw*in_c              im2col(x)          w
//   input gradient    batch*in_h*in_w        in_c    fh*fw*out_c             "col2im"(dy)       w (reordered)
//   filter gradient   fh*fw*in_c             out_c   batch*out_h*out_w       im2col(x)^T        dy
//
// One thread block computes a 64x64 tile of C with 256 threads (4x4 outputs
// each), staging 64x16 slices of A and 16x64 slices of B through shared
// memory. The filter gradient has a small C and a huge K, so it is split
// along K across blocks (grid.z) that add their partial sums atomically.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "lab_conv_launchers.h"

// nvcc launches with triple chevrons; cuda_on_cpu.h defines its own CNNLAB_LAUNCH,
// so that g++ can run these same kernels on the CPU (tests/ops/test_cuda_on_cpu.py).
#ifndef CNNLAB_LAUNCH
#define CNNLAB_LAUNCH(grid, block, shared_bytes, stream, ...) __VA_ARGS__<<<grid, block, shared_bytes, stream>>>
#endif
#ifndef CNNLAB_POISON_SHARED  // cuda_on_cpu.h fills shared tiles with NaN at each block start; a GPU needs nothing
#define CNNLAB_POISON_SHARED(array)
#endif

namespace cnnlab {
namespace {

constexpr int kTileM = 64;
constexpr int kTileN = 64;
constexpr int kTileK = 16;
constexpr int kThreads = 256;  // 16 x 16, each computing 4 x 4 outputs
constexpr int kPerThread = 4;

// Forward: A[m, k] = x at output pixel m, filter tap k; B = w; C = y.
// The fused op's bias (or none) and activation (0 linear, 1 relu) finish each
// output as it is stored.
template <typename T>
struct ForwardProblem {
  ConvGeometry g;
  const T* x;
  const T* w;
  T* y;
  const T* bias = nullptr;
  int activation = 0;

  __device__ T a(int64_t m, int64_t k) const {
    const int64_t c = k % g.in_c, tap = k / g.in_c;
    const int64_t fx = tap % g.filter_w, fy = tap / g.filter_w;
    const int64_t ow = m % g.out_w, rest = m / g.out_w;
    const int64_t oh = rest % g.out_h, n = rest / g.out_h;
    const int64_t ih = oh * g.stride_h - g.pad_top + fy;
    const int64_t iw = ow * g.stride_w - g.pad_left + fx;
    if (ih < 0 || ih >= g.in_h || iw < 0 || iw >= g.in_w) return T(0);
    return x[((n * g.in_h + ih) * g.in_w + iw) * g.in_c + c];
  }
  __device__ T b(int64_t k, int64_t n) const { return w[k * g.out_c + n]; }
  __device__ T* c(int64_t m, int64_t n) const { return y + m * g.out_c + n; }
  __device__ T finish(int64_t n, T sum) const {
    if (bias != nullptr) sum += bias[n];
    return activation == 1 && sum < T(0) ? T(0) : sum;  // NaN stays NaN
  }
};

// Input gradient: dx[n, ih, iw, ci] = sum over taps (fy, fx) and co of
// dy[n, oh, ow, co] * w[fy, fx, ci, co], where ih = oh*s - pad + fy.
// A[m = (n, ih, iw), k = (fy, fx, co)] = dy at the (oh, ow) that tap reaches, or 0.
template <typename T>
struct BackpropInputProblem {
  ConvGeometry g;
  const T* w;
  const T* dy;
  T* dx;

  __device__ T a(int64_t m, int64_t k) const {
    const int64_t co = k % g.out_c, tap = k / g.out_c;
    const int64_t fx = tap % g.filter_w, fy = tap / g.filter_w;
    const int64_t iw = m % g.in_w, rest = m / g.in_w;
    const int64_t ih = rest % g.in_h, n = rest / g.in_h;
    const int64_t oh_s = ih + g.pad_top - fy, ow_s = iw + g.pad_left - fx;
    if (oh_s < 0 || ow_s < 0 || oh_s % g.stride_h || ow_s % g.stride_w) return T(0);
    const int64_t oh = oh_s / g.stride_h, ow = ow_s / g.stride_w;
    if (oh >= g.out_h || ow >= g.out_w) return T(0);
    return dy[((n * g.out_h + oh) * g.out_w + ow) * g.out_c + co];
  }
  __device__ T b(int64_t k, int64_t ci) const {
    const int64_t co = k % g.out_c, tap = k / g.out_c;
    return w[(tap * g.in_c + ci) * g.out_c + co];
  }
  __device__ T* c(int64_t m, int64_t ci) const { return dx + m * g.in_c + ci; }
  __device__ T finish(int64_t, T sum) const { return sum; }
};

// Filter gradient: dw[tap, co] = sum over output pixels p of im2col(x)[p, tap] * dy[p, co].
template <typename T>
struct BackpropFilterProblem {
  ForwardProblem<T> im2col;  // reuses the forward's A loader; its w and y are unused
  const T* dy;
  T* dw;

  __device__ T a(int64_t tap, int64_t pixel) const { return im2col.a(pixel, tap); }
  __device__ T b(int64_t pixel, int64_t co) const { return dy[pixel * im2col.g.out_c + co]; }
  __device__ T* c(int64_t tap, int64_t co) const { return dw + tap * im2col.g.out_c + co; }
  __device__ T finish(int64_t, T sum) const { return sum; }
};

// C = A * B over k in [blockIdx.z * k_per_split, ...); atomically added when split.
template <typename T, typename Problem>
__global__ void __launch_bounds__(kThreads)
    TiledImplicitGemm(Problem problem, int64_t m_size, int64_t n_size, int64_t k_size, int64_t k_per_split,
                      bool accumulate) {
  // One column of padding: the loader below has neighbouring threads store kTileM elements
  // apart, which without it is the same shared-memory bank for 16 threads: a 16-way conflict.
  __shared__ T a_tile[kTileK][kTileM + 1];
  __shared__ T b_tile[kTileK][kTileN];
  CNNLAB_POISON_SHARED(a_tile);  // CUDA on the CPU: NaN at every block start, as stale memory would be
  CNNLAB_POISON_SHARED(b_tile);
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kTileM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * kTileN;
  const int64_t k_begin = static_cast<int64_t>(blockIdx.z) * k_per_split;
  const int64_t k_end = min(k_size, k_begin + k_per_split);

  T acc[kPerThread][kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; ++i)
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) acc[i][j] = T(0);

  for (int64_t k0 = k_begin; k0 < k_end; k0 += kTileK) {
    // Each thread stages 4 elements of A and 4 of B.
#pragma unroll
    for (int i = 0; i < (kTileM * kTileK) / kThreads; ++i) {
      const int e = tid + i * kThreads;
      const int row = e / kTileK, kk = e % kTileK;
      const int64_t m = m0 + row, k = k0 + kk;
      a_tile[kk][row] = (m < m_size && k < k_end) ? problem.a(m, k) : T(0);
    }
#pragma unroll
    for (int i = 0; i < (kTileN * kTileK) / kThreads; ++i) {
      const int e = tid + i * kThreads;
      const int kk = e / kTileN, col = e % kTileN;
      const int64_t k = k0 + kk, n = n0 + col;
      b_tile[kk][col] = (k < k_end && n < n_size) ? problem.b(k, n) : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      T a_frag[kPerThread], b_frag[kPerThread];
#pragma unroll
      for (int i = 0; i < kPerThread; ++i) a_frag[i] = a_tile[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) b_frag[j] = b_tile[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < kPerThread; ++i)
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) acc[i][j] += a_frag[i] * b_frag[j];
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    if (m >= m_size) continue;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (n >= n_size) continue;
      if (accumulate) {
        atomicAdd(problem.c(m, n), acc[i][j]);
      } else {
        *problem.c(m, n) = problem.finish(n, acc[i][j]);
      }
    }
  }
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Launch over an M x N output; `splits` > 1 divides K across blocks and
// requires the output to be zeroed first.
template <typename T, typename Problem>
cudaError_t Launch(const Problem& problem, int64_t m, int64_t n, int64_t k, int64_t splits, T* output,
                   cudaStream_t stream) {
  if (m == 0 || n == 0) return cudaSuccess;  // an empty output: nothing to launch (a 0-block grid is an error)
  const bool accumulate = splits > 1;
  if (accumulate) {
    const cudaError_t zeroed = cudaMemsetAsync(output, 0, sizeof(T) * m * n, stream);
    if (zeroed != cudaSuccess) return zeroed;
  }
  // k == 0 (every sum has no terms) still launches one split: each output is then
  // the problem's finish of 0, which for the fused forward is activation(bias).
  const int64_t k_per_split = std::max<int64_t>(kTileK, CeilDiv(CeilDiv(k, splits), kTileK) * kTileK);
  const dim3 grid(static_cast<unsigned>(CeilDiv(m, kTileM)), static_cast<unsigned>(CeilDiv(n, kTileN)),
                  static_cast<unsigned>(std::max<int64_t>(1, CeilDiv(k, k_per_split))));
  if (grid.y > 65535 || grid.z > 65535) return cudaErrorInvalidConfiguration;
  CNNLAB_LAUNCH(grid, kThreads, 0, stream, TiledImplicitGemm<T, Problem>)(problem, m, n, k, k_per_split, accumulate);
  return cudaGetLastError();
}

// Enough K-splits that the filter gradient keeps ~1024 blocks in flight, each
// still doing at least 8 tiles of K.
int64_t FilterGradientSplits(int64_t m, int64_t n, int64_t k) {
  const int64_t tiles = CeilDiv(m, kTileM) * CeilDiv(n, kTileN);
  if (tiles == 0) return 1;  // an empty dw (in_c or out_c is 0): Launch returns at once
  const int64_t wanted = CeilDiv(1024, tiles);
  const int64_t most = CeilDiv(k, 8 * kTileK);
  return std::max<int64_t>(1, std::min<int64_t>(std::min<int64_t>(wanted, most), 65535));
}

template <typename T>
int Forward(const ConvGeometry* g, const T* x, const T* w, T* y, cudaStream_t stream, const T* bias = nullptr,
            int activation = 0) {
  if (activation != 0 && activation != 1) return cudaErrorInvalidValue;
  ForwardProblem<T> p{*g, x, w, y, bias, activation};
  return Launch<T>(p, g->batch * g->patches(), g->out_c, g->patch_size(), 1, y, stream);
}

template <typename T>
int BackpropInput(const ConvGeometry* g, const T* w, const T* dy, T* dx, cudaStream_t stream) {
  BackpropInputProblem<T> p{*g, w, dy, dx};
  return Launch<T>(p, g->batch * g->in_h * g->in_w, g->in_c, g->filter_h * g->filter_w * g->out_c, 1, dx,
                   stream);
}

// K-splits add their partial sums with atomicAdd in whatever order the blocks
// finish, so two runs can differ in the last bits. `deterministic` launches one
// split: every dw element is then summed by one thread, in a fixed order.
template <typename T>
int BackpropFilter(const ConvGeometry* g, const T* x, const T* dy, T* dw, bool deterministic,
                   cudaStream_t stream) {
  BackpropFilterProblem<T> p{ForwardProblem<T>{*g, x, nullptr, nullptr}, dy, dw};
  const int64_t m = g->patch_size(), n = g->out_c, k = g->batch * g->patches();
  return Launch<T>(p, m, n, k, deterministic ? 1 : FilterGradientSplits(m, n, k), dw, stream);
}

}  // namespace
}  // namespace cnnlab

using cnnlab::ConvGeometry;

extern "C" {

int cnnlab_conv2d_forward_f32(const ConvGeometry* g, const float* x, const float* w, float* y,
                              cudaStream_t stream) {
  return cnnlab::Forward(g, x, w, y, stream);
}
int cnnlab_conv2d_forward_f64(const ConvGeometry* g, const double* x, const double* w, double* y,
                              cudaStream_t stream) {
  return cnnlab::Forward(g, x, w, y, stream);
}
int cnnlab_conv2d_forward_bias_activation_f32(const ConvGeometry* g, const float* x, const float* w,
                                              const float* bias, int activation, float* y, cudaStream_t stream) {
  return cnnlab::Forward(g, x, w, y, stream, bias, activation);
}
int cnnlab_conv2d_forward_bias_activation_f64(const ConvGeometry* g, const double* x, const double* w,
                                              const double* bias, int activation, double* y,
                                              cudaStream_t stream) {
  return cnnlab::Forward(g, x, w, y, stream, bias, activation);
}
int cnnlab_conv2d_backprop_input_f32(const ConvGeometry* g, const float* w, const float* dy, float* dx,
                                     cudaStream_t stream) {
  return cnnlab::BackpropInput(g, w, dy, dx, stream);
}
int cnnlab_conv2d_backprop_input_f64(const ConvGeometry* g, const double* w, const double* dy, double* dx,
                                     cudaStream_t stream) {
  return cnnlab::BackpropInput(g, w, dy, dx, stream);
}
int cnnlab_conv2d_backprop_filter_f32(const ConvGeometry* g, const float* x, const float* dy, float* dw,
                                      cudaStream_t stream) {
  return cnnlab::BackpropFilter(g, x, dy, dw, false, stream);
}
int cnnlab_conv2d_backprop_filter_f64(const ConvGeometry* g, const double* x, const double* dy, double* dw,
                                      cudaStream_t stream) {
  return cnnlab::BackpropFilter(g, x, dy, dw, false, stream);
}
int cnnlab_conv2d_backprop_filter_deterministic_f32(const ConvGeometry* g, const float* x, const float* dy,
                                                    float* dw, cudaStream_t stream) {
  return cnnlab::BackpropFilter(g, x, dy, dw, true, stream);
}
int cnnlab_conv2d_backprop_filter_deterministic_f64(const ConvGeometry* g, const double* x, const double* dy,
                                                    double* dw, cudaStream_t stream) {
  return cnnlab::BackpropFilter(g, x, dy, dw, true, stream);
}
const char* cnnlab_cuda_error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // extern "C"

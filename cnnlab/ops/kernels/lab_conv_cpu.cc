// CPU kernels, multi-threaded through TensorFlow's intra-op pool.
//
// A 3x3, stride-1 forward pass (or input gradient) whose channels all fill
// whole SIMD vectors runs Winograd's F(2x2, 3x3) (lab_conv_winograd.h), one
// unit of work per (image, band of 2x2 tile rows). Elsewhere:
//
// Where the channels fill whole SIMD vectors (out_c, or in_c for the input
// gradient, a multiple of 16 floats or 8 doubles with AVX-512), the direct
// kernels of lab_conv_direct.h run, one unit of work per (image, band of
// output rows). Elsewhere, and for the input gradient of strided
// convolutions, im2col + GEMM:
//
// For one image, im2col lays every receptive field out as a row:
//   cols (P = out_h*out_w, K = filter_h*filter_w*in_c)
// so that the three passes are matrix products (Eigen's GEMM):
//   forward          y_n  (P, out_c) = cols_n (P, K)      * w (K, out_c)
//   input gradient   dcols_n (P, K)  = dy_n (P, out_c)    * w^T, then col2im scatter-adds into dx_n
//   filter gradient  dw (K, out_c)   = sum_n cols_n^T (K, P) * dy_n (P, out_c)
// w in HWIO layout is already the (K, out_c) matrix, and y in NHWC is already
// (P, out_c) per image: no transposes are materialised.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "Eigen/Core"
#include "lab_conv_direct.h"
#include "lab_conv_op_kernels.h"
#include "lab_conv_winograd.h"
#include "tensorflow/core/framework/op_kernel.h"

namespace cnnlab {

using CPUDevice = Eigen::ThreadPoolDevice;

namespace {

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;

// Rows [row_begin, row_end) of one image's im2col matrix into `cols`
// ((row_end - row_begin) x K). Out-of-image taps (padding) become zeros.
template <typename T>
void Im2Col(const ConvGeometry& g, const T* image, int64_t row_begin, int64_t row_end, T* cols) {
  const int64_t k = g.patch_size();
  const size_t run = static_cast<size_t>(g.in_c);
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t oh = row / g.out_w, ow = row % g.out_w;
    T* dst = cols + (row - row_begin) * k;
    for (int64_t fy = 0; fy < g.filter_h; ++fy) {
      const int64_t ih = oh * g.stride_h - g.pad_top + fy;
      if (ih < 0 || ih >= g.in_h) {
        std::memset(dst, 0, sizeof(T) * run * g.filter_w);
        dst += run * g.filter_w;
        continue;
      }
      for (int64_t fx = 0; fx < g.filter_w; ++fx, dst += run) {
        const int64_t iw = ow * g.stride_w - g.pad_left + fx;
        if (iw < 0 || iw >= g.in_w) {
          std::memset(dst, 0, sizeof(T) * run);
        } else {
          std::memcpy(dst, image + (ih * g.in_w + iw) * g.in_c, sizeof(T) * run);
        }
      }
    }
  }
}

// The adjoint of Im2Col for a whole image: adds every row of `cols` back onto
// the pixels it was copied from. `image` must be zeroed by the caller.
template <typename T>
void Col2ImAdd(const ConvGeometry& g, const T* cols, T* image) {
  const int64_t k = g.patch_size();
  for (int64_t row = 0; row < g.patches(); ++row) {
    const int64_t oh = row / g.out_w, ow = row % g.out_w;
    const T* src = cols + row * k;
    for (int64_t fy = 0; fy < g.filter_h; ++fy) {
      const int64_t ih = oh * g.stride_h - g.pad_top + fy;
      if (ih < 0 || ih >= g.in_h) {
        src += g.filter_w * g.in_c;
        continue;
      }
      for (int64_t fx = 0; fx < g.filter_w; ++fx, src += g.in_c) {
        const int64_t iw = ow * g.stride_w - g.pad_left + fx;
        if (iw < 0 || iw >= g.in_w) continue;
        T* dst = image + (ih * g.in_w + iw) * g.in_c;
        for (int64_t c = 0; c < g.in_c; ++c) dst[c] += src[c];
      }
    }
  }
}

// An output whose elements each sum no terms (no input channels, no images, no
// output positions to sum over) is all zeros. The kernels below assume at least
// one term: with none, band and chunk sizes divide by zero or go negative.
template <typename T>
bool ZeroedForLackOfTerms(int64_t terms, T* out, int64_t size) {
  if (terms > 0) return false;
  std::fill(out, out + size, T(0));
  return true;
}

// Rough cost of one unit of work, in CPU cycles, for TensorFlow's sharder.
int64_t GemmCost(int64_t m, int64_t k, int64_t n) { return std::max<int64_t>(1, m * k * n / 8); }

tensorflow::thread::ThreadPool* Workers(OpKernelContext* ctx) {
  return ctx->device()->tensorflow_cpu_worker_threads()->workers;
}

// The fused op's bias and activation over `pixels` outputs of `channels`
// each, y (pixels, channels), in place. Called on each unit of work as soon as
// it is complete, while its outputs are still in this core's cache: a separate
// TensorFlow op would read and write all of y from memory twice more.
template <typename T>
void ApplyEpilogue(const Epilogue<T>& epilogue, int64_t pixels, int64_t channels, T* y) {
  if (!epilogue.Any()) return;
  for (int64_t p = 0; p < pixels; ++p, y += channels) {
    for (int64_t c = 0; c < channels; ++c) y[c] = epilogue.Of(c, y[c]);
  }
}

// Which direct kernel computes y = conv(x, w) for geometry g, if any.
enum class Direct { kNone, kVectorsOfOutputs, kFewOutputs };

template <typename T>
Direct DirectKernelFor(const ConvGeometry& g) {
  if (direct::Applies<T>(g.out_c)) return Direct::kVectorsOfOutputs;
  if (g.out_c < direct::Simd<T>::kLanes && direct::Applies<T>(g.in_c)) return Direct::kFewOutputs;
  return Direct::kNone;
}

// Calls run(unit, following, &scratch) for every unit in [0, units), in parallel:
// one runner per pool thread (finer shards put three threads on two cores), each
// with its own Scratch, taking the next unit until none is left, so that a core
// that another process slows down takes fewer units instead of holding the others
// up. Each output element is still computed by one unit in one fixed order, so
// the result does not depend on which runner took it. A runner claims its next
// unit before it starts this one (`following`, >= units when there is none), so
// that this one can fetch the next one's memory.
template <typename Scratch, typename Run>
void ForEachUnit(OpKernelContext* ctx, int64_t units, Run run) {
  auto* workers = Workers(ctx);
  const int64_t runners = std::max<int64_t>(1, std::min<int64_t>(units, workers->NumThreads()));
  std::atomic<int64_t> next_unit{0};
  workers->ParallelFor(runners, std::numeric_limits<int32_t>::max(), [&](int64_t, int64_t) {
    Scratch scratch;
    for (int64_t unit = next_unit++, following; unit < units; unit = following) {
      following = next_unit++;
      run(unit, following, &scratch);
    }
  });
}

// Runs the direct forward kernel over every (image, band) of geometry g, in
// parallel, each output finished by `epilogue` (in the tiles' registers, or for
// kFewOutputs over each band once it is complete). w is (K, out_c), or for
// kFewOutputs (out_c, fh * fw, in_c).
template <typename T>
void DirectForward(OpKernelContext* ctx, Direct kind, const ConvGeometry& g, const T* x, const T* w, T* y,
                   const Epilogue<T>& epilogue = {}) {
  const int64_t band = direct::BandRows(g), bands = (g.out_h + band - 1) / band;
  const int64_t image_in = g.in_h * g.in_w * g.in_c, image_out = g.out_h * g.out_w * g.out_c;
  const int64_t units = g.batch * bands;
  ForEachUnit<direct::Scratch<T>>(ctx, units, [&](int64_t unit, int64_t following, direct::Scratch<T>* scratch) {
    const int64_t n = unit / bands, oh = (unit % bands) * band;
    const int64_t last = std::min(g.out_h, oh + band);
    if (kind == Direct::kFewOutputs) {  // one dot product per output: finished over the band once it is done
      direct::ForwardRowsFewOutputs(g, x + n * image_in, oh, last, w, y + n * image_out, scratch);
      ApplyEpilogue(epilogue, (last - oh) * g.out_w, g.out_c, y + n * image_out + oh * g.out_w * g.out_c);
      return;
    }
    direct::Ahead ahead;
    if (following < units) {
      const int64_t next_n = following / bands, next_oh = (following % bands) * band;
      ahead = direct::RowsAhead(g, x + next_n * image_in, next_oh, std::min(g.out_h, next_oh + band),
                                y + next_n * image_out);
    }
    direct::ForwardRows(g, x + n * image_in, oh, last, w, y + n * image_out, scratch,
                        epilogue.Any() ? &epilogue : nullptr, &ahead);
  });
}

// Whether a 3x3, stride-1 convolution may run Winograd's algorithm: unless the
// environment sets CNNLAB_CONV_WINOGRAD=0, read on every call, so that a
// benchmark or a test can time or check the direct kernels on the same layers.
bool WinogradAllowed() {
  const char* setting = std::getenv("CNNLAB_CONV_WINOGRAD");
  return setting == nullptr || std::strcmp(setting, "0") != 0;
}

template <typename T>
bool UseWinograd(const ConvGeometry& g) {
  return winograd::Applies<T>(g) && WinogradAllowed();
}

// y = conv(x, w) by Winograd's F(2x2, 3x3) (lab_conv_winograd.h), where
// winograd::Applies: the filter w (3, 3, in_c, out_c) is transformed once, then
// every (image, band of tile rows) is a unit for ForEachUnit.
template <typename T>
absl::Status WinogradForward(OpKernelContext* ctx, const ConvGeometry& g, const T* x, const T* w, T* y,
                             const Epilogue<T>& epilogue = {}) {
  Tensor transformed;
  TF_RETURN_IF_ERROR(ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value,
                                        TensorShape({winograd::kPoints * g.in_c * g.out_c}), &transformed));
  T* u = transformed.flat<T>().data();
  winograd::TransformFilter(g, w, u);
  const int64_t band = winograd::BandTileRows<T>(g), tiles_h = winograd::TilesH(g);
  const int64_t bands = (tiles_h + band - 1) / band, units = g.batch * bands;
  const int64_t image_in = g.in_h * g.in_w * g.in_c, image_out = g.out_h * g.out_w * g.out_c;
  ForEachUnit<winograd::Scratch<T>>(ctx, units, [&](int64_t unit, int64_t, winograd::Scratch<T>* scratch) {
    const int64_t n = unit / bands, th = (unit % bands) * band;
    winograd::ForwardTileRows(g, x + n * image_in, th, std::min(tiles_h, th + band), u, y + n * image_out, scratch,
                              epilogue.Any() ? &epilogue : nullptr);
  });
  return absl::OkStatus();
}

// Room for one filter's worth of elements (K * out_c), rearranged for a direct
// kernel: a TensorFlow temporary, 64-byte aligned like every tensor. (From a
// std::vector, most of the kernel's vector loads of it would straddle two
// cache lines.)
template <typename T>
absl::Status FilterScratch(OpKernelContext* ctx, const ConvGeometry& g, Tensor* scratch) {
  return ctx->allocate_temp(tensorflow::DataTypeToEnum<T>::value, TensorShape({g.patch_size() * g.out_c}), scratch);
}

// Rows of the output per work unit: large enough for an efficient GEMM,
// small enough that one image can still be split between threads.
constexpr int64_t kRowsPerBlock = 256;

}  // namespace

template <typename T>
struct ConvFunctor<CPUDevice, T> {
  static absl::Status Forward(OpKernelContext* ctx, const ConvGeometry& g, const T* x, const T* w, T* y,
                              const Epilogue<T>& epilogue) {
    if (ZeroedForLackOfTerms(g.patch_size(), y, g.batch * g.patches() * g.out_c)) {
      ApplyEpilogue(epilogue, g.batch * g.patches(), g.out_c, y);
      return absl::OkStatus();
    }
    if (UseWinograd<T>(g)) return WinogradForward(ctx, g, x, w, y, epilogue);
    const Direct kind = DirectKernelFor<T>(g);
    if (kind == Direct::kVectorsOfOutputs) {
      DirectForward(ctx, kind, g, x, w, y, epilogue);
      return absl::OkStatus();
    }
    if (kind == Direct::kFewOutputs) {  // w (K, out_c) -> (out_c, K)
      Tensor scratch;
      TF_RETURN_IF_ERROR(FilterScratch<T>(ctx, g, &scratch));
      T* transposed = scratch.flat<T>().data();
      for (int64_t k = 0; k < g.patch_size(); ++k)
        for (int64_t o = 0; o < g.out_c; ++o) transposed[o * g.patch_size() + k] = w[k * g.out_c + o];
      DirectForward(ctx, kind, g, x, transposed, y, epilogue);
      return absl::OkStatus();
    }
    const int64_t k = g.patch_size(), p = g.patches();
    const int64_t blocks_per_image = (p + kRowsPerBlock - 1) / kRowsPerBlock;
    ConstMatrixMap<T> filter(w, k, g.out_c);
    Workers(ctx)->ParallelFor(
        g.batch * blocks_per_image, GemmCost(kRowsPerBlock, k, g.out_c), [&](int64_t begin, int64_t end) {
          std::vector<T> cols(static_cast<size_t>(kRowsPerBlock * k));
          for (int64_t unit = begin; unit < end; ++unit) {
            const int64_t n = unit / blocks_per_image;
            const int64_t row_begin = (unit % blocks_per_image) * kRowsPerBlock;
            const int64_t rows = std::min(kRowsPerBlock, p - row_begin);
            Im2Col(g, x + n * g.in_h * g.in_w * g.in_c, row_begin, row_begin + rows, cols.data());
            MatrixMap<T> out(y + (n * p + row_begin) * g.out_c, rows, g.out_c);
            out.noalias() = ConstMatrixMap<T>(cols.data(), rows, k) * filter;
            ApplyEpilogue(epilogue, rows, g.out_c, out.data());
          }
        });
    return absl::OkStatus();
  }

  static absl::Status BackpropInput(OpKernelContext* ctx, const ConvGeometry& g, const T* w, const T* dy,
                                    T* dx) {
    if (ZeroedForLackOfTerms(g.patches() * g.out_c, dx, g.batch * g.in_h * g.in_w * g.in_c)) {
      return absl::OkStatus();
    }
    const ConvGeometry transposed = direct::TransposedGeometry(g);
    const Direct kind = DirectKernelFor<T>(transposed);
    if (g.stride_h == 1 && g.stride_w == 1 && kind != Direct::kNone) {
      // dx is the forward convolution of dy with w flipped and transposed.
      Tensor scratch;
      TF_RETURN_IF_ERROR(FilterScratch<T>(ctx, g, &scratch));
      T* flipped = scratch.flat<T>().data();
      direct::FlipTranspose(g, w, flipped, kind == Direct::kFewOutputs);
      if (kind == Direct::kVectorsOfOutputs && UseWinograd<T>(transposed)) {
        return WinogradForward(ctx, transposed, dy, flipped, dx);
      }
      DirectForward(ctx, kind, transposed, dy, flipped, dx);
      return absl::OkStatus();
    }
    const int64_t k = g.patch_size(), p = g.patches();
    const int64_t image_size = g.in_h * g.in_w * g.in_c;
    ConstMatrixMap<T> filter(w, k, g.out_c);
    // One image per unit: col2im of two row blocks of one image would overlap.
    Workers(ctx)->ParallelFor(g.batch, GemmCost(p, k, g.out_c), [&](int64_t begin, int64_t end) {
      RowMatrix<T> dcols(p, k);
      for (int64_t n = begin; n < end; ++n) {
        dcols.noalias() = ConstMatrixMap<T>(dy + n * p * g.out_c, p, g.out_c) * filter.transpose();
        T* image = dx + n * image_size;
        std::fill(image, image + image_size, T(0));
        Col2ImAdd(g, dcols.data(), image);
      }
    });
    return absl::OkStatus();
  }

  static absl::Status BackpropFilter(OpKernelContext* ctx, const ConvGeometry& g, const T* x, const T* dy,
                                     T* dw) {
    if (ZeroedForLackOfTerms(g.batch * g.patches(), dw, g.patch_size() * g.out_c)) return absl::OkStatus();
    const int64_t k = g.patch_size(), p = g.patches();
    const int64_t image_size = g.in_h * g.in_w * g.in_c;
    // Each chunk of images sums into its own partial gradient; the partials
    // are added at the end, so no two threads write the same memory.
    auto* workers = Workers(ctx);
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(g.batch, workers->NumThreads()));
    std::vector<RowMatrix<T>> partial(chunks, RowMatrix<T>::Zero(k, g.out_c));
    const bool use_direct = direct::Applies<T>(g.out_c);
    const int64_t band = direct::BandRows(g);
    workers->ParallelFor(chunks, GemmCost(p * ((g.batch + chunks - 1) / chunks), k, g.out_c),
                         [&](int64_t begin, int64_t end) {
                           direct::Scratch<T> scratch;
                           std::vector<T> cols(use_direct ? 0 : static_cast<size_t>(std::min(kRowsPerBlock, p) * k));
                           for (int64_t chunk = begin; chunk < end; ++chunk) {
                             for (int64_t n = chunk * g.batch / chunks; n < (chunk + 1) * g.batch / chunks; ++n) {
                               const T* image = x + n * image_size;
                               const T* dy_image = dy + n * p * g.out_c;
                               if (use_direct) {
                                 for (int64_t oh = 0; oh < g.out_h; oh += band) {
                                   direct::BackpropFilterRows(g, image, oh, std::min(g.out_h, oh + band), dy_image,
                                                              partial[chunk].data(), &scratch);
                                 }
                                 continue;
                               }
                               for (int64_t row = 0; row < p; row += kRowsPerBlock) {
                                 const int64_t rows = std::min(kRowsPerBlock, p - row);
                                 Im2Col(g, image, row, row + rows, cols.data());
                                 partial[chunk].noalias() +=
                                     ConstMatrixMap<T>(cols.data(), rows, k).transpose() *
                                     ConstMatrixMap<T>(dy_image + row * g.out_c, rows, g.out_c);
                               }
                             }
                           }
                         });
    MatrixMap<T> out(dw, k, g.out_c);
    out = partial[0];
    for (int64_t chunk = 1; chunk < chunks; ++chunk) out += partial[chunk];
    return absl::OkStatus();
  }
};

#define CNNLAB_REGISTER_CPU(T)                                                                      \
  REGISTER_KERNEL_BUILDER(Name("LabConv2D").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
                          LabConv2DOp<CPUDevice, T, false>);                                        \
  REGISTER_KERNEL_BUILDER(Name("LabFusedConv2D").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"), \
                          LabConv2DOp<CPUDevice, T, true>);                                         \
  REGISTER_KERNEL_BUILDER(                                                                          \
      Name("LabConv2DBackpropInput").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),       \
      LabConv2DBackpropInputOp<CPUDevice, T>);                                                      \
  REGISTER_KERNEL_BUILDER(                                                                          \
      Name("LabConv2DBackpropFilter").Device(::tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),      \
      LabConv2DBackpropFilterOp<CPUDevice, T>);

CNNLAB_REGISTER_CPU(float)
CNNLAB_REGISTER_CPU(double)

}  // namespace cnnlab

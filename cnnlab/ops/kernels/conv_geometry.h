// Geometry of one NHWC convolution: sizes, strides and TensorFlow's padding;
// and the fused op's epilogue. Plain C++ with no TensorFlow header, shared by
// the CPU kernel, the CUDA kernels (lab_conv_kernels.cu) and the op registration.
#ifndef CNNLAB_CONV_GEOMETRY_H_
#define CNNLAB_CONV_GEOMETRY_H_

#include <cstdint>

namespace cnnlab {

// Input  x: (batch, in_h, in_w, in_c)        NHWC
// Filter w: (filter_h, filter_w, in_c, out_c) HWIO
// Output y: (batch, out_h, out_w, out_c)     NHWC
// pad_top / pad_left are the zeros before the first row / column; TensorFlow's
// SAME puts the odd zero (if any) after, at the bottom / right.
struct ConvGeometry {
  int64_t batch, in_h, in_w, in_c;
  int64_t filter_h, filter_w, out_c;
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left;
  int64_t out_h, out_w;

  // Rows of the im2col matrix for one image, and its columns.
  int64_t patches() const { return out_h * out_w; }
  int64_t patch_size() const { return filter_h * filter_w * in_c; }
};

// Output size and padding before, along one axis, with TensorFlow's rules.
// Returns false when the window does not fit (VALID with filter > input).
inline bool WindowedOutputSize(int64_t in, int64_t filter, int64_t stride, bool same,
                               int64_t* out, int64_t* pad_before) {
  if (same) {
    *out = (in + stride - 1) / stride;
    const int64_t needed = (*out - 1) * stride + filter - in;
    const int64_t total = needed > 0 ? needed : 0;
    *pad_before = total / 2;
    return true;
  }
  if (filter > in) return false;
  *out = (in - filter) / stride + 1;
  *pad_before = 0;
  return true;
}

// What LabFusedConv2D does to each output once its sum is complete: add the
// bias of its output channel (bias (out_c,), or none), then ReLU if asked.
// The default, no bias and linear, leaves the sum as it is. (The CUDA kernels
// apply the same rule in ForwardProblem::finish, on the device.)
template <typename T>
struct Epilogue {
  const T* bias = nullptr;
  bool relu = false;

  bool Any() const { return bias != nullptr || relu; }
  // The same epilogue for the outputs from channel `column` on.
  Epilogue At(int64_t column) const { return {bias == nullptr ? nullptr : bias + column, relu}; }
  T Of(int64_t column, T sum) const {
    if (bias != nullptr) sum += bias[column];
    return relu && sum < T(0) ? T(0) : sum;  // NaN stays NaN
  }
};

}  // namespace cnnlab

#endif  // CNNLAB_CONV_GEOMETRY_H_

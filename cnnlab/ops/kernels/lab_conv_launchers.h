// C entry points of the CUDA kernels (lab_conv_kernels.cu). No TensorFlow
// header: the same library is called by the TensorFlow op (lab_conv_gpu.cc)
// and, through ctypes, by the standalone GPU tests (tests/gpu/).
//
// Every launcher enqueues its work on `stream` and returns the cudaError_t of
// the launch (0 on success) without synchronising. Pointers are device memory:
//   x  (batch, in_h, in_w, in_c)   w  (filter_h, filter_w, in_c, out_c)
//   y  (batch, out_h, out_w, out_c) and dx, dw, dy shaped like x, w, y.
#ifndef CNNLAB_LAB_CONV_LAUNCHERS_H_
#define CNNLAB_LAB_CONV_LAUNCHERS_H_

#include <cuda_runtime_api.h>

#include "conv_geometry.h"

extern "C" {

int cnnlab_conv2d_forward_f32(const cnnlab::ConvGeometry* g, const float* x, const float* w, float* y,
                              cudaStream_t stream);
int cnnlab_conv2d_forward_f64(const cnnlab::ConvGeometry* g, const double* x, const double* w, double* y,
                              cudaStream_t stream);
// y = activation(conv(x, w) + bias), the bias (out_c,) added and the activation
// (0: linear, 1: relu) applied as each output is stored. bias may be null.
int cnnlab_conv2d_forward_bias_activation_f32(const cnnlab::ConvGeometry* g, const float* x, const float* w,
                                              const float* bias, int activation, float* y, cudaStream_t stream);
int cnnlab_conv2d_forward_bias_activation_f64(const cnnlab::ConvGeometry* g, const double* x, const double* w,
                                              const double* bias, int activation, double* y,
                                              cudaStream_t stream);
int cnnlab_conv2d_backprop_input_f32(const cnnlab::ConvGeometry* g, const float* w, const float* dy,
                                     float* dx, cudaStream_t stream);
int cnnlab_conv2d_backprop_input_f64(const cnnlab::ConvGeometry* g, const double* w, const double* dy,
                                     double* dx, cudaStream_t stream);
int cnnlab_conv2d_backprop_filter_f32(const cnnlab::ConvGeometry* g, const float* x, const float* dy,
                                      float* dw, cudaStream_t stream);
int cnnlab_conv2d_backprop_filter_f64(const cnnlab::ConvGeometry* g, const double* x, const double* dy,
                                      double* dw, cudaStream_t stream);
// The filter gradient without K-splits: bitwise the same on every run (the
// launchers above sum K-splits with atomicAdd, whose order varies in the last
// bits). The TensorFlow op calls these when op determinism is enabled.
int cnnlab_conv2d_backprop_filter_deterministic_f32(const cnnlab::ConvGeometry* g, const float* x,
                                                    const float* dy, float* dw, cudaStream_t stream);
int cnnlab_conv2d_backprop_filter_deterministic_f64(const cnnlab::ConvGeometry* g, const double* x,
                                                    const double* dy, double* dw, cudaStream_t stream);
// cudaGetErrorString for a code returned above.
const char* cnnlab_cuda_error_string(int code);

}  // extern "C"

#endif  // CNNLAB_LAB_CONV_LAUNCHERS_H_

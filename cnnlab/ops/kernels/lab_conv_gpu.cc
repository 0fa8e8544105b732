// GPU OpKernels: TensorFlow's side of the CUDA kernels in lab_conv_kernels.cu.
// Compiled only into the GPU build (-DGOOGLE_CUDA=1). Every launch goes on
// TensorFlow's own stream for the op, never on the default stream 0, so it is
// ordered with the ops around it; launch errors become op errors.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU

#include "lab_conv_launchers.h"
#include "lab_conv_op_kernels.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/util/determinism.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace cnnlab {

using GPUDevice = Eigen::GpuDevice;

namespace {

template <typename T>
struct Launchers;

template <>
struct Launchers<float> {
  static constexpr auto forward = cnnlab_conv2d_forward_f32;
  static constexpr auto forward_bias_activation = cnnlab_conv2d_forward_bias_activation_f32;
  static constexpr auto backprop_input = cnnlab_conv2d_backprop_input_f32;
  static constexpr auto backprop_filter = cnnlab_conv2d_backprop_filter_f32;
  static constexpr auto backprop_filter_deterministic = cnnlab_conv2d_backprop_filter_deterministic_f32;
};

template <>
struct Launchers<double> {
  static constexpr auto forward = cnnlab_conv2d_forward_f64;
  static constexpr auto forward_bias_activation = cnnlab_conv2d_forward_bias_activation_f64;
  static constexpr auto backprop_input = cnnlab_conv2d_backprop_input_f64;
  static constexpr auto backprop_filter = cnnlab_conv2d_backprop_filter_f64;
  static constexpr auto backprop_filter_deterministic = cnnlab_conv2d_backprop_filter_deterministic_f64;
};

absl::Status LaunchStatus(int code, const char* what) {
  if (code == 0) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("cnnlab CUDA kernel launch failed (", what, "): ", cnnlab_cuda_error_string(code)));
}

cudaStream_t Stream(OpKernelContext* ctx) { return ctx->eigen_device<GPUDevice>().stream(); }

}  // namespace

template <typename T>
struct ConvFunctor<GPUDevice, T> {
  static absl::Status Forward(OpKernelContext* ctx, const ConvGeometry& g, const T* x, const T* w, T* y,
                              const Epilogue<T>& epilogue) {
    if (!epilogue.Any()) return LaunchStatus(Launchers<T>::forward(&g, x, w, y, Stream(ctx)), "forward");
    return LaunchStatus(Launchers<T>::forward_bias_activation(&g, x, w, epilogue.bias, epilogue.relu ? 1 : 0, y,
                                                              Stream(ctx)),
                        "forward with bias and activation");
  }
  static absl::Status BackpropInput(OpKernelContext* ctx, const ConvGeometry& g, const T* w, const T* dy,
                                    T* dx) {
    return LaunchStatus(Launchers<T>::backprop_input(&g, w, dy, dx, Stream(ctx)), "input gradient");
  }
  static absl::Status BackpropFilter(OpKernelContext* ctx, const ConvGeometry& g, const T* x, const T* dy,
                                     T* dw) {
    // Under tf.config.experimental.enable_op_determinism() (cnnlab.setup() turns it on),
    // no K-splits: their atomicAdd order would vary the last bits from run to run.
    const auto launch = ::tensorflow::OpDeterminismRequired() ? Launchers<T>::backprop_filter_deterministic
                                                              : Launchers<T>::backprop_filter;
    return LaunchStatus(launch(&g, x, dy, dw, Stream(ctx)), "filter gradient");
  }
};

#define CNNLAB_REGISTER_GPU(T)                                                                        \
  REGISTER_KERNEL_BUILDER(Name("LabConv2D").Device(::tensorflow::DEVICE_GPU).TypeConstraint<T>("T"),   \
                          LabConv2DOp<GPUDevice, T, false>);                                          \
  REGISTER_KERNEL_BUILDER(Name("LabFusedConv2D").Device(::tensorflow::DEVICE_GPU).TypeConstraint<T>("T"), \
                          LabConv2DOp<GPUDevice, T, true>);                                           \
  REGISTER_KERNEL_BUILDER(Name("LabConv2DBackpropInput")                                              \
                              .Device(::tensorflow::DEVICE_GPU)                                       \
                              .TypeConstraint<T>("T")                                                 \
                              .HostMemory("input_sizes"),                                             \
                          LabConv2DBackpropInputOp<GPUDevice, T>);                                    \
  REGISTER_KERNEL_BUILDER(Name("LabConv2DBackpropFilter")                                             \
                              .Device(::tensorflow::DEVICE_GPU)                                       \
                              .TypeConstraint<T>("T")                                                 \
                              .HostMemory("filter_sizes"),                                            \
                          LabConv2DBackpropFilterOp<GPUDevice, T>);

CNNLAB_REGISTER_GPU(float)
CNNLAB_REGISTER_GPU(double)

}  // namespace cnnlab

#endif  // GOOGLE_CUDA

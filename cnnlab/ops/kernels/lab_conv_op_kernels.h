// The four OpKernels, written once for any device. Each validates its inputs,
// works out the ConvGeometry, allocates the output and hands the raw pointers
// to ConvFunctor<Device, T>, which lab_conv_cpu.cc and lab_conv_gpu.cc specialise.
#ifndef CNNLAB_LAB_CONV_OP_KERNELS_H_
#define CNNLAB_LAB_CONV_OP_KERNELS_H_

#include <string>
#include <vector>

#include "conv_geometry.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/framework/tensor_util.h"

namespace cnnlab {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// The device-specific work. Pointers are to device memory of the op's device;
// every output element must be written (outputs are not pre-zeroed).
template <typename Device, typename T>
struct ConvFunctor {
  // y = act(conv(x, w) + bias):  x (batch, in_h, in_w, in_c), w (fh, fw, in_c, out_c) -> y (batch, out_h, out_w, out_c)
  static absl::Status Forward(OpKernelContext* ctx, const ConvGeometry& g, const T* x, const T* w, T* y,
                              const Epilogue<T>& epilogue);
  // dx = dL/dx from dy = dL/dy and w.
  static absl::Status BackpropInput(OpKernelContext* ctx, const ConvGeometry& g, const T* w, const T* dy,
                                    T* dx);
  // dw = dL/dw from x and dy.
  static absl::Status BackpropFilter(OpKernelContext* ctx, const ConvGeometry& g, const T* x, const T* dy,
                                     T* dw);
};

// The `strides` and `padding` attributes, validated once at construction.
struct ConvAttrs {
  int64_t stride_h = 1, stride_w = 1;
  bool same = false;

  explicit ConvAttrs(OpKernelConstruction* ctx) {
    std::vector<int32_t> strides;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("strides", &strides));
    OP_REQUIRES(ctx, strides.size() == 2,
                absl::InvalidArgumentError(absl::StrCat(
                    "strides must have 2 entries (stride_h, stride_w), got ", strides.size())));
    OP_REQUIRES(ctx, strides[0] >= 1 && strides[1] >= 1,
                absl::InvalidArgumentError(absl::StrCat("strides must be positive, got (", strides[0],
                                                        ", ", strides[1], ")")));
    std::string padding;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("padding", &padding));
    stride_h = strides[0];
    stride_w = strides[1];
    same = padding == "SAME";
  }
};

inline absl::Status MakeGeometry(const TensorShape& input, const TensorShape& filter, const ConvAttrs& attrs,
                                 ConvGeometry* g) {
  if (input.dims() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input must be rank 4 (batch, height, width, channels), got shape ", input.DebugString()));
  }
  if (filter.dims() != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "filter must be rank 4 (filter_h, filter_w, in_channels, out_channels), got shape ",
        filter.DebugString()));
  }
  if (input.dim_size(3) != filter.dim_size(2)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input channels (", input.dim_size(3), ") must equal the filter's in_channels (",
        filter.dim_size(2), "); input ", input.DebugString(), ", filter ", filter.DebugString()));
  }
  g->batch = input.dim_size(0);
  g->in_h = input.dim_size(1);
  g->in_w = input.dim_size(2);
  g->in_c = input.dim_size(3);
  g->filter_h = filter.dim_size(0);
  g->filter_w = filter.dim_size(1);
  g->out_c = filter.dim_size(3);
  g->stride_h = attrs.stride_h;
  g->stride_w = attrs.stride_w;
  if (g->filter_h < 1 || g->filter_w < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("filter height and width must be positive, got ", filter.DebugString()));
  }
  if (!WindowedOutputSize(g->in_h, g->filter_h, g->stride_h, attrs.same, &g->out_h, &g->pad_top) ||
      !WindowedOutputSize(g->in_w, g->filter_w, g->stride_w, attrs.same, &g->out_w, &g->pad_left)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "with padding VALID the filter (", g->filter_h, "x", g->filter_w,
        ") must fit inside the input (", g->in_h, "x", g->in_w, "); use padding SAME or a smaller filter"));
  }
  return absl::OkStatus();
}

inline TensorShape OutputShape(const ConvGeometry& g) {
  return TensorShape({g.batch, g.out_h, g.out_w, g.out_c});
}

inline absl::Status ShapeFromSizesTensor(const Tensor& sizes, const char* name, TensorShape* shape) {
  if (sizes.dims() != 1 || sizes.NumElements() != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " must be a vector of 4 ints, got shape ", sizes.shape().DebugString()));
  }
  return ::tensorflow::tensor::MakeShape(sizes, shape);
}

inline absl::Status CheckOutBackprop(const Tensor& out_backprop, const ConvGeometry& g) {
  const TensorShape expected = OutputShape(g);
  if (out_backprop.shape() != expected) {
    return absl::InvalidArgumentError(absl::StrCat("out_backprop has shape ",
                                                   out_backprop.shape().DebugString(),
                                                   " but the convolution's output is ", expected.DebugString()));
  }
  return absl::OkStatus();
}

// LabConv2D (kFused false): y = conv(x, w).
// LabFusedConv2D (kFused true): y = act(conv(x, w) + bias), in one pass over y.
template <typename Device, typename T, bool kFused>
class LabConv2DOp : public OpKernel {
 public:
  explicit LabConv2DOp(OpKernelConstruction* ctx) : OpKernel(ctx), attrs_(ctx) {
    if (!kFused) return;
    std::string activation;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("activation", &activation));
    relu_ = activation == "relu";
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& filter = ctx->input(1);
    ConvGeometry g;
    OP_REQUIRES_OK(ctx, MakeGeometry(input.shape(), filter.shape(), attrs_, &g));
    Epilogue<T> epilogue;
    if (kFused) {
      const Tensor& bias = ctx->input(2);
      OP_REQUIRES(ctx, bias.shape() == TensorShape({g.out_c}),
                  absl::InvalidArgumentError(absl::StrCat("bias must have shape (out_channels,) = (", g.out_c,
                                                          ",), got ", bias.shape().DebugString())));
      epilogue.bias = bias.flat<T>().data();
      epilogue.relu = relu_;
    }
    Tensor* output = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, OutputShape(g), &output));
    if (output->NumElements() == 0) return;
    OP_REQUIRES_OK(ctx, (ConvFunctor<Device, T>::Forward(ctx, g, input.flat<T>().data(), filter.flat<T>().data(),
                                                         output->flat<T>().data(), epilogue)));
  }

 private:
  ConvAttrs attrs_;
  bool relu_ = false;
};

template <typename Device, typename T>
class LabConv2DBackpropInputOp : public OpKernel {
 public:
  explicit LabConv2DBackpropInputOp(OpKernelConstruction* ctx) : OpKernel(ctx), attrs_(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& filter = ctx->input(1);
    const Tensor& out_backprop = ctx->input(2);
    TensorShape input_shape;
    OP_REQUIRES_OK(ctx, ShapeFromSizesTensor(ctx->input(0), "input_sizes", &input_shape));
    ConvGeometry g;
    OP_REQUIRES_OK(ctx, MakeGeometry(input_shape, filter.shape(), attrs_, &g));
    OP_REQUIRES_OK(ctx, CheckOutBackprop(out_backprop, g));
    Tensor* input_grad = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, input_shape, &input_grad));
    if (input_grad->NumElements() == 0) return;
    OP_REQUIRES_OK(ctx, (ConvFunctor<Device, T>::BackpropInput(ctx, g, filter.flat<T>().data(),
                                                               out_backprop.flat<T>().data(),
                                                               input_grad->flat<T>().data())));
  }

 private:
  ConvAttrs attrs_;
};

template <typename Device, typename T>
class LabConv2DBackpropFilterOp : public OpKernel {
 public:
  explicit LabConv2DBackpropFilterOp(OpKernelConstruction* ctx) : OpKernel(ctx), attrs_(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& input = ctx->input(0);
    const Tensor& out_backprop = ctx->input(2);
    TensorShape filter_shape;
    OP_REQUIRES_OK(ctx, ShapeFromSizesTensor(ctx->input(1), "filter_sizes", &filter_shape));
    ConvGeometry g;
    OP_REQUIRES_OK(ctx, MakeGeometry(input.shape(), filter_shape, attrs_, &g));
    OP_REQUIRES_OK(ctx, CheckOutBackprop(out_backprop, g));
    Tensor* filter_grad = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, filter_shape, &filter_grad));
    if (filter_grad->NumElements() == 0) return;
    OP_REQUIRES_OK(ctx, (ConvFunctor<Device, T>::BackpropFilter(ctx, g, input.flat<T>().data(),
                                                                out_backprop.flat<T>().data(),
                                                                filter_grad->flat<T>().data())));
  }

 private:
  ConvAttrs attrs_;
};

}  // namespace cnnlab

#endif  // CNNLAB_LAB_CONV_OP_KERNELS_H_

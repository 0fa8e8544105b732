// Registration of the four ops, with shape functions so shapes infer in graphs.
//
//   LabConv2D                 (input, filter)                      -> output
//   LabFusedConv2D            (input, filter, bias)                -> activation(output + bias)
//   LabConv2DBackpropInput    (input_sizes, filter, out_backprop)  -> input gradient
//   LabConv2DBackpropFilter   (input, filter_sizes, out_backprop)  -> filter gradient
//
// The backprop ops mirror TensorFlow's Conv2DBackpropInput/Filter: they take the
// shape of the tensor whose gradient they compute, not the tensor itself.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace cnnlab {

using ::tensorflow::Padding;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

namespace {

absl::Status ReadStridesAndPadding(InferenceContext* c, int64_t* stride_h, int64_t* stride_w,
                                   Padding* padding) {
  std::vector<int32_t> strides;
  TF_RETURN_IF_ERROR(c->GetAttr("strides", &strides));
  if (strides.size() != 2 || strides[0] < 1 || strides[1] < 1) {
    return absl::InvalidArgumentError(
        "strides must be two positive integers (stride_h, stride_w)");
  }
  *stride_h = strides[0];
  *stride_w = strides[1];
  std::string padding_name;
  TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding_name));
  *padding = padding_name == "SAME" ? Padding::SAME : Padding::VALID;
  return absl::OkStatus();
}

absl::Status ForwardShape(InferenceContext* c) {
  ShapeHandle input, filter;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &input));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &filter));
  DimensionHandle channels;
  if (!c->Merge(c->Dim(input, 3), c->Dim(filter, 2), &channels).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input channels (", c->DebugString(c->Dim(input, 3)),
        ") must equal the filter's in_channels (", c->DebugString(c->Dim(filter, 2)),
        "): input is NHWC, filter is (filter_h, filter_w, in_channels, out_channels)"));
  }
  int64_t stride_h, stride_w;
  Padding padding;
  TF_RETURN_IF_ERROR(ReadStridesAndPadding(c, &stride_h, &stride_w, &padding));
  DimensionHandle out_h, out_w;
  TF_RETURN_IF_ERROR(::tensorflow::shape_inference::GetWindowedOutputSizeFromDims(
      c, c->Dim(input, 1), c->Dim(filter, 0), stride_h, padding, &out_h));
  TF_RETURN_IF_ERROR(::tensorflow::shape_inference::GetWindowedOutputSizeFromDims(
      c, c->Dim(input, 2), c->Dim(filter, 1), stride_w, padding, &out_w));
  c->set_output(0, c->MakeShape({c->Dim(input, 0), out_h, out_w, c->Dim(filter, 3)}));
  return absl::OkStatus();
}

// The forward shape, and a bias of shape (out_channels,).
absl::Status FusedShape(InferenceContext* c) {
  TF_RETURN_IF_ERROR(ForwardShape(c));
  ShapeHandle bias;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 1, &bias));
  DimensionHandle channels;
  if (!c->Merge(c->Dim(bias, 0), c->Dim(c->output(0), 3), &channels).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("bias has ", c->DebugString(c->Dim(bias, 0)),
                                                   " entries but the filter has ",
                                                   c->DebugString(c->Dim(c->output(0), 3)),
                                                   " out_channels: bias is (out_channels,)"));
  }
  return absl::OkStatus();
}

// The gradient has the shape given by the sizes tensor (input `index`).
absl::Status ShapeFromSizes(InferenceContext* c, int index) {
  ShapeHandle sizes;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(index), 1, &sizes));
  ShapeHandle shape;
  TF_RETURN_IF_ERROR(c->MakeShapeFromShapeTensor(index, &shape));
  TF_RETURN_IF_ERROR(c->WithRank(shape, 4, &shape));
  c->set_output(0, shape);
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("LabConv2D")
    .Input("input: T")
    .Input("filter: T")
    .Output("output: T")
    .Attr("T: {float, double}")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'} = 'VALID'")
    .SetShapeFn(ForwardShape)
    .Doc(R"doc(
2D cross-correlation of an NHWC input with an HWIO filter (cnnlab's own kernel).

input: (batch, in_h, in_w, in_channels).
filter: (filter_h, filter_w, in_channels, out_channels).
output: (batch, out_h, out_w, out_channels).
strides: (stride_h, stride_w), each >= 1.
padding: 'VALID' (none) or 'SAME' (TensorFlow's convention, odd zero after).
)doc");

REGISTER_OP("LabFusedConv2D")
    .Input("input: T")
    .Input("filter: T")
    .Input("bias: T")
    .Output("output: T")
    .Attr("T: {float, double}")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'} = 'VALID'")
    .Attr("activation: {'linear', 'relu'} = 'linear'")
    .SetShapeFn(FusedShape)
    .Doc(R"doc(
activation(LabConv2D(input, filter) + bias), the bias and activation applied to
each output as it is finished rather than by two more passes over the output
(as oneDNN fuses them into tf.nn.conv2d under Keras).

bias: (out_channels,).
activation: 'linear' (none) or 'relu'.
)doc");

REGISTER_OP("LabConv2DBackpropInput")
    .Input("input_sizes: int32")
    .Input("filter: T")
    .Input("out_backprop: T")
    .Output("output: T")
    .Attr("T: {float, double}")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'} = 'VALID'")
    .SetShapeFn([](InferenceContext* c) { return ShapeFromSizes(c, 0); })
    .Doc("Gradient of LabConv2D with respect to its input.");

REGISTER_OP("LabConv2DBackpropFilter")
    .Input("input: T")
    .Input("filter_sizes: int32")
    .Input("out_backprop: T")
    .Output("output: T")
    .Attr("T: {float, double}")
    .Attr("strides: list(int) = [1, 1]")
    .Attr("padding: {'SAME', 'VALID'} = 'VALID'")
    .SetShapeFn([](InferenceContext* c) { return ShapeFromSizes(c, 1); })
    .Doc("Gradient of LabConv2D with respect to its filter.");

}  // namespace cnnlab

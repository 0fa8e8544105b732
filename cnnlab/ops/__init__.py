"""cnnlab's own TensorFlow convolution op: C++ CPU kernel, CUDA GPU kernel, gradients.

    y = cnnlab.ops.conv2d(x, filters, strides=1, padding="VALID")

behaves like ``tf.nn.conv2d`` for NHWC float32/float64 tensors, but runs the
kernels in ``cnnlab/ops/kernels/``. The library is compiled on first use
(see :mod:`cnnlab.ops.build`); importing this package builds nothing.
"""

from cnnlab.ops.api import conv2d, conv2d_backprop_filter, conv2d_backprop_input, load_library, unavailable

__all__ = ["conv2d", "conv2d_backprop_filter", "conv2d_backprop_input", "load_library", "unavailable"]

"""cnnlab's own TensorFlow convolution op: C++ CPU kernel, CUDA GPU kernel, gradients.

    y = cnnlab.ops.conv2d(x, filters, strides=1, padding="VALID")

behaves like ``tf.nn.conv2d`` for NHWC float32/float64 tensors, but runs the
kernels in ``cnnlab/ops/kernels/``; ``fused_conv2d(x, filters, bias, ...,
activation="relu")`` adds a bias and a ReLU in the same pass. The library is compiled on first use
(see :mod:`cnnlab.ops.build`); importing this package builds nothing.

Determinism: the CPU kernels give the same bits on every run with the same
number of threads. On a GPU, the filter gradient normally splits its long sum
across blocks that add their parts with ``atomicAdd``, in an order that varies,
so two runs can differ in the last bits. Under
``tf.config.experimental.enable_op_determinism()`` (which :func:`cnnlab.setup`
turns on) it launches without splits instead: bitwise reproducible, at the cost
of fewer blocks in flight for small filters.
"""

from cnnlab.ops.api import (
    conv2d,
    conv2d_backprop_filter,
    conv2d_backprop_input,
    fused_conv2d,
    load_library,
    unavailable,
)

__all__ = [
    "conv2d", "conv2d_backprop_filter", "conv2d_backprop_input", "fused_conv2d", "load_library", "unavailable",
]  # fmt: skip

"""Keras 3 layers built on cnnlab's own convolution op.

``LabConv2D`` is a drop-in for the common uses of ``keras.layers.Conv2D``
(channels-last, dilation 1, groups 1) whose forward and backward passes run
in :mod:`cnnlab.ops`. It serialises with the model (``.keras`` files).
"""

from __future__ import annotations

from cnnlab.env import import_tensorflow

import_tensorflow()  # quietly, before Keras pulls TensorFlow in

import keras  # noqa: E402

from cnnlab import conv as _conv  # noqa: E402
from cnnlab import ops as _ops  # noqa: E402

__all__ = ["LabConv2D"]

# Activations the op applies itself, with the bias, as it writes each output (see cnnlab.ops.fused_conv2d).
_FUSED_ACTIVATIONS = {keras.activations.linear: "linear", keras.activations.relu: "relu"}


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return int(value[0]), int(value[1])


@keras.saving.register_keras_serializable(package="cnnlab")
class LabConv2D(keras.layers.Layer):
    """2D convolution layer running cnnlab's custom op.

    Input shape ``(batch, height, width, channels)``; output shape
    ``(batch, new_height, new_width, filters)``.

    Args:
        filters: number of output channels.
        kernel_size: an int or ``(kh, kw)``.
        strides: an int or ``(sh, sw)``.
        padding: ``"valid"`` or ``"same"``.
        activation: anything ``keras.activations.get`` accepts.
        use_bias: add a learned bias per filter.
        kernel_initializer, bias_initializer: Keras initialisers.
        kernel_regularizer, bias_regularizer: Keras regularisers.

    With no activation or ``"relu"``, the op adds the bias and applies the
    activation as it writes each output (one op, as oneDNN fuses them for
    ``Conv2D``); any other activation runs after it.

    XLA cannot compile the op, so the layer sets ``supports_jit = False``:
    Keras's ``jit_compile="auto"`` then leaves XLA off, and
    ``jit_compile=True`` raises a clear error.
    """

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=(1, 1),
        padding: str = "valid",
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.filters = filters
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.strides = _pair("strides", strides)
        self.padding = padding.lower()
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.supports_jit = False
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"the channel dimension of the input must be known, got input shape {input_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*self.kernel_size, channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
        )
        self.bias = (
            self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
            )
            if self.use_bias
            else None
        )
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})

    def call(self, inputs):
        fused = _FUSED_ACTIVATIONS.get(self.activation)
        if fused is None:  # any other activation runs after the op, as Keras's own function
            outputs = _ops.conv2d(inputs, self.kernel, strides=self.strides, padding=self.padding)
            if self.use_bias:
                outputs = outputs + self.bias
            return self.activation(outputs)
        if not self.use_bias and fused == "linear":
            return _ops.conv2d(inputs, self.kernel, strides=self.strides, padding=self.padding)
        bias = self.bias if self.use_bias else keras.ops.zeros((self.filters,), dtype=self.kernel.dtype)
        return _ops.fused_conv2d(
            inputs, self.kernel, bias, strides=self.strides, padding=self.padding, activation=fused
        )

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        sizes = [
            None if n is None else _conv.output_size(n, k, s, self.padding, strict=False)
            for n, k, s in zip((height, width), self.kernel_size, self.strides, strict=True)
        ]
        return (batch, *sizes, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
            }
        )
        return config

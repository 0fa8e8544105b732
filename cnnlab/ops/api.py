"""Python side of the op: argument checks, loading the library, gradients.

Shapes (NHWC / HWIO, as ``tf.nn.conv2d``):
    x        (batch, in_h, in_w, in_channels)
    filters  (filter_h, filter_w, in_channels, out_channels)
    output   (batch, out_h, out_w, out_channels)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import ModuleType

from cnnlab.env import import_tensorflow

__all__ = [
    "conv2d", "conv2d_backprop_filter", "conv2d_backprop_input", "fused_conv2d", "load_library", "unavailable",
]  # fmt: skip

_lock = threading.Lock()
_library: ModuleType | None = None
PADDINGS = ("VALID", "SAME")
ACTIVATIONS = ("linear", "relu")  # what fused_conv2d applies itself
DTYPES = ("float32", "float64")


def load_library() -> ModuleType:
    """The loaded op library (built first if needed); gradients registered once."""
    global _library
    if _library is not None:
        return _library
    with _lock:
        if _library is None:
            from cnnlab.ops import build  # noqa: PLC0415

            tf = import_tensorflow()
            path = build.build()
            library = tf.load_op_library(str(path))
            _register_gradients(tf, library)
            _library = library
    return _library


def _loaded(tf) -> ModuleType:
    """:func:`load_library`, kept out of AutoGraph: when the first call of an op is inside a
    ``tf.function`` (a model's first ``fit``), AutoGraph would otherwise try to convert the
    whole build path and print a warning that asks to report a TensorFlow bug."""
    return tf.autograph.experimental.do_not_convert(load_library)()


def unavailable() -> str | None:
    """``None`` when the op is ready (loaded, or built now, once); else one line: what is missing, how to get it.

    For lessons and tools that can go on without the op (a machine with no C++ compiler).
    """
    from cnnlab.ops import build  # noqa: PLC0415

    try:
        load_library()
    except build.BuildError as error:
        return str(error).splitlines()[0]
    except Exception as error:  # noqa: BLE001 -- TensorFlow's loader raises its own kinds
        return f"the built op does not load ({type(error).__name__}: {str(error).splitlines()[0][:200]}); run `cnnlab doctor`"
    return None


def _register_gradients(tf, library: ModuleType) -> None:
    """Gradients for the four ops (second order included), registered on their C++ names."""

    def attrs(op):
        return {"strides": op.get_attr("strides"), "padding": op.get_attr("padding")}

    def forward_grad(op, grad):
        x, w = op.inputs[:2]
        return [
            library.lab_conv2d_backprop_input(tf.shape(x), w, grad, **attrs(op)),
            library.lab_conv2d_backprop_filter(x, tf.shape(w), grad, **attrs(op)),
        ]

    def fused_grad(op, grad):
        # y = act(z), z = conv(x, w) + b. For relu, dL/dz = dL/dy where y > 0 (y > 0 exactly
        # where z > 0), which is TensorFlow's own ReluGrad; then z's gradient as for conv2d,
        # and the bias's is dL/dz summed over batch, height and width.
        activation = op.get_attr("activation")
        if activation in (b"relu", "relu"):
            grad = tf.raw_ops.ReluGrad(gradients=grad, features=op.outputs[0])
        return [*forward_grad(op, grad), tf.raw_ops.BiasAddGrad(out_backprop=grad, data_format="NHWC")]

    def backprop_input_grad(op, grad):
        # dx = B_in(w, dy) is linear in w and in dy.
        _, w, dy = op.inputs
        return [
            None,
            library.lab_conv2d_backprop_filter(grad, tf.shape(w), dy, **attrs(op)),
            library.lab_conv2d(grad, w, **attrs(op)),
        ]

    def backprop_filter_grad(op, grad):
        # dw = B_w(x, dy) is linear in x and in dy.
        x, _, dy = op.inputs
        return [
            library.lab_conv2d_backprop_input(tf.shape(x), grad, dy, **attrs(op)),
            None,
            library.lab_conv2d(x, grad, **attrs(op)),
        ]

    for name, fn in (
        ("LabConv2D", forward_grad),
        ("LabFusedConv2D", fused_grad),
        ("LabConv2DBackpropInput", backprop_input_grad),
        ("LabConv2DBackpropFilter", backprop_filter_grad),
    ):
        try:
            tf.RegisterGradient(name)(fn)
        except KeyError:  # already registered by an earlier load in this process
            pass


def _strides(strides: int | Sequence[int]) -> list[int]:
    if isinstance(strides, int) and not isinstance(strides, bool):
        values = [strides, strides]
    elif isinstance(strides, (tuple, list)) and len(strides) == 2:
        values = list(strides)
    else:
        raise ValueError(f"strides must be a positive int or a pair (stride_h, stride_w), got {strides!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in values):
        raise ValueError(f"strides must be positive integers, got {strides!r}")
    return values


def _padding(padding: str) -> str:
    if not isinstance(padding, str) or padding.upper() not in PADDINGS:
        raise ValueError(f"padding must be 'VALID' or 'SAME' (any case), got {padding!r}")
    return padding.upper()


def _reject_xla(tf) -> None:
    from tensorflow.python.ops import control_flow_util  # noqa: PLC0415

    if not tf.executing_eagerly() and control_flow_util.GraphOrParentsInXlaContext(
        tf.compat.v1.get_default_graph()
    ):
        raise RuntimeError(
            "cnnlab.ops.conv2d cannot run under XLA (jit_compile=True): the custom op has no XLA kernel. "
            "Use jit_compile=False (in model.compile(...) or tf.function(...)), "
            "or keras.layers.Conv2D, which XLA can compile."
        )


def _tensor(tf, name: str, value, dtype=None):
    tensor = tf.convert_to_tensor(value, dtype=dtype)
    if tensor.dtype.name not in DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {tensor.dtype.name}")
    if tensor.shape.rank is not None and tensor.shape.rank != 4:
        layout = (
            "(batch, height, width, channels)"
            if name == "x"
            else "(filter_h, filter_w, in_channels, out_channels)"
        )
        raise ValueError(f"{name} must be rank 4 {layout}, got shape {tensor.shape}")
    return tensor


def _conv_inputs(tf, x, filters, strides, padding):
    """The checked arguments shared by conv2d and fused_conv2d: x, filters, strides, padding."""
    stride_list, padding = _strides(strides), _padding(padding)
    x = _tensor(tf, "x", x)
    filters = _tensor(tf, "filters", filters, dtype=x.dtype if not tf.is_tensor(filters) else None)
    if filters.dtype != x.dtype:
        raise TypeError(
            f"x and filters must have the same dtype, got {x.dtype.name} and {filters.dtype.name}"
        )
    in_c, filter_in_c = (
        x.shape[-1] if x.shape.rank else None,
        filters.shape[2] if filters.shape.rank else None,
    )
    if in_c is not None and filter_in_c is not None and in_c != filter_in_c:
        raise ValueError(
            f"x has {in_c} channels but filters expect {filter_in_c} "
            f"(x.shape[3] must equal filters.shape[2]); x {x.shape}, filters {filters.shape}"
        )
    _reject_xla(tf)
    return x, filters, stride_list, padding


def conv2d(x, filters, strides: int | Sequence[int] = 1, padding: str = "VALID"):
    """2D cross-correlation with cnnlab's kernels; differentiable.

    Args:
        x: ``(batch, in_h, in_w, in_channels)``, float32 or float64.
        filters: ``(filter_h, filter_w, in_channels, out_channels)``, same dtype.
        strides: an int or ``(stride_h, stride_w)``.
        padding: ``"VALID"`` or ``"SAME"`` (TensorFlow's convention).

    Returns:
        ``(batch, out_h, out_w, out_channels)``.
    """
    tf = import_tensorflow()
    x, filters, strides, padding = _conv_inputs(tf, x, filters, strides, padding)
    return _loaded(tf).lab_conv2d(x, filters, strides=strides, padding=padding)


def fused_conv2d(x, filters, bias, strides: int | Sequence[int] = 1, padding: str = "VALID",
                 activation: str = "linear"):  # fmt: skip
    """``activation(conv2d(x, filters) + bias)`` in one op; differentiable.

    The kernels add the bias and apply the activation to each output as it is
    finished, instead of two more passes over the whole output (what oneDNN
    does for ``keras.layers.Conv2D``). :class:`cnnlab.layers.LabConv2D` uses it.

    Args:
        x, filters, strides, padding: as :func:`conv2d`.
        bias: ``(out_channels,)``, the dtype of ``x``.
        activation: ``"linear"`` (none) or ``"relu"``.

    Returns:
        ``(batch, out_h, out_w, out_channels)``.
    """
    if not isinstance(activation, str) or activation.lower() not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, got {activation!r}")
    tf = import_tensorflow()
    x, filters, strides, padding = _conv_inputs(tf, x, filters, strides, padding)
    bias = tf.convert_to_tensor(bias, dtype=x.dtype if not tf.is_tensor(bias) else None)
    if bias.dtype != x.dtype:
        raise TypeError(f"bias must have the dtype of x ({x.dtype.name}), got {bias.dtype.name}")
    out_c = filters.shape[3] if filters.shape.rank else None
    if bias.shape.rank is not None and not (
        bias.shape.rank == 1 and (None in (out_c, bias.shape[0]) or bias.shape[0] == out_c)
    ):
        raise ValueError(f"bias must have shape (out_channels,) = ({out_c},), got {bias.shape}")
    return _loaded(tf).lab_fused_conv2d(
        x, filters, bias, strides=strides, padding=padding, activation=activation.lower()
    )


def conv2d_backprop_input(input_sizes, filters, out_backprop, strides=1, padding="VALID"):
    """Gradient of :func:`conv2d` w.r.t. its input, of shape ``input_sizes`` (4 ints)."""
    tf = import_tensorflow()
    return _loaded(tf).lab_conv2d_backprop_input(
        tf.cast(input_sizes, tf.int32),
        filters,
        out_backprop,
        strides=_strides(strides),
        padding=_padding(padding),
    )


def conv2d_backprop_filter(x, filter_sizes, out_backprop, strides=1, padding="VALID"):
    """Gradient of :func:`conv2d` w.r.t. its filters, of shape ``filter_sizes`` (4 ints)."""
    tf = import_tensorflow()
    return _loaded(tf).lab_conv2d_backprop_filter(
        x, tf.cast(filter_sizes, tf.int32), out_backprop, strides=_strides(strides), padding=_padding(padding)
    )

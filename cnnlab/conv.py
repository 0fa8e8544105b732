"""Reference convolution maths in NumPy: the formulas the notebooks teach.

Every operation comes twice where the notebooks teach it with loops:

* ``conv1d_loops`` / ``conv2d_loops`` -- plain Python loops, one output value
  at a time, written to be read next to the lecture slides;
* ``conv1d`` / ``conv2d`` -- the same maths vectorised with NumPy, fast enough
  for real images.

Both compute **cross-correlation** by default, which is what deep-learning
libraries (and ``tf.nn.conv2d``) call "convolution"::

    y[i] = sum_k x[i*s + k] * w[k]

``flip=True`` flips the kernel first, giving the **true convolution** of signal
processing, ``(u * h)(i) = sum_k u(i - k) h(k)``.

Shapes follow TensorFlow's channels-last layout. A 1D signal is ``(n,)``
(one channel), ``(n, c_in)`` or ``(batch, n, c_in)``; its kernel is ``(f,)`` or
``(f, c_in, c_out)``. An image is ``(h, w)``, ``(h, w, c_in)`` or
``(batch, h, w, c_in)``; its kernel is ``(fh, fw)`` or ``(fh, fw, c_in, c_out)``.
A single-channel input takes a single-channel kernel and gives a
single-channel output.

Padding is ``"valid"`` (none), ``"same"`` (TensorFlow's convention: output
length ``ceil(n / stride)``, the odd pixel of padding goes after) or an
integer ``p`` (``p`` zeros on each side; for 2D a pair ``(p_h, p_w)`` too).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Padding = int | str | tuple[int, int]
PoolMode = Literal["max", "average"]

__all__ = [
    "conv1d",
    "conv1d_loops",
    "conv2d",
    "conv2d_loops",
    "conv_params",
    "dense_params",
    "output_size",
    "padding_amounts",
    "pool1d",
    "pool2d",
    "receptive_field",
    "receptive_fields",
]


# --------------------------------------------------------------------------- #
# Sizes and padding
# --------------------------------------------------------------------------- #


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _padding_kind(padding: object) -> str | int:
    """Normalise one axis's padding to 'valid', 'same' or an int >= 0."""
    if isinstance(padding, str):
        kind = padding.lower()
        if kind not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid', 'same' or a non-negative integer, got {padding!r}")
        return kind
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be 'valid', 'same' or a non-negative integer, got {padding!r}")
    return int(padding)


def padding_amounts(n_in: int, f: int, stride: int = 1, padding: Padding = "valid") -> tuple[int, int]:
    """Zeros added before and after one axis of length ``n_in``.

    ``"same"`` follows TensorFlow exactly: the total is
    ``max((ceil(n_in / stride) - 1) * stride + f - n_in, 0)`` and when it is
    odd the extra zero goes *after* the signal.

    Returns:
        ``(before, after)``, two non-negative ints.
    """
    n_in = _positive_int("n_in", n_in)
    f = _positive_int("f (kernel size)", f)
    stride = _positive_int("stride", stride)
    kind = _padding_kind(padding)
    if kind == "valid":
        return 0, 0
    if kind == "same":
        n_out = math.ceil(n_in / stride)
        total = max((n_out - 1) * stride + f - n_in, 0)
        return total // 2, total - total // 2
    return kind, kind


def output_size(
    n_in: int,
    f: int,
    stride: int = 1,
    padding: Padding = "valid",
    *,
    strict: bool = True,
) -> int:
    """Output length of a convolution or pooling along one axis.

    ``n_out = (n_in + 2p - f) / s + 1``. With ``"same"`` padding it is
    ``ceil(n_in / s)``.

    Args:
        n_in: input length (``W`` in the slides).
        f: kernel (filter) size (``F``).
        stride: step between windows (``S``).
        padding: ``"valid"``, ``"same"`` or zeros per side (``P``).
        strict: if true (the default, as in the lectures), a stride that does
            not fit exactly raises ``ValueError``; if false, the last partial
            window is dropped, as TensorFlow does.

    Raises:
        ValueError: the kernel is larger than the padded input, or (strict)
            ``(n_in + 2p - f) / s + 1`` is not an integer.

    >>> output_size(9, 3, stride=2)
    4
    >>> output_size(32, 5, stride=1, padding=2)
    32
    """
    n_in = _positive_int("n_in", n_in)
    f = _positive_int("f (kernel size)", f)
    stride = _positive_int("stride", stride)
    before, after = padding_amounts(n_in, f, stride, padding)
    if _padding_kind(padding) == "same":
        return math.ceil(n_in / stride)
    span = n_in + before + after - f
    if span < 0:
        raise ValueError(
            f"kernel size {f} is larger than the padded input ({n_in} + {before + after} = "
            f"{n_in + before + after}); use a smaller kernel or more padding"
        )
    if strict and span % stride:
        padded = f"{n_in} + 2*{before}" if before else f"{n_in}"
        raise ValueError(f"({padded} - {f}) / {stride} + 1 is not an integer; use padding or another stride")
    return span // stride + 1


def receptive_fields(kernel_sizes: Sequence[int], strides: Sequence[int] | None = None) -> list[int]:
    """Receptive field of each layer of a stack, in input pixels.

    ``r_0 = 1`` and ``r_k = r_{k-1} + (f_k - 1) * prod_{i<k} s_i``.

    Args:
        kernel_sizes: ``f_1 .. f_L``, one per layer (pooling counts as a layer).
        strides: ``s_1 .. s_L``; all 1 when omitted.

    Returns:
        ``[r_1, ..., r_L]``.

    >>> receptive_fields([3, 3, 3])
    [3, 5, 7]
    """
    kernel_sizes = list(kernel_sizes)
    if not kernel_sizes:
        raise ValueError("kernel_sizes must name at least one layer, got an empty sequence")
    strides = [1] * len(kernel_sizes) if strides is None else list(strides)
    if len(strides) != len(kernel_sizes):
        raise ValueError(
            f"strides must have one entry per layer: got {len(strides)} strides "
            f"for {len(kernel_sizes)} kernel_sizes"
        )
    fields, r, jump = [], 1, 1
    for i, (f, s) in enumerate(zip(kernel_sizes, strides, strict=True)):
        f = _positive_int(f"kernel_sizes[{i}]", f)
        s = _positive_int(f"strides[{i}]", s)
        r += (f - 1) * jump
        jump *= s
        fields.append(r)
    return fields


def receptive_field(kernel_sizes: Sequence[int], strides: Sequence[int] | None = None) -> int:
    """Receptive field of the last layer of a stack; see :func:`receptive_fields`."""
    return receptive_fields(kernel_sizes, strides)[-1]


def conv_params(
    kernel_size: int | Sequence[int],
    in_channels: int,
    filters: int,
    *,
    use_bias: bool = True,
    spatial_dims: int = 2,
) -> int:
    """Trainable parameters of a convolution layer: ``(prod(kernel) * c_in + bias) * filters``.

    Args:
        kernel_size: an int (a square kernel, as Keras reads it) or one size per axis.
        in_channels: channels of the layer's input (``c_in``).
        filters: output channels, one filter each.
        use_bias: one bias per filter.
        spatial_dims: axes an int ``kernel_size`` spans (2 for images, 1 for signals).

    >>> conv_params(5, 3, 10)  # 5x5x3 filters, 10 of them: 76 each
    760
    """
    if isinstance(kernel_size, (int, np.integer)) and not isinstance(kernel_size, bool):
        sizes = [kernel_size] * _positive_int("spatial_dims", spatial_dims)
    else:
        sizes = list(kernel_size)
    if not sizes:
        raise ValueError("kernel_size must be an int or a non-empty sequence of ints")
    per_filter = 1
    for i, k in enumerate(sizes):
        per_filter *= _positive_int(f"kernel_size[{i}]", k)
    per_filter *= _positive_int("in_channels", in_channels)
    return (per_filter + int(bool(use_bias))) * _positive_int("filters", filters)


def dense_params(in_features: int, units: int, *, use_bias: bool = True) -> int:
    """Trainable parameters of a fully connected layer: ``(in_features + bias) * units``.

    >>> dense_params(1028 * 768, 1, use_bias=False)
    789504
    """
    return (_positive_int("in_features", in_features) + int(bool(use_bias))) * _positive_int("units", units)


# --------------------------------------------------------------------------- #
# Shape handling shared by the 1D and 2D functions
# --------------------------------------------------------------------------- #


def _as_batched(x: np.ndarray, w: np.ndarray, spatial: int) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Bring ``x`` to ``(batch, *spatial, c_in)`` and ``w`` to ``(*kernel, c_in, c_out)``.

    Returns the reshaped arrays and a function-free recipe (the leading shape
    to restore): ``("single",)``, ``("channels",)`` or ``("batch",)``.
    """
    x = np.asarray(x)
    w = np.asarray(w)
    if x.dtype.kind not in "biuf" or w.dtype.kind not in "biuf":
        raise TypeError(f"x and w must be real numeric arrays, got dtypes {x.dtype} and {w.dtype}")
    dtype = np.result_type(x.dtype, w.dtype, np.float32)
    x = x.astype(dtype, copy=False)
    w = w.astype(dtype, copy=False)
    names = "(n,)" if spatial == 1 else "(h, w)"
    if x.ndim == spatial:
        if w.ndim != spatial:
            raise ValueError(
                f"a single-channel input of shape {x.shape} needs a kernel of rank {spatial}, "
                f"got w of shape {w.shape}"
            )
        return x[None, ..., None], w[..., None, None], ("single",)
    if x.ndim not in (spatial + 1, spatial + 2):
        raise ValueError(
            f"x must have shape {names}, {names[:-1]}, c_in) or (batch, {names[1:-1]}, c_in); "
            f"got rank {x.ndim} (shape {x.shape})"
        )
    if w.ndim != spatial + 2:
        raise ValueError(f"w must have rank {spatial + 2}: (*kernel, c_in, c_out); got shape {w.shape}")
    if w.shape[-2] != x.shape[-1]:
        raise ValueError(
            f"x has {x.shape[-1]} input channels but w expects {w.shape[-2]} "
            f"(x.shape[-1] must equal w.shape[-2]); x {x.shape}, w {w.shape}"
        )
    if x.ndim == spatial + 1:
        return x[None], w, ("channels",)
    return x, w, ("batch",)


def _restore(y: np.ndarray, recipe: tuple) -> np.ndarray:
    if recipe[0] == "single":
        return y[0, ..., 0]
    if recipe[0] == "channels":
        return y[0]
    return y


def _pad(x: np.ndarray, pads: Sequence[tuple[int, int]]) -> np.ndarray:
    """Zero-pad the spatial axes of a batched, channels-last array."""
    return np.pad(x, [(0, 0), *pads, (0, 0)])


def _axis_padding(padding: Padding, spatial: int) -> list[object]:
    if isinstance(padding, (tuple, list)):
        if len(padding) != spatial:
            raise ValueError(
                f"padding must be 'valid', 'same', an int or {spatial} ints (one per axis), got {padding!r}"
            )
        return list(padding)
    return [padding] * spatial


def _axis_stride(stride: int | Sequence[int], spatial: int, name: str = "stride") -> list[int]:
    if isinstance(stride, (int, np.integer)):
        strides = [stride] * spatial
    elif isinstance(stride, (tuple, list)) and len(stride) == spatial:
        strides = list(stride)
    else:
        raise ValueError(f"{name} must be a positive int or {spatial} of them (one per axis), got {stride!r}")
    return [_positive_int(name, s) for s in strides]


def _plan(x_spatial, kernel, stride, padding, strict):
    """Per axis: (pad_before, pad_after, n_out)."""
    plans = []
    for n, f, s, p in zip(x_spatial, kernel, stride, padding, strict=True):
        before, after = padding_amounts(n, f, s, p)
        plans.append((before, after, output_size(n, f, s, p, strict=strict)))
    return plans


def _bias(bias, c_out: int, dtype) -> np.ndarray:
    if bias is None:
        return np.zeros(c_out, dtype)
    b = np.asarray(bias, dtype)
    if b.shape not in ((c_out,), ()):
        raise ValueError(
            f"bias must be a scalar or have shape ({c_out},) (one per output channel), got {b.shape}"
        )
    return np.broadcast_to(b, (c_out,))


# --------------------------------------------------------------------------- #
# 1D convolution
# --------------------------------------------------------------------------- #


def conv1d_loops(
    x,
    w,
    bias=None,
    stride: int = 1,
    padding: Padding = "valid",
    *,
    flip: bool = False,
    strict: bool = True,
) -> np.ndarray:
    """1D convolution with plain loops: the version to read.

    Args:
        x: ``(n,)``, ``(n, c_in)`` or ``(batch, n, c_in)``.
        w: ``(f,)`` for a single-channel ``x``, else ``(f, c_in, c_out)``.
        bias: ``None``, a scalar or ``(c_out,)``.
        stride: step between windows.
        padding: ``"valid"``, ``"same"`` or zeros per side.
        flip: false for cross-correlation (deep learning), true for true convolution.
        strict: raise when the stride does not fit (see :func:`output_size`).

    Returns:
        ``(n_out,)``, ``(n_out, c_out)`` or ``(batch, n_out, c_out)``.
    """
    xb, wb, recipe = _as_batched(x, w, 1)
    (s,) = _axis_stride(stride, 1)
    ((before, after, n_out),) = _plan(xb.shape[1:2], wb.shape[:1], [s], _axis_padding(padding, 1), strict)
    if flip:
        wb = wb[::-1]
    xp = _pad(xb, [(before, after)])
    batch, _, c_in = xp.shape
    f, _, c_out = wb.shape
    b = _bias(bias, c_out, xb.dtype)
    y = np.zeros((batch, n_out, c_out), xb.dtype)
    for n in range(batch):
        for i in range(n_out):  # each output position...
            for k in range(c_out):  # ...and each filter
                total = b[k]
                for j in range(f):  # slide the kernel over the window
                    for c in range(c_in):
                        total += xp[n, i * s + j, c] * wb[j, c, k]
                y[n, i, k] = total
    return _restore(y, recipe)


def conv1d(
    x,
    w,
    bias=None,
    stride: int = 1,
    padding: Padding = "valid",
    *,
    flip: bool = False,
    strict: bool = True,
) -> np.ndarray:
    """1D convolution, vectorised; same arguments and result as :func:`conv1d_loops`."""
    xb, wb, recipe = _as_batched(x, w, 1)
    (s,) = _axis_stride(stride, 1)
    ((before, after, n_out),) = _plan(xb.shape[1:2], wb.shape[:1], [s], _axis_padding(padding, 1), strict)
    if flip:
        wb = wb[::-1]
    xp = _pad(xb, [(before, after)])
    f = wb.shape[0]
    # windows: (batch, n_windows, c_in, f) -> keep every s-th window
    windows = sliding_window_view(xp, f, axis=1)[:, : (n_out - 1) * s + 1 : s]
    y = np.einsum("bncf,fck->bnk", windows, wb, optimize=True)
    y = y + _bias(bias, wb.shape[-1], xb.dtype)
    return _restore(y.astype(xb.dtype, copy=False), recipe)


# --------------------------------------------------------------------------- #
# 2D convolution
# --------------------------------------------------------------------------- #


def conv2d_loops(
    x,
    w,
    bias=None,
    stride: int | Sequence[int] = 1,
    padding: Padding = "valid",
    *,
    flip: bool = False,
    strict: bool = True,
) -> np.ndarray:
    """2D convolution with loops over output pixels and filters: the version to read.

    Each output value is the sum of an elementwise product between the kernel
    and the window of the (padded) input under it, plus the bias.

    Args:
        x: ``(h, w)``, ``(h, w, c_in)`` or ``(batch, h, w, c_in)``.
        w: ``(fh, fw)`` for a single-channel ``x``, else ``(fh, fw, c_in, c_out)``.
        bias: ``None``, a scalar or ``(c_out,)``.
        stride: an int or ``(s_h, s_w)``.
        padding: ``"valid"``, ``"same"``, an int or ``(p_h, p_w)``.
        flip: false for cross-correlation, true for true convolution
            (the kernel rotated by 180 degrees).
        strict: raise when the stride does not fit (see :func:`output_size`).

    Returns:
        ``(h_out, w_out)``, ``(h_out, w_out, c_out)`` or ``(batch, h_out, w_out, c_out)``.
    """
    xb, wb, recipe = _as_batched(x, w, 2)
    sh, sw = _axis_stride(stride, 2)
    (bh, ah, h_out), (bw, aw, w_out) = _plan(
        xb.shape[1:3], wb.shape[:2], [sh, sw], _axis_padding(padding, 2), strict
    )
    if flip:
        wb = wb[::-1, ::-1]
    xp = _pad(xb, [(bh, ah), (bw, aw)])
    fh, fw, _, c_out = wb.shape
    b = _bias(bias, c_out, xb.dtype)
    y = np.zeros((xb.shape[0], h_out, w_out, c_out), xb.dtype)
    for n in range(xb.shape[0]):
        for i in range(h_out):
            for j in range(w_out):
                window = xp[n, i * sh : i * sh + fh, j * sw : j * sw + fw, :]  # (fh, fw, c_in)
                for k in range(c_out):
                    y[n, i, j, k] = np.sum(window * wb[..., k]) + b[k]
    return _restore(y, recipe)


def conv2d(
    x,
    w,
    bias=None,
    stride: int | Sequence[int] = 1,
    padding: Padding = "valid",
    *,
    flip: bool = False,
    strict: bool = True,
) -> np.ndarray:
    """2D convolution, vectorised; same arguments and result as :func:`conv2d_loops`."""
    xb, wb, recipe = _as_batched(x, w, 2)
    sh, sw = _axis_stride(stride, 2)
    (bh, ah, h_out), (bw, aw, w_out) = _plan(
        xb.shape[1:3], wb.shape[:2], [sh, sw], _axis_padding(padding, 2), strict
    )
    if flip:
        wb = wb[::-1, ::-1]
    xp = _pad(xb, [(bh, ah), (bw, aw)])
    fh, fw = wb.shape[:2]
    windows = sliding_window_view(xp, (fh, fw), axis=(1, 2))  # (b, H', W', c_in, fh, fw)
    windows = windows[:, : (h_out - 1) * sh + 1 : sh, : (w_out - 1) * sw + 1 : sw]
    y = np.einsum("bijcuv,uvck->bijk", windows, wb, optimize=True)
    y = y + _bias(bias, wb.shape[-1], xb.dtype)
    return _restore(y.astype(xb.dtype, copy=False), recipe)


# --------------------------------------------------------------------------- #
# Pooling
# --------------------------------------------------------------------------- #


def _pool_mode(mode: str) -> str:
    if mode not in ("max", "average"):
        raise ValueError(f"mode must be 'max' or 'average', got {mode!r}")
    return mode


def _as_pool_batched(x, spatial: int) -> tuple[np.ndarray, tuple]:
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"x must be a real numeric array, got dtype {x.dtype}")
    if x.ndim == spatial:
        return x[None, ..., None], ("single",)
    if x.ndim == spatial + 1:
        return x[None], ("channels",)
    if x.ndim == spatial + 2:
        return x, ("batch",)
    raise ValueError(
        f"x must have rank {spatial} (one channel), {spatial + 1} (channels last) or "
        f"{spatial + 2} (batch first); got shape {x.shape}"
    )


def _pool(x, size, stride, mode, spatial, strict):
    mode = _pool_mode(mode)
    xb, recipe = _as_pool_batched(x, spatial)
    sizes = _axis_stride(size, spatial, "size")
    strides = sizes if stride is None else _axis_stride(stride, spatial)
    plans = _plan(xb.shape[1 : 1 + spatial], sizes, strides, ["valid"] * spatial, strict)
    axes = tuple(range(1, 1 + spatial))
    windows = sliding_window_view(xb, sizes, axis=axes)
    index = (slice(None),) + tuple(
        slice(0, (n_out - 1) * s + 1, s) for (_, _, n_out), s in zip(plans, strides, strict=True)
    )
    windows = windows[index]
    reduce_axes = tuple(range(-spatial, 0))
    y = windows.max(axis=reduce_axes) if mode == "max" else windows.mean(axis=reduce_axes)
    return _restore(y, recipe)


def pool1d(
    x, size: int = 2, stride: int | None = None, mode: PoolMode = "max", *, strict: bool = True
) -> np.ndarray:
    """Max or average pooling of each channel of a 1D signal (no padding).

    Args:
        x: ``(n,)``, ``(n, c)`` or ``(batch, n, c)``.
        size: window length.
        stride: step; defaults to ``size`` (non-overlapping windows).
        mode: ``"max"`` or ``"average"``.

    Returns:
        The same rank as ``x`` with ``n`` replaced by ``n_out``.
    """
    return _pool(x, size, stride, mode, 1, strict)


def pool2d(
    x,
    size: int | Sequence[int] = 2,
    stride: int | Sequence[int] | None = None,
    mode: PoolMode = "max",
    *,
    strict: bool = True,
) -> np.ndarray:
    """Max or average pooling of each channel of an image (no padding).

    Args:
        x: ``(h, w)``, ``(h, w, c)`` or ``(batch, h, w, c)``.
        size: window, an int or ``(size_h, size_w)``.
        stride: step; defaults to ``size``.
        mode: ``"max"`` or ``"average"``.

    Returns:
        The same rank as ``x`` with ``h, w`` replaced by ``h_out, w_out``.
    """
    return _pool(x, size, stride, mode, 2, strict)

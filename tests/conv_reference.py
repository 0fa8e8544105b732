"""A float64 reference for the three convolution passes, and the shapes the kernel tests share.

Independent of every implementation under test: im2col with NumPy fancy indexing.
Used by tests/gpu (the CUDA kernels on a GPU) and tests/ops/test_cuda_on_cpu.py (the
same kernels on the CPU).
"""

import numpy as np

from cnnlab.conv import padding_amounts


def reference(x, w, dy, strides, padding):
    """y, dx, dw in float64 by im2col: an implementation independent of the CUDA one (y alone when dy is None)."""
    n, h, wd, c = x.shape
    fh, fw, _, k = w.shape
    (top, bottom), (left, right) = (
        padding_amounts(h, fh, strides[0], padding.lower()) if h else (0, 0),  # an empty axis: nothing to pad
        padding_amounts(wd, fw, strides[1], padding.lower()) if wd else (0, 0),
    )
    xp = np.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)])
    out_h = (h + top + bottom - fh) // strides[0] + 1 if h else 0
    out_w = (wd + left + right - fw) // strides[1] + 1 if wd else 0
    rows, cols = np.meshgrid(np.arange(out_h) * strides[0], np.arange(out_w) * strides[1], indexing="ij")
    taps_y, taps_x = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
    iy = rows[..., None, None] + taps_y  # (out_h, out_w, fh, fw)
    ix = cols[..., None, None] + taps_x
    patches = xp[:, iy, ix, :]  # (n, out_h, out_w, fh, fw, c)
    matrix = patches.reshape(n * out_h * out_w, fh * fw * c)
    w_matrix = w.reshape(fh * fw * c, k)  # explicit sizes: a -1 cannot be inferred when a size is 0
    y = (matrix @ w_matrix).reshape(n, out_h, out_w, k)
    if dy is None:
        return y
    dy_matrix = dy.reshape(n * out_h * out_w, k)
    dw = (matrix.T @ dy_matrix).reshape(w.shape)
    dpatches = (dy_matrix @ w_matrix.T).reshape(patches.shape)
    dxp = np.zeros_like(xp)
    np.add.at(dxp, (slice(None), iy, ix, slice(None)), dpatches)
    dx = dxp[:, top : top + h, left : left + wd, :]
    return y, dx, dw


def fused_reference(x, w, bias, strides, padding, activation):
    """activation(y + bias) in float64, y the forward pass above; activation 'linear' or 'relu'."""
    y = reference(x, w, None, strides, padding) + bias
    return np.maximum(y, 0) if activation == "relu" else y


# The same shapes as the CPU tests' corners, plus the benchmark's layers.
CASES = [
    ((2, 7, 9, 3), (3, 2, 3, 4), (1, 1), "VALID"),
    ((3, 8, 7, 2), (3, 3, 2, 5), (2, 3), "SAME"),
    ((1, 5, 5, 1), (4, 4, 1, 2), (2, 2), "SAME"),
    ((1, 1, 1, 1), (1, 1, 1, 1), (1, 1), "VALID"),
    ((4, 10, 10, 4), (5, 5, 4, 3), (3, 1), "SAME"),
    ((8, 28, 28, 1), (3, 3, 1, 32), (1, 1), "VALID"),
    ((8, 28, 28, 32), (3, 3, 32, 64), (1, 1), "SAME"),
    ((2, 56, 56, 64), (3, 3, 64, 64), (1, 1), "SAME"),
    ((2, 17, 13, 70), (3, 3, 70, 65), (2, 2), "SAME"),  # not multiples of the 64x64 tile
]

"""Runs a CUDA-on-CPU kernel pass in a child process, every buffer between bands of NaN.

``tests/ops/test_cuda_on_cpu.py`` calls :func:`run_pass` through a process pool: a kernel
that corrupts the heap then kills only the child, and the test that ran it fails by name.
The NaN bands make the other out-of-bounds accesses deterministic: a read past an input
brings NaN into the result, and a write past the output overwrites the band.
"""

import os

import numpy as np

from kernel_rigs.standalone import CudaKernels, Geometry

BAND = 256  # NaN elements before and after every buffer
_LOADED: dict[str, CudaKernels] = {}


def guarded(array: np.ndarray) -> tuple[np.ndarray, int]:
    """``array`` copied into the middle of a NaN-banded buffer: (buffer, address of the array in it)."""
    flat = np.ascontiguousarray(array).ravel()
    buffer = np.full(flat.size + 2 * BAND, np.nan, flat.dtype)
    buffer[BAND : BAND + flat.size] = flat
    return buffer, buffer.ctypes.data + BAND * buffer.itemsize


def _kernels(library: str, order: str) -> CudaKernels:
    os.environ["CNNLAB_CUDA_THREAD_ORDER"] = order
    if library not in _LOADED:  # load and bind once per child, not once per pass
        _LOADED[library] = CudaKernels(library)
    return _LOADED[library]


def _guarded_run(name: str, dtype: str, inputs: tuple[np.ndarray, ...], out_shape: tuple, launch) -> tuple[np.ndarray, list[str]]:
    """``launch(*input addresses, output address)`` on NaN-banded copies: (the result, what it did outside)."""
    guarded_inputs = [guarded(a.astype(dtype)) for a in inputs]
    out_buffer, out_at = guarded(np.full(out_shape, np.nan, dtype))
    inputs_before = [buffer.copy() for buffer, _ in guarded_inputs]
    launch(*(at for _, at in guarded_inputs), out_at)
    size = int(np.prod(out_shape))
    outside = []
    if not (np.isnan(out_buffer[:BAND]).all() and np.isnan(out_buffer[BAND + size :]).all()):
        outside.append(f"{name} wrote outside its output")
    if not all(np.array_equal(now, before, equal_nan=True) for (now, _), before in zip(guarded_inputs, inputs_before, strict=True)):
        outside.append(f"{name} wrote into an input")
    return out_buffer[BAND : BAND + size].reshape(out_shape), outside


def run_pass(library: str, name: str, dtype: str, fields: tuple, a: np.ndarray, b: np.ndarray, out_shape: tuple,
             order: str) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """Pass ``name`` with threads in ``order``: (the result, what it did outside its buffers)."""
    kernels = _kernels(library, order)
    return _guarded_run(name, dtype, (a, b), out_shape,
                        lambda a_at, b_at, out_at: kernels.run(name, dtype, Geometry(*fields), a_at, b_at, out_at))  # fmt: skip


def run_fused_forward(library: str, dtype: str, fields: tuple, x: np.ndarray, w: np.ndarray, bias: np.ndarray,
                      activation: str, out_shape: tuple, order: str) -> tuple[np.ndarray, list[str]]:  # fmt: skip
    """The forward pass with a bias and an activation, as :func:`run_pass`."""
    kernels = _kernels(library, order)

    def launch(x_at, w_at, bias_at, out_at):
        kernels.forward_bias_activation(dtype, Geometry(*fields), x_at, w_at, bias_at, activation, out_at)

    return _guarded_run("forward_bias_activation", dtype, (x, w, bias), out_shape, launch)

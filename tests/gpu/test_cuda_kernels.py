"""The CUDA kernels on their own, against a float64 NumPy reference.

Runs on a machine with an NVIDIA GPU and nvcc, TensorFlow optional: the .cu
file is built alone (kernel_rigs.standalone) and called through ctypes on GPU
memory from PyTorch or CuPy. Skipped where there is no GPU.

    python -m pytest tests/gpu -m gpu -v
"""

import numpy as np
import pytest
from conv_reference import (  # tests/ is on sys.path: see tests/conv_reference.py
    CASES,
    fused_reference,
    reference,
)

from cnnlab.ops.build import _find_nvcc

pytestmark = pytest.mark.gpu


def _array_library():
    try:
        import torch

        if torch.cuda.is_available():
            return "torch"
    except ImportError:
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return "cupy"
    except Exception:  # noqa: BLE001 -- no CuPy or no device: skip below
        pass
    return None


LIBRARY = _array_library()
needs_gpu = pytest.mark.skipif(
    LIBRARY is None or _find_nvcc() is None, reason="needs an NVIDIA GPU, nvcc, and PyTorch or CuPy"
)


class Device:
    """Moves NumPy arrays to and from GPU memory with the installed library."""

    def __init__(self, name):
        self.name = name
        if name == "torch":
            import torch

            self.torch = torch
        else:
            import cupy

            self.cupy = cupy

    def put(self, array):
        if self.name == "torch":
            return self.torch.from_numpy(np.ascontiguousarray(array)).cuda()
        return self.cupy.asarray(np.ascontiguousarray(array))

    def empty(self, shape, dtype):
        if self.name == "torch":
            return self.torch.empty(shape, dtype=getattr(self.torch, dtype), device="cuda")
        return self.cupy.empty(shape, dtype=dtype)

    def pointer(self, array):
        return array.data_ptr() if self.name == "torch" else array.data.ptr

    def stream(self):
        if self.name == "torch":
            return self.torch.cuda.current_stream().cuda_stream
        return self.cupy.cuda.get_current_stream().ptr

    def get(self, array):
        if self.name == "torch":
            self.torch.cuda.synchronize()
            return array.cpu().numpy()
        self.cupy.cuda.get_current_stream().synchronize()
        return self.cupy.asnumpy(array)


@needs_gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("x_shape", "w_shape", "strides", "padding"), CASES)
def test_kernels_match_the_float64_reference(dtype, x_shape, w_shape, strides, padding):
    from kernel_rigs.standalone import CudaKernels, geometry

    kernels = CudaKernels()
    device = Device(LIBRARY)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    g = geometry(x_shape, w_shape, strides, padding)
    dy = rng.standard_normal((g.batch, g.out_h, g.out_w, g.out_c))
    y_ref, dx_ref, dw_ref = reference(x, w, dy, strides, padding)
    tolerance = {"float64": 1e-10, "float32": 1e-4}[dtype]
    xd, wd, dyd = (device.put(a.astype(dtype)) for a in (x, w, dy))
    outputs = {
        "forward": (xd, wd, device.empty(y_ref.shape, dtype), y_ref),
        "backprop_input": (wd, dyd, device.empty(x_shape, dtype), dx_ref),
        "backprop_filter": (xd, dyd, device.empty(w_shape, dtype), dw_ref),
    }
    for name, (a, b, out, expected) in outputs.items():
        kernels.run(
            name, dtype, g, device.pointer(a), device.pointer(b), device.pointer(out), device.stream()
        )
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(
            device.get(out), expected, rtol=tolerance, atol=tolerance * scale, err_msg=f"{name} {dtype}"
        )


@needs_gpu
@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize(("x_shape", "w_shape", "strides", "padding"), CASES)
def test_the_fused_forward_matches_the_float64_reference(activation, x_shape, w_shape, strides, padding):
    from kernel_rigs.standalone import CudaKernels, geometry

    kernels = CudaKernels()
    device = Device(LIBRARY)
    rng = np.random.default_rng(1)
    x, w, bias = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[3])
    g = geometry(x_shape, w_shape, strides, padding)
    expected = fused_reference(x, w, bias, strides, padding, activation)
    xd, wd, bd = (device.put(a.astype("float32")) for a in (x, w, bias))
    out = device.empty(expected.shape, "float32")
    kernels.forward_bias_activation("float32", g, device.pointer(xd), device.pointer(wd), device.pointer(bd),
                                    activation, device.pointer(out), device.stream())  # fmt: skip
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(device.get(out), expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.skipif(_find_nvcc() is None, reason="needs nvcc (make cuda)")
def test_standalone_library_builds_and_binds_without_a_gpu(tmp_path):
    """Runs wherever nvcc is (CI included): the .cu compiles alone and exports the C API."""
    from kernel_rigs.standalone import CudaKernels, build_standalone

    kernels = CudaKernels(build_standalone(tmp_path))
    assert kernels.error_string(0) == "no error"
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        kernels.run("forward", "float16", None, 0, 0, 0)
    with pytest.raises(ValueError, match="activation must be one of linear, relu"):
        kernels.forward_bias_activation("float32", None, 0, 0, 0, "tanh", 0)


@pytest.mark.parametrize(("x_shape", "w_shape", "strides", "padding"), CASES[:5])
def test_the_reference_itself_is_right(x_shape, w_shape, strides, padding):
    """Checked on any machine: y against cnnlab.conv, dx and dw by the adjoint identity."""
    from cnnlab.conv import conv2d

    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y_check = conv2d(x, w, stride=strides, padding=padding.lower(), strict=False)
    dy = rng.standard_normal(y_check.shape)
    y, dx, dw = reference(x, w, dy, strides, padding)
    np.testing.assert_allclose(y, y_check, atol=1e-10)
    # y is linear in x and in w: <dy, y> = <dx, x> = <dw, w>
    np.testing.assert_allclose(np.vdot(dy, y), np.vdot(dx, x), rtol=1e-10)
    np.testing.assert_allclose(np.vdot(dy, y), np.vdot(dw, w), rtol=1e-10)

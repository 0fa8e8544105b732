"""The CUDA kernels without TensorFlow: build ``lab_conv_kernels.cu`` alone, call it with ctypes.

A test and benchmark rig (not installed with cnnlab).

Used by ``tests/gpu/`` and ``benchmarks/bench_conv.py --device gpu`` on a GPU
machine where TensorFlow may be missing. Device memory comes from whichever
array library is installed (PyTorch or CuPy); this module only passes raw
device pointers and a ``cudaStream_t``.

Shapes, as in the op: x (batch, in_h, in_w, in_c), w (fh, fw, in_c, out_c),
y (batch, out_h, out_w, out_c).
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

from cnnlab.conv import output_size, padding_amounts
from cnnlab.ops.build import CUDA_ARCHS, BuildError, _find_cudart_dir, _find_nvcc, cache_dir
from cnnlab.ops.compile_cache import KERNELS, cached, kernel_files, key

__all__ = ["CudaKernels", "Geometry", "build_standalone", "geometry"]

_FIELDS = (
    "batch", "in_h", "in_w", "in_c", "filter_h", "filter_w", "out_c",
    "stride_h", "stride_w", "pad_top", "pad_left", "out_h", "out_w",
)  # fmt: skip


class Geometry(ctypes.Structure):
    """Mirror of ``cnnlab::ConvGeometry`` (conv_geometry.h): 13 int64 fields in order."""

    _fields_ = [(name, ctypes.c_int64) for name in _FIELDS]


def geometry(x_shape, w_shape, strides=(1, 1), padding: str = "VALID") -> Geometry:
    """The geometry of ``conv2d(x, w, strides, padding)`` with TensorFlow's padding rules."""
    batch, in_h, in_w, in_c = x_shape
    fh, fw, w_in_c, out_c = w_shape
    if in_c != w_in_c:
        raise ValueError(f"x has {in_c} channels but w expects {w_in_c}")
    sh, sw = strides
    (top, out_h), (left, out_w) = _axis(in_h, fh, sh, padding), _axis(in_w, fw, sw, padding)
    return Geometry(batch, in_h, in_w, in_c, fh, fw, out_c, sh, sw, top, left, out_h, out_w)


def _axis(size: int, f: int, stride: int, padding: str) -> tuple[int, int]:
    """(zeros before, output size) along one axis; an empty axis (SAME only) has no output and no padding."""
    if size == 0:
        return 0, 0
    pad = padding.lower()
    return padding_amounts(size, f, stride, pad)[0], output_size(size, f, stride, pad, strict=False)


def build_standalone(out_dir: Path | None = None) -> Path:
    """Compile the .cu file alone into a shared library (static CUDA runtime); return its path."""
    nvcc = _find_nvcc()
    if nvcc is None:
        raise BuildError(
            "nvcc not found: the standalone CUDA kernels need the CUDA toolkit "
            "(`pip install -r requirements-cuda.txt` installs NVIDIA's pinned nvcc wheels)"
        )
    cudart_dir = _find_cudart_dir(nvcc)
    if cudart_dir is None:
        raise BuildError(f"libcudart_static.a not found beside {nvcc}; set $CUDA_HOME to the CUDA toolkit")
    source = KERNELS / "lab_conv_kernels.cu"
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in CUDA_ARCHS]
    flags = ["-shared", "-std=c++17", "-O3", "-Xcompiler", "-fPIC", *gencode]
    out_dir = Path(out_dir) if out_dir else cache_dir()
    target = out_dir / f"lab_conv_kernels_standalone_{key(parts=[nvcc, *flags], files=kernel_files())}.so"

    def make(staged: Path) -> None:
        argv = [nvcc, *flags, "-I", str(KERNELS), "-L", cudart_dir, str(source), "-o", str(staged)]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()]
            raise BuildError("nvcc failed on lab_conv_kernels.cu:\n    " + "\n    ".join(errors[:12]))

    return cached(target, make)


class CudaKernels:
    """ctypes bindings of the launchers; pointers are plain ints (device addresses)."""

    _PASSES = ("forward", "backprop_input", "backprop_filter", "backprop_filter_deterministic")
    ACTIVATIONS = ("linear", "relu")  # the fused forward's activation codes, in order

    def __init__(self, path: Path | None = None):
        self.lib = ctypes.CDLL(str(path or build_standalone()))
        for suffix in ("f32", "f64"):
            for name in self._PASSES:
                fn = getattr(self.lib, f"cnnlab_conv2d_{name}_{suffix}")
                fn.argtypes = [ctypes.POINTER(Geometry)] + [ctypes.c_void_p] * 4
                fn.restype = ctypes.c_int
            fused = getattr(self.lib, f"cnnlab_conv2d_forward_bias_activation_{suffix}")
            fused.argtypes = [ctypes.POINTER(Geometry)] + [ctypes.c_void_p] * 3 + [ctypes.c_int] + [ctypes.c_void_p] * 2
            fused.restype = ctypes.c_int
        self.lib.cnnlab_cuda_error_string.argtypes = [ctypes.c_int]
        self.lib.cnnlab_cuda_error_string.restype = ctypes.c_char_p

    def error_string(self, code: int) -> str:
        return self.lib.cnnlab_cuda_error_string(code).decode()

    @staticmethod
    def _suffix(dtype: str) -> str:
        suffix = {"float32": "f32", "float64": "f64"}.get(dtype)
        if suffix is None:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        return suffix

    def _check(self, name: str, code: int) -> None:
        if code != 0:
            raise RuntimeError(f"CUDA launch of {name} failed: {self.error_string(code)}")

    def run(self, name: str, dtype: str, g: Geometry, a: int, b: int, out: int, stream: int = 0) -> None:
        """Launch pass ``name`` (forward: a=x, b=w; backprop_input: a=w, b=dy; backprop_filter and
        backprop_filter_deterministic, which has no K-splits and so no atomics: a=x, b=dy)."""
        if name not in self._PASSES:
            raise ValueError(f"name must be one of {', '.join(self._PASSES)}, got {name!r}")
        code = getattr(self.lib, f"cnnlab_conv2d_{name}_{self._suffix(dtype)}")(ctypes.byref(g), a, b, out, stream)
        self._check(name, code)

    def forward_bias_activation(self, dtype: str, g: Geometry, x: int, w: int, bias: int, activation: str, y: int,
                                stream: int = 0) -> None:  # fmt: skip
        """y = activation(conv(x, w) + bias), bias (out_c,) or 0 for none; activation 'linear' or 'relu'."""
        if activation not in self.ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(self.ACTIVATIONS)}, got {activation!r}")
        fn = getattr(self.lib, f"cnnlab_conv2d_forward_bias_activation_{self._suffix(dtype)}")
        self._check("forward_bias_activation", fn(ctypes.byref(g), x, w, bias, self.ACTIVATIONS.index(activation), y, stream))

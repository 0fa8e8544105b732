"""The CUDA kernels run on the CPU: ``lab_conv_kernels.cu`` built with g++ and ``cuda_on_cpu.h``.

No GPU has been lent to this project, so this is how CI executes the real kernel
source: the same file nvcc compiles, with CUDA's runtime headers replaced by
``kernel_rigs/cuda_on_cpu/`` (blocks on worker threads, a block's threads as fibers,
``__syncthreads()`` a real barrier, ``atomicAdd`` a real atomic; see
``cuda_on_cpu/cuda_on_cpu.h``). The library exports the same launchers as the GPU
build, so :class:`kernel_rigs.standalone.CudaKernels` binds it; the pointers are
host addresses (``numpy_array.ctypes.data``).

Used by ``tests/ops/test_cuda_on_cpu.py``, which also builds deliberately broken
variants of the kernel source and a ThreadSanitizer build.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from cnnlab.ops.build import BuildError, _find_cxx, cache_dir
from cnnlab.ops.compile_cache import KERNELS, cached, kernel_files, key

__all__ = ["SHIM", "build_on_cpu", "compile_command", "shim_files"]

SHIM = Path(__file__).resolve().parent / "cuda_on_cpu"  # cuda_runtime.h, cuda_runtime_api.h and cuda_on_cpu.h
_FLAGS = ("-std=c++20", "-pthread", "-Wall", "-Wno-unknown-pragmas")  # nvcc's `#pragma unroll` is unknown to g++
_SANITIZERS = {None: ("-O2",), "thread": ("-O1", "-g", "-fsanitize=thread"),
               "address": ("-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer")}  # fmt: skip


def shim_files() -> list[Path]:
    """The headers that stand in for CUDA's, sorted: part of every CUDA-on-CPU build's key."""
    return sorted(SHIM.glob("*.h"))


def compile_command(cxx: str, source: Path, output: Path, *, sanitize: str | None = None,
                    extra_sources=(), shared: bool = True) -> list[str]:  # fmt: skip
    """The g++ command line that builds ``source`` (CUDA C++) for the CPU.

    ``extra_sources`` are plain C++ files linked in (a test driver); ``shared=False``
    builds an executable.
    """
    if sanitize not in _SANITIZERS:
        raise ValueError(f"sanitize must be None, 'thread' or 'address', got {sanitize!r}")
    kind = ["-shared", "-fPIC"] if shared else []
    return [cxx, *_FLAGS, *_SANITIZERS[sanitize], *kind, "-I", str(SHIM), "-I", str(KERNELS),
            "-x", "c++", str(source), "-x", "none", *map(str, extra_sources), "-o", str(output)]  # fmt: skip


def build_on_cpu(source: Path | None = None, *, out_dir: Path | None = None, sanitize: str | None = None,
                 extra_sources=(), shared: bool = True) -> Path:  # fmt: skip
    """Compile ``source`` (default: the real ``lab_conv_kernels.cu``) for the CPU; return the output's path.

    Cached by a hash of every input, in ``out_dir`` (default :func:`cnnlab.ops.build.cache_dir`).

    Raises:
        BuildError: no compiler, or the compiler failed (its first error lines are in the message).
    """
    source = Path(source) if source else KERNELS / "lab_conv_kernels.cu"
    cxx = _find_cxx()
    digest = key(parts=[cxx, sanitize, shared], files=[*kernel_files(), *shim_files(), source, *map(Path, extra_sources)])
    out_dir = Path(out_dir) if out_dir else cache_dir()
    kind = "so" if shared else "bin"
    target = out_dir / f"cuda_on_cpu_{source.stem}_{sanitize or 'plain'}_{digest}.{kind}"

    def make(staged: Path) -> None:
        argv = compile_command(cxx, source, staged, sanitize=sanitize, extra_sources=extra_sources, shared=shared)
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()]
            raise BuildError(f"g++ failed on {source.name} (CUDA on the CPU):\n    " + "\n    ".join(errors[:12]))

    return cached(target, make)

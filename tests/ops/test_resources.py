"""ptxas's resource report, parsed, and the occupancy it allows on an sm_90 SM (kernel_rigs.resources)."""

import os

import pytest

from cnnlab.ops.build import _wheel_nvcc
from kernel_rigs import resources
from kernel_rigs.resources import SM90, KernelResources, occupancy, parse_ptxas

REPORT = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_ZN6cnnlab52_GLOBAL__N__91edc8ae_19_lab_conv_kernels_cu_6f962c4917TiledImplicitGemmIdNS0_21BackpropFilterProblemIdEEEEvT0_llllb' for 'sm_90'
ptxas info    : Function properties for _ZN6cnnlab52_GLOBAL__N__91edc8ae_19_lab_conv_kernels_cu_6f962c4917TiledImplicitGemmIdNS0_21BackpropFilterProblemIdEEEEvT0_llllb
    8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 100 registers, used 1 barriers, 16384 bytes smem
ptxas info    : Compile time = 65.451 ms
ptxas info    : Compiling entry function '_ZN6cnnlab52_GLOBAL__N__91edc8ae_19_lab_conv_kernels_cu_6f962c4917TiledImplicitGemmIfNS0_14ForwardProblemIfEEEEvT0_llllb' for 'sm_90'
ptxas info    : Function properties for _ZN6cnnlab52_GLOBAL__N__91edc8ae_19_lab_conv_kernels_cu_6f962c4917TiledImplicitGemmIfNS0_14ForwardProblemIfEEEEvT0_llllb
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 80 registers, used 1 barriers, 8192 bytes smem
"""


def kernel(registers, shared_bytes=0):
    return KernelResources("ForwardProblem", "float32", registers, shared_bytes, 0, 0, 0)


def test_parse_reads_each_entry_function():
    filt, fwd = parse_ptxas(REPORT)
    assert filt == KernelResources("BackpropFilterProblem", "float64", 100, 16384, 12, 16, 8)
    assert fwd == KernelResources("ForwardProblem", "float32", 80, 8192, 0, 0, 0)


def test_parse_of_a_report_without_kernels_is_empty():
    assert parse_ptxas("ptxas info    : 0 bytes gmem\n") == []


@pytest.mark.parametrize(
    ("registers", "shared", "threads", "blocks", "share", "limiter"),
    [
        (80, 8192, 256, 3, 0.375, "registers"),  # 2,560 registers a warp -> 25 warps, allocated in 4s: 24
        (100, 16384, 256, 2, 0.25, "registers"),  # 3,200 rounds to 3,328 a warp -> 19 -> 16 warps
        (255, 0, 256, 1, 0.125, "registers"),  # 8,192 a warp -> 8 warps: one block
        (32, 100 * 1024, 256, 2, 0.25, "shared memory"),  # 101 KiB + 1 KiB reserved a block, 228 KiB an SM
        (16, 0, 32, 32, 0.5, "blocks"),  # one-warp blocks stop at 32 blocks an SM
        (16, 0, 1024, 2, 1.0, "warps"),
    ],
)
def test_occupancy_follows_the_calculator(registers, shared, threads, blocks, share, limiter):
    assert occupancy(kernel(registers, shared), threads, SM90) == (blocks, share, limiter)


def test_threads_per_block_is_the_kernels_launch_bound():
    source = resources.SOURCE.read_text()
    assert "__launch_bounds__(kThreads)" in source
    assert resources.threads_per_block() == 256


@pytest.mark.slow
def test_the_pinned_nvcc_wheels_compile_the_kernels_with_no_system_cuda():
    """`make test` installs requirements-cuda.txt; nvcc from it compiles the .cu file for sm_90."""
    nvcc = _wheel_nvcc()
    if nvcc is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs requirements-cuda.txt (make cuda), but no nvcc wheel was found")
        pytest.skip("NVIDIA's nvcc wheels are not installed: make cuda")
    kernels = resources.kernel_resources("90", nvcc=nvcc)
    found = {(k.problem, k.dtype) for k in kernels}
    passes = ("ForwardProblem", "BackpropInputProblem", "BackpropFilterProblem")
    assert found == {(p, t) for p in passes for t in ("float32", "float64")}
    for k in kernels:
        assert 0 < k.registers <= 255 and k.shared_bytes > 0
        blocks, _, _ = occupancy(k, resources.threads_per_block())
        assert blocks >= 1, f"{k.problem} {k.dtype} cannot be resident on an SM"

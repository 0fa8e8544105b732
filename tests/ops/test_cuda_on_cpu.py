"""The CUDA kernels executed on the CPU (cuda_on_cpu.h), against the float64 reference.

``lab_conv_kernels.cu`` is compiled unchanged with g++: the same tile loaders,
barriers and K-split atomics a GPU would run. Then the harness is shown to catch what
a GPU would: variants of the source with a barrier removed or a tile loader off by
one compute wrong results here, and one whose atomicAdd became ``+=`` races, which a
ThreadSanitizer build reports.
"""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conv_reference import CASES, reference  # tests/ is on sys.path
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.ops.build import KERNELS
from cnnlab.ops.cuda_on_cpu import build_on_cpu
from cnnlab.ops.standalone import CudaKernels, geometry

DRIVER = Path(__file__).with_name("cuda_on_cpu_driver.cc")
PASSES = ("forward", "backprop_input", "backprop_filter")
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


@pytest.fixture(scope="module")
def kernels():
    return CudaKernels(build_on_cpu())


def run_passes(kernels, dtype, x_shape, w_shape, strides, padding, seed=0):
    """Every pass of the kernels on random data: {pass: (result, float64 reference)}."""
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    g = geometry(x_shape, w_shape, strides, padding)
    dy = rng.standard_normal((g.batch, g.out_h, g.out_w, g.out_c))
    expected = dict(zip(PASSES, reference(x, w, dy, strides, padding), strict=True))
    x, w, dy = (np.ascontiguousarray(a, dtype) for a in (x, w, dy))
    inputs = {"forward": (x, w), "backprop_input": (w, dy), "backprop_filter": (x, dy)}
    results = {}
    for name in PASSES:
        out = np.full(expected[name].shape, np.nan, dtype)  # NaN: an element never written fails
        a, b = inputs[name]
        kernels.run(name, dtype, g, a.ctypes.data, b.ctypes.data, out.ctypes.data)
        results[name] = (out, expected[name])
    return results


def mismatches(results, dtype):
    """The passes whose result is not within tolerance of the reference."""
    wrong = []
    for name, (got, want) in results.items():
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
        if not np.allclose(got, want, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * scale):
            wrong.append(name)
    return wrong


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("x_shape", "w_shape", "strides", "padding"), CASES)
def test_the_cuda_kernels_match_the_reference_on_the_cpu(kernels, dtype, x_shape, w_shape, strides, padding):
    assert mismatches(run_passes(kernels, dtype, x_shape, w_shape, strides, padding), dtype) == []


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(0, 3), in_h=st.integers(0, 19), in_w=st.integers(0, 19), in_c=st.integers(0, 9),
    out_c=st.integers(0, 9), fh=st.integers(1, 5), fw=st.integers(1, 5), sh=st.integers(1, 3),
    sw=st.integers(1, 3), same=st.booleans(), dtype=st.sampled_from(["float64", "float32"]),
)  # fmt: skip
def test_the_cuda_kernels_match_the_reference_on_random_geometries(
    kernels, batch, in_h, in_w, in_c, out_c, fh, fw, sh, sw, same, dtype
):
    same = same or 0 in (in_h, in_w)  # VALID needs a non-empty input
    if not same and (fh > in_h or fw > in_w):
        fh, fw = min(fh, in_h), min(fw, in_w)  # VALID needs the window to fit
    case = ((batch, in_h, in_w, in_c), (fh, fw, in_c, out_c), (sh, sw), "SAME" if same else "VALID")
    assert mismatches(run_passes(kernels, dtype, *case), dtype) == []


ZERO_SIZED = [  # every pass of the bare launchers: an empty result, or zeros where the sum has no terms
    ((2, 5, 5, 0), (3, 3, 0, 4), (1, 1), "SAME"),  # in_c = 0: the filter gradient divided by zero tiles (SIGFPE)
    ((2, 5, 5, 3), (3, 3, 3, 0), (2, 1), "VALID"),  # out_c = 0
    ((0, 5, 5, 3), (3, 3, 3, 4), (1, 1), "SAME"),  # no images
    ((2, 0, 5, 3), (3, 3, 3, 4), (1, 1), "SAME"),  # zero height
    ((2, 4, 0, 3), (3, 3, 3, 4), (2, 2), "SAME"),  # zero width, stride 2
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("x_shape", "w_shape", "strides", "padding"), ZERO_SIZED)
def test_zero_sized_dimensions_give_empty_or_zero_results(kernels, dtype, x_shape, w_shape, strides, padding):
    results = run_passes(kernels, dtype, x_shape, w_shape, strides, padding)
    assert mismatches(results, dtype) == []
    assert all(np.all(got == 0) for got, _ in results.values())


def test_the_deterministic_filter_gradient_is_bitwise_the_same_on_every_run(kernels):
    """Many K-splits (49 here) whose atomicAdds land in varying order; the deterministic launcher has none."""
    x_shape, w_shape = (8, 28, 28, 32), (3, 3, 32, 64)
    g = geometry(x_shape, w_shape, (1, 1), "SAME")
    rng = np.random.default_rng(0)
    x = np.ascontiguousarray(rng.standard_normal(x_shape), "float32")
    dy = np.ascontiguousarray(rng.standard_normal((8, 28, 28, 64)), "float32")
    runs = []
    for _ in range(4):
        dw = np.full(w_shape, np.nan, "float32")
        kernels.run("backprop_filter_deterministic", "float32", g, x.ctypes.data, dy.ctypes.data, dw.ctypes.data)
        runs.append(dw)
    assert all(np.array_equal(runs[0], run) for run in runs[1:])
    expected = reference(x.astype(float), np.zeros(w_shape), dy.astype(float), (1, 1), "SAME")[2]
    np.testing.assert_allclose(runs[0], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_the_filter_gradient_is_split_along_k_in_these_cases():
    """The K-split path (partial sums added with atomicAdd by several blocks) is exercised."""
    splits = []
    for x_shape, w_shape, strides, padding in CASES:
        g = geometry(x_shape, w_shape, strides, padding)
        m, n, k = g.filter_h * g.filter_w * g.in_c, g.out_c, g.batch * g.out_h * g.out_w
        tiles = -(-m // 64) * -(-n // 64)
        splits.append(max(1, min(-(-1024 // tiles), -(-k // 128))))  # FilterGradientSplits in the .cu
    assert max(splits) >= 8 and min(splits) == 1


# ---- the harness catches what a GPU would -----------------------------------------------

SOURCE = (KERNELS / "lab_conv_kernels.cu").read_text()
FIRST_BARRIER = "    __syncthreads();\n#pragma unroll\n    for (int kk"
SECOND_BARRIER = "    __syncthreads();\n  }\n"
TILE_LOADER = "const int64_t m = m0 + row, k = k0 + kk;"
ATOMIC = "atomicAdd(problem.c(m, n), acc[i][j]);"
BROKEN = {
    "the barrier after loading the tiles removed": (FIRST_BARRIER, "#pragma unroll\n    for (int kk"),
    "the barrier before reloading the tiles removed": (SECOND_BARRIER, "  }\n"),
    "the A-tile loader off by one along K": (TILE_LOADER, "const int64_t m = m0 + row, k = k0 + kk + 1;"),
}


def variant(tmp_path, original, replacement, name):
    """The kernel source with ``original`` (which must occur exactly once) replaced."""
    assert SOURCE.count(original) == 1, f"the kernel source changed: update the {name} variant"
    path = tmp_path / f"{name}.cu"
    path.write_text(SOURCE.replace(original, replacement))
    return path


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_broken_kernel_fails_the_harness(tmp_path, broken):
    original, replacement = BROKEN[broken]
    mutant = CudaKernels(build_on_cpu(variant(tmp_path, original, replacement, "mutant"), out_dir=tmp_path))
    wrong = set()
    for case in CASES[:5]:
        wrong.update(mismatches(run_passes(mutant, "float64", *case), "float64"))
    assert wrong, f"the harness did not notice {broken}"


def run_driver(tmp_path, source, sanitize):
    """Build the C++ driver against ``source`` and run it: (exit status, output)."""
    binary = build_on_cpu(source, out_dir=tmp_path, sanitize=sanitize, extra_sources=[DRIVER], shared=False)
    done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=600,
                          env={"TSAN_OPTIONS": "halt_on_error=1", "CNNLAB_CPU_WORKERS": "2"})  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_the_driver_passes_on_the_real_kernel(tmp_path):
    status, output = run_driver(tmp_path, KERNELS / "lab_conv_kernels.cu", None)
    assert status == 0 and "all passes match" in output, output


@pytest.mark.slow
def test_threadsanitizer_finds_no_race_in_the_real_kernel(tmp_path):
    status, output = run_driver(tmp_path, KERNELS / "lab_conv_kernels.cu", "thread")
    assert status == 0 and "ThreadSanitizer" not in output, output[-3000:]


@pytest.mark.slow
def test_threadsanitizer_reports_the_race_when_atomic_add_becomes_plus_equals(tmp_path):
    source = variant(tmp_path, ATOMIC, "*problem.c(m, n) += acc[i][j];", "plus_equals")
    status, output = run_driver(tmp_path, source, "thread")
    assert status == 66 and "WARNING: ThreadSanitizer: data race" in output, output[-3000:]
    assert "BackpropFilterProblem" in output  # the K-split filter gradient, where blocks share outputs

"""The CUDA kernels executed on the CPU (cuda_on_cpu.h), against the float64 reference.

``lab_conv_kernels.cu`` is compiled unchanged with g++: the same tile loaders,
barriers and K-split atomics a GPU would run. Every pass runs in a child process
(tests/cuda_on_cpu_child.py), each buffer between bands of NaN, with a block's threads
in ascending, descending or shuffled order. Then the harness is shown to catch what a
GPU would, each by a named failure: variants of the source with a barrier removed, a
tile loader off by one, the loader's bound check or zero fill dropped, or a store one
row past the end compute wrong results or write outside their buffers here; one whose
atomicAdd became ``+=`` races, which a ThreadSanitizer build reports; and an
AddressSanitizer build names each out-of-bounds read and write.
"""

import ctypes
import multiprocessing
import subprocess
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import cuda_on_cpu_child  # tests/ is on sys.path
import numpy as np
import pytest
from conv_reference import CASES, fused_reference, reference
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.ops.compile_cache import KERNELS
from kernel_rigs.cuda_on_cpu import build_on_cpu
from kernel_rigs.standalone import CudaKernels, Geometry, geometry

DRIVER = Path(__file__).with_name("cuda_on_cpu_driver.cc")
TOY = Path(__file__).parents[1] / "toy_kernels.cu"
TOY_DRIVER = Path(__file__).parents[1] / "toy_driver.cc"
PASSES = ("forward", "backprop_input", "backprop_filter")
ORDERS = ("ascending", "descending", "shuffled")  # of a block's threads between barriers
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


class Child:
    """A one-process pool that runs kernel passes; a crash there fails the calling test by name."""

    def __init__(self):
        self.pool = None

    def run(self, *args, function=cuda_on_cpu_child.run_pass):
        if self.pool is None:
            self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            return self.pool.submit(function, *args).result(timeout=300)
        except BrokenProcessPool:
            self.pool = None
            return None, ["the kernel crashed the process that ran it"]


@pytest.fixture(scope="module")
def child():
    runner = Child()
    yield runner
    if runner.pool is not None:
        runner.pool.shutdown()


@pytest.fixture(scope="module")
def kernels():
    return str(build_on_cpu())


def run_passes(child, library, dtype, x_shape, w_shape, strides, padding, seed=0, order="ascending"):
    """Every pass of the kernels on random data: {pass: (result, float64 reference, what it did outside)}."""
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    g = geometry(x_shape, w_shape, strides, padding)
    dy = rng.standard_normal((g.batch, g.out_h, g.out_w, g.out_c))
    expected = dict(zip(PASSES, reference(x, w, dy, strides, padding), strict=True))
    inputs = {"forward": (x, w), "backprop_input": (w, dy), "backprop_filter": (x, dy)}
    fields = tuple(getattr(g, name) for name, _ in Geometry._fields_)
    results = {}
    for name in PASSES:
        got, outside = child.run(str(library), name, dtype, fields, *inputs[name], expected[name].shape, order)
        results[name] = (got, expected[name], outside)
    return results


def mismatches(results, dtype):
    """What went wrong, pass by pass: a result out of tolerance, or an access outside the pass's buffers."""
    wrong = []
    for name, (got, want, outside) in results.items():
        wrong += outside
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
        if got is not None and not np.allclose(got, want, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * scale):
            wrong.append(f"{name} differs from the reference")
    return wrong


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("x_shape", "w_shape", "strides", "padding"), CASES)
@pytest.mark.parametrize("order", ORDERS)
def test_the_cuda_kernels_match_the_reference_on_the_cpu(child, kernels, dtype, x_shape, w_shape, strides, padding,
                                                         order):  # fmt: skip
    assert mismatches(run_passes(child, kernels, dtype, x_shape, w_shape, strides, padding, order=order), dtype) == []


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(0, 3), in_h=st.integers(0, 19), in_w=st.integers(0, 19), in_c=st.integers(0, 9),
    out_c=st.integers(0, 9), fh=st.integers(1, 5), fw=st.integers(1, 5), sh=st.integers(1, 3),
    sw=st.integers(1, 3), same=st.booleans(), dtype=st.sampled_from(["float64", "float32"]),
)  # fmt: skip
def test_the_cuda_kernels_match_the_reference_on_random_geometries(
    child, kernels, batch, in_h, in_w, in_c, out_c, fh, fw, sh, sw, same, dtype
):
    same = same or 0 in (in_h, in_w)  # VALID needs a non-empty input
    if not same and (fh > in_h or fw > in_w):
        fh, fw = min(fh, in_h), min(fw, in_w)  # VALID needs the window to fit
    case = ((batch, in_h, in_w, in_c), (fh, fw, in_c, out_c), (sh, sw), "SAME" if same else "VALID")
    assert mismatches(run_passes(child, kernels, dtype, *case, order="shuffled"), dtype) == []


FUSED_CASES = [(case, "relu") for case in CASES] + [
    (CASES[1], "linear"),
    (((2, 5, 5, 0), (3, 3, 0, 4), (1, 1), "SAME"), "relu"),  # no terms: every output is relu(bias)
    (((2, 5, 5, 0), (3, 3, 0, 4), (1, 1), "SAME"), "linear"),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("case", "activation"), FUSED_CASES, ids=str)
def test_the_fused_forward_finishes_each_output_with_its_bias_and_activation(child, kernels, dtype, case, activation):
    x_shape, w_shape, strides, padding = case
    rng = np.random.default_rng(3)
    x, w, bias = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[3])
    g = geometry(x_shape, w_shape, strides, padding)
    expected = fused_reference(x, w, bias, strides, padding, activation)
    fields = tuple(getattr(g, name) for name, _ in Geometry._fields_)
    got, outside = child.run(str(kernels), dtype, fields, x, w, bias, activation, expected.shape, "shuffled",
                             function=cuda_on_cpu_child.run_fused_forward)  # fmt: skip
    assert outside == []
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(got, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * scale)
    if activation == "relu":
        assert (got == 0).mean() > 0.2  # the activation did clip: about half the outputs are negative sums


ZERO_SIZED = [  # every pass of the bare launchers: an empty result, or zeros where the sum has no terms
    ((2, 5, 5, 0), (3, 3, 0, 4), (1, 1), "SAME"),  # in_c = 0: the filter gradient divided by zero tiles (SIGFPE)
    ((2, 5, 5, 3), (3, 3, 3, 0), (2, 1), "VALID"),  # out_c = 0
    ((0, 5, 5, 3), (3, 3, 3, 4), (1, 1), "SAME"),  # no images
    ((2, 0, 5, 3), (3, 3, 3, 4), (1, 1), "SAME"),  # zero height
    ((2, 4, 0, 3), (3, 3, 3, 4), (2, 2), "SAME"),  # zero width, stride 2
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("x_shape", "w_shape", "strides", "padding"), ZERO_SIZED)
def test_zero_sized_dimensions_give_empty_or_zero_results(child, kernels, dtype, x_shape, w_shape, strides, padding):
    results = run_passes(child, kernels, dtype, x_shape, w_shape, strides, padding)
    assert mismatches(results, dtype) == []
    assert all(np.all(got == 0) for got, _, _ in results.values())


def test_the_deterministic_filter_gradient_is_bitwise_the_same_on_every_run(kernels):
    kernels = CudaKernels(kernels)
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
A_STORE = "a_tile[kk][row] = (m < m_size && k < k_end) ? problem.a(m, k) : T(0);"
OUTPUT_ROWS = "    if (m >= m_size) continue;"
ATOMIC = "atomicAdd(problem.c(m, n), acc[i][j]);"
BROKEN = {
    "the barrier after loading the tiles removed": (FIRST_BARRIER, "#pragma unroll\n    for (int kk"),
    "the barrier before reloading the tiles removed": (SECOND_BARRIER, "  }\n"),
    "the A-tile loader off by one along K": (TILE_LOADER, "const int64_t m = m0 + row, k = k0 + kk + 1;"),
    "the A-tile loader's k < k_end guard dropped": (A_STORE, "a_tile[kk][row] = (m < m_size) ? problem.a(m, k) : T(0);"),
    "the A-tile's zero fill dropped": (A_STORE, "if (m < m_size && k < k_end) a_tile[kk][row] = problem.a(m, k);"),
    "a store one row past the end": (OUTPUT_ROWS, "    if (m > m_size) continue;"),
}


def variant(tmp_path, original, replacement, name):
    """The kernel source with ``original`` (which must occur exactly once) replaced."""
    assert SOURCE.count(original) == 1, f"the kernel source changed: update the {name} variant"
    path = tmp_path / f"{name}.cu"
    path.write_text(SOURCE.replace(original, replacement))
    return path


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_broken_kernel_fails_the_harness(child, tmp_path, broken):
    original, replacement = BROKEN[broken]
    mutant = build_on_cpu(variant(tmp_path, original, replacement, "mutant"), out_dir=tmp_path)
    wrong = []
    for order in ORDERS:
        for case in CASES[:5]:
            wrong += mismatches(run_passes(child, mutant, "float64", *case, order=order), "float64")
        if wrong:  # caught: the other orders need not run
            break
    assert wrong, f"the harness did not notice {broken}"


def test_every_mutant_still_matches_the_kernel_source():
    for name, (original, _) in BROKEN.items():
        assert SOURCE.count(original) == 1, f"the kernel source changed: update the {name} variant"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    library = ctypes.CDLL(str(build_on_cpu(TOY, out_dir=tmp_path_factory.mktemp("toy"))))
    library.read_neighbour.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int] * 3
    library.launch_nothing.argtypes = [ctypes.c_uint] * 6
    return library


def read_neighbour(toy, offset, with_barrier, order, monkeypatch):
    """Whether every thread read its neighbour's value through shared memory correctly."""
    monkeypatch.setenv("CNNLAB_CUDA_THREAD_ORDER", order)
    values = np.arange(1, 4 * 256 + 1, dtype="float32")
    out = np.zeros_like(values)
    assert toy.read_neighbour(values.ctypes.data, out.ctypes.data, 4, offset, int(with_barrier)) == 0
    t = np.arange(256)
    inside = (t + offset >= 0) & (t + offset < 256)
    expected = np.concatenate([np.where(inside, block[np.clip(t + offset, 0, 255)], 0) for block in values.reshape(4, 256)])
    return bool(np.array_equal(out, expected))


def test_a_missing_barrier_is_found_whichever_thread_reads(toy, monkeypatch):
    """In ascending order a reader above the writer sees the write even without the barrier; the other orders do not."""
    found = {(offset, order): not read_neighbour(toy, offset, False, order, monkeypatch)
             for offset in (-1, 1) for order in ORDERS}  # fmt: skip
    assert found == {(-1, "ascending"): False, (1, "ascending"): True, (-1, "descending"): True,
                     (1, "descending"): False, (-1, "shuffled"): True, (1, "shuffled"): True}  # fmt: skip
    assert all(read_neighbour(toy, offset, True, order, monkeypatch) for offset in (-1, 1) for order in ORDERS)


@pytest.mark.parametrize(("grid", "block", "allowed"), [
    ((1, 1, 1), (1, 1, 64), True), ((1, 1, 1), (1, 1, 65), False), ((1, 65536, 1), (1, 1, 1), False),
    ((1, 1, 65536), (1, 1, 1), False), ((1, 1, 1), (1025, 1, 1), False), ((1, 1, 1), (32, 32, 2), False),
])  # fmt: skip
def test_launches_are_held_to_a_gpus_limits(toy, grid, block, allowed):
    assert (toy.launch_nothing(*grid, *block) == 0) == allowed


def run_driver(tmp_path, source, sanitize, order="shuffled"):
    """Build the C++ driver against ``source`` and run it, threads in ``order``: (exit status, output)."""
    binary = build_on_cpu(source, out_dir=tmp_path, sanitize=sanitize, extra_sources=[DRIVER], shared=False)
    env = {"TSAN_OPTIONS": "halt_on_error=1", "ASAN_OPTIONS": "detect_leaks=0:detect_stack_use_after_return=0",
           "CNNLAB_CPU_WORKERS": "2", "CNNLAB_CUDA_THREAD_ORDER": order}  # fmt: skip
    done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=600, env=env)
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


@pytest.mark.slow
@pytest.mark.parametrize("offset", [-1, 1], ids=["higher-thread-reads", "lower-thread-reads"])
def test_threadsanitizer_sees_a_missing_barrier_inside_a_block_in_any_thread_order(tmp_path, offset):
    """In ascending order a higher thread reads a lower one's write correctly without the barrier; the race is still named."""
    binary = build_on_cpu(TOY, out_dir=tmp_path, sanitize="thread", extra_sources=[TOY_DRIVER], shared=False)
    env = {"TSAN_OPTIONS": "halt_on_error=1", "CNNLAB_CPU_WORKERS": "2", "CNNLAB_CUDA_THREAD_ORDER": "ascending"}
    racy = subprocess.run([str(binary), str(offset), "0"], capture_output=True, text=True, timeout=300, env=env)
    assert racy.returncode == 66 and "WARNING: ThreadSanitizer: data race" in racy.stderr, racy.stdout + racy.stderr[-3000:]
    assert "ReadNeighbour" in racy.stderr
    fenced = subprocess.run([str(binary), str(offset), "1"], capture_output=True, text=True, timeout=300, env=env)
    assert fenced.returncode == 0 and "ThreadSanitizer" not in fenced.stderr, fenced.stderr[-3000:]
    assert "0 wrong outputs of 1024" in fenced.stdout


@pytest.mark.slow
def test_addresssanitizer_finds_nothing_in_the_real_kernel(tmp_path):
    status, output = run_driver(tmp_path, KERNELS / "lab_conv_kernels.cu", "address")
    assert status == 0 and "AddressSanitizer" not in output, output[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(("broken", "access"), [("the A-tile loader's k < k_end guard dropped", "READ"),
                                                ("a store one row past the end", "WRITE")])  # fmt: skip
def test_addresssanitizer_names_the_out_of_bounds_access(tmp_path, broken, access):
    status, output = run_driver(tmp_path, variant(tmp_path, *BROKEN[broken], "mutant"), "address")
    assert status != 0 and "ERROR: AddressSanitizer: heap-buffer-overflow" in output, output[-3000:]
    assert f"{access} of size" in output and "TiledImplicitGemm" in output, output[-3000:]

"""Speed of cnnlab's convolution op against the library's own, measured in one run.

    python benchmarks/bench_conv.py                 # CPU: our op vs tf.nn.conv2d (oneDNN)
    python benchmarks/bench_conv.py --device gpu    # GPU: our CUDA kernels vs cuDNN (PyTorch)
    python benchmarks/bench_conv.py --isa avx2      # CPU: an AVX2 build of both, on this CPU
    python benchmarks/bench_conv.py --no-winograd   # CPU: our direct kernels on the 3x3 layers too

It first prints what each CUDA kernel costs an sm_90 SM (``ptxas -v``:
registers, shared memory, spills, and the occupancy they allow); that needs
nvcc (``make cuda``), not a GPU.

On the CPU it then measures the machine's FMA peak (``fma_peak.cc``), the ceiling
that no convolution passes. For each layer (3x3 filters, batch 128) it prints GFLOP/s
of the forward pass, the input gradient and the filter gradient, ours and the
reference (on the CPU each also as a share of the peak), and the ratio ours /
reference against the layer's target. On the CPU a fourth row,
``fwd+bias+relu``, times what a Conv2D layer with a bias and a ReLU runs: our
fused op against TensorFlow's convolution, bias and ReLU, which its graph
optimiser fuses into one oneDNN call. On the CPU it then times one
training epoch of the MNIST convnet on 4,000 images with LabConv2D and with
keras.layers.Conv2D.

Targets on the CPU: every pass of every layer >= 1.0x tf.nn.conv2d (oneDNN), on
AVX2 and AVX-512 machines alike; the LabConv2D epoch <= 1.0x the Conv2D epoch. Targets on the GPU: every pass >= 0.5x cuDNN on the 32->64 and
64->64 layers (fp32, batch 128). On the CPU each ratio is the median of --repeats
rounds (ours and the reference alternating within a round), printed with its
min-max over the rounds; on the GPU each figure is the median of --repeats runs. GPU results are kept in ``benchmarks/results/``, written
by ``benchmarks/gpu_check.py``; none has been measured yet.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # kernel_rigs/ lives beside the package

LAYERS = [  # (name, (batch, h, w, c_in), (fh, fw, c_in, c_out), padding)
    ("28x28x1->32 VALID", (128, 28, 28, 1), (3, 3, 1, 32), "VALID"),  # the MNIST convnet's first layer
    ("13x13x32->64 VALID", (128, 13, 13, 32), (3, 3, 32, 64), "VALID"),  # and its second
    ("28x28x32->64 SAME", (128, 28, 28, 32), (3, 3, 32, 64), "SAME"),
    ("56x56x64->64 SAME", (128, 56, 56, 64), (3, 3, 64, 64), "SAME"),
]
TARGET_RATIO = dict.fromkeys((name for name, *_ in LAYERS), 1.0)  # every pass of every layer
TARGET_EPOCH_RATIO = 1.0
GPU_TARGET_RATIO = {"28x28x32->64 SAME": 0.5, "56x56x64->64 SAME": 0.5}  # every pass, fp32, against cuDNN


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def flops(x_shape, w_shape, padding) -> float:
    """Multiply-adds x 2 of one pass (the three passes cost the same)."""
    batch, h, w, _ = x_shape
    fh, fw, c_in, c_out = w_shape
    out_h, out_w = (h, w) if padding == "SAME" else (h - fh + 1, w - fw + 1)
    return 2.0 * batch * out_h * out_w * fh * fw * c_in * c_out


def calls_filling(fn: Callable[[], object], seconds: float) -> int:
    """How many back-to-back calls of ``fn`` take at least ``seconds`` (one call at least)."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-6)
    return max(1, int(np.ceil(seconds / once)))


def seconds_per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def interleaved_ratios(ours: Callable[[], object], theirs: Callable[[], object], rounds: int,
                       sample_seconds: float = 0.05) -> tuple[list[float], list[float]]:
    """Seconds per call of ``ours`` and of ``theirs`` in each of ``rounds`` rounds.

    Each sample times a batch of back-to-back calls lasting about ``sample_seconds``: a
    first layer's pass takes a millisecond, and single calls that short mostly measure
    when a pool thread woke up. The two alternate within a round, so drift on a shared
    machine hits both alike; each round's ratio is one sample, and the spread of those
    samples is what a single figure would hide.
    """
    for _ in range(2):
        ours(), theirs()
    calls_ours, calls_theirs = calls_filling(ours, sample_seconds), calls_filling(theirs, sample_seconds)
    mine, reference = [], []
    for _ in range(rounds):
        mine.append(seconds_per_call(ours, calls_ours))
        reference.append(seconds_per_call(theirs, calls_theirs))
    return mine, reference


def print_spread_row(layer, passname, mine: list[float], reference: list[float], work, target=None,
                     peak: float | None = None) -> float:
    """GFLOP/s (medians), each as a share of ``peak`` GFLOP/s where known, and the ratio's
    median with its min-max over the rounds; returns the median ratio."""
    ratios = sorted(r / m for m, r in zip(mine, reference, strict=True))
    ratio = statistics.median(ratios)
    ours, theirs = work / statistics.median(mine) / 1e9, work / statistics.median(reference) / 1e9
    shares = "      -/-" if peak is None else f"{ours / peak:>5.0%}/{theirs / peak:.0%}"
    verdict = "" if target is None else f"  >= {target}x {'met' if ratio >= target else 'MISSED'}"
    print(f"{layer:<20} {passname:<16} {ours:>9.1f} {theirs:>11.1f} {shares:>9} {ratio:>7.2f}x  "
          f"{ratios[0]:.2f}-{ratios[-1]:.2f}{verdict}", flush=True)  # fmt: skip
    return ratio


def print_row(layer, passname, ours_s, theirs_s, work, target=None):
    ours, theirs = work / ours_s / 1e9, work / theirs_s / 1e9
    verdict = "" if target is None else f"  >= {target}x {'met' if ours / theirs >= target else 'MISSED'}"
    print(f"{layer:<20} {passname:<16} {ours:>9.1f} {theirs:>11.1f} {ours / theirs:>7.2f}x{verdict}", flush=True)
    return ours / theirs


def kernel_resources() -> None:
    """ptxas's registers, shared memory and spills per CUDA kernel, and the occupancy on sm_90."""
    from cnnlab.ops.build import BuildError
    from kernel_rigs.resources import SM90, kernel_resources, occupancy, threads_per_block

    try:
        kernels = kernel_resources(SM90.arch)
    except BuildError as error:
        print(f"CUDA kernel resources: not measured ({error})\n")
        return
    threads = threads_per_block()
    print(f"CUDA kernels on sm_{SM90.arch} (ptxas -v; {threads} threads per block):")
    print(f"{'pass':<22} {'dtype':<8} {'regs':>5} {'smem B':>7} {'spill st/ld B':>14} {'blocks/SM':>10} {'occupancy':>10}  limited by")
    for k in kernels:
        blocks, share, limiter = occupancy(k, threads, SM90)
        spills = f"{k.spill_stores}/{k.spill_loads}"
        print(f"{k.problem:<22} {k.dtype:<8} {k.registers:>5} {k.shared_bytes:>7} {spills:>14} {blocks:>10} {share:>9.1%}  {limiter}")
    print()


def fma_peak() -> float | None:
    """GFLOP/s of this machine's fused multiply-adds on the op's threads, or None where not measured.

    ``fma_peak.cc`` is compiled with the op's own ``-march`` flags (so ``--isa avx2`` gets
    256-bit FMAs) and run on as many threads as the process may use, which is what
    TensorFlow's thread pool, and so the op, runs on. No convolution can beat this figure
    in real multiply-adds; the table's GFLOP/s count padding's taps too, which neither
    implementation multiplies (about 2% of the 56x56 layer's), so a share just under 100%
    is the ceiling for a direct convolution. Winograd's F(2x2, 3x3), which our op runs on
    3x3 stride-1 layers, does 2.25 times fewer multiply-adds than that count: its shares
    may pass 100%.
    """
    import os
    import subprocess
    import tempfile

    from cnnlab.ops import build

    source = Path(__file__).with_name("fma_peak.cc")
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        cxx = build._find_cxx()  # noqa: SLF001 -- the op's compiler and flags, not a second guess at them
        flags = build._arch_flags(cxx)  # noqa: SLF001
        with tempfile.TemporaryDirectory() as folder:
            binary = Path(folder) / "fma_peak"
            subprocess.run([cxx, "-O2", *flags, "-pthread", str(source), "-o", str(binary)],
                           check=True, capture_output=True, text=True, timeout=120)  # fmt: skip
            out = subprocess.run([str(binary), str(threads)], check=True, capture_output=True, text=True, timeout=120)
    except (build.BuildError, OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", None) or error
        print(f"FMA peak: not measured ({str(detail).strip().splitlines()[-1]})\n")
        return None
    gflops, lanes = out.stdout.split()
    print(f"FMA peak of this machine: {float(gflops):.1f} GF/s ({threads} threads, {32 * int(lanes)}-bit FMAs, "
          f"benchmarks/fma_peak.cc); 'of peak' below is ours/tf as a share of it\n")  # fmt: skip
    return float(gflops)


def _cpu_passes(tf, ops, x_shape, w_shape, padding):
    """{pass: (ours, tf)} for one layer, each a traced tf.function of no arguments."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal(x_shape), tf.float32)
    w = tf.constant(rng.standard_normal(w_shape), tf.float32)
    dy = tf.constant(rng.standard_normal(tf.nn.conv2d(x, w, 1, padding).shape), tf.float32)
    x_size, w_size = tf.constant(x_shape), tf.constant(w_shape)
    bias = tf.constant(rng.standard_normal(w_shape[3]), tf.float32)
    passes = {
        "forward": (
            tf.function(lambda: ops.conv2d(x, w, 1, padding)),
            tf.function(lambda: tf.nn.conv2d(x, w, 1, padding)),
        ),
        # What a Conv2D layer with a bias and ReLU runs: TensorFlow fuses the three into oneDNN's convolution.
        "fwd+bias+relu": (
            tf.function(lambda: ops.fused_conv2d(x, w, bias, 1, padding, "relu")),
            tf.function(lambda: tf.nn.relu(tf.nn.conv2d(x, w, 1, padding) + bias)),
        ),
        "input gradient": (
            tf.function(lambda: ops.conv2d_backprop_input(x_size, w, dy, 1, padding)),
            tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=x_size, filter=w, out_backprop=dy, strides=[1, 1, 1, 1], padding=padding)),
        ),
        "filter gradient": (
            tf.function(lambda: ops.conv2d_backprop_filter(x, w_size, dy, 1, padding)),
            tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=w_size, out_backprop=dy, strides=[1, 1, 1, 1], padding=padding)),
        ),
    }  # fmt: skip
    return passes


def cpu_layers(rounds: int) -> dict[tuple[str, str], float]:
    """Median ratio ours / tf.nn.conv2d per (layer, pass) over ``rounds`` interleaved rounds, printed against its target."""
    from cnnlab import ops
    from cnnlab.env import import_tensorflow

    tf = import_tensorflow()
    ops.load_library()
    peak = fma_peak()
    ratios = {}
    print(f"{'layer':<20} {'pass':<16} {'ours GF/s':>9} {'tf GF/s':>11} {'of peak':>9} {'ratio':>8}  "
          f"min-max of {rounds} rounds")  # fmt: skip
    for name, x_shape, w_shape, padding in LAYERS:
        passes = _cpu_passes(tf, ops, x_shape, w_shape, padding)
        for passname, (ours, theirs) in passes.items():
            np.testing.assert_allclose(
                ours(), theirs(), rtol=2e-3, atol=2e-3 * np.sqrt(w_shape[0] * w_shape[1] * w_shape[2])
            )
            mine, reference = interleaved_ratios(ours, theirs, rounds)
            work = flops(x_shape, w_shape, padding)
            ratio = print_spread_row(name, passname, mine, reference, work, TARGET_RATIO[name], peak)
            ratios[name, passname] = ratio
    return ratios


def mnist_epoch(repeats: int) -> float:
    """Seconds per epoch of the MNIST convnet with LabConv2D vs Conv2D, and their ratio.

    The clock runs from Keras's on_epoch_begin to on_epoch_end: what fit() does after
    the epoch (tearing down its iterator, and at random a full pass of Python's
    garbage collector over TensorFlow's objects, about 0.6 s here) is not the layers'
    cost, and it landed in one model's epoch or the other's by chance.
    """
    from cnnlab.env import import_tensorflow

    tf = import_tensorflow()
    import keras

    from cnnlab.data import load_mnist
    from cnnlab.layers import LabConv2D

    split = load_mnist(quiet=True)
    data = tf.data.Dataset.from_tensor_slices((split.x_train[:4000], split.y_train[:4000])).batch(128).cache()

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    def convnet(conv):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            conv(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            conv(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(10, activation="softmax"),
        ])  # fmt: skip
        model.compile("adam", "sparse_categorical_crossentropy", jit_compile=False)
        model.fit(data, epochs=1, verbose=0, shuffle=False)  # trace and warm up; the batches stay in one order
        return model

    models = {"LabConv2D": convnet(LabConv2D), "keras Conv2D": convnet(keras.layers.Conv2D)}
    seconds = {}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits both alike
        for name, model in models.items():
            clock = EpochClock()
            model.fit(data, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
            seconds.setdefault(name, []).append(clock.seconds)
    ours, theirs = (statistics.median(seconds[n]) for n in models)
    ratios = sorted(m / r for m, r in zip(seconds["LabConv2D"], seconds["keras Conv2D"], strict=True))
    ratio = statistics.median(ratios)
    print(f"\nMNIST convnet, one epoch on 4,000 images (batch 128, median of {repeats}):")
    print(f"  LabConv2D {ours:.2f} s   keras Conv2D {theirs:.2f} s   ratio {ratio:.2f}x"
          f" ({ratios[0]:.2f}-{ratios[-1]:.2f}; target <= {TARGET_EPOCH_RATIO}x"
          f" {'met' if ratio <= TARGET_EPOCH_RATIO else 'MISSED'})")  # fmt: skip
    return ratio


def _gpu_passes(torch, functional, kernels, stream, x_shape, w_shape, padding):
    """{pass: (ours, cuDNN)} for one layer, each a function of no arguments."""
    from kernel_rigs.standalone import geometry

    g = geometry(x_shape, w_shape, (1, 1), padding)
    x = torch.randn(x_shape, device="cuda")
    w = torch.randn(w_shape, device="cuda")
    y = torch.empty((g.batch, g.out_h, g.out_w, g.out_c), device="cuda")
    dy, dx, dw = torch.randn_like(y), torch.empty_like(x), torch.empty_like(w)
    # cuDNN in its preferred layout (NCHW / OIHW); padding 1 = SAME for 3x3 stride 1.
    xc = x.permute(0, 3, 1, 2).contiguous().requires_grad_()
    wc = w.permute(3, 2, 0, 1).contiguous().requires_grad_()
    pad = 1 if padding == "SAME" else 0
    dyc = dy.permute(0, 3, 1, 2).contiguous()

    def ours(passname, a, b, out):
        return lambda: kernels.run(passname, "float32", g, a.data_ptr(), b.data_ptr(), out.data_ptr(), stream)

    rows = {
        "forward": (ours("forward", x, w, y), lambda: functional.conv2d(xc, wc, padding=pad)),
        "input gradient": (ours("backprop_input", w, dy, dx),
                           lambda: torch.nn.grad.conv2d_input(xc.shape, wc, dyc, padding=pad)),
        "filter gradient": (ours("backprop_filter", x, dy, dw),
                            lambda: torch.nn.grad.conv2d_weight(xc, wc.shape, dyc, padding=pad)),
    }  # fmt: skip
    return rows


def gpu_layers(repeats: int) -> None:
    """Our CUDA kernels (standalone, ctypes) against cuDNN through PyTorch."""
    try:
        import torch
        import torch.nn.functional as functional
    except ImportError:
        sys.exit("--device gpu compares against cuDNN through PyTorch: pip install torch")
    if not torch.cuda.is_available():
        sys.exit("--device gpu needs an NVIDIA GPU visible to PyTorch")
    from kernel_rigs.standalone import CudaKernels

    kernels = CudaKernels()
    torch.backends.cudnn.benchmark = True
    print(f"device: {torch.cuda.get_device_name()}")
    print(f"{'layer':<20} {'pass':<16} {'ours GF/s':>9} {'cuDNN GF/s':>11} {'ratio':>8}")
    stream = torch.cuda.current_stream().cuda_stream

    def timed(fn):
        def run():
            fn()
            torch.cuda.synchronize()

        return median_seconds(run, repeats, warmup=3)

    for name, x_shape, w_shape, padding in LAYERS:
        rows = _gpu_passes(torch, functional, kernels, stream, x_shape, w_shape, padding)
        work = flops(x_shape, w_shape, padding)
        for passname, (mine, reference) in rows.items():
            print_row(name, passname, timed(mine), timed(reference), work, GPU_TARGET_RATIO.get(name))


def use_avx2_build() -> None:
    """Measure an AVX2 build on this machine: our op compiled for AVX2 and oneDNN held to AVX2.

    The op is built with ``-march=x86-64-v3`` (AVX2 and FMA, no AVX-512) into its own
    cache folder, so the lessons' build is left alone; ``ONEDNN_MAX_CPU_ISA`` keeps
    TensorFlow's oneDNN to the same instructions. Both run AVX2 code on this CPU, which
    is not the same as an AVX2 CPU (its caches, clock and FMA units stay this one's).
    """
    import os

    from cnnlab import paths
    from cnnlab.ops import build

    os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"  # read when TensorFlow first runs oneDNN
    os.environ[paths.OPS_ENV] = str(paths.cache_root() / "ops-avx2")
    build._arch_flags = lambda cxx, system="Linux": ("-march=x86-64-v3",)  # noqa: SLF001 -- a benchmark's own build
    print("AVX2 build: our op with -march=x86-64-v3, oneDNN with ONEDNN_MAX_CPU_ISA=AVX2, on this CPU\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--repeats", type=int, default=7,
                        help="rounds per figure (at least 5 for a spread worth reading); the median and min-max are shown")
    parser.add_argument("--skip-epoch", action="store_true", help="CPU: skip the MNIST training epoch")
    parser.add_argument("--isa", choices=["native", "avx2"], default="native",
                        help="CPU: avx2 measures an AVX2 build of the op against oneDNN held to AVX2, on this CPU")
    parser.add_argument("--no-winograd", action="store_true",
                        help="CPU: run our direct kernels on the 3x3 stride-1 layers too (CNNLAB_CONV_WINOGRAD=0)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1 (5 or more for a spread worth reading), got {args.repeats}")
    if args.isa == "avx2":
        if args.device != "cpu":
            parser.error("--isa avx2 is for --device cpu")
        use_avx2_build()
    if args.no_winograd:
        import os

        os.environ["CNNLAB_CONV_WINOGRAD"] = "0"  # read by the op on every call
        print("Winograd off: our direct kernels on every layer\n")
    kernel_resources()
    if args.device == "gpu":
        gpu_layers(args.repeats)
        return 0
    ratios = cpu_layers(args.repeats)
    missed = [f"{layer} {passname}" for (layer, passname), ratio in ratios.items() if ratio < TARGET_RATIO[layer]]
    print(f"\n{len(ratios) - len(missed)} of {len(ratios)} passes meet their target"
          + (f"; missed: {', '.join(missed)}" if missed else ""))
    if not args.skip_epoch:
        mnist_epoch(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())

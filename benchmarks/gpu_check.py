"""The GPU check: everything this project can learn from one short visit to an NVIDIA GPU.

    python benchmarks/gpu_check.py [--out FOLDER]        (or: make gpu-check)

Meant for a machine with an NVIDIA GPU, nvcc, PyTorch or CuPy, pytest and hypothesis,
and neither TensorFlow nor a network (the H200 the kernels will first meet). Nothing
here imports TensorFlow. In order, each step with its own time limit so that the
whole check stays under 8 minutes:

1. the machine: ``nvidia-smi``, Python, PyTorch/CuPy and nvcc versions;
2. ``ptxas -v`` for ``lab_conv_kernels.cu`` (registers, shared memory, spills per kernel);
3. the standalone CUDA library (:func:`kernel_rigs.standalone.build_standalone`);
4. ``pytest tests/gpu -m gpu``: every pass against the float64 reference;
5. ``benchmarks/bench_conv.py --device gpu``: our kernels against cuDNN, with the
   targets (every pass at least 0.5x cuDNN at 28x28x32->64 and 56x56x64->64, batch 128, fp32).

Everything goes into one file, ``FOLDER/gpu-check.txt`` (default: ``$OUT`` where it is
set, else ``benchmarks/results/``), which is what to commit: GPU results are kept in
``benchmarks/results/`` with the date and the device in the file. On a machine without
a GPU the check stops at once with one line saying so.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "cnnlab" / "ops" / "kernels"
BUDGET_S = 8 * 60
STEPS = (  # (title, seconds allowed): 470 s in all, within the budget
    ("machine", 20),
    ("ptxas -v", 60),
    ("standalone build", 120),
    ("tests/gpu", 120),
    ("bench_conv.py --device gpu", 150),
)


def gpu_absent() -> str | None:
    """Why no NVIDIA GPU can be used here, or None when one can."""
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi not found: no NVIDIA driver on this machine"
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"nvidia-smi does not run: {error}"
    if listed.returncode != 0 or "GPU" not in listed.stdout:
        return "nvidia-smi lists no GPU"
    return None


def nvcc() -> str | None:
    sys.path.insert(0, str(ROOT))
    from cnnlab.ops.build import _find_nvcc  # noqa: PLC0415 -- cnnlab.ops.build imports no TensorFlow at import

    return _find_nvcc()


def commands(out: Path) -> dict[str, list[str]]:
    """The command of each step; all run from the repository root."""
    python = sys.executable
    machine = (
        "import platform, subprocess, sys\n"
        "print('python', sys.version.split()[0], platform.platform())\n"
        "print(subprocess.run(['nvidia-smi'], capture_output=True, text=True).stdout)\n"
        "for name in ('torch', 'cupy', 'numpy', 'hypothesis'):\n"
        "    try:\n"
        "        module = __import__(name)\n"
        "        print(name, module.__version__)\n"
        "    except Exception as error:\n"
        "        print(name, 'not available:', error)\n"
        "print('tensorflow importable:', __import__('importlib').util.find_spec('tensorflow') is not None)\n"
    )
    compiler = nvcc() or "nvcc"
    return {
        "machine": [python, "-c", machine + f"print(subprocess.run([{compiler!r}, '--version'], capture_output=True, text=True).stdout)"],
        "ptxas -v": [compiler, "-c", "-std=c++17", "-O3", "-Xptxas", "-v", "-gencode=arch=compute_90,code=sm_90",
                     "-I", str(KERNELS), str(KERNELS / "lab_conv_kernels.cu"), "-o", str(out / "lab_conv_kernels.o")],
        "standalone build": [python, "-c", "from kernel_rigs.standalone import build_standalone; print(build_standalone())"],
        "tests/gpu": [python, "-m", "pytest", "tests/gpu", "-m", "gpu", "-v", "-p", "no:cacheprovider"],
        "bench_conv.py --device gpu": [python, "benchmarks/bench_conv.py", "--device", "gpu"],
    }  # fmt: skip


def run_step(title: str, argv: list[str], limit: float, log) -> bool:
    """Run one step, write its command, output, time and verdict to ``log``; True when it passed."""
    log.write(f"\n===== {title} =====\n$ {' '.join(argv)}\n")
    log.flush()
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace") if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        code = None
    except OSError as error:
        output, code = str(error), -1
    seconds = time.monotonic() - started
    verdict = "PASSED" if code == 0 else ("TIMED OUT" if code is None else f"FAILED (exit {code})")
    log.write(output + f"\n----- {title}: {verdict} in {seconds:.0f} s\n")
    log.flush()
    print(f"gpu-check: {title:28s} {verdict} in {seconds:.0f} s", flush=True)
    return code == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "benchmarks" / "results"),
                        help="folder for gpu-check.txt (default: $OUT, else benchmarks/results)")  # fmt: skip
    args = parser.parse_args(argv)
    absent = gpu_absent()
    if absent:
        print(f"gpu-check: nothing to check here ({absent}); run it on a machine with an NVIDIA GPU.")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "gpu-check.txt"
    started = time.monotonic()
    passed = {}
    with results.open("w", encoding="utf-8") as log:
        log.write(f"cnnlab GPU check, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n")
        steps = commands(args.out)
        for title, limit in STEPS:
            left = BUDGET_S - (time.monotonic() - started)
            if left < 10:
                log.write(f"\n===== {title}: SKIPPED, the 8-minute budget is spent =====\n")
                passed[title] = False
                continue
            passed[title] = run_step(title, steps[title], min(limit, left), log)
        log.write("\n===== summary =====\n" + "".join(f"{t:28s} {'passed' if ok else 'NOT passed'}\n" for t, ok in passed.items()))
        log.write(f"total {time.monotonic() - started:.0f} s\n")
    print(f"gpu-check: results in {results}")
    return 0 if all(passed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

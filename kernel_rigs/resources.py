"""What each CUDA kernel costs an SM: registers, shared memory and spills from ``ptxas -v``, and the occupancy they allow.

No GPU is needed: nvcc compiles ``lab_conv_kernels.cu`` for one architecture
with ``-Xptxas -v`` and this module reads ptxas's report, e.g.

    ptxas info    : Compiling entry function '_ZN6cnnlab..TiledImplicitGemmIfNS0_14ForwardProblemIfEEEEvT0_llllb' for 'sm_90'
    ptxas info    : Function properties for _ZN6cnnlab..
        0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
    ptxas info    : Used 80 registers, used 1 barriers, 8192 bytes smem

Occupancy follows NVIDIA's occupancy calculator for one SM: the resident
blocks are the fewest that registers, shared memory, warps and the block limit
each allow. ``benchmarks/bench_conv.py`` prints the table.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cnnlab.ops.build import BuildError, _find_nvcc
from cnnlab.ops.compile_cache import KERNELS

__all__ = ["SM90", "KernelResources", "SmLimits", "kernel_resources", "occupancy", "parse_ptxas", "threads_per_block"]

SOURCE = KERNELS / "lab_conv_kernels.cu"


@dataclass(frozen=True)
class SmLimits:
    """One SM's limits, as NVIDIA's occupancy calculator lists them per compute capability."""

    arch: str
    registers: int  # 32-bit registers per SM
    register_unit: int  # registers are allocated per warp in units of this many
    warp_granularity: int  # warps are allocated (for the register limit) in groups of this many
    max_warps: int
    max_blocks: int
    shared_bytes: int  # shared memory per SM usable by blocks
    shared_unit: int
    shared_reserved_per_block: int  # the CUDA runtime's own share of each block's shared memory


SM90 = SmLimits("90", 65536, 256, 4, 64, 32, 233472, 128, 1024)


@dataclass(frozen=True)
class KernelResources:
    """ptxas's figures for one kernel instantiation (``problem`` is the pass, ``dtype`` float32/float64)."""

    problem: str
    dtype: str
    registers: int
    shared_bytes: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int


_ENTRY = re.compile(r"Compiling entry function '(?P<name>[^']+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")
_PROBLEM = re.compile(r"I(?P<t>[fd])NS\d+_\d+(?P<problem>[A-Za-z]+Problem)")


def parse_ptxas(report: str) -> list[KernelResources]:
    """One :class:`KernelResources` per entry function in a ``ptxas -v`` report, in report order."""
    kernels: list[KernelResources] = []
    name, frame = None, (0, 0, 0)
    for line in report.splitlines():
        if entry := _ENTRY.search(line):
            name, frame = entry.group("name"), (0, 0, 0)
        elif (found := _FRAME.search(line)) and name:
            frame = tuple(int(v) for v in found.groups())
        elif (used := _USED.search(line)) and name:
            kind = _PROBLEM.search(name)
            problem = kind.group("problem") if kind else name
            dtype = {"f": "float32", "d": "float64"}.get(kind.group("t"), "?") if kind else "?"
            kernels.append(
                KernelResources(problem, dtype, int(used.group(1)), int(used.group(2) or 0), frame[1], frame[2], frame[0])
            )
            name = None
    return kernels


def threads_per_block(source: Path = SOURCE) -> int:
    """``kThreads``, the block size every launch uses and ``__launch_bounds__`` promises."""
    found = re.search(r"constexpr int kThreads = (\d+);", source.read_text())
    if found is None:
        raise BuildError(f"no `constexpr int kThreads = N;` in {source.name}")
    return int(found.group(1))


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def occupancy(kernel: KernelResources, threads: int, limits: SmLimits = SM90) -> tuple[int, float, str]:
    """(resident blocks per SM, occupancy as resident warps / max warps, the limiting resource)."""
    warps = -(-threads // 32)
    per_warp_registers = _round_up(kernel.registers * 32, limits.register_unit)
    warps_by_registers = (limits.registers // per_warp_registers) // limits.warp_granularity * limits.warp_granularity
    per_block_shared = _round_up(kernel.shared_bytes + limits.shared_reserved_per_block, limits.shared_unit)
    candidates = {
        "registers": warps_by_registers // warps,
        "shared memory": limits.shared_bytes // per_block_shared,
        "warps": limits.max_warps // warps,
        "blocks": limits.max_blocks,
    }
    limiter = min(candidates, key=candidates.get)
    blocks = candidates[limiter]
    return blocks, blocks * warps / limits.max_warps, limiter


def kernel_resources(arch: str = "90", nvcc: str | None = None) -> list[KernelResources]:
    """Compile the kernels for ``sm_<arch>`` with ``ptxas -v`` and parse the report. Raises :class:`BuildError`."""
    nvcc = nvcc or _find_nvcc()
    if nvcc is None:
        raise BuildError("nvcc not found: `make cuda` installs NVIDIA's pinned nvcc wheels")
    with tempfile.TemporaryDirectory() as scratch:
        argv = [nvcc, "-c", "-std=c++17", "-O3", f"-gencode=arch=compute_{arch},code=sm_{arch}",
                "-Xptxas", "-v", "-I", str(KERNELS), str(SOURCE), "-o", str(Path(scratch) / "kernels.o")]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()]
        raise BuildError(f"nvcc failed on {SOURCE.name}:\n    " + "\n    ".join(errors[:12]))
    kernels = parse_ptxas(done.stdout + done.stderr)
    if not kernels:
        raise BuildError(f"ptxas reported no kernels for {SOURCE.name}; is `-Xptxas -v` honoured by {nvcc}?")
    return kernels

"""One compile cache for every build of the kernels: the op, the standalone CUDA library, CUDA on the CPU.

A build's output is named by a key over *every* input: each source and header under
``kernels/``, any extra source (the CUDA-on-CPU headers of ``kernel_rigs/``), and the parts
of the command line that change the binary. Editing any header therefore rebuilds every
library that may include it; a stale library is never reused.

Outputs are written under a file lock to a temporary name and renamed into place, so
parallel test workers and graders build once and never load a half-written file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["KERNELS", "cached", "kernel_files", "key"]

KERNELS = Path(__file__).resolve().parent / "kernels"
_SOURCE_SUFFIXES = (".cc", ".cu", ".h")


def kernel_files() -> list[Path]:
    """Every source and header under ``kernels/``, sorted: what any kernel build may read."""
    return sorted(p for p in KERNELS.rglob("*") if p.is_file() and p.suffix in _SOURCE_SUFFIXES)


def key(*, parts: Iterable[str] = (), files: Iterable[Path] = ()) -> str:
    """16 hex digits over each file's path (relative to ``kernels/`` where it lies there) and bytes, and each part."""
    digest = hashlib.sha256()
    for path in files:
        path = Path(path)
        name = path.relative_to(KERNELS) if path.is_relative_to(KERNELS) else path.name
        digest.update(str(name).encode() + b"\0" + path.read_bytes() + b"\0")
    for part in parts:
        digest.update(str(part).encode() + b"\0")
    return digest.hexdigest()[:16]


def cached(target: Path, make: Callable[[Path], None], *, timeout: float = 900) -> Path:
    """``target`` if it exists, else ``make(staged)`` under a lock, then renamed to ``target``.

    ``make`` writes the output to the path it is given (in ``target``'s folder) or raises;
    on failure nothing is left behind.
    """
    from filelock import FileLock  # noqa: PLC0415

    target = Path(target)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=timeout):
        if target.is_file():  # another process built it while we waited
            return target
        staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            make(staged)
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)
    return target

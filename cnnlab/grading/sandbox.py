"""Where a submission's kernel runs: a bubblewrap sandbox when available.

With ``bwrap`` (Debian package ``bubblewrap``) each kernel runs with

* no network (``--unshare-net``; the kernel talks to the grader over Unix
  sockets in its scratch directory, Jupyter's ``ipc`` transport);
* the whole file system read-only, except its own scratch directory (its
  ``TMPDIR``);
* the assignment sources, the grades output, every submission file and the
  other submissions' scratch directories hidden (empty mounts over them);
* its own PID namespace, killed with the grader (``--die-with-parent``).

Without bwrap the kernel runs as a plain process in its scratch directory;
the grader says so in one warning line, since the sources are then readable.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Sandbox", "bwrap_available", "write_kernelspec"]

KERNEL_NAME = "cnnlab-grading"
MISSING_WARNING = (
    "warning: bubblewrap (bwrap) is not installed: kernels run unsandboxed, so a submission can read the "
    "sources and use the network (Debian/Ubuntu: apt-get install bubblewrap)"
)


DISABLED_WARNING = (
    "warning: sandbox disabled (--sandbox no): kernels run unsandboxed, so a submission can read the sources "
    "and use the network"
)


def bwrap_available() -> bool:
    """True when bwrap exists and can create the namespaces we use on this machine."""
    path = shutil.which("bwrap")
    if not path:
        return False
    import subprocess  # noqa: PLC0415

    probe = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net", "--unshare-pid",
             "--die-with-parent", "true"]  # fmt: skip
    try:
        return subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class Sandbox:
    """What to hide from every kernel of one grading run."""

    hidden_dirs: list[Path] = field(default_factory=list)
    hidden_files: list[Path] = field(default_factory=list)
    enabled: bool = True

    def wrap(self, argv: list[str], scratch: Path, scratch_root: Path) -> list[str]:
        if not self.enabled:
            return argv
        # No private /tmp: the project itself (its venv) may live under /tmp. The whole tree
        # is read-only anyway, and the kernel's TMPDIR is its scratch directory.
        args = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session"]  # fmt: skip
        for directory in self.hidden_dirs:
            if directory.exists():
                args += ["--tmpfs", str(directory.resolve())]
        for file in self.hidden_files:
            if file.exists():
                args += ["--ro-bind", "/dev/null", str(file.resolve())]
        args += [
            "--tmpfs",
            str(scratch_root.resolve()),
            "--bind",
            str(scratch.resolve()),
            str(scratch.resolve()),
        ]
        args += ["--chdir", str(scratch.resolve()), "--"]
        return args + argv


def kernel_environment(scratch: Path, seed: int) -> dict[str, str]:
    """A minimal environment: nothing of the grader's own (tokens, credentials) leaks in."""
    keep = (
        "PATH",
        "LANG",
        "LC_ALL",
        "HOME",
        "KERAS_HOME",
        "XDG_CACHE_HOME",
        "CNNLAB_OPS_CACHE",
        "VIRTUAL_ENV",
    )
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update({
        "CNNLAB_GRADING_SEED": str(seed),
        "CNNLAB_OFFLINE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERAS_BACKEND": "tensorflow",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(scratch),
        "JUPYTER_RUNTIME_DIR": str(scratch / ".runtime"),
        "IPYTHONDIR": str(scratch / ".ipython"),
        "MPLCONFIGDIR": str(scratch / ".matplotlib"),
        "OMP_NUM_THREADS": "1",
    })  # fmt: skip
    return env


def write_kernelspec(scratch: Path, scratch_root: Path, sandbox: Sandbox, seed: int) -> Path:
    """A kernelspec directory for this submission's kernel; returns the directory holding it."""
    kernels = scratch / ".kernels"
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if sandbox.enabled:
        # Inside its PID namespace the kernel's parent is bwrap's init (pid 1), which
        # ipykernel's parent poller takes for "the grader has exited"; bwrap's
        # --die-with-parent does that job instead.
        kernel.append("--IPKernelApp.parent_handle=1")
    argv = sandbox.wrap(kernel, scratch, scratch_root)
    spec = {
        "argv": argv,
        "display_name": "cnnlab grading kernel",
        "language": "python",
        # ipykernel handles an interrupt request by signalling itself; a signal sent
        # to bwrap would not reach the kernel inside its PID namespace.
        "interrupt_mode": "message",
        "env": kernel_environment(scratch, seed),
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return kernels

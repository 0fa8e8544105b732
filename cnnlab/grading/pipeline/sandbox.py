"""Where a submission's kernel runs: a deny-by-default bubblewrap sandbox.

The sandbox starts from an empty root and binds, read-only, exactly what a
kernel needs (:func:`allowed_paths`):

* the system: ``/usr`` (and the ``/bin``, ``/lib*`` links to it), a short
  list of files from ``/etc`` (the dynamic linker's cache, users, time zone);
* the Python interpreter and the environment's packages (``sys.base_prefix``,
  ``sys.prefix``), and the installed ``cnnlab`` package directory alone
  (never the project around it: that holds ``solutions/`` and ``.git``);
* the caches assignments read: the compiled op, the trained models, Keras's
  data sets.

It adds a fresh ``/dev`` and ``/proc``, a ``/tmp`` that is a tmpfs of
``Limits.scratch_mb`` (the kernel's working directory, ``HOME`` and
``TMPDIR``) and, writable, the directory of Unix sockets through which the
grader talks to the kernel. Nothing else exists inside: no home directory,
no ``/root``, ``/home``, ``/srv``, ``/mnt``, ``/work``, no course folder, no
other submission, no ``.git``.

It unshares the network (no interfaces but loopback), PID namespace (the
kernel sees and can signal only its own processes; when the grader kills the
sandbox everything in it dies), IPC and host name. Inside, before Python
starts, :mod:`cnnlab.grading.pipeline.jail` sets resource limits (processes, file
size, no core files) and, when the grader runs as root, switches to an
unprivileged uid of its own for each kernel slot, with no capabilities and
``no_new_privs``. Those uids are claimed (:func:`kernel_uids`) so that no two
graders on one machine share one: ``RLIMIT_NPROC`` counts per uid, and a fork
bomb in one grader's kernel would otherwise stop the other's kernels starting. Run as an ordinary user, bubblewrap already maps the kernel
to an unprivileged uid in a user namespace.

Without a sandbox that works (:func:`probe`), ``cnnlab grade`` refuses to
grade unless told ``--sandbox none``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cnnlab import paths
from cnnlab.grading.pipeline.execute import Limits

__all__ = ["KERNEL_NAME", "Sandbox", "SandboxUnavailable", "allowed_paths", "kernel_environment", "kernel_uids",
           "probe", "write_kernelspec"]  # fmt: skip

KERNEL_NAME = "cnnlab-grading"
# Kernels run as uids from here when the grader is root: a range systemd leaves unused (UIDS-GIDS.md:
# 60578-61183; its DynamicUser= range starts at 61184). CNNLAB_KERNEL_UIDS=START-END chooses another.
KERNEL_UIDS = range(60578, 61184)
UIDS_ENV = "CNNLAB_KERNEL_UIDS"
UID_LOCKS = Path("/run/cnnlab-grading")  # one lock file per uid in use; only root writes /run
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf install bubblewrap`), "
    "or grade without isolation with `--sandbox none` (the grade sheet will say so)"
)
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group", "localtime",
             "hosts", "host.conf", "alternatives", "mime.types")  # fmt: skip
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class SandboxUnavailable(RuntimeError):
    """No working sandbox on this machine; the message says why and how to get one."""


def _cache_dirs() -> list[Path]:
    """The caches assignments read: the compiled op, the trained networks, Keras's data sets."""
    return [paths.ops_cache(), paths.models_cache(), paths.keras_home() / "datasets"]


def _package_dir() -> Path:
    import cnnlab  # noqa: PLC0415

    return Path(cnnlab.__file__).resolve().parent


def allowed_paths() -> list[Path]:
    """Every path bound read-only into the sandbox (those that exist here), deduplicated, outermost first."""
    candidates = [Path(p) for p in SYSTEM_DIRS]
    candidates += [Path("/etc") / name for name in ETC_FILES]
    candidates += [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).parent]
    candidates += [_package_dir(), *_cache_dirs()]
    kept: list[Path] = []
    for path in candidates:
        if not os.path.lexists(path):
            continue
        absolute = Path(os.path.abspath(path))
        if absolute not in kept and not any(absolute.is_relative_to(k) for k in kept if not k.is_symlink()):
            kept.append(absolute)
    return kept


def _subordinate_ranges() -> list[range]:
    """The uid ranges /etc/subuid hands to users' containers (rootless Podman, Docker)."""
    found = []
    try:
        lines = Path("/etc/subuid").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            found.append(range(int(parts[1]), int(parts[1]) + int(parts[2])))
    return found


def kernel_uid_range(text: str | None = None) -> range:
    """The kernel uids: ``text`` (``START-END``, inclusive), else ``$CNNLAB_KERNEL_UIDS``, else :data:`KERNEL_UIDS`.

    Raises :class:`SandboxUnavailable` for a malformed range or one that holds a uid this machine
    already uses (an account in the user database, or a range in /etc/subuid): a kernel must
    never run as, or be able to signal, anything else on the machine.
    """
    text = text if text is not None else os.environ.get(UIDS_ENV)
    if text:
        start, sep, end = text.partition("-")
        if not (sep and start.strip().isdigit() and end.strip().isdigit() and 1000 <= int(start) <= int(end)):
            raise SandboxUnavailable(f"{UIDS_ENV} / --kernel-uids: {text!r} is not a range START-END of uids "
                                     "from 1000 up, e.g. 60578-61183")  # fmt: skip
        uids = range(int(start), int(end) + 1)
    else:
        uids = KERNEL_UIDS
    import pwd  # noqa: PLC0415 -- POSIX only

    taken = [u for u in uids if _uid_exists(pwd, u)]
    for other in _subordinate_ranges():
        if other.start < uids.stop and uids.start < other.stop:
            taken.append(max(other.start, uids.start))
    if taken:
        raise SandboxUnavailable(f"the kernel uids {uids.start}-{uids.stop - 1} include uid {min(taken)}, which this "
                                 f"machine already uses; choose a free range with {UIDS_ENV}=START-END or --kernel-uids")  # fmt: skip
    return uids


def _uid_exists(pwd, uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


@contextlib.contextmanager
def kernel_uids(count: int, locks: Path = UID_LOCKS, uids: range | None = None):
    """Yield ``count`` uids from :func:`kernel_uid_range` that no other process holds, held until the block ends.

    Each is an exclusive ``flock`` on ``locks/<uid>``, which the system releases when its
    holder dies, so a grader that crashed holds nothing. Not root: yields ``count`` times
    ``None`` (bubblewrap maps the kernel to an unprivileged uid itself).
    Raises :class:`SandboxUnavailable` when fewer than ``count`` are free.
    """
    if os.geteuid() != 0:
        yield [None] * count
        return
    uids = uids if uids is not None else kernel_uid_range()
    locks.mkdir(mode=0o700, parents=True, exist_ok=True)
    held: list[tuple[int, int]] = []  # (uid, open lock file)
    try:
        for uid in uids:
            if len(held) == count:
                break
            handle = os.open(locks / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                continue
            held.append((uid, handle))
        if len(held) < count:
            raise SandboxUnavailable(f"only {len(held)} of the kernel uids {uids.start}-{uids.stop - 1} "
                                     f"are free ({count} needed): other graders hold the rest; grade with fewer "
                                     "--workers or wait")  # fmt: skip
        yield [uid for uid, _ in held]
    finally:
        for _, handle in held:
            os.close(handle)


@dataclass(frozen=True)
class Sandbox:
    """How to wrap a kernel's command line. ``enabled=False`` runs it as a plain process."""

    enabled: bool = True
    limits: Limits = Limits()

    def wrap(self, argv: list[str], ipc_dir: Path, uid: int | None, env: dict[str, str],
             readonly: tuple[Path, ...] = ()) -> list[str]:  # fmt: skip
        """``argv`` run inside the sandbox with exactly the environment ``env``.

        ``ipc_dir`` is writable inside; ``uid`` (from :func:`kernel_uids`) is
        the kernel's when the grader is root, and must then be given; ``readonly`` folders are
        bound read-only at their own paths (the artefact a measurement reads). The
        command starts with ``env -i``: Jupyter launches a kernel with the
        grader's whole environment (tokens, credentials) plus the kernelspec's,
        and no process of the sandbox may ever hold it, not even bwrap's.
        """
        clean = [shutil.which("env") or "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items())]
        # Run by path, not with -m: importing the cnnlab.grading package would cost a second per kernel.
        jail = [sys.executable, str(Path(__file__).with_name("jail.py")), "--nproc", str(self.limits.threads),
                "--fsize-mb", str(self.limits.file_mb)]  # fmt: skip
        if not self.enabled:
            return [*clean, *jail, "--", *argv]
        if os.geteuid() == 0:
            if uid is None:
                raise ValueError("uid: a kernel started by root needs a uid of its own, claimed with kernel_uids()")
            jail += ["--uid", str(uid), "--chown", str(ipc_dir)]
        bwrap = shutil.which("bwrap") or "bwrap"
        args = [*clean, bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--hostname", "sandbox", "--die-with-parent", "--new-session",
                "--perms", "1777", "--size", str(self.limits.scratch_mb * 2**20), "--tmpfs", "/tmp",
                "--dev", "/dev", "--proc", "/proc"]  # fmt: skip
        binds = allowed_paths() + [Path(os.path.abspath(p)) for p in readonly]
        ipc = Path(os.path.abspath(ipc_dir))
        # bwrap makes missing parents of a mount point 0700 when run as root: the kernel's
        # uid could not walk through them, so they are made 0755 first.
        parents = sorted({p for path in [*binds, ipc] for p in path.parents if p not in (Path("/"), Path("/tmp"))},
                         key=lambda p: len(p.parts))  # fmt: skip
        for parent in parents:
            args += ["--perms", "0755", "--dir", str(parent)]
        for path in binds:
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            else:
                args += ["--ro-bind", str(path), str(path)]
        args += ["--bind", str(ipc), str(ipc), "--chdir", "/tmp", "--"]
        return [*args, *jail, "--", *argv]


def kernel_environment(seed: int, sandboxed: bool, scratch: Path) -> dict[str, str]:
    """The kernel's whole environment: nothing of the grader's own (tokens, credentials) gets in."""
    home = "/tmp" if sandboxed else str(scratch)
    return {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        "HOME": home,
        "TMPDIR": home,
        paths.OPS_ENV: str(paths.ops_cache()),
        paths.MODELS_ENV: str(paths.models_cache()),
        "KERAS_HOME": str(paths.keras_home()),
        "CNNLAB_GRADING_SEED": str(seed),
        "CNNLAB_OFFLINE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "KERAS_BACKEND": "tensorflow",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "JUPYTER_RUNTIME_DIR": f"{home}/.runtime",
        "IPYTHONDIR": f"{home}/.ipython",
        "MPLCONFIGDIR": f"{home}/.matplotlib",
        "OMP_NUM_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "2",
        "TF_NUM_INTEROP_THREADS": "2",
    }


def write_kernelspec(kernels: Path, ipc_dir: Path, sandbox: Sandbox, seed: int, uid: int | None,
                     scratch: Path, cgroup=None) -> Path:  # fmt: skip
    """Write ``kernels/<KERNEL_NAME>/kernel.json`` for one kernel; return ``kernels``.

    ``cgroup`` (a :class:`cnnlab.grading.pipeline.cgroups.KernelCgroup`): the kernel starts inside it.
    """
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if sandbox.enabled:
        # Inside its PID namespace the kernel's parent is bwrap's init (pid 1), which
        # ipykernel's parent poller takes for "the grader has exited"; bwrap's
        # --die-with-parent does that job instead.
        kernel.append("--IPKernelApp.parent_handle=1")
    argv = sandbox.wrap(kernel, ipc_dir, uid, kernel_environment(seed, sandbox.enabled, scratch))
    spec = {
        "argv": cgroup.wrap(argv) if cgroup is not None else argv,
        "display_name": "cnnlab grading kernel",
        "language": "python",
        # ipykernel handles an interrupt request by signalling itself; a signal sent
        # to bwrap would not reach the kernel inside its PID namespace.
        "interrupt_mode": "message",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return kernels


@cache
def probe() -> None:
    """Check once that a sandboxed Python starts, imports cnnlab and can write only its scratch.

    Raises :class:`SandboxUnavailable` with the reason and :data:`INSTALL_HINT`.
    """
    if not shutil.which("bwrap"):
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed: {INSTALL_HINT}")
    import tempfile  # noqa: PLC0415

    check = ("import os, cnnlab, numpy; open('/tmp/ok', 'w').write('1'); "
             "assert not os.path.exists('/etc/shadow') and not os.access(cnnlab.__file__, os.W_OK); "
             "print('sandbox-ok')")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="cnnlab-probe-") as tmp, kernel_uids(1) as (uid,):
        ipc = Path(tmp)
        argv = Sandbox().wrap([sys.executable, "-c", check], ipc, uid, kernel_environment(0, True, ipc))
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SandboxUnavailable(f"bubblewrap does not run here ({error}): {INSTALL_HINT}") from None
    if done.returncode != 0 or "sandbox-ok" not in done.stdout:
        detail = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
        raise SandboxUnavailable(f"bubblewrap is installed but cannot build the sandbox here ({detail}); "
                                 "it needs permission to create namespaces (in a container: run it with "
                                 f"--privileged or allow user namespaces); or {INSTALL_HINT.split(', or ')[1]}")  # fmt: skip

"""Limits the Linux kernel enforces on a grading kernel: one cgroup per kernel, for memory and processes.

The ``/proc`` watchdog (:mod:`cnnlab.grading.pipeline.execute`) sees only memory that
some process maps. Memory held in a ``memfd`` or a tmpfs file that no process
maps is invisible to it, and a watchdog only reacts after the fact. A memory
cgroup counts every page the kernel's processes charge, shared memory (shmem,
memfd, tmpfs) included, and the Linux kernel itself refuses or OOM-kills past
the limit; a pids cgroup caps its tasks (processes and threads), so a fork
bomb cannot outgrow the grader's ability to kill it. Killing walks the cgroup,
which no process inside can leave (its files belong to root), and sends each
signal through a pidfd: a recycled pid is never hit.

Used when the grader is root and the memory and pids controllers are there:
cgroup v1 (each controller mounted on its own, as on this project's CI
machines) or v2 with both controllers delegated. Otherwise :func:`available`
says why not, and the watchdog is what holds the limits; ``grades.json`` and
``cnnlab doctor`` say which is in force.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["KernelCgroup", "available", "enforcer"]

ROOT = Path("/sys/fs/cgroup")
GROUP_PREFIX = "cnnlab-"
ENTER = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 97; shift; n=$((n-1)); done; exec "$@"')


def _own_paths() -> dict[str, str]:
    """``{controller: path}`` of this process's cgroups (``""`` for the v2 hierarchy), from /proc/self/cgroup."""
    found = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _v1_dirs() -> dict[str, Path] | None:
    """The memory and pids v1 folders this process's children would be made under, or None."""
    own = _own_paths()
    dirs = {}
    for controller in ("memory", "pids"):
        base = ROOT / controller
        if controller not in own or not (base / "cgroup.procs").exists():
            return None
        dirs[controller] = base / own[controller].lstrip("/")
    return dirs


def _v2_dir() -> Path | None:
    own = _own_paths()
    if "" not in own or not (ROOT / "cgroup.controllers").exists():
        return None
    base = ROOT / own[""].lstrip("/")
    try:
        controllers = (base / "cgroup.subtree_control").read_text().split()
    except OSError:
        return None
    return base if {"memory", "pids"} <= set(controllers) else None


def available() -> tuple[bool, str]:
    """``(True, "cgroup v1")``/``(True, "cgroup v2")``, or ``(False, why not)``."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False, "the grader is not root, so it cannot make cgroups"
    try:
        probe = KernelCgroup.create(64, 16)
    except OSError as error:
        return False, f"no cgroup could be made ({error.strerror or error})"
    if probe is None:
        return False, "no memory and pids cgroup controllers this process may use (v1 mounts, or v2 delegation)"
    kind = probe.kind
    probe.remove()
    return True, f"cgroup {kind}"


def enforcer() -> str:
    """What holds a grading kernel to its memory and process limits here: a sentence for people."""
    ok, why = available()
    if ok:
        return f"the Linux kernel ({why}: memory with shared memory counted, and tasks), the /proc watchdog as well"
    return f"the /proc watchdog only ({why}); memory no process maps (a memfd) is not counted"


@dataclass
class KernelCgroup:
    """One kernel's cgroup(s): ``dirs`` maps each controller to its folder (``{"": dir}`` under v2)."""

    kind: str
    dirs: dict[str, Path]

    @classmethod
    def create(cls, memory_mb: int, tasks: int) -> KernelCgroup | None:
        """A new cgroup limited to ``memory_mb`` MiB (shared memory included) and ``tasks`` tasks, or None
        where none can be made (not root, no controllers). Raises ``OSError`` if making it fails midway."""
        if os.geteuid() != 0:
            return None
        name = f"{GROUP_PREFIX}{uuid.uuid4().hex[:12]}"
        if (v1 := _v1_dirs()) is not None:
            group = cls("v1", {c: base / name for c, base in v1.items()})
        elif (v2 := _v2_dir()) is not None:
            group = cls("v2", {"": v2 / name})
        else:
            return None
        try:
            for folder in group.dirs.values():
                folder.mkdir()
            group._limit(memory_mb * 2**20, tasks)
        except OSError:
            group.remove()
            raise
        return group

    def _limit(self, memory: int, tasks: int) -> None:
        if self.kind == "v1":
            memory_dir = self.dirs["memory"]
            (memory_dir / "memory.limit_in_bytes").write_text(str(memory))
            with contextlib.suppress(OSError):  # swap accounting may be off: then there is no swap to count
                (memory_dir / "memory.memsw.limit_in_bytes").write_text(str(memory))
            (self.dirs["pids"] / "pids.max").write_text(str(tasks))
        else:
            folder = self.dirs[""]
            (folder / "memory.max").write_text(str(memory))
            with contextlib.suppress(OSError):
                (folder / "memory.swap.max").write_text("0")
            (folder / "pids.max").write_text(str(tasks))

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` started inside this cgroup: a shell writes its own pid into every ``cgroup.procs``,
        then becomes ``argv``, so nothing it starts is ever outside the cgroup."""
        procs = [str(folder / "cgroup.procs") for folder in self.dirs.values()]
        return ["/bin/sh", "-c", ENTER, "cnnlab-cgroup", str(len(procs)), *procs, *argv]

    def _read(self, controller: str, name: str) -> str:
        folder = self.dirs.get(controller) or self.dirs.get("")
        try:
            return (folder / name).read_text()
        except (OSError, TypeError):
            return ""

    def oom_killed(self) -> bool:
        """Whether the Linux kernel killed a process of this cgroup for passing the memory limit."""
        text = self._read("memory", "memory.oom_control" if self.kind == "v1" else "memory.events")
        counts = dict(line.split()[:2] for line in text.splitlines() if len(line.split()) >= 2)
        return int(counts.get("oom_kill", "0") or 0) > 0

    def refused_tasks(self) -> bool:
        """Whether the Linux kernel refused this cgroup a new process or thread (``pids.max`` reached)."""
        counts = dict(line.split()[:2] for line in self._read("pids", "pids.events").splitlines() if len(line.split()) >= 2)
        return int(counts.get("max", "0") or 0) > 0

    def hit_limit(self) -> bool:
        """Whether the cgroup's memory ever reached its limit (a request failed or had to be reclaimed for)."""
        if self.kind == "v1":
            return int(self._read("memory", "memory.failcnt").strip() or 0) > 0
        counts = dict(line.split()[:2] for line in self._read("memory", "memory.events").splitlines()
                      if len(line.split()) >= 2)  # fmt: skip
        return int(counts.get("max", "0") or 0) > 0

    def peak_mb(self) -> float:
        text = self._read("memory", "memory.max_usage_in_bytes" if self.kind == "v1" else "memory.peak")
        return int(text.strip() or 0) / 2**20

    def pids(self) -> list[int]:
        return [int(p) for p in self._read("pids", "cgroup.procs").split() if p.isdigit()]

    def kill(self) -> None:
        """SIGKILL every process in the cgroup, each through a pidfd, until it is empty (or 200 rounds)."""
        if self.kind == "v2" and (self.dirs[""] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.dirs[""] / "cgroup.kill").write_text("1")
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                kill_pid(pid, self)

    def holds(self, pid: int) -> bool:
        """Whether ``pid`` is (still) a member of this cgroup."""
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        names = {folder.name for folder in self.dirs.values()}
        return any(line.rsplit("/", 1)[-1] in names for line in text.splitlines())

    def remove(self) -> None:
        """Kill what is left and remove the folders (their charges go to the parent)."""
        self.kill()
        for folder in self.dirs.values():
            with contextlib.suppress(OSError):
                folder.rmdir()


def kill_pid(pid: int, group: KernelCgroup | None = None, expect_start: str | None = None) -> None:
    """SIGKILL ``pid`` through a pidfd, only if, once the pidfd holds it, it is still the process meant:
    a member of ``group``, or the process whose start time (``/proc/PID/stat`` field 22) is ``expect_start``."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if group is not None and not group.holds(pid):
            return
        if expect_start is not None and start_time(pid) != expect_start:
            return
        with contextlib.suppress(OSError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        os.close(fd)


def start_time(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (with the pid, what names one process), or None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None

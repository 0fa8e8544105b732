"""Step 3 of grading: run one notebook in a fresh kernel, under limits enforced from outside.

* per cell: nbclient's timeout; on expiry the kernel is interrupted and the
  cell gets a ``CellTimeout`` error, then the next cells run;
* per notebook, memory and processes: a watchdog thread polls the kernel's
  whole process tree every 0.1 s (processes counted, proportional memory summed)
  and kills it when it passes a ceiling or the notebook's deadline (a kernel
  that ignores interrupts ends there too);
* output: text beyond the cap is dropped, with one note in the feedback;
  grading records have their own, larger cap;
* files, processes per user and scratch size: set by the sandbox
  (:mod:`cnnlab.grading.sandbox`) as resource limits and a sized tmpfs.

What each cell's ``execute_reply`` said is kept (:class:`Reply`): that, not
the outputs a submission may suppress, is what decides whether a cell failed.
A kernel that never starts is the grader's failure (``status ==
"not-started"``), never the student's.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from cnnlab.grading.record import MIME

__all__ = ["Execution", "Limits", "Reply", "execute"]

SANDBOX_EXIT_SECONDS = 30


@dataclass(frozen=True)
class Limits:
    """Per-submission limits. Sizes in MiB or bytes as named."""

    cell_seconds: float = 60.0
    notebook_seconds: float = 300.0
    memory_mb: int = 4096
    output_bytes: int = 1_000_000
    record_bytes: int = 50_000_000
    processes: int = 64  # processes in the kernel's tree (the watchdog kills past it)
    threads: int = 512  # tasks (processes + threads) the kernel's user may have (RLIMIT_NPROC)
    file_mb: int = 256  # largest file the kernel may write (RLIMIT_FSIZE)
    scratch_mb: int = 512  # its writable scratch space (a tmpfs of this size)


@dataclass(frozen=True)
class Reply:
    """What the kernel replied to one cell: ``status`` is ok, error or aborted."""

    status: str
    ename: str = ""
    evalue: str = ""


@dataclass
class Execution:
    """What happened: ``status`` is ok, timeout, memory, processes, kernel-died or not-started."""

    status: str = "ok"
    replies: dict[int, Reply] = field(default_factory=dict)
    timed_out_cells: set[int] = field(default_factory=set)
    output_truncated: bool = False
    died_at_cell: int | None = None
    detail: str = ""
    peak_memory_mb: float = 0.0


def _tree(root: int, cap: int = 1 << 30) -> list[int]:
    """``root`` and its descendants (Linux /proc), stopping past ``cap`` of them (a fork bomb is big)."""
    found, stack, seen = [], [root], set()
    while stack and len(found) <= cap:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            children = []
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    children += [int(c) for c in handle.read().split()]
        except (OSError, ValueError):
            continue
        found.append(pid)
        stack.extend(children)
    return found


def _sandbox_init(pids: list[int]) -> int | None:
    """The host pid of the process that is pid 1 of a PID namespace of its own (bubblewrap's), if any."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                nspid = next((line.split()[1:] for line in status if line.startswith("NSpid:")), [])
        except OSError:
            continue
        if len(nspid) == 2 and nspid[1] == "1":
            return pid
    return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _wait_for_sandbox_exit(init: int, seconds: float) -> bool:
    """Kill the sandbox's PID namespace through its pid 1 and wait until all of it is gone.

    The kernel ends pid 1 of a namespace only once every other process in it has been
    reaped. Until then, a fork bomb's hundreds of dying processes still count against
    its uid's ``RLIMIT_NPROC``, and the next kernel started in the same slot (same uid)
    could not start its threads. Returns whether the namespace was gone in time.
    """
    deadline = time.monotonic() + seconds
    while _alive(init):
        try:
            os.kill(init, signal.SIGKILL)
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _memory_mb(pids: list[int]) -> float:
    """Proportional set size of ``pids`` in MiB: pages shared between them (a fork) count once."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) * 1024
        except (OSError, ValueError, IndexError, StopIteration):
            try:
                with open(f"/proc/{pid}/statm") as statm:
                    total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, ValueError, IndexError):
                continue
    return total / 2**20


class _Watchdog(threading.Thread):
    """Kills the kernel's process tree past a limit; ``reason`` says which, ``peak`` the memory seen."""

    def __init__(self, pid: int, limits: Limits, started: float):
        super().__init__(daemon=True, name=f"cnnlab-watchdog-{pid}")
        self.pid, self.limits, self.started = pid, limits, started
        self.reason: str | None = None
        self.peak = 0.0
        self.sandbox_init: int | None = None  # pid 1 of the sandbox's PID namespace, once seen
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.wait(0.1):
            pids = _tree(self.pid, cap=self.limits.processes + 3)
            if self.sandbox_init is None:
                self.sandbox_init = _sandbox_init(pids[:3])  # bwrap, then its pid 1: near the root
            if len(pids) > self.limits.processes + 3:  # + the sandbox's own processes
                self._kill("processes", pids)
                return
            memory = _memory_mb(pids)
            self.peak = max(self.peak, memory)
            if memory > self.limits.memory_mb:
                self._kill("memory", pids)
            elif time.monotonic() - self.started > self.limits.notebook_seconds:
                self._kill("timeout", pids)
            if self.reason:
                return

    def _kill(self, reason: str, pids: list[int]) -> None:
        self.reason = reason
        for kill, target in ((os.killpg, self.pid), *((os.kill, pid) for pid in pids)):
            try:
                kill(target, signal.SIGKILL)
            except OSError:
                pass

    def finish(self) -> None:
        """Stop watching and wait for the thread, so ``reason`` and ``peak`` are final."""
        self._finished.set()
        self.join()


class _GradingClient(NotebookClient):
    """nbclient with an output cap, the replies kept, and a hook that starts the watchdog."""

    def __init__(self, *args, limits: Limits, execution: Execution, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits, self.execution = limits, execution
        self.text_bytes = self.record_bytes = 0
        self.watchdog: _Watchdog | None = None
        self.current_cell = -1
        self.on_notebook_start = self._start_watchdog
        self.on_cell_start = self._cell_start
        self.on_cell_executed = self._cell_executed

    async def async_start_new_kernel(self, **kwargs) -> None:
        # The kernel's own stdout and stderr (banners, and whatever a submission writes to fd 1 or 2)
        # never reach the grader's terminal; what a cell prints still arrives as its outputs.
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        await super().async_start_new_kernel(**kwargs)

    def _start_watchdog(self, **_):
        pid = self.km.provisioner.pid if self.km and self.km.provisioner else None
        if pid:
            self.watchdog = _Watchdog(pid, self.limits, time.monotonic())
            self.watchdog.start()

    def _cell_start(self, cell, cell_index, **_):
        self.current_cell = cell_index

    def _cell_executed(self, cell, cell_index, execute_reply, **_):
        content = (execute_reply or {}).get("content", {})
        self.execution.replies[cell_index] = Reply(
            str(content.get("status", "error")), str(content.get("ename", "") or ""),
            str(content.get("evalue", "") or ""),
        )  # fmt: skip

    async def _async_handle_timeout(self, timeout, cell=None):
        self.execution.timed_out_cells.add(self.current_cell)
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        data = content.get("data", {}) if isinstance(content.get("data"), dict) else {}
        size = len(repr(content))
        if MIME in data:
            self.record_bytes += size
            over = self.record_bytes > self.limits.record_bytes
        else:
            self.text_bytes += size
            over = self.text_bytes > self.limits.output_bytes
        if over:
            self.execution.output_truncated = True
            return None
        return super().output(outs, msg, display_id, cell_index)


def _shut_down(km) -> None:
    """Kill the kernel and its process group: nbclient leaves running a kernel manager it was handed."""
    from jupyter_core.utils import run_sync  # noqa: PLC0415

    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # noqa: BLE001 -- a kernel that is already gone
        pass


def execute(nb, kernel_dirs: Path, kernel_name: str, cwd: Path, ipc_dir: Path, limits: Limits) -> Execution:
    """Execute ``nb`` in place in a new kernel ``kernel_name`` found in ``kernel_dirs``.

    The kernel starts in ``cwd`` and talks to this process over Unix sockets in ``ipc_dir``.
    """
    from jupyter_client import AsyncKernelManager  # noqa: PLC0415
    from jupyter_client.kernelspec import KernelSpecManager  # noqa: PLC0415

    execution = Execution()
    # The asynchronous manager matters: with a blocking client, nbclient's wait for
    # output from a kernel that has died blocks its event loop for ever.
    km = AsyncKernelManager(
        kernel_name=kernel_name,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dirs)], ensure_native_kernel=False),
        transport="ipc",
        ip=str(ipc_dir / "k"),
        connection_file=str(ipc_dir / "connection.json"),
    )
    client = _GradingClient(
        nb, km=km, limits=limits, execution=execution, timeout=int(max(1, limits.cell_seconds)),
        startup_timeout=120, allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": "CellTimeout", "evalue": f"the cell ran longer than {limits.cell_seconds:g} s",
                          "traceback": []},
        record_timing=False, shutdown_kernel="immediate", resources={"metadata": {"path": str(cwd)}},
    )  # fmt: skip
    try:
        client.execute()
    except DeadKernelError as error:
        execution.status, execution.died_at_cell, execution.detail = "kernel-died", client.current_cell, str(error)
    except Exception as error:  # noqa: BLE001 -- e.g. the kernel never started
        execution.status, execution.died_at_cell = "kernel-died", client.current_cell
        execution.detail = f"{type(error).__name__}: {error}"
    finally:
        # nbclient's own exit hook fails on a kernel that never started.
        atexit.unregister(client._cleanup_kernel)
        _shut_down(km)
        if client.watchdog:
            client.watchdog.finish()
            execution.peak_memory_mb = client.watchdog.peak
            if client.watchdog.reason:
                execution.status, execution.died_at_cell = client.watchdog.reason, client.current_cell
            init = client.watchdog.sandbox_init
            if init is not None and not _wait_for_sandbox_exit(init, SANDBOX_EXIT_SECONDS):
                execution.detail += f" (the sandbox's processes were still exiting after {SANDBOX_EXIT_SECONDS} s)"
    if execution.status == "kernel-died" and not execution.replies and client.current_cell < 0:
        execution.status = "not-started"  # no cell ever ran: nothing the submission did
    if execution.status == "ok" and execution.timed_out_cells:
        execution.status = "timeout"
    return execution

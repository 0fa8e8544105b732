"""Run one notebook in a fresh kernel with a time limit per cell and per notebook,
a memory ceiling and an output cap. The grader's side of the kernel connection.

The limits are enforced from outside the kernel, by this process:

* per cell: nbclient's timeout; on expiry the kernel is interrupted and the
  cell gets a ``CellTimeout`` error, then the next cells run;
* per notebook and memory: a watchdog thread sums the resident memory of the
  kernel's whole process tree every 0.1 s and kills the process group when it
  passes the ceiling or when the notebook's deadline passes (a kernel that
  ignores interrupts ends there too);
* output: text beyond the cap is dropped, with one note in the feedback;
  grading records have their own, larger cap.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from cnnlab.grading.record import MIME

__all__ = ["Execution", "Limits", "execute"]


@dataclass(frozen=True)
class Limits:
    cell_seconds: float = 60.0
    notebook_seconds: float = 300.0
    memory_mb: int = 4096
    output_bytes: int = 1_000_000
    record_bytes: int = 50_000_000


@dataclass
class Execution:
    """What happened: ``status`` is ok, timeout, memory or kernel-died."""

    nb: object
    status: str = "ok"
    timed_out_cells: set[int] = field(default_factory=set)
    output_truncated: bool = False
    died_at_cell: int | None = None
    detail: str = ""
    peak_memory_mb: float = 0.0


def _tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, in MiB (Linux /proc)."""
    total, stack, seen = 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    stack.extend(int(c) for c in children.read().split())
        except (OSError, ValueError):
            continue
    return total / 2**20


class _Watchdog(threading.Thread):
    def __init__(self, pid: int, limits: Limits, started: float):
        super().__init__(daemon=True)
        self.pid, self.limits, self.started = pid, limits, started
        self.reason: str | None = None
        self.peak = 0.0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(0.1):
            rss = _tree_rss_mb(self.pid)
            self.peak = max(self.peak, rss)
            if rss > self.limits.memory_mb:
                self._kill("memory")
            elif time.monotonic() - self.started > self.limits.notebook_seconds:
                self._kill("timeout")
            if self.reason:
                return

    def _kill(self, reason: str) -> None:
        self.reason = reason
        try:
            os.killpg(self.pid, signal.SIGKILL)  # the kernel was started in its own session
        except OSError:
            pass

    def stop(self) -> None:
        self._stop.set()


class _GradingClient(NotebookClient):
    """nbclient with an output cap and a hook that starts the watchdog."""

    def __init__(self, *args, limits: Limits, execution: Execution, **kwargs):
        super().__init__(*args, **kwargs)
        self.limits, self.execution = limits, execution
        self.text_bytes = self.record_bytes = 0
        self.watchdog: _Watchdog | None = None
        self.current_cell = -1
        self.on_notebook_start = self._start_watchdog
        self.on_cell_start = self._cell_start

    def _start_watchdog(self, **_):
        pid = self.km.provisioner.pid if self.km and self.km.provisioner else None
        if pid:
            self.watchdog = _Watchdog(pid, self.limits, time.monotonic())
            self.watchdog.start()

    def _cell_start(self, cell, cell_index, **_):
        self.current_cell = cell_index

    async def _async_handle_timeout(self, timeout, cell=None):
        self.execution.timed_out_cells.add(self.current_cell)
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        data = content.get("data", {}) if isinstance(content.get("data"), dict) else {}
        size = len(repr(content))
        if MIME in data:
            self.record_bytes += size
            if self.record_bytes > self.limits.record_bytes:
                self.execution.output_truncated = True
                return None
        else:
            self.text_bytes += size
            if self.text_bytes > self.limits.output_bytes:
                self.execution.output_truncated = True
                return None
        return super().output(outs, msg, display_id, cell_index)


def execute(nb, kernel_dirs: Path, scratch: Path, limits: Limits, kernel_name: str) -> Execution:
    """Execute ``nb`` in place in a new kernel of ``kernel_name`` found in ``kernel_dirs``."""
    from jupyter_client import AsyncKernelManager  # noqa: PLC0415
    from jupyter_client.kernelspec import KernelSpecManager  # noqa: PLC0415

    execution = Execution(nb)
    ipc = scratch / ".ipc"
    ipc.mkdir(exist_ok=True)
    # The asynchronous manager matters: with a blocking client, nbclient's wait for
    # output from a kernel that has died blocks its event loop for ever.
    km = AsyncKernelManager(
        kernel_name=kernel_name,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dirs)], ensure_native_kernel=False),
        transport="ipc",
        ip=str(ipc / "k"),
        connection_file=str(ipc / "connection.json"),
    )
    client = _GradingClient(
        nb,
        km=km,
        limits=limits,
        execution=execution,
        timeout=int(max(1, limits.cell_seconds)),
        startup_timeout=120,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": "CellTimeout",
            "evalue": f"the cell ran longer than {limits.cell_seconds:g} s",
            "traceback": [],
        },  # fmt: skip
        record_timing=False,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(scratch)}},
    )
    try:
        client.execute()
    except DeadKernelError as error:
        execution.status, execution.died_at_cell, execution.detail = (
            "kernel-died",
            client.current_cell,
            str(error),
        )
    except Exception as error:  # noqa: BLE001 -- e.g. the kernel never started
        execution.status, execution.died_at_cell = "kernel-died", client.current_cell
        execution.detail = f"{type(error).__name__}: {error}"
    finally:
        atexit.unregister(
            client._cleanup_kernel
        )  # nbclient's own exit hook fails on a kernel that never started
        if client.watchdog:
            client.watchdog.stop()
            execution.peak_memory_mb = client.watchdog.peak
            if client.watchdog.reason:
                execution.status, execution.died_at_cell = client.watchdog.reason, client.current_cell
    if execution.status == "ok" and execution.timed_out_cells:
        execution.status = "timeout"
    return execution

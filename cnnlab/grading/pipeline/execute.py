"""Step 3 of grading: run one notebook in a fresh kernel, under limits enforced from outside.

* per cell: nbclient's timeout; on expiry the kernel is interrupted and the
  cell gets a ``CellTimeout`` error, then the next cells run;
* per notebook, memory and processes: a watchdog thread polls the kernel's
  whole process tree every 0.1 s (processes counted, proportional memory summed)
  and kills it when it passes a ceiling or the notebook's deadline (a kernel
  that ignores interrupts ends there too);
* memory and processes, where the grader is root: also a cgroup per kernel
  (:mod:`cnnlab.grading.pipeline.cgroups`), which the Linux kernel enforces and which
  counts shared memory (a memfd) that no process table shows;
* output: every message's size is checked before it is decoded (one huge
  message never becomes a string in this process), a message that cannot be
  decoded is dropped, and text beyond the cap is dropped, with one note in the
  feedback; grading records have their own, larger cap;
* files, processes per user and scratch size: set by the sandbox
  (:mod:`cnnlab.grading.pipeline.sandbox`) as resource limits and a sized tmpfs.

What each cell's ``execute_reply`` said is kept (:class:`Reply`): that, not
the outputs a submission may suppress, is what decides whether a cell failed.
A kernel that never starts (``status == "not-started"``) and an exception in
the grader while the notebook runs (``status == GRADER_ERROR``) are the
grader's failures, never the student's: only a dead kernel and a limit
enforced here become a student's status.
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

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.session import Session
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from traitlets import Integer, Type

from cnnlab.grading.pipeline.artefacts import fetch
from cnnlab.grading.pipeline.cgroups import KernelCgroup, kill_pid, start_time
from cnnlab.grading.record import MIME

__all__ = ["GRADER_ERROR", "Execution", "Limits", "Reply", "execute"]

SANDBOX_EXIT_SECONDS = 30
GRADER_ERROR = "grader-error"  # an exception in this process while the notebook ran: not the student's doing
ARTEFACT_BUDGET = 500 * 2**20  # bytes of artefacts copied out of one kernel
HEADER_BYTES = 65536  # a message's header, parent header or metadata frame larger than this is dropped
TOO_DEEP = 1 << 62  # the size counted for output nested deeper than anything the grader keeps
DROPPED = "cnnlab_dropped"  # metadata flag of a message replaced by a stub (too large, or undecodable)


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
    enforced_by: str = "watchdog"  # or "cgroup": what held memory and processes to their limits
    memory_limit_hit: bool = False  # the cgroup refused memory (a write into a memfd fails rather than being killed)


def _tree_with_starts(root: int, cap: int = 1 << 30) -> list[tuple[int, str | None]]:
    """``(pid, start time)`` of ``root`` and its descendants: the start time tells a recycled pid apart."""
    found, stack, seen = [], [root], set()
    while stack and len(found) <= cap:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        started = start_time(pid)
        try:
            children = []
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as handle:
                    children += [int(c) for c in handle.read().split()]
        except (OSError, ValueError):
            continue
        found.append((pid, started))
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
    """Kills the kernel's process tree past a limit; ``reason`` says which, ``peak`` the memory seen.

    With a cgroup, the Linux kernel enforces memory (shared memory counted) and tasks itself; the
    watchdog still counts processes and the notebook's time, and kills through the cgroup. Every
    signal goes through a pidfd to a process checked to be the one listed (no recycled pid is hit).
    """

    def __init__(self, pid: int, limits: Limits, started: float, cgroup: KernelCgroup | None = None):
        super().__init__(daemon=True, name=f"cnnlab-watchdog-{pid}")
        self.pid, self.limits, self.started, self.cgroup = pid, limits, started, cgroup
        self.reason: str | None = None
        self.peak = 0.0
        self.sandbox_init: int | None = None  # pid 1 of the sandbox's PID namespace, once seen
        self._finished = threading.Event()
        self._checking = threading.Lock()

    def run(self) -> None:
        while not self._finished.wait(0.1) and self.check() is None:
            pass

    def check(self) -> str | None:
        """One look at the kernel's tree: kill it if it is past a limit; return ``reason`` (None: within limits).

        The thread calls this ten times a second; the client calls it too when a cell times out, so a
        tree that starved this thread of CPU (a fork bomb on a busy machine) is still named for what it did.
        """
        with self._checking:
            if self.reason:
                return self.reason
            listed = _tree_with_starts(self.pid, cap=self.limits.processes + 3)
            pids = [pid for pid, _ in listed]
            if self.sandbox_init is None:
                self.sandbox_init = _sandbox_init(pids[:3])  # bwrap, then its pid 1: near the root
            if len(pids) > self.limits.processes + 3:  # + the sandbox's own processes
                self._kill("processes", listed)
                return self.reason
            memory = _memory_mb(pids)
            self.peak = max(self.peak, memory, self.cgroup.peak_mb() if self.cgroup else 0.0)
            if memory > self.limits.memory_mb or (self.cgroup is not None and self.cgroup.oom_killed()):
                self._kill("memory", listed)
            elif time.monotonic() - self.started > self.limits.notebook_seconds:
                self._kill("timeout", listed)
            return self.reason

    def _kill(self, reason: str, listed: list[tuple[int, str | None]]) -> None:
        self.reason = reason
        if self.cgroup is not None:
            self.cgroup.kill()
        for pid, started in listed:
            if started is not None:
                kill_pid(pid, expect_start=started)

    def finish(self) -> None:
        """Stop watching and wait for the thread, so ``reason`` and ``peak`` are final."""
        self._finished.set()
        self.join()


def _text_size(value, depth: int = 0) -> int:
    """Characters of text in a decoded message part, without copying it (``repr`` would)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if depth > 20:
        return TOO_DEEP
    if isinstance(value, dict):
        return sum(len(str(k)) + _text_size(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return sum(_text_size(v, depth + 1) for v in value)
    return 8


class CappedChannel(AsyncZMQSocketChannel):
    """A client channel that receives ZeroMQ frames without copying them, so that
    :class:`CappedSession` can drop an oversized message before its bytes ever become a Python object."""

    async def _recv(self, **kwargs):
        frames = await self.socket.recv_multipart(copy=False, **kwargs)
        _, message = self.session.feed_identities(frames, copy=False)
        return self.session.deserialize(message, copy=False)


class CappedClient(AsyncKernelClient):
    """The kernel client nbclient gets: every channel is a :class:`CappedChannel`."""

    shell_channel_class = Type(CappedChannel)
    iopub_channel_class = Type(CappedChannel)
    stdin_channel_class = Type(CappedChannel)
    control_channel_class = Type(CappedChannel)


class CappedSession(Session):
    """A Jupyter session that checks each message's size before decoding it, and never raises on one.

    A message whose content is over ``max_bytes``, or that cannot be decoded at all, becomes
    a stub flagged in its metadata: an empty ``stream`` (or an ``error`` reply), which
    :class:`_GradingClient` counts as dropped output.
    """

    max_bytes = Integer(50_000_000, help="largest message content decoded, in bytes").tag(config=False)

    def deserialize(self, msg_list, content=True, copy=True):
        sizes = [len(m) for m in msg_list]  # a ZeroMQ frame's length is read without copying it
        if sum(sizes[1:]) > self.max_bytes or any(n > HEADER_BYTES for n in sizes[1:4]):
            return self._stub(self._small(msg_list[1]), self._small(msg_list[2]))
        if not copy:
            msg_list = [m.bytes if hasattr(m, "bytes") else m for m in msg_list]
        try:
            message = super().deserialize(msg_list, content=False)
        except Exception:  # noqa: BLE001 -- anything a kernel sends must not raise here
            return self._stub({"msg_id": "", "msg_type": "stream"}, {})
        if not content:
            return message
        raw = message["content"]
        if len(raw) > self.max_bytes:
            return self._stub(message["header"], message["parent_header"])
        try:
            message["content"] = self.unpack(raw)
            if not isinstance(message["content"], dict):
                raise TypeError("content is not an object")
        except Exception:  # noqa: BLE001 -- too deep, not JSON, not an object
            return self._stub(message["header"], message["parent_header"])
        return message

    def _small(self, frame) -> dict:
        """A header frame decoded, or ``{}`` when it is not a small JSON object."""
        try:
            if len(frame) > HEADER_BYTES:
                return {}
            found = self.unpack(frame.bytes if hasattr(frame, "bytes") else frame)
            return found if isinstance(found, dict) else {}
        except Exception:  # noqa: BLE001
            return {}

    @staticmethod
    def _stub(header, parent) -> dict:
        header = dict(header) if isinstance(header, dict) else {}
        kind = str(header.get("msg_type", ""))
        if kind.endswith("_reply"):
            content = {"status": "error", "ename": "MessageDropped", "evalue": "", "traceback": []}
        else:
            kind, content = "stream", {"name": "stdout", "text": ""}
        header["msg_type"] = kind
        return {"header": header, "msg_id": str(header.get("msg_id", "")), "msg_type": kind,
                "parent_header": parent if isinstance(parent, dict) else {}, "metadata": {DROPPED: True},
                "content": content, "buffers": []}  # fmt: skip


class _GradingClient(NotebookClient):
    """nbclient with an output cap, the replies kept, and a hook that starts the watchdog."""

    def __init__(self, *args, limits: Limits, execution: Execution, cgroup: KernelCgroup | None = None,
                 lock_ipc: Path | None = None, artefacts: tuple[Path, Path | None] | None = None, **kwargs):  # fmt: skip
        super().__init__(*args, **kwargs)
        self.limits, self.execution, self.cgroup, self.lock_ipc = limits, execution, cgroup, lock_ipc
        self.artefacts = artefacts  # (where fetched artefacts go, the kernel's scratch when unsandboxed)
        self.artefact_budget = [ARTEFACT_BUDGET]
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
        if self.lock_ipc is not None:
            # The kernel has bound its sockets: from now on it may write nothing on the host.
            os.chown(self.lock_ipc, 0, 0)
            os.chmod(self.lock_ipc, 0o711)
        pid = self.km.provisioner.pid if self.km and self.km.provisioner else None
        if pid:
            self.watchdog = _Watchdog(pid, self.limits, time.monotonic(), self.cgroup)
            self.watchdog.start()

    def _cell_start(self, cell, cell_index, **_):
        self.current_cell = cell_index

    def _cell_executed(self, cell, cell_index, execute_reply, **_):
        content = (execute_reply or {}).get("content", {})
        self.execution.replies[cell_index] = Reply(
            str(content.get("status", "error")), str(content.get("ename", "") or ""),
            str(content.get("evalue", "") or ""),
        )  # fmt: skip
        if self.artefacts is not None:  # now, while the kernel (and its scratch) is alive
            dest, unsandboxed_scratch = self.artefacts
            init = self.watchdog.sandbox_init if self.watchdog else None
            if unsandboxed_scratch is not None:
                fetch(cell, str(unsandboxed_scratch), (), dest, self.artefact_budget)
            elif init is not None:
                fetch(cell, f"/proc/{init}/root", ("tmp",), dest, self.artefact_budget)

    async def _async_handle_timeout(self, timeout, cell=None):
        self.execution.timed_out_cells.add(self.current_cell)
        if self.watchdog is not None:
            self.watchdog.check()  # a cell that outran its time may have been busy breaking a limit
        return await super()._async_handle_timeout(timeout, cell)

    def _counted(self, msg) -> bool:
        """Count ``msg``'s size against its cap; False (and a note) when it is dropped."""
        content = msg.get("content", {})
        if not isinstance(content, dict) or msg.get("metadata", {}).get(DROPPED):
            self.execution.output_truncated = True
            return False
        data = content.get("data", {}) if isinstance(content.get("data"), dict) else {}
        size = _text_size(content)
        if MIME in data:
            self.record_bytes += size
            over = self.record_bytes > self.limits.record_bytes
        else:
            self.text_bytes += size
            over = self.text_bytes > self.limits.output_bytes
        if over:
            self.execution.output_truncated = True
        return not over

    def _update_display_id(self, display_id, msg):
        if self._counted(msg):  # an update is output too: counted against the same cap
            try:
                super()._update_display_id(display_id, msg)
            except Exception:  # noqa: BLE001 -- an update nbformat cannot hold is dropped
                self.execution.output_truncated = True

    def output(self, outs, msg, display_id, cell_index):
        if not self._counted(msg):
            return None
        try:
            return super().output(outs, msg, display_id, cell_index)
        except Exception:  # noqa: BLE001 -- an output nbformat cannot hold is dropped, not the grader's failure
            self.execution.output_truncated = True
            return None


def _shut_down(km) -> None:
    """Kill the kernel and its process group: nbclient leaves running a kernel manager it was handed."""
    from jupyter_core.utils import run_sync  # noqa: PLC0415

    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # noqa: BLE001 -- a kernel that is already gone
        pass


def execute(nb, kernel_dirs: Path, kernel_name: str, cwd: Path, ipc_dir: Path, limits: Limits, *,
            cgroup: KernelCgroup | None = None, lock_ipc: bool = False, artefacts: Path | None = None,
            sandboxed: bool = True) -> Execution:  # fmt: skip
    """Execute ``nb`` in place in a new kernel ``kernel_name`` found in ``kernel_dirs``.

    The kernel starts in ``cwd`` and talks to this process over Unix sockets in ``ipc_dir``;
    ``lock_ipc`` (root, kernel under a uid of its own): once the kernel is up, ``ipc_dir``
    becomes root's and read-only to it. ``cgroup``: the kernel's, made by the caller.
    ``artefacts``: where the files that records name are copied as each cell finishes
    (:func:`cnnlab.grading.pipeline.artefacts.fetch`); ``sandboxed``: whether the kernel's scratch is
    inside a sandbox (else it is ``cwd``).
    """
    from jupyter_client import AsyncKernelManager  # noqa: PLC0415
    from jupyter_client.kernelspec import KernelSpecManager  # noqa: PLC0415

    execution = Execution(enforced_by="cgroup" if cgroup is not None else "watchdog")
    session = CappedSession(max_bytes=max(limits.output_bytes, limits.record_bytes) + 1_000_000)
    # The asynchronous manager matters: with a blocking client, nbclient's wait for
    # output from a kernel that has died blocks its event loop for ever.
    km = AsyncKernelManager(
        kernel_name=kernel_name,
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dirs)], ensure_native_kernel=False),
        transport="ipc",
        ip=str(ipc_dir / "k"),
        connection_file=str(ipc_dir / "connection.json"),
        session=session,
        client_factory=CappedClient,
    )
    client = _GradingClient(
        nb, km=km, limits=limits, execution=execution, cgroup=cgroup, lock_ipc=ipc_dir if lock_ipc else None,
        artefacts=None if artefacts is None else (artefacts, None if sandboxed else cwd),
        timeout=int(max(1, limits.cell_seconds)),
        startup_timeout=120, allow_errors=True, interrupt_on_timeout=True,
        error_on_timeout={"ename": "CellTimeout", "evalue": f"the cell ran longer than {limits.cell_seconds:g} s",
                          "traceback": []},
        record_timing=False, shutdown_kernel="immediate", resources={"metadata": {"path": str(cwd)}},
    )  # fmt: skip
    try:
        client.execute()
    except DeadKernelError as error:
        execution.status, execution.died_at_cell, execution.detail = "kernel-died", client.current_cell, str(error)
    except Exception as error:  # noqa: BLE001 -- the kernel never started, or a failure in this process
        execution.status, execution.died_at_cell = GRADER_ERROR, client.current_cell
        execution.detail = f"{type(error).__name__}: {str(error)[:500]}"
    finally:
        # nbclient's own exit hook fails on a kernel that never started.
        atexit.unregister(client._cleanup_kernel)
        _shut_down(km)
        if client.watchdog:
            client.watchdog.finish()
            execution.peak_memory_mb = client.watchdog.peak
            if client.watchdog.reason:
                execution.status, execution.died_at_cell = client.watchdog.reason, client.current_cell
        if cgroup is not None and cgroup.oom_killed() and execution.status in ("ok", "kernel-died", GRADER_ERROR):
            execution.status, execution.died_at_cell = "memory", client.current_cell
        if cgroup is not None and cgroup.refused_tasks() and execution.status in ("kernel-died", "timeout"):
            execution.status, execution.died_at_cell = "processes", client.current_cell
        if cgroup is not None:
            execution.memory_limit_hit = cgroup.hit_limit()
            execution.peak_memory_mb = max(execution.peak_memory_mb, cgroup.peak_mb())
            init = client.watchdog.sandbox_init if client.watchdog else None
            if init is not None and not _wait_for_sandbox_exit(init, SANDBOX_EXIT_SECONDS):
                execution.detail += f" (the sandbox's processes were still exiting after {SANDBOX_EXIT_SECONDS} s)"
    if execution.status in ("kernel-died", GRADER_ERROR) and not execution.replies and client.current_cell < 0:
        execution.status = "not-started"  # no cell ever ran: nothing the submission did
    if execution.status == "ok" and execution.timed_out_cells:
        execution.status = "timeout"
    return execution

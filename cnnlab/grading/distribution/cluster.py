"""Grading a large class on a Dask cluster (``cnnlab grade ... --scheduler tcp://HOST:PORT``).

The grader's own machine finds and reads the submissions and runs each
assignment's source once, as a local run does; the reference values and the
source then travel to the workers once per assignment (scattered to all of
them), and each submission travels as the notebook the grader read. Each
worker grades in its own sandbox exactly as a local run does: it claims kernel
uids of its own (:func:`cnnlab.grading.pipeline.sandbox.kernel_uids`, one per worker
thread), probes bubblewrap once, and runs
:func:`cnnlab.grading.grade.run_and_score`. The rows come back to the grader,
which writes the same output folder, with the same progress bar.

A worker that dies mid-batch loses nothing: the scheduler gives its
submissions to another worker (up to ``distributed.scheduler.allowed-failures``
times, 3 by default); a submission that outlives that many workers, or meets a
failure of the grader itself, gets a ``not-gradable`` row with the reason,
which ``--only-not-gradable`` grades again later.

Every worker needs what a local grader needs: this ``cnnlab`` installed in the
same Python, bubblewrap, the op and model caches (``cnnlab build-ops``,
``cnnlab pretrain``), and root to give each kernel an unprivileged uid.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from cnnlab.grading.pipeline.execute import Limits
from cnnlab.grading.pipeline.intake import Submission
from cnnlab.grading.pipeline.kernels import Kernels
from cnnlab.grading.pipeline.sandbox import Sandbox, kernel_uids, probe
from cnnlab.grading.pipeline.score import Reference
from cnnlab.grading.pipeline.submission import Assignment, grader_failure, prepare, run_and_score
from cnnlab.grading.results.sheet import SubmissionResult

__all__ = ["ClusterUnavailable", "LoopbackCluster", "loopback_cluster", "run_all"]

CONNECT_SECONDS = 20


class ClusterUnavailable(RuntimeError):
    """No Dask scheduler answered at the address given."""


# --------------------------------------------------------------------------- worker side
_worker_lock = threading.Lock()
_worker_slots: dict[bool, tuple[queue.Queue, Path]] = {}  # sandboxed? -> (free kernel uids, scratch root)
_worker_exit = contextlib.ExitStack()  # holds the uid claims until the worker process ends


def _worker_threads() -> int:
    try:
        from distributed import get_worker  # noqa: PLC0415

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def _slots(sandboxed: bool) -> tuple[queue.Queue, Path]:
    """This worker process's kernel slots and scratch root, made once (uids claimed, sandbox probed)."""
    with _worker_lock:
        if sandboxed not in _worker_slots:
            count = _worker_threads()
            if sandboxed:
                probe()
                uids = _worker_exit.enter_context(kernel_uids(count))
            else:
                uids = [None] * count
            free: queue.Queue = queue.Queue()
            for uid in uids:
                free.put(uid)
            root = Path(_worker_exit.enter_context(tempfile.TemporaryDirectory(prefix="cnnlab-grade-worker-")))
            os.chmod(root, 0o711)
            _worker_slots[sandboxed] = (free, root)
        return _worker_slots[sandboxed]


def grade_on_worker(sub: Submission, shared: tuple[Assignment, Reference], nb, limits: Limits, seed: int,
                    sandboxed: bool) -> SubmissionResult:  # fmt: skip
    """Run on a Dask worker: execute and score one read submission, as a local run would."""
    assignment, reference = shared
    free, root = _slots(sandboxed)
    kernels = Kernels(Sandbox(enabled=sandboxed, limits=limits), limits, seed, root, free)
    return run_and_score(sub, assignment, reference, nb, kernels)


# --------------------------------------------------------------------------- grader side
def check_address(address: str, insecure: bool) -> None:
    """Refuse a scheduler address that would carry submissions and results unauthenticated.

    ``tls://`` (certificates from ``--tls-*`` or Dask's ``distributed.comm.tls`` settings) is the
    default; a plain ``tcp://`` address needs ``insecure`` (``--insecure``, recorded in grades.json).
    Raises :class:`ClusterUnavailable`.
    """
    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    if scheme == "tls" or (insecure and scheme in ("tcp", "inproc", "ucx", "ws")):
        return
    if scheme not in ("tcp", "inproc", "ucx", "ws", "wss"):
        raise ClusterUnavailable(f"--scheduler {address}: the address must start with tls:// (or tcp:// with --insecure)")
    raise ClusterUnavailable(f"--scheduler {address}: a {scheme}:// connection has no authentication, so anyone "
                             "who reaches the scheduler could run code as root on the workers or change results; "
                             "use a tls:// address (with --tls-ca-file, --tls-cert and --tls-key, or Dask's "
                             "distributed.comm.tls settings), or pass --insecure on a private network (grades.json "
                             "records it)")  # fmt: skip


def security(tls: tuple[str, str, str] | None):
    """Dask's ``Security`` for ``(ca_file, cert, key)``, or None to take Dask's own configuration."""
    if tls is None:
        return None
    from distributed.security import Security  # noqa: PLC0415

    ca_file, cert, key = tls
    return Security(tls_ca_file=ca_file, tls_client_cert=cert, tls_client_key=key, require_encryption=True)


def run_all(address: str, jobs: list[tuple[Submission, Assignment | None, Reference | None, str]], limits: Limits,
            seed: int, sandboxed: bool, progress: bool, finished=lambda row: row, *, insecure: bool = False,
            tls: tuple[str, str, str] | None = None) -> list[SubmissionResult]:  # fmt: skip
    """Grade ``jobs`` (submission, assignment, reference, why unavailable) on the cluster at ``address``.

    ``finished(row)`` is called on each row as it arrives (the journal) and returns the row kept.
    Returns one row per job, in order. Raises :class:`ClusterUnavailable` when no scheduler answers
    or the address is not allowed (:func:`check_address`).
    """
    check_address(address, insecure)
    from distributed import Client, as_completed  # noqa: PLC0415
    from distributed.scheduler import KilledWorker  # noqa: PLC0415
    from tqdm import tqdm  # noqa: PLC0415

    try:
        client = Client(address, timeout=CONNECT_SECONDS, security=security(tls))
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterUnavailable(f"--scheduler {address}: no Dask scheduler answered within {CONNECT_SECONDS} s "
                                 f"({type(error).__name__}: {error})") from None  # fmt: skip
    results: list[SubmissionResult | None] = [None] * len(jobs)
    run_id = uuid.uuid4().hex[:8]
    with client:
        shared: dict[str, object] = {}
        futures = {}
        for index, (sub, assignment, reference, unavailable) in enumerate(jobs):
            done, nb = prepare(sub, assignment, reference, unavailable)
            if done is not None:
                results[index] = finished(done)
                continue
            if assignment.name not in shared:  # the source and its reference values, sent to every worker once
                shared[assignment.name] = client.scatter((assignment, reference), broadcast=True, hash=False)
            future = client.submit(grade_on_worker, sub, shared[assignment.name], nb, limits, seed, sandboxed,
                                   key=f"cnnlab-grade-{run_id}-{index}", pure=False, retries=1)  # fmt: skip
            futures[future] = index
        bar = tqdm(total=len(jobs), desc="grading", unit="submission", disable=not progress)
        bar.update(len(jobs) - len(futures))
        for future in as_completed(futures):
            index = futures[future]
            sub = jobs[index][0]
            try:
                row = future.result()
            except KilledWorker as error:
                row = SubmissionResult(sub.student, sub.assignment, str(sub.path), "not-gradable", folder=sub.folder, notes=(
                    f"every Dask worker that tried to grade it died ({error}); grade it again with "
                    "--only-not-gradable",))  # fmt: skip
            except Exception as error:  # noqa: BLE001 -- the grader's (or the cluster's) failure, never a zero
                row = grader_failure(sub, error)
            try:
                results[index] = finished(row)
            except Exception as error:  # noqa: BLE001 -- e.g. a time nobody can show: still a row
                results[index] = finished(grader_failure(sub, error))
            bar.update(1)
        bar.close()
    return [r for r in results if r is not None]


# --------------------------------------------------------------------------- a cluster on this machine
@dataclass
class LoopbackCluster:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1 (:func:`loopback_cluster`)."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    logs: Path

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker ``index`` with its nanny and its kernels (its own process group)."""
        _kill(self.workers[index])


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@contextlib.contextmanager
def loopback_cluster(workers: int = 2, threads: int = 1, logs: Path | None = None, start_seconds: float = 90):
    """A real Dask cluster on the loopback address, to try ``--scheduler`` on one machine; stopped on exit.

    Yields a :class:`LoopbackCluster`; each process logs to ``logs/`` (a temporary folder by default).
    """
    from distributed import Client  # noqa: PLC0415

    with contextlib.ExitStack() as stack:
        logs = Path(logs) if logs else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cnnlab-dask-")))
        logs.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe_socket:
            probe_socket.bind(("127.0.0.1", 0))
            port = probe_socket.getsockname()[1]
        address = f"tcp://127.0.0.1:{port}"
        dask = str(Path(sys.executable).parent / "dask")

        def start(args: list[str], name: str) -> subprocess.Popen:
            with (logs / f"{name}.log").open("w") as sink:  # own session: a kill takes the nanny and its kernels
                return subprocess.Popen([dask, *args], stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)

        scheduler = start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], "scheduler")
        cluster = LoopbackCluster(address, scheduler, [], logs)
        try:
            cluster.workers = [start(["worker", address, "--host", "127.0.0.1", "--nthreads", str(threads),
                                      "--nworkers", "1", "--no-dashboard", "--death-timeout", "60"], f"worker{i}")
                               for i in range(workers)]  # fmt: skip
            with Client(address, timeout=start_seconds) as client:
                client.wait_for_workers(workers, timeout=start_seconds)
            yield cluster
        finally:
            for process in [*cluster.workers, scheduler]:
                _kill(process)

"""Executing one notebook in the sandbox: what a kernel leaves behind when it is killed."""

import contextlib
import os
from pathlib import Path

import nbformat
import pytest

from cnnlab.grading.pipeline.execute import GRADER_ERROR, Limits
from cnnlab.grading.pipeline.kernels import KernelFailure, Kernels
from cnnlab.grading.pipeline.sandbox import Sandbox, kernel_uids, probe

SUBMISSIONS = Path(__file__).parents[1] / "fixtures" / "submissions"


def _tasks_of(uid: int) -> int:
    """Processes and threads, zombies included (they still count against RLIMIT_NPROC), owned by ``uid``."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as status:
                owner = next(int(line.split()[1]) for line in status if line.startswith("Uid:"))
            if owner == uid:
                count += len(os.listdir(f"/proc/{pid}/task")) or 1
        except (OSError, StopIteration, ValueError):
            continue
    return count


@contextlib.contextmanager
def _fork_bomb_run(tmp_path, cell_seconds: float):
    """The fork-bomb submission run once in a sandboxed kernel slot: yields (kernels, its execution, the slot's uid)."""
    probe()
    limits = Limits(cell_seconds=cell_seconds, notebook_seconds=60, scratch_mb=64)
    with kernel_uids(1) as uids:
        kernels = Kernels(Sandbox(limits=limits), limits, seed=3, root=tmp_path, uids=uids)
        _, execution = kernels.run(nbformat.read(SUBMISSIONS / "fork_bomb" / "conv_basics.ipynb", as_version=4))
        yield kernels, execution, uids[0]


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="kernel slots have uids of their own only when the grader is root")
def test_a_killed_fork_bomb_is_gone_before_its_slot_is_used_again(tmp_path):
    """The fork bomb reaches RLIMIT_NPROC; until its processes are reaped the slot's next kernel could not start."""
    with _fork_bomb_run(tmp_path, cell_seconds=20) as (kernels, execution, uid):
        assert execution.status == "processes"
        assert _tasks_of(uid) == 0
        _, execution = kernels.run(nbformat.read(SUBMISSIONS / "correct" / "conv_basics.ipynb", as_version=4))
        assert execution.status == "ok" and execution.replies


@pytest.mark.slow
def test_an_exception_in_the_grader_while_a_notebook_runs_is_the_graders_failure(tmp_path, monkeypatch):
    """Only a dead kernel or an enforced limit is the student's; anything raised here is not-gradable."""
    from cnnlab.grading.pipeline import execute as executing  # noqa: PLC0415

    def broken(self, cell, cell_index, execute_reply, **kwargs):
        if cell_index == 3:
            raise RuntimeError("simulated bug in the grader")

    monkeypatch.setattr(executing._GradingClient, "_cell_executed", broken)
    limits = Limits(cell_seconds=20, notebook_seconds=60, scratch_mb=64)
    kernels = Kernels(Sandbox(enabled=False, limits=limits), limits, seed=3, root=tmp_path, uids=[None])
    nb = nbformat.read(SUBMISSIONS / "correct" / "conv_basics.ipynb", as_version=4)
    with pytest.raises(KernelFailure, match="the grader failed while the notebook ran .*simulated bug"):
        kernels.run(nb)
    assert GRADER_ERROR == "grader-error"


def test_a_message_too_large_or_undecodable_becomes_a_dropped_stub():
    """Sizes are checked before decoding; nothing a kernel sends makes the session raise."""
    from cnnlab.grading.pipeline.execute import DROPPED, CappedSession  # noqa: PLC0415

    session = CappedSession(max_bytes=1000)

    def frames(content: bytes, msg_type="stream"):
        message = session.msg(msg_type, content={})
        parts = [session.pack(message["header"]), session.pack({}), session.pack({}), content]
        return [session.sign(parts), *parts]  # what Session.recv hands on, after the identities

    ok = session.deserialize(frames(b'{"name": "stdout", "text": "hi"}'))
    assert ok["content"]["text"] == "hi" and DROPPED not in ok["metadata"]
    for content in (b'{"text": "' + b"x" * 5000 + b'"}', b"[" * 10000 + b"]" * 10000, b"not json", b"[1, 2]"):
        stub = session.deserialize(frames(content))
        assert stub["metadata"][DROPPED] and stub["msg_type"] == "stream" and stub["content"]["text"] == ""
    reply = session.deserialize(frames(b"[" * 10000, msg_type="execute_reply"))
    assert reply["content"]["status"] == "error"
    assert session.deserialize([b"garbage"])["metadata"][DROPPED]


def test_an_oversized_frame_is_dropped_before_it_is_copied():
    """With ZeroMQ frames (copy=False), the size is read from the frame: its bytes never become a Python object."""
    import zmq  # noqa: PLC0415

    from cnnlab.grading.pipeline.execute import DROPPED, CappedSession  # noqa: PLC0415

    session = CappedSession(max_bytes=1000)
    message = session.msg("display_data", content={})
    parts = [session.pack(message["header"]), session.pack({}), session.pack({})]

    class Counted(zmq.Frame):
        copies = 0

        @property
        def bytes(self):
            Counted.copies += 1
            return super().bytes

    big = Counted(b'{"data": {"text/plain": "' + b"x" * 5000 + b'"}}')
    stub = session.deserialize([zmq.Frame(b""), *map(zmq.Frame, parts), big], copy=False)
    assert stub["metadata"][DROPPED] and stub["msg_type"] == "stream" and Counted.copies == 0
    small = [*parts, session.pack({"name": "stdout", "text": "hi"})]
    ok = session.deserialize([zmq.Frame(session.sign(small)), *map(zmq.Frame, small)], copy=False)
    assert ok["content"]["text"] == "hi"


def test_every_frame_of_a_message_is_size_checked():
    """A huge header, parent header or metadata frame is dropped too, not only a huge content frame."""
    from cnnlab.grading.pipeline.execute import DROPPED, CappedSession  # noqa: PLC0415

    session = CappedSession(max_bytes=10**6)
    header = session.pack(session.msg("stream", content={})["header"])
    metadata = b"[" + b"0," * 100_000 + b"0]"  # 200 kB of JSON: over the 64 KiB a metadata frame may have
    parts = [header, session.pack({}), metadata, session.pack({"name": "stdout", "text": "hi"})]
    assert session.deserialize([session.sign(parts), *parts])["metadata"][DROPPED]


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="kernel slots have uids of their own only when the grader is root")
def test_a_fork_bomb_that_starves_the_watchdog_is_still_named_for_its_processes(tmp_path, monkeypatch):
    """On a loaded machine the watchdog's thread may not run before the cell times out: the time-out looks first."""
    from cnnlab.grading.pipeline import execute as executing  # noqa: PLC0415

    monkeypatch.setattr(executing._Watchdog, "run", lambda self: None)  # a thread that never got the CPU
    with _fork_bomb_run(tmp_path, cell_seconds=5) as (_, execution, uid):
        assert execution.status == "processes"
        assert _tasks_of(uid) == 0


def test_a_single_look_kills_a_tree_past_its_process_limit():
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415

    from cnnlab.grading.pipeline.execute import _Watchdog  # noqa: PLC0415

    spawner = "import subprocess, time\nkids = [subprocess.Popen(['sleep', '60']) for _ in range(6)]\ntime.sleep(60)\n"
    parent = subprocess.Popen([sys.executable, "-c", spawner])
    try:
        dog = _Watchdog(parent.pid, Limits(processes=2, memory_mb=10**6, notebook_seconds=10**6), time.monotonic())
        deadline = time.monotonic() + 30
        while dog.check() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # until the six children exist
        assert dog.reason == "processes" and dog.check() == "processes"
        assert parent.wait(timeout=10) == -9
    finally:
        parent.kill()


@pytest.mark.parametrize("kind, folder", [("v1", "pids"), ("v2", "")])
def test_the_cgroup_says_when_it_refused_a_task(tmp_path, kind, folder):
    from cnnlab.grading.pipeline.cgroups import KernelCgroup  # noqa: PLC0415

    group = KernelCgroup(kind, {folder: tmp_path})
    assert not group.refused_tasks()  # no pids.events: nothing known to be refused
    (tmp_path / "pids.events").write_text("max 0\n")
    assert not group.refused_tasks()
    (tmp_path / "pids.events").write_text("max 17\n")
    assert group.refused_tasks()

"""Executing one notebook in the sandbox: what a kernel leaves behind when it is killed."""

import os
from pathlib import Path

import nbformat
import pytest

from cnnlab.grading import grade as grading
from cnnlab.grading.execute import Limits
from cnnlab.grading.sandbox import Sandbox, kernel_uids, probe

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


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="kernel slots have uids of their own only when the grader is root")
def test_a_killed_fork_bomb_is_gone_before_its_slot_is_used_again(tmp_path):
    """The fork bomb reaches RLIMIT_NPROC; until its processes are reaped the slot's next kernel could not start."""
    probe()
    limits = Limits(cell_seconds=20, notebook_seconds=60, scratch_mb=64)
    with kernel_uids(1) as uids:
        kernels = grading._Kernels(Sandbox(limits=limits), limits, seed=3, root=tmp_path, uids=uids)
        nb = nbformat.read(SUBMISSIONS / "fork_bomb" / "conv_basics.ipynb", as_version=4)
        _, execution = kernels.run(nb)
        assert execution.status == "processes"
        assert _tasks_of(uids[0]) == 0
        _, execution = kernels.run(nbformat.read(SUBMISSIONS / "correct" / "conv_basics.ipynb", as_version=4))
        assert execution.status == "ok" and execution.replies

"""Grading on a real Dask cluster on this machine: a scheduler and two workers on the loopback address.

The grades must equal a local run's for the same seed, and killing one worker mid-run must lose nothing.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlab import cli
from cnnlab.grading.distribution.cluster import loopback_cluster

FIXTURES = Path(__file__).parents[1] / "fixtures"
CASES = ("correct", "partly_correct", "untouched", "sys_exit", "hides_errors", "fools_in_kernel_asserts")
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


@pytest.fixture
def submitted(tmp_path):
    folder = tmp_path / "submitted"
    for case in CASES:
        shutil.copytree(FIXTURES / "submissions" / case, folder / case)
    return folder


def test_a_cluster_grades_like_a_local_run_and_a_dying_worker_loses_nothing(submitted, tmp_path):
    source = str(FIXTURES / "source")
    local = tmp_path / "local"
    assert cli.main(["grade", str(submitted), "--source", source, "--out", str(local), "--seed", "5",
                     "--workers", "2", "--timeout", "20"]) == 0  # fmt: skip

    with loopback_cluster(workers=2, threads=1, logs=tmp_path / "logs") as cluster:
        remote = tmp_path / "remote"
        grader = subprocess.Popen([str(BIN / "cnnlab"), "grade", str(submitted), "--source", source, "--out", str(remote),
                                   "--seed", "5", "--timeout", "20", "--scheduler", cluster.address, "--insecure"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        try:
            from distributed import Client

            with Client(cluster.address, timeout=30) as client:  # kill a worker once it is grading a submission
                deadline = time.monotonic() + 240
                busy = []
                while not busy and time.monotonic() < deadline:
                    busy = [w for w, keys in client.processing().items() if any("cnnlab-grade" in str(k) for k in keys)]
                    time.sleep(0.2)
                assert busy, "no worker ever started grading"
                time.sleep(1.5)  # inside a kernel by now
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                victim = next(i for i, p in enumerate(cluster.workers) if _is_ancestor(p.pid, pid))
                cluster.kill_worker(victim)
            output, _ = grader.communicate(timeout=600)
        finally:
            if grader.poll() is None:
                grader.kill()
        assert grader.returncode == 0, output
    assert "Remove worker" in (tmp_path / "logs" / "scheduler.log").read_text()  # the kill was seen, mid-run
    assert "the sheet holds 6 row(s) (6 graded)" in output and "grading" in output  # the summary and progress bar
    assert (remote / "grades.csv").read_text() == (local / "grades.csv").read_text()
    sheet = json.loads((remote / "grades.json").read_text())
    assert sheet["scheduler"] == cluster.address and sheet["insecure_scheduler"] is True
    pages = sorted(p.relative_to(remote) for p in (remote / "feedback").rglob("*.html"))
    assert pages == sorted(p.relative_to(local) for p in (local / "feedback").rglob("*.html")) and len(pages) == len(CASES)
    assert (remote / "class.html").is_file() and (local / "class.html").is_file()


def _is_ancestor(ancestor: int, pid: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        with open(f"/proc/{pid}/stat") as stat:
            pid = int(stat.read().rpartition(")")[2].split()[1])
    return False


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:9", "127.0.0.1:9"])
def test_a_plain_tcp_scheduler_is_refused_before_anything_runs(submitted, tmp_path, address, capsys):
    """Dask workers run as root: an unauthenticated scheduler needs --insecure, said out loud."""
    out = tmp_path / "out"
    assert cli.main(["grade", str(submitted), "--source", str(FIXTURES / "source"), "--out", str(out),
                     "--scheduler", address]) == 2  # fmt: skip
    assert "tls://" in capsys.readouterr().err and not out.exists()

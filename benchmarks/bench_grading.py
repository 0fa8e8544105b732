"""Grading throughput: submissions per minute through the whole sandboxed pipeline, in one run.

    python benchmarks/bench_grading.py [--submissions 20] [--workers 2] [--repeats 3] [--no-dask]

Grades ``--submissions`` copies of the correct fixture submission
(tests/fixtures/submissions/correct) against tests/fixtures/source with
``cnnlab grade --workers N`` in a new process, ``--repeats`` times, and prints
the median rate with the ratio to the reference below. Then the same batch
through ``--scheduler`` on a Dask cluster on this machine (a scheduler and N
workers of one thread, started once before the timed runs, as a course's
cluster would be), with its ratio to the local run. Every copy must score
full marks, or the run stops: a fast grader that grades wrong is no figure.

Reference: 47.5 submissions/minute, the rate measured with 2 workers before
the deny-by-default sandbox (per-kernel uid, limits, kernels shut down after use).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
REFERENCE_PER_MINUTE = 47.5


def one_run(count: int, workers: int, sandbox: str, scheduler: str | None = None) -> float:
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-grading-") as tmp:
        batch = Path(tmp) / "batch"
        for i in range(count):
            shutil.copytree(FIXTURES / "submissions" / "correct", batch / f"student{i:03d}")
        command = [str(Path(sys.executable).parent / "cnnlab"), "grade", str(batch), "--source",
                   str(FIXTURES / "source"), "--out", str(Path(tmp) / "out"), "--workers", str(workers),
                   "--sandbox", sandbox, "--seed", "1"] + (["--scheduler", scheduler, "--insecure"] if scheduler else [])  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        rows = list(csv.DictReader((Path(tmp) / "out" / "grades.csv").open()))
        if len(rows) != count or any(r["total"] != "5" for r in rows):
            raise SystemExit("bench_grading: a copy of the correct submission did not earn 5/5; not timing a wrong grader")
    return count / seconds * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sandbox", choices=["bwrap", "none"], default="bwrap")
    parser.add_argument("--no-dask", action="store_true", help="skip the run on a Dask cluster")
    args = parser.parse_args()
    rates = [one_run(args.submissions, args.workers, args.sandbox) for _ in range(args.repeats)]
    median = statistics.median(rates)
    print(f"{args.submissions} submissions, local --workers {args.workers}, sandbox {args.sandbox}: "
          f"{', '.join(f'{r:.1f}' for r in rates)} submissions/minute; median {median:.1f}")  # fmt: skip
    print(f"ratio to the reference {REFERENCE_PER_MINUTE} submissions/minute: {median / REFERENCE_PER_MINUTE:.2f}")
    if args.no_dask:
        return
    from cnnlab.grading.distribution.cluster import loopback_cluster

    with loopback_cluster(workers=args.workers, threads=1) as cluster:
        remote = [one_run(args.submissions, args.workers, args.sandbox, cluster.address) for _ in range(args.repeats)]
    dask_median = statistics.median(remote)
    print(f"{args.submissions} submissions, {args.workers} Dask workers (1 thread each), sandbox {args.sandbox}: "
          f"{', '.join(f'{r:.1f}' for r in remote)} submissions/minute; median {dask_median:.1f}")  # fmt: skip
    print(f"ratio Dask / local: {dask_median / median:.2f}")


if __name__ == "__main__":
    main()

"""Grading throughput: submissions per minute through the whole sandboxed pipeline, in one run.

    python benchmarks/bench_grading.py [--submissions 20] [--workers 2] [--repeats 3]

Grades ``--submissions`` copies of the correct fixture submission
(tests/fixtures/submissions/correct) against tests/fixtures/source with
``cnnlab grade --workers N`` in a new process, ``--repeats`` times, and prints
the median rate with the ratio to the reference below. Every copy must score
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


def one_run(count: int, workers: int, sandbox: str) -> float:
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-grading-") as tmp:
        batch = Path(tmp) / "batch"
        for i in range(count):
            shutil.copytree(FIXTURES / "submissions" / "correct", batch / f"student{i:03d}")
        command = [str(Path(sys.executable).parent / "cnnlab"), "grade", str(batch), "--source",
                   str(FIXTURES / "source"), "--out", str(Path(tmp) / "out"), "--workers", str(workers),
                   "--sandbox", sandbox, "--seed", "1"]  # fmt: skip
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
    args = parser.parse_args()
    rates = [one_run(args.submissions, args.workers, args.sandbox) for _ in range(args.repeats)]
    median = statistics.median(rates)
    print(f"{args.submissions} submissions, {args.workers} workers, sandbox {args.sandbox}: "
          f"{', '.join(f'{r:.1f}' for r in rates)} submissions/minute; median {median:.1f}")  # fmt: skip
    print(f"ratio to the reference {REFERENCE_PER_MINUTE} submissions/minute: {median / REFERENCE_PER_MINUTE:.2f}")


if __name__ == "__main__":
    main()

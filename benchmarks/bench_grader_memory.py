"""The grader's own peak memory when a submission sends one huge output message, in one run.

    python benchmarks/bench_grader_memory.py [--mib 400]

Grades, each in a new ``cnnlab grade`` process with one worker, the correct
fixture submission (tests/fixtures/submissions/correct) and the same
submission with one ``--mib`` MiB display message added to its first answer.
Prints each process's peak resident memory (``ru_maxrss`` of the finished
child, which includes its threads) and the ratio of the two. The kernel's own
memory is not counted: it is a process of the sandbox, not of the grader.

Reference: before message sizes were checked ahead of decoding, one 400 MiB
message took the grader from 726 to 1,920 MiB (2.6x), as issue 24 measured it.
The figure this prints is the grader's cost of receiving such a message, which
is at least the message itself (ZeroMQ receives it whole).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
REFERENCE = (726, 1920)  # MiB: a correct submission, and one with a 400 MiB message, before the cap


def _peak_mib(batch: Path, out: Path) -> tuple[float, list[dict]]:
    command = [str(Path(sys.executable).parent / "cnnlab"), "grade", str(batch), "--source", str(FIXTURES / "source"),
               "--out", str(out), "--workers", "1", "--seed", "1", "--memory-mb", "3000"]  # fmt: skip
    pid = os.fork()
    if pid == 0:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
        os.execv(command[0], command)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench_grader_memory: cnnlab grade failed ({os.waitstatus_to_exitcode(status)})")
    return usage.ru_maxrss / 1024, list(csv.DictReader((out / "grades.csv").open()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=400)
    args = parser.parse_args()
    correct = FIXTURES / "submissions" / "correct" / "conv_basics.ipynb"
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-memory-") as tmp:
        plain, big = Path(tmp) / "plain" / "student", Path(tmp) / "big" / "student"
        for folder in (plain, big):
            folder.mkdir(parents=True)
            shutil.copy(correct, folder / "conv_basics.ipynb")
        nb = json.loads(correct.read_text())
        answer = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "conv1d")
        answer["source"] = ("from IPython.display import display\n"
                            f"display({{'text/plain': 'x' * ({args.mib} * 2**20)}}, raw=True)\n" + "".join(answer["source"]))  # fmt: skip
        (big / "conv_basics.ipynb").write_text(json.dumps(nb))
        base, base_rows = _peak_mib(plain.parent, Path(tmp) / "out-plain")
        peak, rows = _peak_mib(big.parent, Path(tmp) / "out-big")
    print(f"grader peak memory: {base:,.0f} MiB grading a correct submission ({base_rows[0]['total']} points), "
          f"{peak:,.0f} MiB with one {args.mib} MiB message ({rows[0]['total']} points): {peak / base:.2f}x "
          f"(+{peak - base:,.0f} MiB; reference before the cap {REFERENCE[0]:,} -> {REFERENCE[1]:,} MiB, "
          f"{REFERENCE[1] / REFERENCE[0]:.2f}x)")


if __name__ == "__main__":
    main()

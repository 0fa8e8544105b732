"""Grading time for a class with a variant per student, against the same class without: one run each.

    python benchmarks/bench_variants.py [--students 60] [--workers 2] [--assignment 02_2d_filters]

Makes ``--students`` submissions of an assignment whose source declares variant parameters
(02: the edge operator's weights), each the reference solution in the copy ``cnnlab assign
--roster`` wrote for that student, and grades the class with ``cnnlab grade --secret`` (each
student's own values: the reference runs once per distinct variant) and without it (the
source's values for everyone: one reference run). Every row must earn full marks in both
runs, or nothing is timed. Prints both wall-clock times, the number of reference runs,
and their ratio; the reference for the ratio is the run without variants, in the same run.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_class(tmp: Path, assignment: str, students: int) -> tuple[Path, Path, Path]:
    """(the submitted/ folder, the one-assignment source folder, the course secret file)."""
    from cnnlab.grading.authoring.assign import assign_per_student
    from cnnlab.grading.authoring.source import is_solution, meta, read_notebook

    source = tmp / "source"
    source.mkdir()
    (source / f"{assignment}.ipynb").write_bytes((ROOT / "solutions" / f"{assignment}.ipynb").read_bytes())
    secret = tmp / "course.secret"
    secret.write_text("bench-variants-secret-0123456789abcdef\n")
    roster = [f"student{i:03d}" for i in range(students)]
    assign_per_student(source, tmp / "release", roster, secret.read_bytes().strip())
    reference = read_notebook(source / f"{assignment}.ipynb")
    answers = {meta(c)["grade_id"]: re.sub(r"\s*### (BEGIN|END) SOLUTION", "", c.source)
               for c in reference.cells if is_solution(c) and c.cell_type == "code"}  # fmt: skip
    for student in roster:
        nb = read_notebook(tmp / "release" / student / assignment / f"{assignment}.ipynb")
        for cell in nb.cells:
            if meta(cell).get("grade_id") in answers:
                cell.source = answers[meta(cell)["grade_id"]]
        folder = tmp / "submitted" / student / assignment
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{assignment}.ipynb")
    return tmp / "submitted", source, secret


def grade(submitted: Path, source: Path, out: Path, workers: int, secret: Path | None) -> tuple[float, str]:
    command = [str(Path(sys.executable).parent / "cnnlab"), "grade", str(submitted), "--source", str(source),
               "--out", str(out), "--workers", str(workers), "--seed", "1", "--timeout", "120"]  # fmt: skip
    command += ["--secret", str(secret)] if secret else []
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench_variants: cnnlab grade failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    rows = json.loads((out / "grades.json").read_text())["submissions"]
    wrong = [r["student"] for r in rows  # every automatic point (the written answers are left unanswered)
             if r["status"] != "graded" or any(c["result"] == "failed" and c["grade_id"].startswith("test_")
                                               for c in r["cells"])]  # fmt: skip
    if len(rows) != len(list(submitted.iterdir())) or wrong:
        raise SystemExit(f"bench_variants: not every student earned full marks ({wrong[:5]}); not timing a wrong grader")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--assignment", default="02_2d_filters")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-variants-") as tmp:
        submitted, source, secret = make_class(Path(tmp), args.assignment, args.students)
        plain, _ = grade(submitted, source, Path(tmp) / "plain", args.workers, None)
        varied, log = grade(submitted, source, Path(tmp) / "varied", args.workers, secret)
    runs = re.search(r"ran once for each of (\d+) distinct", log)
    references = int(runs.group(1)) if runs else 1
    print(f"{args.students} students of {args.assignment}, --workers {args.workers}, bwrap sandbox:")
    print(f"  without variants: {plain:.0f} s (1 reference run), {args.students / plain * 60:.1f} submissions/minute")
    print(f"  with variants:    {varied:.0f} s ({references} reference runs), {args.students / varied * 60:.1f} submissions/minute")
    print(f"ratio with / without: {varied / plain:.2f}")


if __name__ == "__main__":
    main()

"""The sources are real nbgrader sources: nbgrader's own generate_assignment and autograde
agree with `cnnlab grade` on honest submissions. On a submission that fools every in-kernel
check, nbgrader awards full marks and cnnlab awards none: that is the point of recording values."""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab import cli

FIXTURES = Path(__file__).parents[1] / "fixtures"
STUDENTS = ("correct", "partly_correct", "fools_in_kernel_asserts")


def _nbgrader(course: Path, *args: str) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr[-3000:]


@pytest.mark.slow
def test_nbgrader_and_cnnlab_agree_on_honest_submissions(tmp_path):
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    (course / "source" / "conv_basics").mkdir(parents=True)
    shutil.copy(FIXTURES / "source" / "conv_basics.ipynb", course / "source" / "conv_basics")
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.CourseDirectory.root = {str(course)!r}\n"
    )
    _nbgrader(course, "generate_assignment", "conv_basics", "--force")
    released = (course / "release" / "conv_basics" / "conv_basics.ipynb").read_text()
    assert "grading_rng(1)" not in released and "YOUR CODE HERE" in released
    for student in STUDENTS:
        target = course / "submitted" / student / "conv_basics"
        target.mkdir(parents=True)
        shutil.copy(FIXTURES / "submissions" / student / "conv_basics.ipynb", target)
    _nbgrader(course, "autograde", "conv_basics", "--force", "--create")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        theirs = {s: gradebook.find_submission("conv_basics", s).score for s in STUDENTS}

    out = tmp_path / "grades"
    assert (
        cli.main(
            [
                "grade",
                str(course / "submitted"),
                "--source",
                str(FIXTURES / "source"),
                "--out",
                str(out),
                "--seed",
                "3",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    ours = {row["student"]: float(row["total"]) for row in csv.DictReader((out / "grades.csv").open())}

    assert theirs["correct"] == ours["correct"] == 5
    assert theirs["partly_correct"] == ours["partly_correct"] == 3
    assert theirs["fools_in_kernel_asserts"] == 5 and ours["fools_in_kernel_asserts"] == 0

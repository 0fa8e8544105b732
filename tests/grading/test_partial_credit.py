"""Partial credit, late penalties and marks, end to end: real sandboxed kernels, real nbgrader.

The source splits a test cell's 4 points over 4 hidden cases (``record(..., points=1)``);
a submission right on half of them earns 2, a late one loses its penalty, and nbgrader
itself still autogrades the same source (all or nothing, as nbgrader does).
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cnnlab import cli
from cnnlab.grading.results.late import parse_time
from tests.fixtures.build_fixtures import KERNELSPEC, nbgrader

pytestmark = pytest.mark.slow

HIDDEN = '''assert double(1.0) == 2.0, "double(1.0) should be 2.0"
### BEGIN HIDDEN TESTS
rng = grading_rng(1)
cases = [float(rng.uniform(1, 9)) * sign for sign in (1, -1, 1, -1)]
got = [record(f"case_{i}", double(x), points=1) for i, x in enumerate(cases)]  # record every case, then judge
assert all(g == 2 * x for g, x in zip(got, cases)), "double is wrong on a hidden case"
### END HIDDEN TESTS'''
ANSWERS = {"right": "def double(x):\n    return 2 * x\n", "half": "def double(x):\n    return 2 * abs(x)\n",
           "wrong": "def double(x):\n    return 0.0\n"}  # fmt: skip
STAMPS = {"right": "2026-12-01 20:00:00 UTC", "half": "2026-12-03 11:00:00 UTC"}  # half: 35 h late; wrong: none


def _source() -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": KERNELSPEC})
    nb.cells = [
        new_code_cell("from cnnlab.grading import grading_rng, record", metadata=nbgrader("imports", locked=True)),
        new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
                      metadata=nbgrader("double", solution=True)),  # fmt: skip
        new_code_cell(HIDDEN, metadata=nbgrader("test_double", grade=True, points=4)),
        new_markdown_cell("Why twice?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION",
                          metadata=nbgrader("why", grade=True, solution=True, points=2)),  # fmt: skip
    ]
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("partial")
    (root / "source" / "scale").mkdir(parents=True)
    nbformat.write(_source(), root / "source" / "scale" / "scale.ipynb")
    for student, answer in ANSWERS.items():
        nb = _source()
        nb.cells[1].source = answer
        nb.cells[3].source = "Why twice?\n\nIt doubles."
        folder = root / "submitted" / student / "scale"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "scale.ipynb")
        if student in STAMPS:  # as nbgrader collect leaves it: the notebook's time kept from the submission
            (folder / "timestamp.txt").write_text(STAMPS[student])
            when = parse_time(STAMPS[student]).timestamp() - 60
            os.utime(folder / "scale.ipynb", (when, when))
    return root


def _rows(out: Path) -> dict:
    return {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}


def test_half_the_cases_earn_half_the_points_and_lateness_costs_its_penalty(course, capsys):
    out = course / "grades"
    code = cli.main(["grade", str(course / "submitted"), "--source", str(course / "source"), "--out", str(out),
                     "--seed", "7", "--workers", "2", "--due", "2026-12-01T23:59Z", "--late-penalty", "10",
                     "--late-cap", "50", "--grace", "15m"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    rows = _rows(out)
    assert [(rows[s]["test_double"], rows[s]["late_penalty_percent"], rows[s]["final"]) for s in ANSWERS] == [
        ("4", "0", "4"), ("2", "20", "1.6"), ("0", "0", "0")]
    data = {r["student"]: r for r in json.loads((out / "grades.json").read_text())["submissions"]}
    checks = data["half"]["cells"][0]["checks"]
    assert [(c["key"], c["points"]) for c in checks] == [("case_0", 1), ("case_1", 0), ("case_2", 1), ("case_3", 0)]
    assert data["half"]["submitted_at"] == "2026-12-03T11:00:00+00:00" and data["wrong"]["submitted_at"] == ""
    page = (out / "feedback" / "half" / "scale" / "scale.html").read_text()
    assert "2 of 4 checks passed" in page and "case_1: wrong value (0 / 1)" in page and "case_0: passed" in page
    assert "35.0 h after the deadline: 20% penalty" in page and "minus 20% late" in page
    assert "grading_rng" not in page and "uniform" not in page  # no hidden code
    assert "No submission time was recorded" in (out / "feedback" / "wrong" / "scale" / "scale.html").read_text()

    sheet = course / "marking.csv"  # the spreadsheet round trip, through the command
    assert cli.main(["marks", "export", str(out), str(sheet)]) == 0
    lines = list(csv.DictReader(sheet.open()))
    assert [(r["student"], r["answer"]) for r in lines] == [(s, "It doubles.") for s in sorted(ANSWERS)]
    lines[0]["points"], lines[0]["comment"] = "2", "Yes."  # half's
    with sheet.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=lines[0].keys())
        writer.writeheader()
        writer.writerows(lines)
    assert cli.main(["marks", "import", str(out), str(sheet)]) == 0
    assert (_rows(out)["half"]["total"], _rows(out)["half"]["final"]) == ("4", "3.2")
    lines[1]["points"] = "9"  # right's
    with sheet.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=lines[0].keys())
        writer.writeheader()
        writer.writerows(lines)
    assert cli.main(["marks", "import", str(out), str(sheet)]) == 1
    assert "line 3: points for right/why: '9' is outside 0 to 2" in capsys.readouterr().err

    # Re-grading the not-gradable rows keeps the policy, and the marks survive a full re-grade.
    assert cli.main(["grade", str(course / "submitted"), "--source", str(course / "source"), "--out", str(out),
                     "--seed", "7", "--workers", "2", "--due", "2026-12-01T23:59Z", "--late-penalty", "10",
                     "--late-cap", "50", "--grace", "15m"]) == 0  # fmt: skip
    assert _rows(out)["half"]["why"] == "2"


def test_a_late_option_without_a_due_date_is_refused(course, capsys):
    assert cli.main(["grade", str(course / "submitted"), "--source", str(course / "source"), "--late-penalty", "5"]) == 1
    assert "--late-penalty, --late-cap and --grace need --due" in capsys.readouterr().err
    assert cli.main(["grade", str(course / "submitted"), "--source", str(course / "source"), "--due", "soon"]) == 1
    assert "--due: 'soon' is not a date" in capsys.readouterr().err


def test_nbgrader_still_autogrades_the_partial_credit_source(course, tmp_path):
    """record(..., points=) is invisible outside cnnlab's grader: nbgrader scores the cell all or nothing."""
    from nbgrader.api import Gradebook

    nbcourse = tmp_path / "nbcourse"
    (nbcourse / "source").mkdir(parents=True)
    subprocess.run(["cp", "-r", str(course / "source" / "scale"), str(nbcourse / "source")], check=True)
    subprocess.run(["cp", "-r", str(course / "submitted"), str(nbcourse)], check=True)
    (nbcourse / "nbgrader_config.py").write_text(f"c = get_config()\nc.CourseDirectory.root = {str(nbcourse)!r}\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for args in (["generate_assignment", "scale", "--force"], ["autograde", "scale", "--force", "--create"]):
        done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=nbcourse, env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0 and "ERROR" not in done.stderr, done.stderr[-3000:]
    with Gradebook(f"sqlite:///{nbcourse / 'gradebook.db'}") as gradebook:
        scores = {s: gradebook.find_submission("scale", s).score for s in ANSWERS}
    assert scores == {"right": 4, "half": 0, "wrong": 0}

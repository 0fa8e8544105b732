"""Gradebook imports for Canvas and Moodle, matched against a roster."""

import csv
import io

import pytest

from cnnlab import cli
from cnnlab.grading.pipeline.score import CellResult
from cnnlab.grading.results.export import ExportError, export, parse_columns
from cnnlab.grading.results.marks import publish
from cnnlab.grading.results.sheet import Sheet, SubmissionResult

CANVAS_ROSTER = (
    "Student,ID,SIS User ID,SIS Login ID,Section,Lab 1 (101)\n"
    "    Points Possible,,,,,5\n"
    "\"Lovelace, Ada\",11,u11,ada,A,\n"
    "\"Babbage, Charles\",12,u12,charles,A,\n"
    "\"Hopper, Grace\",13,u13,grace,B,\n"
)


@pytest.fixture
def out(tmp_path):
    cells = (CellResult("t", 4.0, 4.0, True), CellResult("essay", 0.0, 1.0, None))
    results = [
        SubmissionResult("ada", "conv", "a.ipynb", "graded", cells, penalty_percent=25.0),
        SubmissionResult("charles", "conv", "c.ipynb", "not-gradable", notes=("no kernel",)),
        SubmissionResult("mallory", "conv", "m.ipynb", "graded", cells),
        SubmissionResult("ada", "pool", "p.ipynb", "graded", (CellResult("t", 1.0, 2.0, False),)),
    ]
    publish(tmp_path, Sheet(1, "bwrap", results))
    return tmp_path


def test_canvas_import_keeps_the_identity_columns_and_reports_every_gap(out):
    done = export(out, CANVAS_ROSTER, "canvas", columns={"conv": "Lab 1 (101)"})
    rows = list(csv.reader(io.StringIO(done.text)))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lab 1 (101)", "pool"]
    assert rows[1] == ["Points Possible", "", "", "", "", "5", "2"]
    assert rows[2] == ["Lovelace, Ada", "11", "u11", "ada", "A", "3", "1"]  # 4 points minus 25% late
    assert rows[3] == ["Babbage, Charles", "12", "u12", "charles", "A", "", ""]
    assert done.rows == 3 and done.unmatched == ["mallory"]
    assert done.missing == ["charles: conv (not-gradable)", "charles: pool (no submission)", "grace: conv (no submission)",
                            "grace: pool (no submission)"]  # fmt: skip
    assert done.pending == ["ada: conv"]


def test_moodle_import_matches_on_any_column(out):
    roster = "First name,Last name,Email address,Username\nAda,Lovelace,ada@uni.edu,ada\n"
    done = export(out, roster, "moodle", match_column="Username")
    assert list(csv.reader(io.StringIO(done.text))) == [["Username", "conv", "pool"], ["ada", "3", "1"]]


@pytest.mark.parametrize("call, message", [
    (lambda out: export(out, CANVAS_ROSTER, "blackboard"), "format: must be one of canvas, moodle"),
    (lambda out: export(out, "Name,Email\nx,y\n", "canvas", match_column="Email"), "lacks Student, ID"),
    (lambda out: export(out, CANVAS_ROSTER, "canvas", match_column="Login"), "no column 'Login'"),
    (lambda out: export(out, CANVAS_ROSTER, "canvas", columns={"lab9": "X"}), "assignments the grade sheet does not have: lab9"),
    (lambda out: parse_columns(["conv"]), "not ASSIGNMENT=HEADER"),
])  # fmt: skip
def test_bad_options_name_the_argument(out, call, message):
    with pytest.raises(ExportError, match=message):
        call(out)


def test_the_command_writes_the_file_and_lists_the_gaps(out, tmp_path, capsys):
    roster = tmp_path / "roster.csv"
    roster.write_text(CANVAS_ROSTER)
    target = tmp_path / "canvas.csv"
    assert cli.main(["export", str(out), "--roster", str(roster), "--column", "conv=Lab 1 (101)", "--to", str(target)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 3 student(s)" in printed and "1 graded but not on the roster (not exported): mallory" in printed
    assert target.read_text().startswith("Student,ID,SIS User ID,SIS Login ID,Section,Lab 1 (101),pool")
    assert cli.main(["export", str(out), "--roster", str(tmp_path / "nope.csv"), "--to", str(target)]) == 1

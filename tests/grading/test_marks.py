"""Marks on written answers: stored under a lock, applied to the reports, round-tripped through CSV."""

import csv
import io
import json
import multiprocessing
from datetime import timedelta

import pytest

from cnnlab.grading.pipeline.score import CellResult
from cnnlab.grading.results import marks
from cnnlab.grading.results.late import LatePolicy, parse_time
from cnnlab.grading.results.marks import publish
from cnnlab.grading.results.sheet import LOCK_FILE, Sheet, SubmissionResult, read_sheet

CELLS = (CellResult("test_a", 3.0, 3.0, True), CellResult("essay", 0.0, 2.0, None, "written answer: graded by a person"),
         CellResult("sketch", 0.0, 1.0, None, "written answer: graded by a person"))  # fmt: skip
POLICY = LatePolicy(parse_time("2026-12-01T12:00"), percent=25, grace=timedelta(0))


@pytest.fixture
def out(tmp_path):
    results = [SubmissionResult(s, "conv", f"submitted/{s}/conv/conv.ipynb", "graded", CELLS, (),
                                (("essay", f"{s} says so"), ("sketch", "")), penalty_percent=25.0 if s == "bob" else 0.0)
               for s in ("ann", "bob")]  # fmt: skip
    results.append(SubmissionResult("cy", "conv", "c.ipynb", "not-gradable", notes=("no kernel",)))
    publish(tmp_path, Sheet(1, "bwrap", results, source="", late_policy=POLICY))
    return tmp_path


def _row(out, student):
    return next(r for r in csv.DictReader((out / "grades.csv").open()) if r["student"] == student)


def test_a_mark_updates_the_sheet_the_json_and_the_feedback_page(out):
    row = marks.set_mark(out, "conv", "bob", "essay", "1.5", "Good <b>idea</b>")
    assert (row.total, row.final, row.manual_pending) == (4.5, 3.375, 1.0)
    csv_row = _row(out, "bob")
    assert (csv_row["essay"], csv_row["total"], csv_row["final"], csv_row["manual_pending"]) == ("1.5", "4.5", "3.375", "1")
    cell = next(c for c in json.loads((out / "grades.json").read_text())["submissions"][1]["cells"] if c["grade_id"] == "essay")
    assert cell["result"] == "marked" and cell["comment"] == "Good <b>idea</b>"
    page = (out / "feedback" / "bob" / "conv" / "conv.html").read_text()
    assert "Good &lt;b&gt;idea&lt;/b&gt;" in page and "marked" in page and "minus 25% late" in page


def test_clearing_a_mark_puts_the_answer_back_in_the_queue(out):
    marks.set_mark(out, "conv", "ann", "essay", 2)
    marks.set_mark(out, "conv", "ann", "essay", "")
    assert _row(out, "ann")["essay"] == "0" and _row(out, "ann")["manual_pending"] == "3"
    assert marks.load(out) == {"conv": {"ann": {}}}


@pytest.mark.parametrize("args, message", [(("conv", "zed", "essay", 1), "student 'zed'"),
                                           (("conv", "cy", "essay", 1), "student 'cy'"),
                                           (("conv", "ann", "test_a", 1), "no written task 'test_a'"),
                                           (("conv", "ann", "essay", 2.5), "outside 0 to 2"),
                                           (("conv", "ann", "essay", "lots"), "not a number"),
                                           (("conv", "ann", "essay", float("nan")), "outside 0 to 2")])
def test_bad_marks_are_refused_and_change_nothing(out, args, message):
    def files():  # the empty lock file aside
        return {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE}

    before = files()
    with pytest.raises(marks.MarkError, match=message):
        marks.set_mark(out, *args)
    assert files() == before


def test_a_regrade_keeps_every_mark(out):
    marks.set_mark(out, "conv", "ann", "sketch", 1, "fine")
    sheet = read_sheet(out)
    fresh = [SubmissionResult(r.student, r.assignment, r.path, r.status, CELLS if r.scored else ()) for r in sheet.results]
    publish(out, Sheet(2, "bwrap", fresh))
    assert _row(out, "ann")["sketch"] == "1" and _row(out, "ann")["total"] == "4"


def _mark_many(args):
    out, student, grade_id = args
    for i in range(10):
        marks.set_mark(out, "conv", student, grade_id, 0.1 * i + 0.1, f"pass {i}")


def test_concurrent_savers_lose_nothing_and_never_corrupt_the_files(out):
    """Two processes (two browser tabs, or a tab and an import) saving different answers at once."""
    jobs = [(out, "ann", "essay"), (out, "bob", "sketch"), (out, "ann", "sketch"), (out, "bob", "essay")]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_mark_many, jobs)
    stored = marks.load(out)
    for _, student, grade_id in jobs:
        assert stored["conv"][student][grade_id] == {"points": pytest.approx(1.0), "comment": "pass 9"}
    assert json.loads((out / "grades.json").read_text())  # whole, parsable
    assert _row(out, "ann")["total"] == "5"


def test_the_csv_round_trip(out):
    marks.set_mark(out, "conv", "ann", "essay", 2, "full marks")
    sheet = list(csv.DictReader(io.StringIO(marks.export_csv(out))))
    assert [(r["student"], r["grade_id"], r["points"], r["answer"]) for r in sheet] == [
        ("ann", "essay", "2", "ann says so"), ("ann", "sketch", "", ""), ("bob", "essay", "", "bob says so"),
        ("bob", "sketch", "", "")]
    sheet[2]["points"], sheet[2]["comment"] = "1", "half"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=marks.CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(sheet)
    assert marks.import_csv(out, buffer.getvalue()) == 2  # ann's kept mark and bob's new one
    assert _row(out, "bob")["essay"] == "1" and _row(out, "ann")["essay"] == "2"


def test_an_import_with_any_bad_row_changes_nothing_and_names_every_bad_row(out):
    before = (out / "marks.json").exists(), (out / "grades.csv").read_bytes()
    text = ("student,assignment,grade_id,points,comment\nann,conv,essay,1,ok\nzed,conv,essay,1,\n"
            "bob,conv,essay,7,\nbob,conv,nope,1,\n")
    with pytest.raises(marks.MarkError) as error:
        marks.import_csv(out, text)
    message = str(error.value)
    assert "line 3: student 'zed'" in message and "line 4:" in message and "outside 0 to 2" in message
    assert "line 5:" in message and "no written task 'nope'" in message and "line 2" not in message
    assert ((out / "marks.json").exists(), (out / "grades.csv").read_bytes()) == before
    with pytest.raises(marks.MarkError, match="no column points"):
        marks.import_csv(out, "student,assignment,grade_id\nann,conv,essay\n")

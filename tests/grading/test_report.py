"""Grade sheets and feedback pages, from results made by hand."""

import csv
import json

from cnnlab.grading.pipeline.score import CellResult
from cnnlab.grading.results.marks import publish
from cnnlab.grading.results.report import feedback_page
from cnnlab.grading.results.sheet import Sheet, SubmissionResult, read_sheet

CELLS = (CellResult("test_a", 3.0, 3.0, True), CellResult("test_b", 0.0, 2.0, False, "wrong", hidden=True),
         CellResult("essay", 0.0, 1.0, None, "written answer: graded by a person"))  # fmt: skip


def test_feedback_escapes_everything_a_submission_controls():
    evil = "<script>alert(1)</script>"
    result = SubmissionResult(evil, "conv", "x.ipynb", "graded", (CellResult(evil, 0.0, 1.0, False, evil),),
                              (evil,), ((evil, evil),))  # fmt: skip
    page = feedback_page(result)
    assert "<script>" not in page and page.count("&lt;script&gt;") >= 6


def test_rows_nobody_could_score_have_no_points(tmp_path):
    results = [SubmissionResult("ann", "conv", "a.ipynb", "graded", CELLS),
               SubmissionResult("bob", "conv", "b.ipynb", "not-gradable", notes=("the kernel did not start",)),
               SubmissionResult("cy", "conv", "c.ipynb", "duplicate", notes=("2 notebooks",))]  # fmt: skip
    publish(tmp_path, Sheet(7, "bwrap", results))
    rows = {r["student"]: r for r in csv.DictReader((tmp_path / "grades.csv").open())}
    assert (rows["ann"]["total"], rows["ann"]["test_a"], rows["ann"]["sandbox"]) == ("3", "3", "bwrap")
    for student in ("bob", "cy"):
        assert rows[student]["total"] == rows[student]["test_a"] == rows[student]["max"] == ""
    assert "not yet graded" in (tmp_path / "feedback" / "bob" / "conv" / "b.html").read_text()
    data = json.loads((tmp_path / "grades.json").read_text())
    assert data["sandbox"] == "bwrap" and data["submissions"][1]["total"] is None


def test_results_read_back_as_written(tmp_path):
    results = [SubmissionResult("ann", "conv", "a.ipynb", "graded", CELLS, ("note",), (("essay", "Because."),), 1.5)]
    publish(tmp_path, Sheet(7, "none", results))
    sheet = read_sheet(tmp_path)
    seed, sandbox, back = sheet.seed, sheet.sandbox, sheet.results
    assert (seed, sandbox) == (7, "none") and back == results


def test_a_page_shows_verdicts_checks_marks_and_one_form_of_time():
    from datetime import UTC, datetime  # noqa: PLC0415

    from cnnlab.grading.pipeline.score import Check  # noqa: PLC0415
    from cnnlab.grading.results.late import LatePolicy  # noqa: PLC0415

    policy = LatePolicy(datetime(2026, 12, 1, 22, 59, tzinfo=UTC), 10.0)
    cells = (CellResult("test_a", 1.0, 2.0, False, "1 of 2 checks passed", hidden=True,
                        checks=(Check("a", 1.0, 1.0), Check("b", 0.0, 1.0, "wrong value"))),
             CellResult("essay", 1.0, 1.0, None, "marked", marked=True, comment="Good & clear"))  # fmt: skip
    result = SubmissionResult("ann", "conv", "a.ipynb", "graded", cells, submitted_at="2026-12-02T00:30:00+01:00",
                              hours_late=0.52, penalty_percent=10.0)  # fmt: skip
    page = feedback_page(result, policy)
    assert "2 / 3, minus 10% late: <strong>1.8 / 3</strong>" in page
    assert "Submitted 2026-12-01 23:30 UTC, 0.5 h after the deadline" in page and "due 2026-12-01 22:59 UTC" in page
    assert "b: wrong value (0 / 1)" in page and "includes hidden tests (code not shown)" in page
    assert "<strong>Marked.</strong> Good &amp; clear" in page and "+01:00" not in page


def test_the_grade_sheet_keeps_names_from_becoming_formulas(tmp_path):
    results = [SubmissionResult('=HYPERLINK("http://x","y")', "conv", "a.ipynb", "graded", CELLS)]
    publish(tmp_path, Sheet(7, "bwrap", results))
    row = next(csv.DictReader((tmp_path / "grades.csv").open()))
    assert row["student"] == "'=HYPERLINK(\"http://x\",\"y\")"


def test_rows_are_named_by_the_task_titles_the_student_saw(tmp_path):
    cells = (CellResult("test_edges", 2.0, 2.0, True, title="Task 8: edge magnitude with your operator"),
             CellResult("essay", 0.0, 2.0, None, "awaiting", title="Task 11: what does pooling buy?"),
             CellResult("untitled", 1.0, 1.0, True))  # fmt: skip
    result = SubmissionResult("ann", "conv", "a.ipynb", "graded", cells, manual_answers=(("essay", "It halves."),))
    page = feedback_page(result)
    assert "<td>Task 8: edge magnitude with your operator<br><small><code>test_edges</code>" in page
    assert "Written answer: Task 11: what does pooling buy?" in page and "<td><code>untitled</code></td>" in page
    publish(tmp_path, Sheet(7, "none", [result]))
    assert [c.title for c in read_sheet(tmp_path).results[0].cells] == [c.title for c in cells]  # kept in the sheet


def test_task_titles_come_from_the_headings_the_student_reads():
    from pathlib import Path  # noqa: PLC0415

    from cnnlab.grading.authoring.source import grade_items, read_notebook  # noqa: PLC0415

    source = read_notebook(Path(__file__).parents[2] / "solutions" / "02_2d_filters.ipynb")
    titles = {item.grade_id: item.title for item in grade_items(source)}
    assert titles["test_edge_magnitude"] == "Task 8: edge magnitude with your operator"
    assert titles["why_pool"] == "Task 11: what does pooling buy?"  # "(2 points, read by a person)" dropped
    assert all(title.startswith("Task ") for title in titles.values())

"""Marks on written answers: stored beside the grade sheet, applied to it, round-tripped through CSV.

``<out>/marks.json`` holds what a person gave each written answer::

    {"version": 1, "marks": {"<assignment>": {"<student>": {"<grade_id>": {"points": 1.5, "comment": "..."}}}}}

It is the only place marks live. :func:`publish` applies it every time the
reports are written (by a grading run or by a mark), so re-grading a class
keeps every mark. Every change is a read-modify-write under the grade folder's
one lock (:func:`cnnlab.grading.results.sheet.locked`, which a grading run takes too)
followed by an atomic replace, so two browser tabs, the CSV import and a
re-grade never interleave, and a crash leaves the old file or the new one,
never half of one. A mark rewrites only its student's feedback page.

CSV cells are kept from becoming spreadsheet formulas on export and read back
as written on import (:mod:`cnnlab.grading.results.spreadsheet`).

:func:`set_mark` is what the marking page calls; :func:`export_csv` and
:func:`import_csv` are the spreadsheet round trip (an import with any bad row
changes nothing and names every bad row).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path

from cnnlab.grading.authoring.source import student_words, written_questions
from cnnlab.grading.pipeline.score import WRITTEN_PENDING
from cnnlab.grading.results.report import write_overview, write_reports
from cnnlab.grading.results.sheet import Sheet, SubmissionResult, locked, read_sheet, write_atomically
from cnnlab.grading.results.spreadsheet import csv_text, read_cell

__all__ = ["CSV_COLUMNS", "MarkError", "apply", "export_csv", "import_csv", "load", "publish", "set_mark",
           "written_tasks"]  # fmt: skip

MARKS_FILE = "marks.json"
CSV_COLUMNS = ("student", "assignment", "grade_id", "max_points", "points", "comment", "answer")
MAX_COMMENT = 5000

Marks = dict[str, dict[str, dict[str, dict]]]  # assignment -> student -> grade_id -> {"points", "comment"}


class MarkError(ValueError):
    """A mark that cannot be stored: unknown student or task, points out of range. Nothing was written."""


def load(out: Path) -> Marks:
    """The marks in ``out/marks.json`` (``{}`` when there are none yet)."""
    path = Path(out) / MARKS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        marks = data["marks"]
        if not isinstance(marks, dict):
            raise TypeError("marks is not an object")
        return marks
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a marks file this version wrote ({error}); it was left as it is") from None


def apply(results: list[SubmissionResult], marks: Marks) -> list[SubmissionResult]:
    """``results`` with every written answer as ``marks`` has it: marked (points, comment) or awaiting a grader.

    ``marks`` is the whole truth: a mark taken out of it is taken off the results too.
    """
    applied = []
    for result in results:
        given = marks.get(result.assignment, {}).get(result.student, {})
        if not result.scored:
            applied.append(result)
            continue
        cells = tuple(
            (dataclasses.replace(c, points=float(given[c.grade_id]["points"]), marked=True,
                                 comment=str(given[c.grade_id].get("comment", "")), message="marked by a person")
             if c.grade_id in given else
             dataclasses.replace(c, points=0.0, marked=False, comment="", message=WRITTEN_PENDING))
            if c.passed is None else c
            for c in result.cells
        )  # fmt: skip
        applied.append(dataclasses.replace(result, cells=cells))
    return applied


def publish(out: Path, sheet: Sheet, only: set[tuple[str, str]] | None = None) -> Sheet:
    """Apply ``out/marks.json`` to ``sheet`` and write its reports (``only``: the rows whose pages changed).

    The caller holds :func:`cnnlab.grading.results.sheet.locked`; returns the sheet as written.
    """
    marked = dataclasses.replace(sheet, results=apply(sheet.results, load(out)))
    write_reports(marked, Path(out), only)
    return marked


def redraw_overview(out: Path) -> str:
    """Draw ``out/class.html`` from the sheet with the marks as they stand; returns the page."""
    with locked(Path(out)):
        sheet = read_sheet(Path(out))
        return write_overview(dataclasses.replace(sheet, results=apply(sheet.results, load(out))), Path(out))


def written_tasks(results: list[SubmissionResult]) -> dict[tuple[str, str], dict[str, float]]:
    """``{(assignment, student): {grade_id: max points}}`` of every written answer a person can mark."""
    tasks: dict[tuple[str, str], dict[str, float]] = {}
    for r in results:
        if r.scored:
            manual = {c.grade_id: c.max_points for c in r.cells if c.passed is None}
            if manual:
                tasks[(r.assignment, r.student)] = manual
    return tasks


def _checked(tasks, assignment: str, student: str, grade_id: str, points, comment) -> tuple[float, str]:
    """The mark as stored; raises :class:`MarkError` naming what is wrong."""
    if (assignment, student) not in tasks:
        raise MarkError(f"student {student!r} has no gradable submission of assignment {assignment!r}")
    maximum = tasks[(assignment, student)].get(grade_id)
    if maximum is None:
        raise MarkError(f"{assignment!r} has no written task {grade_id!r}; written tasks: "
                        f"{', '.join(sorted(tasks[(assignment, student)]))}")  # fmt: skip
    try:
        value = float(points)
    except (TypeError, ValueError):
        raise MarkError(f"points for {student}/{grade_id}: {points!r} is not a number") from None
    if not math.isfinite(value) or not 0 <= value <= maximum:
        raise MarkError(f"points for {student}/{grade_id}: {points!r} is outside 0 to {maximum:g}")
    comment = "" if comment is None else str(comment)
    if len(comment) > MAX_COMMENT:
        raise MarkError(f"comment for {student}/{grade_id}: {len(comment)} characters; at most {MAX_COMMENT}")
    return value, comment


def _store(out: Path, changes: list[tuple[str, str, str, float | None, str]]) -> list[SubmissionResult]:
    """Apply ``(assignment, student, grade_id, points or None to clear, comment)`` and rewrite every report."""
    sheet = read_sheet(out)
    marks = load(out)
    for assignment, student, grade_id, points, comment in changes:
        row = marks.setdefault(assignment, {}).setdefault(student, {})
        if points is None:
            row.pop(grade_id, None)
        else:
            row[grade_id] = {"points": points, "comment": comment}
    write_atomically(Path(out) / MARKS_FILE, json.dumps({"version": 1, "marks": marks}, indent=1, sort_keys=True))
    return publish(out, sheet, {(student, assignment) for assignment, student, *_ in changes}).results


def set_mark(out: Path, assignment: str, student: str, grade_id: str, points, comment: str = "") -> SubmissionResult:
    """Give one written answer ``points`` (``None`` or ``""`` clears the mark); returns the student's new row.

    Raises :class:`MarkError` for an unknown student or task or points outside ``0..max``.
    """
    out = Path(out)
    with locked(out):
        tasks = written_tasks(read_sheet(out).results)
        if points is None or points == "":
            _checked(tasks, assignment, student, grade_id, 0, comment)
            value = None
        else:
            value, comment = _checked(tasks, assignment, student, grade_id, points, comment)
        written = _store(out, [(assignment, student, grade_id, value, comment)])
    return next(r for r in written if (r.assignment, r.student) == (assignment, student))


def export_csv(out: Path) -> str:
    """The marking sheet: one row per written answer of every gradable submission, marks filled in where given."""
    sheet = read_sheet(out)
    rows = [CSV_COLUMNS]
    marked = [r for r in apply(sheet.results, load(out)) if r.scored]
    texts = written_questions(Path(sheet.source)) if sheet.source else {}
    for r in sorted(marked, key=lambda r: (r.assignment, r.student)):
        answers = dict(r.manual_answers)
        for c in r.cells:
            if c.passed is None:
                question = texts.get((r.assignment, c.grade_id), ("", ""))[0]
                rows.append([r.student, r.assignment, c.grade_id, f"{c.max_points:g}",
                             f"{c.points:g}" if c.marked else "", c.comment,
                             student_words(answers.get(c.grade_id, ""), question)])  # fmt: skip
    return csv_text(rows)


def import_csv(out: Path, text: str) -> int:
    """Store the marks of a sheet :func:`export_csv` wrote (and a person filled in); returns how many rows set one.

    An empty ``points`` cell leaves that answer as it is. Any bad row (unknown
    student or task, points out of range, missing columns) raises
    :class:`MarkError` listing every bad row, and nothing is written.
    """
    table = csv.DictReader(io.StringIO(text))
    fieldnames = [read_cell(name) for name in (table.fieldnames or [])]
    reader = ({read_cell(k): read_cell(v) for k, v in row.items() if k is not None} for row in table)
    missing = [c for c in ("student", "assignment", "grade_id", "points") if c not in fieldnames]
    if missing:
        raise MarkError(f"the sheet has no column {', '.join(missing)}; its columns must include "
                        "student, assignment, grade_id, points (comment is optional)")  # fmt: skip
    out = Path(out)
    with locked(out):
        tasks = written_tasks(read_sheet(out).results)
        changes, problems = [], []
        for line, row in enumerate(reader, start=2):
            if not str(row.get("points") or "").strip():
                continue
            try:
                value, comment = _checked(tasks, str(row["assignment"]), str(row["student"]), str(row["grade_id"]),
                                          str(row["points"]).strip(), row.get("comment") or "")  # fmt: skip
            except MarkError as error:
                problems.append(f"line {line}: {error}")
                continue
            changes.append((str(row["assignment"]), str(row["student"]), str(row["grade_id"]), value, comment))
        if problems:
            raise MarkError("nothing was imported; fix these rows:\n  " + "\n  ".join(problems))
        if changes:
            _store(out, changes)
    return len(changes)

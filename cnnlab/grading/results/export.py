"""``cnnlab export``: the grade sheet as an LMS gradebook import, matched against the course roster.

Canvas: the roster is the CSV that Canvas's gradebook exports (*Export entire
gradebook*); its first five columns (``Student, ID, SIS User ID, SIS Login
ID, Section``) identify each student, and every row of the import repeats
them. An assignment column is named ``Assignment name (canvas id)`` for an
assignment that exists in Canvas (``--column 03_mnist_cnn="Lab 3 (1234)"``) or
by a new name, which Canvas offers to create. Moodle: the roster is any CSV
with an identifier column (Moodle's grade export has ``Email address``); the
import has that column and one column per assignment, which Moodle's *Import
grades: CSV file* maps in its form.

The score sent is ``final``: the total after the late penalty. Rows nobody
could score, and roster students with no submission, are left empty (an empty
cell changes nothing in either LMS); every such student is reported, and so is
every graded student the roster does not know. No cell of the import can run
as a spreadsheet formula (:mod:`cnnlab.grading.results.spreadsheet`), whatever a
roster or a student's name holds.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.grading.results.sheet import SubmissionResult, check_unique, read_sheet
from cnnlab.grading.results.spreadsheet import csv_text, read_cell

__all__ = ["FORMATS", "Export", "ExportError", "export"]

CANVAS_IDENTITY = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
FORMATS = {"canvas": "SIS Login ID", "moodle": "Email address"}  # format -> default roster column to match on


class ExportError(ValueError):
    """The roster or the options cannot give a gradebook; the message says which and why."""


@dataclass
class Export:
    """The gradebook CSV text and what a person must know about it."""

    text: str
    rows: int
    unmatched: list[str] = field(default_factory=list)  # graded students the roster does not know
    missing: list[str] = field(default_factory=list)  # "student: assignment (why)" left empty
    pending: list[str] = field(default_factory=list)  # "student: assignment" with written answers unmarked


def _roster(text: str, match: str, fmt: str) -> tuple[list[str], list[dict]]:
    rows = [{read_cell(k): read_cell(v) for k, v in row.items() if k is not None}
            for row in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))]
    columns = list(rows[0].keys()) if rows else []
    if match not in columns:
        raise ExportError(f"roster: no column {match!r} to match students on; its columns are {', '.join(columns) or 'none'} "
                          "(choose one with --match-column)")  # fmt: skip
    if fmt == "canvas":
        absent = [c for c in CANVAS_IDENTITY if c not in columns]
        if absent:
            raise ExportError(f"roster: a Canvas gradebook export has the columns {', '.join(CANVAS_IDENTITY)}; "
                              f"this one lacks {', '.join(absent)}")  # fmt: skip
    students = [r for r in rows if str(r.get(match, "")).strip() and "Points Possible" not in str(r.get(columns[0]))]
    return columns, students


def export(out: Path, roster_text: str, fmt: str = "canvas", match_column: str | None = None,
           columns: dict[str, str] | None = None) -> Export:  # fmt: skip
    """The gradebook import for the grade sheet in ``out`` (``grades.json``), as :class:`Export`.

    ``columns`` maps an assignment name to its column header in the LMS. Raises :class:`ExportError`.
    """
    if fmt not in FORMATS:
        raise ExportError(f"format: must be one of {', '.join(FORMATS)}; got {fmt!r}")
    match = match_column or FORMATS[fmt]
    roster_columns, students = _roster(roster_text, match, fmt)
    results: list[SubmissionResult] = read_sheet(out).results
    check_unique(results)  # one row per (student, assignment): no score may silently replace another
    assignments = sorted({r.assignment for r in results})
    headers = dict(columns or {})
    if unknown := sorted(set(headers) - set(assignments)):
        raise ExportError(f"--column names assignments the grade sheet does not have: {', '.join(unknown)} "
                          f"(it has {', '.join(assignments)})")  # fmt: skip
    by_key = {(r.student, r.assignment): r for r in results}
    known = {str(s[match]).strip() for s in students}
    report = Export("", 0)
    report.unmatched = sorted({r.student for r in results if r.student not in known})
    identity = list(CANVAS_IDENTITY) if fmt == "canvas" else [match]
    table = [[*identity, *[headers.get(a, a) for a in assignments]]]
    if fmt == "canvas":
        maximum = {a: next((r.max_points for r in results if r.assignment == a and r.scored), None) for a in assignments}
        table.append(["Points Possible", "", "", "", "", *[f"{maximum[a]:g}" if maximum[a] else "" for a in assignments]])
    for student in students:
        name = str(student[match]).strip()
        cells = []
        for a in assignments:
            result = by_key.get((name, a))
            if result is None or not result.scored:
                report.missing.append(f"{name}: {a} ({'no submission' if result is None else result.status})")
                cells.append("")
                continue
            if result.manual_pending:
                report.pending.append(f"{name}: {a}")
            cells.append(f"{result.final:g}")
        table.append([*[student.get(c, "") for c in identity], *cells])
        report.rows += 1
    report.text = csv_text(table)
    return report


def parse_columns(pairs: list[str]) -> dict[str, str]:
    """``["03_mnist_cnn=Lab 3 (1234)", ...]`` as a mapping; raises :class:`ExportError` on a pair without ``=``."""
    found = {}
    for pair in pairs:
        name, sep, header = pair.partition("=")
        if not sep or not name.strip() or not header.strip():
            raise ExportError(f"--column: {pair!r} is not ASSIGNMENT=HEADER, e.g. 03_mnist_cnn=\"Lab 3 (1234)\"")
        found[name.strip()] = header.strip()
    return found

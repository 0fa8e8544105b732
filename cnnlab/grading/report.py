"""Step 5 of grading: grade sheets and feedback pages.

* ``grades.csv`` -- one row per student x assignment: status, total, maximum,
  points awaiting a person, the late penalty and the final score, the sandbox
  used, then points per ``grade_id``. Rows nobody could score
  (``not-gradable``, ``duplicate``) have empty points, never zeros;
* ``grades.json`` -- the same with every cell's verdict, message and checks,
  the written answers, the seed, the sandbox, the source folder and the late
  policy; :func:`read_sheet` reads it back (``cnnlab grade
  --only-not-gradable`` and the marking page start from it);
* ``feedback/<student>/<assignment>/<notebook>.html`` -- nbgrader's feedback
  layout, so a course's exchange can release the pages: one page per
  submission, each test passed or failed with its message and, for partial
  credit, which checks passed; the marks and comments on written answers; the
  late penalty. Hidden tests appear by name and result only; their code and
  expected values never leave the grader.

Marks on written answers live in ``marks.json`` beside them
(:mod:`cnnlab.grading.marks`) and are applied every time the reports are
written, so a re-grade keeps them.

Everything a submission controls (names, messages, answers) is HTML-escaped.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.grading.late import LatePolicy
from cnnlab.grading.score import CellResult, Check

__all__ = ["Sheet", "SubmissionResult", "feedback_page", "feedback_path", "read_results", "read_sheet",
           "write_reports"]  # fmt: skip

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
UNSCORED = ("not-gradable", "duplicate")  # statuses that carry no points at all
_VERDICT = {True: "passed", False: "failed", None: "manual"}


@dataclass(frozen=True)
class SubmissionResult:
    """One row of the grade sheet."""

    student: str
    assignment: str
    path: str
    status: str
    cells: tuple[CellResult, ...] = ()
    notes: tuple[str, ...] = ()
    manual_answers: tuple[tuple[str, str], ...] = ()  # (grade_id, the student's written answer)
    seconds: float = 0.0
    submitted_at: str = ""  # ISO time from nbgrader's timestamp.txt; "" when unknown
    hours_late: float = 0.0
    penalty_percent: float = 0.0  # of the points earned

    @property
    def scored(self) -> bool:
        return self.status not in UNSCORED

    @property
    def total(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def max_points(self) -> float:
        return sum(c.max_points for c in self.cells)

    @property
    def manual_pending(self) -> float:
        return sum(c.max_points for c in self.cells if c.passed is None and not c.marked)

    @property
    def final(self) -> float:
        """The total after the late penalty."""
        return round(self.total * (1 - self.penalty_percent / 100), 4)


@dataclass(frozen=True)
class Sheet:
    """What ``grades.json`` holds: the results and how they were made."""

    seed: int
    sandbox: str
    results: list[SubmissionResult] = field(default_factory=list)
    source: str = ""  # the folder of assignment sources (the marking page reads questions from it)
    late_policy: LatePolicy | None = None


def _safe_name(text: str) -> str:
    return _SAFE.sub("_", text).strip("._") or "unnamed"


def _column(result: SubmissionResult, cell: CellResult, single: bool) -> str:
    """A grade cell's CSV column: its grade_id, prefixed by the assignment when several are graded."""
    return cell.grade_id if single else f"{result.assignment}:{cell.grade_id}"


def _cell_dict(c: CellResult) -> dict:
    found = {"grade_id": c.grade_id, "points": c.points, "max": c.max_points,
             "result": "marked" if c.marked else _VERDICT[c.passed], "message": c.message, "hidden_tests": c.hidden,
             "unrecorded": c.unrecorded}  # fmt: skip
    if c.checks:
        found["checks"] = [{"key": k.key, "points": k.points, "max": k.max_points, "message": k.message}
                           for k in c.checks]  # fmt: skip
    if c.marked:
        found["comment"] = c.comment
    return found


def _as_dict(result: SubmissionResult) -> dict:
    return {
        "student": result.student, "assignment": result.assignment, "submission": result.path,
        "status": result.status, "total": result.total if result.scored else None, "max": result.max_points if result.scored else None,
        "manual_pending": result.manual_pending, "submitted_at": result.submitted_at,
        "hours_late": round(result.hours_late, 3), "penalty_percent": result.penalty_percent,
        "final": result.final if result.scored else None, "seconds": round(result.seconds, 2),
        "notes": list(result.notes), "answers": dict(result.manual_answers),
        "cells": [_cell_dict(c) for c in result.cells],
    }  # fmt: skip


def _from_dict(row: dict) -> SubmissionResult:
    verdict = {v: k for k, v in _VERDICT.items()} | {"marked": None}
    cells = tuple(
        CellResult(c["grade_id"], float(c["points"]), float(c["max"]), verdict[c["result"]], c.get("message", ""),
                   bool(c.get("hidden_tests")), bool(c.get("unrecorded")),
                   tuple(Check(k["key"], float(k["points"]), float(k["max"]), k.get("message", ""))
                         for k in c.get("checks", [])),
                   c["result"] == "marked", c.get("comment", ""))
        for c in row.get("cells", [])
    )  # fmt: skip
    return SubmissionResult(row["student"], row["assignment"], row["submission"], row["status"], cells,
                            tuple(row.get("notes", [])), tuple(row.get("answers", {}).items()),
                            float(row.get("seconds", 0)), str(row.get("submitted_at", "")),
                            float(row.get("hours_late", 0)), float(row.get("penalty_percent", 0)))  # fmt: skip


def read_sheet(out: Path) -> Sheet:
    """The :class:`Sheet` in ``out/grades.json``. Raises ``FileNotFoundError``/``ValueError``."""
    path = out / "grades.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no `cnnlab grade --out {out}` has run yet")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        policy = data.get("late_policy")
        return Sheet(int(data["seed"]), str(data["sandbox"]), [_from_dict(r) for r in data["submissions"]],
                     str(data.get("source", "")), LatePolicy.from_json(policy) if policy else None)  # fmt: skip
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a grade sheet this version wrote ({type(error).__name__}: {error})") from None


def read_results(out: Path) -> tuple[int, str, list[SubmissionResult]]:
    """``(seed, sandbox, results)`` from ``out/grades.json``. Raises ``FileNotFoundError``/``ValueError``."""
    sheet = read_sheet(out)
    return sheet.seed, sheet.sandbox, sheet.results


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a reader sees the old file or the new, never half of one."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    temporary.write_text(text, encoding="utf-8", newline="")
    os.replace(temporary, path)


def _csv_text(ordered: list[SubmissionResult], sandbox: str) -> str:
    import io  # noqa: PLC0415

    single = len({r.assignment for r in ordered}) <= 1
    columns: list[str] = []
    for result in ordered:
        for cell in result.cells:
            if (name := _column(result, cell, single)) not in columns:
                columns.append(name)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", "assignment", "status", "total", "max", "manual_pending", "late_penalty_percent",
                     "final", "sandbox", *columns])  # fmt: skip
    for r in ordered:
        points = {_column(r, c, single): c.points for c in r.cells} if r.scored else {}
        scored = [f"{r.total:g}", f"{r.max_points:g}", f"{r.manual_pending:g}", f"{r.penalty_percent:g}",
                  f"{r.final:g}"] if r.scored else [""] * 5  # fmt: skip
        writer.writerow([r.student, r.assignment, r.status, *scored, sandbox,
                         *[f"{points[c]:g}" if c in points else "" for c in columns]])  # fmt: skip
    return buffer.getvalue()


def feedback_path(out: Path, result: SubmissionResult) -> Path:
    """``out/feedback/<student>/<assignment>/<notebook>.html``: nbgrader's feedback layout."""
    notebook = _safe_name(Path(result.path).stem) if result.path else _safe_name(result.assignment)
    return out / "feedback" / _safe_name(result.student) / _safe_name(result.assignment) / f"{notebook}.html"


def write_reports(results: list[SubmissionResult], out: Path, *, seed: int, sandbox: str, source: str = "",
                  late_policy: LatePolicy | None = None) -> list[SubmissionResult]:  # fmt: skip
    """Write ``grades.csv``, ``grades.json`` and the feedback pages into ``out`` (each file atomically).

    The marks in ``out/marks.json`` are applied first; returns the results as written.
    """
    from cnnlab.grading import marks  # noqa: PLC0415 -- marks builds on this module

    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(marks.apply(results, marks.load(out)), key=lambda r: (r.assignment, r.student, r.path))
    write_atomically(out / "grades.csv", _csv_text(ordered, sandbox))
    document = {"seed": seed, "sandbox": sandbox, "source": source,
                "late_policy": late_policy.to_json() if late_policy else None,
                "submissions": [_as_dict(r) for r in ordered]}  # fmt: skip
    write_atomically(out / "grades.json", json.dumps(document, indent=1))
    for r in ordered:
        page = feedback_path(out, r)
        page.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(page, feedback_page(r, late_policy))
    return ordered


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}
.passed{color:#17692c}.failed{color:#a31515}.manual{color:#7a5b00}.marked{color:#1b4f8a}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}ul.checks{margin:.3em 0;padding-left:1.2em}
"""


def _score_line(result: SubmissionResult) -> str:
    if not result.scored:
        return "Score: <strong>not yet graded</strong>"
    pending = f" ({result.manual_pending:g} points awaiting a grader)" if result.manual_pending else ""
    if result.penalty_percent:
        return (f"Score: {result.total:g} / {result.max_points:g}, minus {result.penalty_percent:g}% late: "
                f"<strong>{result.final:g} / {result.max_points:g}</strong>{pending}")  # fmt: skip
    return f"Score: <strong>{result.total:g} / {result.max_points:g}</strong>{pending}"


def _late_line(result: SubmissionResult, policy: LatePolicy | None) -> str:
    if policy is None or not result.scored:
        return ""
    if not result.submitted_at:
        return f"<p>Deadline: {html.escape(policy.describe())}. No submission time was recorded: no late penalty.</p>"
    when = f"Submitted {html.escape(result.submitted_at)}"
    if result.penalty_percent:
        return f"<p>{when}, {result.hours_late:.1f} h after the deadline: {result.penalty_percent:g}% penalty ({html.escape(policy.describe())}).</p>"
    return f"<p>{when}: on time ({html.escape(policy.describe())}).</p>"


def _detail(cell: CellResult) -> str:
    e = html.escape
    detail = e(cell.message)
    if cell.checks:
        items = "".join(f"<li class='{'passed' if k.passed else 'failed'}'>{e(k.key)}: "
                        f"{'passed' if k.passed else e(k.message)} ({k.points:g} / {k.max_points:g})</li>"
                        for k in cell.checks)  # fmt: skip
        detail += f"<ul class='checks'>{items}</ul>"
    if cell.hidden:
        detail = (detail + "<br>" if detail else "") + "<em>includes hidden tests (code not shown)</em>"
    if cell.unrecorded and cell.passed is not None:
        detail += "<br><em>no recorded values: this verdict comes from the notebook's kernel alone</em>"
    if cell.marked:
        detail = f"<strong>Marked.</strong> {e(cell.comment)}" if cell.comment else "<strong>Marked.</strong>"
    return detail


def feedback_page(result: SubmissionResult, late_policy: LatePolicy | None = None) -> str:
    e = html.escape
    rows = []
    for cell in result.cells:
        verdict = "marked" if cell.marked else _VERDICT[cell.passed]
        label = {"passed": "passed", "failed": "failed", "manual": "awaiting a grader", "marked": "marked"}[verdict]
        rows.append(f"<tr><td><code>{e(cell.grade_id)}</code></td><td class='{verdict}'>{label}</td>"
                    f"<td>{cell.points:g} / {cell.max_points:g}</td><td>{_detail(cell)}</td></tr>")  # fmt: skip
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    answers = "".join(f"<h3>Written answer <code>{e(k)}</code></h3><pre>{e(v)}</pre>" for k, v in result.manual_answers)
    table = (f"<table><tr><th>test</th><th>result</th><th>points</th><th>message</th></tr>{''.join(rows)}</table>"
             if rows else "")  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(result.assignment)}: {e(result.student)}</title>
<style>{_STYLE}</style></head><body>
<h1>{e(result.assignment)}</h1>
<p>Student: <strong>{e(result.student)}</strong> &middot; {_score_line(result)} &middot; Status: {e(result.status)}</p>
{_late_line(result, late_policy)}
{f"<ul>{notes}</ul>" if notes else ""}
{table}
{answers}
</body></html>
"""

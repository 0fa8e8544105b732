"""Step 5 of grading: grade sheets and feedback pages.

* ``grades.csv`` -- one row per student x assignment: status, total, maximum,
  points awaiting a person, the sandbox used, then points per ``grade_id``.
  Rows nobody could score (``not-gradable``, ``duplicate``) have empty
  points, never zeros;
* ``grades.json`` -- the same with every cell's verdict and message, the
  written answers, the seed and the sandbox; :func:`read_results` reads it
  back (``cnnlab grade --only-not-gradable`` re-grades from it);
* ``feedback/<assignment>/<student>.html`` -- one page per submission: each
  test passed or failed with its message. Hidden tests appear by name and
  result only; their code and expected values never leave the grader.

Everything a submission controls (names, messages, answers) is HTML-escaped.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cnnlab.grading.score import CellResult

__all__ = ["SubmissionResult", "feedback_page", "read_results", "write_reports"]

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
        return sum(c.max_points for c in self.cells if c.passed is None)


def _safe_name(text: str) -> str:
    return _SAFE.sub("_", text).strip("._") or "unnamed"


def _column(result: SubmissionResult, cell: CellResult, single: bool) -> str:
    """A grade cell's CSV column: its grade_id, prefixed by the assignment when several are graded."""
    return cell.grade_id if single else f"{result.assignment}:{cell.grade_id}"


def _as_dict(result: SubmissionResult) -> dict:
    return {
        "student": result.student, "assignment": result.assignment, "submission": result.path,
        "status": result.status, "total": result.total if result.scored else None, "max": result.max_points if result.scored else None,
        "manual_pending": result.manual_pending, "seconds": round(result.seconds, 2), "notes": list(result.notes),
        "answers": dict(result.manual_answers),
        "cells": [{"grade_id": c.grade_id, "points": c.points, "max": c.max_points, "result": _VERDICT[c.passed],
                   "message": c.message, "hidden_tests": c.hidden, "unrecorded": c.unrecorded}
                  for c in result.cells],
    }  # fmt: skip


def _from_dict(row: dict) -> SubmissionResult:
    verdict = {v: k for k, v in _VERDICT.items()}
    cells = tuple(
        CellResult(c["grade_id"], float(c["points"]), float(c["max"]), verdict[c["result"]], c.get("message", ""),
                   bool(c.get("hidden_tests")), bool(c.get("unrecorded")))
        for c in row.get("cells", [])
    )  # fmt: skip
    return SubmissionResult(row["student"], row["assignment"], row["submission"], row["status"], cells,
                            tuple(row.get("notes", [])), tuple(row.get("answers", {}).items()),
                            float(row.get("seconds", 0)))  # fmt: skip


def read_results(out: Path) -> tuple[int, str, list[SubmissionResult]]:
    """``(seed, sandbox, results)`` from ``out/grades.json``. Raises ``FileNotFoundError``/``ValueError``."""
    path = out / "grades.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: there is no earlier run to continue")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return int(data["seed"]), str(data["sandbox"]), [_from_dict(r) for r in data["submissions"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a grade sheet this version wrote ({type(error).__name__}: {error})") from None


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
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
    writer.writerow(["student", "assignment", "status", "total", "max", "manual_pending", "sandbox", *columns])
    for r in ordered:
        points = {_column(r, c, single): c.points for c in r.cells} if r.scored else {}
        writer.writerow([r.student, r.assignment, r.status, f"{r.total:g}" if r.scored else "",
                         f"{r.max_points:g}" if r.scored else "", f"{r.manual_pending:g}" if r.scored else "", sandbox,
                         *[f"{points[c]:g}" if c in points else "" for c in columns]])  # fmt: skip
    return buffer.getvalue()


def write_reports(results: list[SubmissionResult], out: Path, *, seed: int, sandbox: str) -> None:
    """Write ``grades.csv``, ``grades.json`` and the feedback pages into ``out`` (each file atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(results, key=lambda r: (r.assignment, r.student, r.path))
    _write_atomically(out / "grades.csv", _csv_text(ordered, sandbox))
    document = {"seed": seed, "sandbox": sandbox, "submissions": [_as_dict(r) for r in ordered]}
    _write_atomically(out / "grades.json", json.dumps(document, indent=1))
    for r in ordered:
        folder = out / "feedback" / _safe_name(r.assignment)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / f"{_safe_name(r.student)}.html", feedback_page(r))


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}
.passed{color:#17692c}.failed{color:#a31515}.manual{color:#7a5b00}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}
"""


def _score_line(result: SubmissionResult) -> str:
    if not result.scored:
        return "Score: <strong>not yet graded</strong>"
    pending = f" ({result.manual_pending:g} points awaiting a grader)" if result.manual_pending else ""
    return f"Score: <strong>{result.total:g} / {result.max_points:g}</strong>{pending}"


def feedback_page(result: SubmissionResult) -> str:
    e = html.escape
    rows = []
    for cell in result.cells:
        verdict = _VERDICT[cell.passed]
        label = {"passed": "passed", "failed": "failed", "manual": "awaiting a grader"}[verdict]
        detail = e(cell.message)
        if cell.hidden:
            detail = (detail + "<br>" if detail else "") + "<em>includes hidden tests (code not shown)</em>"
        if cell.unrecorded and cell.passed is not None:
            detail += "<br><em>no recorded values: this verdict comes from the notebook's kernel alone</em>"
        rows.append(f"<tr><td><code>{e(cell.grade_id)}</code></td><td class='{verdict}'>{label}</td>"
                    f"<td>{cell.points:g} / {cell.max_points:g}</td><td>{detail}</td></tr>")  # fmt: skip
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    answers = "".join(f"<h3>Written answer <code>{e(k)}</code></h3><pre>{e(v)}</pre>" for k, v in result.manual_answers)
    table = (f"<table><tr><th>test</th><th>result</th><th>points</th><th>message</th></tr>{''.join(rows)}</table>"
             if rows else "")  # fmt: skip
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(result.assignment)}: {e(result.student)}</title>
<style>{_STYLE}</style></head><body>
<h1>{e(result.assignment)}</h1>
<p>Student: <strong>{e(result.student)}</strong> &middot; {_score_line(result)} &middot; Status: {e(result.status)}</p>
{f"<ul>{notes}</ul>" if notes else ""}
{table}
{answers}
</body></html>
"""

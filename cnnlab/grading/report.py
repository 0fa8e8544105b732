"""Grade sheets and feedback pages.

* ``grades.csv`` -- one row per student x assignment: status, total, maximum,
  points awaiting a person, then points per ``grade_id``;
* ``grades.json`` -- the same with every cell's verdict and message;
* ``feedback/<assignment>/<student>.html`` -- one page per submission: each
  test passed or failed with its message. Hidden tests appear by name and
  result only; their code and expected values never leave the grader.

Everything a submission controls (names, messages, answers) is HTML-escaped.
"""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

__all__ = ["write_reports"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_name(text: str) -> str:
    return _SAFE.sub("_", text).strip("._") or "unnamed"


def _column(result, cell, single: bool) -> str:
    """A grade cell's CSV column: its grade_id, prefixed by the assignment when several are graded."""
    return cell.grade_id if single else f"{result.assignment}:{cell.grade_id}"


def _columns(results, single: bool) -> list[str]:
    columns: list[str] = []
    for result in results:
        for cell in result.cells:
            if (name := _column(result, cell, single)) not in columns:
                columns.append(name)
    return columns


def _as_dict(result) -> dict:
    return {
        "student": result.student,
        "assignment": result.assignment,
        "submission": result.path,
        "status": result.status,
        "total": result.total,
        "max": result.max_points,
        "manual_pending": result.manual_pending,
        "seconds": round(result.seconds, 2),
        "notes": result.notes,
        "cells": [
            {
                "grade_id": c.grade_id,
                "points": c.points,
                "max": c.max_points,
                "result": {True: "passed", False: "failed", None: "manual"}[c.passed],
                "message": c.message,
                "hidden_tests": c.hidden,
            }  # fmt: skip
            for c in result.cells
        ],
    }


def write_reports(results, out: Path, *, seed: int, sandboxed: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(results, key=lambda r: (r.assignment, r.student, r.path))
    single = len({r.assignment for r in ordered}) <= 1
    columns = _columns(ordered, single)
    with (out / "grades.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "assignment", "status", "total", "max", "manual_pending", *columns])
        for r in ordered:
            points = {_column(r, c, single): c.points for c in r.cells}
            writer.writerow([r.student, r.assignment, r.status, f"{r.total:g}", f"{r.max_points:g}",
                             f"{r.manual_pending:g}", *[f"{points[c]:g}" if c in points else "" for c in columns]])  # fmt: skip
    (out / "grades.json").write_text(
        json.dumps(
            {"seed": seed, "sandboxed": sandboxed, "submissions": [_as_dict(r) for r in ordered]}, indent=1
        ),
        encoding="utf-8",
    )
    for r in ordered:
        folder = out / "feedback" / _safe_name(r.assignment)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{_safe_name(r.student)}.html").write_text(feedback_page(r), encoding="utf-8")


_STYLE = """
body{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}
.passed{color:#17692c}.failed{color:#a31515}.manual{color:#7a5b00}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}
"""


def feedback_page(result) -> str:
    e = html.escape
    rows = []
    for cell in result.cells:
        verdict = {True: "passed", False: "failed", None: "manual"}[cell.passed]
        label = {"passed": "passed", "failed": "failed", "manual": "awaiting a grader"}[verdict]
        detail = e(cell.message)
        if cell.hidden:
            detail = (detail + "<br>" if detail else "") + "<em>includes hidden tests (code not shown)</em>"
        if cell.unrecorded and cell.passed is not None:
            detail += "<br><em>no recorded values: this verdict comes from asserts inside the notebook's kernel</em>"
        rows.append(f"<tr><td><code>{e(cell.grade_id)}</code></td><td class='{verdict}'>{label}</td>"
                    f"<td>{cell.points:g} / {cell.max_points:g}</td><td>{detail}</td></tr>")  # fmt: skip
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    answers = "".join(
        f"<h3>Written answer <code>{e(k)}</code></h3><pre>{e(v)}</pre>"
        for k, v in result.manual_answers.items()
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(result.assignment)}: {e(result.student)}</title>
<style>{_STYLE}</style></head><body>
<h1>{e(result.assignment)}</h1>
<p>Student: <strong>{e(result.student)}</strong> &middot; Score: <strong>{result.total:g} / {result.max_points:g}</strong>
{f"({result.manual_pending:g} points awaiting a grader)" if result.manual_pending else ""} &middot; Status: {e(result.status)}</p>
{f"<ul>{notes}</ul>" if notes else ""}
<table><tr><th>test</th><th>result</th><th>points</th><th>message</th></tr>
{"".join(rows)}
</table>
{answers}
</body></html>
"""

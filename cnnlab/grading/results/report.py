"""Step 5 of grading: render the grade sheets and feedback pages (rendering only; the rows are
:mod:`cnnlab.grading.results.sheet`'s).

* ``grades.csv`` -- one row per student x assignment: status, total, maximum,
  points awaiting a person, the late penalty and the final score, the sandbox
  used, then points per ``grade_id``. Rows nobody could score
  (``not-gradable``, ``duplicate``) have empty points, never zeros;
* ``grades.json`` -- the same with every cell's verdict, message and checks,
  the written answers, the seed, the sandbox, the source folder and the late
  policy; :func:`cnnlab.grading.results.sheet.read_sheet` reads it back;
* ``feedback/<student>/<assignment>/<notebook>.html`` -- nbgrader's feedback
  layout, so a course's exchange can release the pages: one page per
  submission, each test passed or failed with its message and, for partial
  credit, which checks passed; the marks and comments on written answers; the
  late penalty. Hidden tests appear by name and result only; their code and
  expected values never leave the grader.

Marks on written answers live in ``marks.json`` beside them
(:mod:`cnnlab.grading.results.marks`) and are applied every time the reports are
written, so a re-grade keeps them.

Everything a submission controls (names, messages, answers) is HTML-escaped
in the pages and kept from becoming a formula in the CSV
(:mod:`cnnlab.grading.results.spreadsheet`); file names are made safe and unique
(:func:`safe_name`).
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from cnnlab.grading.pipeline.score import CellResult
from cnnlab.grading.results.late import LatePolicy, readable
from cnnlab.grading.results.sheet import (
    SHEET_FILE,
    Sheet,
    SubmissionResult,
    check_unique,
    sheet_to_json,
    write_atomically,
)
from cnnlab.grading.results.spreadsheet import csv_text

__all__ = ["feedback_page", "feedback_paths", "safe_name", "write_reports"]

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 80  # characters of a name kept in a file name, before the hash


def safe_name(text: str, hashed: bool = False) -> str:
    """``text`` as one file name: itself when it is plain ASCII (letters, digits, ``._-``) and short;
    otherwise (or when ``hashed``) a readable part plus a hash of the whole, so no two names share a file."""
    plain = _SAFE.sub("_", text).strip("._")[:MAX_NAME]
    if plain == text and not hashed:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{plain}-{digest}" if plain else digest


def _column(result: SubmissionResult, cell: CellResult, single: bool) -> str:
    """A grade cell's CSV column: its grade_id, prefixed by the assignment when several are graded."""
    return cell.grade_id if single else f"{result.assignment}:{cell.grade_id}"


def _csv(ordered: list[SubmissionResult], sandbox: str) -> str:
    single = len({r.assignment for r in ordered}) <= 1
    columns: list[str] = []
    for result in ordered:
        for cell in result.cells:
            if (name := _column(result, cell, single)) not in columns:
                columns.append(name)
    rows = [["student", "assignment", "status", "total", "max", "manual_pending", "late_penalty_percent",
             "final", "sandbox", *columns]]  # fmt: skip
    for r in ordered:
        points = {_column(r, c, single): c.points for c in r.cells} if r.scored else {}
        scored = [f"{r.total:g}", f"{r.max_points:g}", f"{r.manual_pending:g}", f"{r.penalty_percent:g}",
                  f"{r.final:g}"] if r.scored else [""] * 5  # fmt: skip
        rows.append([r.student, r.assignment, r.status, *scored, sandbox,
                     *[f"{points[c]:g}" if c in points else "" for c in columns]])  # fmt: skip
    return csv_text(rows)


def feedback_paths(out: Path, results: list[SubmissionResult]) -> dict[tuple[str, str], Path]:
    """``{(student, assignment): out/feedback/<student>/<assignment>/<notebook>.html}``: nbgrader's layout.

    Names are made safe by :func:`safe_name`; raises ``ValueError`` if two rows would still share a
    page (also on a file system that ignores case), which would show one student another's marks.
    """
    check_unique(results)
    owner: dict[str, str] = {}  # case-folded student folder -> its student (macOS and Windows ignore case)
    folders: dict[str, str] = {}  # student -> folder
    for student in sorted({r.student for r in results}):
        folder = safe_name(student)
        if owner.setdefault(folder.casefold(), student) != student:
            folder = safe_name(student, hashed=True)
            owner[folder.casefold()] = student
        folders[student] = folder
    paths: dict[tuple[str, str], Path] = {}
    seen: dict[str, tuple[str, str]] = {}
    for r in results:
        notebook = safe_name(Path(r.path).stem) if r.path else safe_name(r.assignment)
        path = out / "feedback" / folders[r.student] / safe_name(r.assignment) / f"{notebook}.html"
        folded = str(path.relative_to(out)).casefold()
        if folded in seen:
            raise ValueError(f"feedback pages of {seen[folded]} and {r.key} would be one file ({path})")
        seen[folded] = r.key
        paths[r.key] = path
    return paths


def write_reports(sheet: Sheet, out: Path, only: set[tuple[str, str]] | None = None) -> None:
    """Write ``grades.csv``, ``grades.json`` and the feedback pages of ``sheet`` into ``out``, each atomically.

    ``only``: the (student, assignment) rows whose pages changed (None: every page). Renders what it is
    given: marks are applied by the caller (:func:`cnnlab.grading.results.marks.publish`).
    """
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(sheet.results, key=lambda r: (r.assignment, r.student, r.path))
    pages = feedback_paths(out, ordered)
    write_atomically(out / "grades.csv", _csv(ordered, sheet.sandbox))
    write_atomically(out / SHEET_FILE, sheet_to_json(Sheet(**{**sheet.__dict__, "results": ordered})))
    for r in ordered:
        if only is None or r.key in only:
            pages[r.key].parent.mkdir(parents=True, exist_ok=True)
            write_atomically(pages[r.key], feedback_page(r, sheet.late_policy))
    if only is None:  # a whole run; the marking page redraws it on request (cnnlab.marking)
        write_overview(sheet, out)


def write_overview(sheet: Sheet, out: Path) -> str:
    """Write ``out/class.html`` (:mod:`cnnlab.grading.results.overview`); returns its text."""
    from cnnlab.grading.results.overview import FILE, class_page  # noqa: PLC0415 -- matplotlib: only when drawn

    also = "the similarity report (similarity.html)" if (out / "similarity.html").is_file() else ""
    page = class_page(sheet, also)
    write_atomically(out / FILE, page)
    return page


@functools.cache
def _templates():
    import jinja2  # noqa: PLC0415

    environment = jinja2.Environment(loader=jinja2.PackageLoader("cnnlab.grading.results", "templates"), autoescape=True,
                                     undefined=jinja2.StrictUndefined, keep_trailing_newline=True)  # fmt: skip
    environment.filters["g"] = lambda number: f"{number:g}"
    environment.filters["readable"] = readable
    return environment


def feedback_page(result: SubmissionResult, late_policy: LatePolicy | None = None) -> str:
    """One student's page (``templates/feedback.html``): everything shown is escaped by the template engine."""
    titles = {c.grade_id: c.title for c in result.cells}
    return _templates().get_template("feedback.html").render(r=result, policy=late_policy, titles=titles)

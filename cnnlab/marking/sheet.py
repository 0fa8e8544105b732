"""What the marking page shows: every written task of a grade folder, and each student's answer and mark.

Pure data, no server: :func:`marking_sheet` is what the page's ``GET`` returns,
and it is tested on its own.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.grading import marks
from cnnlab.grading.report import read_sheet
from cnnlab.grading.source import grade_cells, is_solution, meta, read_notebook, split_solution

__all__ = ["marking_sheet", "questions"]


def questions(source: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(assignment, grade_id): (question, model answer)}`` of every written task under ``source``.

    ``source`` holds ``<assignment>.ipynb`` or ``<assignment>/<notebook>.ipynb`` (as ``cnnlab grade --source``).
    """
    found: dict[tuple[str, str], tuple[str, str]] = {}
    source = Path(source)
    if not source.is_dir():
        return found
    paths = [(p.stem, p) for p in sorted(source.glob("*.ipynb"))]
    paths += [(p.parent.name, p) for p in sorted(source.glob("*/*.ipynb")) if not p.parent.name.startswith(".")]
    for assignment, path in paths:
        try:
            nb = read_notebook(path)
        except Exception:  # noqa: BLE001 -- an unreadable source only loses its questions on the page
            continue
        for cell in grade_cells(nb):
            if is_solution(cell) and cell.cell_type == "markdown":
                found[(assignment, meta(cell)["grade_id"])] = split_solution(cell.source)
    return found


def _answer(text: str, question: str) -> str:
    """The student's words: their cell without the question the student version repeats."""
    stripped = text.strip()
    if question and stripped.startswith(question):
        stripped = stripped[len(question):].strip()
    return stripped


def marking_sheet(out: Path) -> dict:
    """The page's data for the grade folder ``out``.

    ``{"folder", "source", "tasks": [{"assignment", "grade_id", "max", "question", "model_answer"}],
    "students": [{"assignment", "student", "answers": {grade_id: text}, "marks": {grade_id: {"points",
    "comment"}}, "total", "max", "final", "pending"}]}``. Raises ``FileNotFoundError``/``ValueError``
    for a folder without a grade sheet this version wrote.
    """
    out = Path(out)
    sheet = read_sheet(out)
    results = [r for r in marks.apply(sheet.results, marks.load(out)) if r.scored]
    texts = questions(Path(sheet.source)) if sheet.source else {}
    tasks, seen = [], set()
    for r in sorted(results, key=lambda r: r.assignment):
        for c in r.cells:
            if c.passed is None and (r.assignment, c.grade_id) not in seen:
                seen.add((r.assignment, c.grade_id))
                question, model = texts.get((r.assignment, c.grade_id), ("", ""))
                tasks.append({"assignment": r.assignment, "grade_id": c.grade_id, "max": c.max_points,
                              "question": question, "model_answer": model})  # fmt: skip
    students = []
    for r in sorted(results, key=lambda r: (r.assignment, r.student)):
        manual = [c for c in r.cells if c.passed is None]
        if not manual:
            continue
        answers = dict(r.manual_answers)
        students.append({
            "assignment": r.assignment, "student": r.student,
            "answers": {c.grade_id: _answer(answers.get(c.grade_id, ""), texts.get((r.assignment, c.grade_id), ("",))[0])
                        for c in manual},
            "marks": {c.grade_id: {"points": c.points, "comment": c.comment} for c in manual if c.marked},
            "total": r.total, "max": r.max_points, "final": r.final, "pending": r.manual_pending,
        })  # fmt: skip
    return {"folder": str(out), "source": sheet.source, "tasks": tasks, "students": students}

"""What the marking page shows: every written task of a grade folder, and each student's answer and mark.

Pure data, no server: :func:`marking_sheet` is what the page's ``GET`` returns,
and it is tested on its own.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.grading.authoring.source import split_rubric, student_words, written_questions
from cnnlab.grading.results import marks
from cnnlab.grading.results.sheet import read_sheet

__all__ = ["marking_sheet"]


def marking_sheet(out: Path) -> dict:
    """The page's data for the grade folder ``out``.

    ``{"folder", "source", "tasks": [{"assignment", "grade_id", "max", "question", "model_answer", "rubric"}],
    "students": [{"assignment", "student", "answers": {grade_id: text}, "marks": {grade_id: {"points",
    "comment"}}, "total", "max", "final", "pending"}]}``. Raises ``FileNotFoundError``/``ValueError``
    for a folder without a grade sheet this version wrote.
    """
    out = Path(out)
    sheet = read_sheet(out)
    results = [r for r in marks.apply(sheet.results, marks.load(out)) if r.scored]
    texts = written_questions(Path(sheet.source)) if sheet.source else {}
    tasks, seen = [], set()
    for r in sorted(results, key=lambda r: r.assignment):
        for c in r.cells:
            if c.passed is None and (r.assignment, c.grade_id) not in seen:
                seen.add((r.assignment, c.grade_id))
                question, model = texts.get((r.assignment, c.grade_id), ("", ""))
                model, rubric = split_rubric(model)
                tasks.append({"assignment": r.assignment, "grade_id": c.grade_id, "max": c.max_points,
                              "question": question, "model_answer": model, "rubric": rubric})  # fmt: skip
    students = []
    for r in sorted(results, key=lambda r: (r.assignment, r.student)):
        manual = [c for c in r.cells if c.passed is None]
        if not manual:
            continue
        answers, printed = dict(r.manual_answers), dict(r.printed)
        students.append({
            "assignment": r.assignment, "student": r.student,
            "answers": {c.grade_id: student_words(answers.get(c.grade_id, ""), texts.get((r.assignment, c.grade_id), ("",))[0])
                        for c in manual},
            "printed": {c.grade_id: printed[c.grade_id] for c in manual if c.grade_id in printed},
            "marks": {c.grade_id: {"points": c.points, "comment": c.comment} for c in manual if c.marked},
            "total": r.total, "max": r.max_points, "final": r.final, "pending": r.manual_pending,
        })  # fmt: skip
    return {"folder": str(out), "source": sheet.source, "tasks": tasks, "students": students}

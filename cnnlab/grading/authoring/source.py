"""The assignment source format: nbgrader's, read and validated.

A source notebook (``solutions/NN_*.ipynb``) marks cells with metadata
``{"nbgrader": {"schema_version": 3, "grade": bool, "solution": bool,
"locked": bool, "grade_id": str, "points": number, "task": false}}``:

=======================  ======  ========  ===========================================
cell kind                grade   solution  meaning
=======================  ======  ========  ===========================================
answer (solution)        false   true      student writes code/markdown here
autograded test          true    false     tests; may hold ``### BEGIN HIDDEN TESTS``
manually graded answer   true    true      a written answer worth points
read-only                false   false     locked=true: instructions the student keeps
=======================  ======  ========  ===========================================

Inside cells, ``### BEGIN SOLUTION`` / ``### END SOLUTION`` delimit the
instructor's answer and ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``
the tests students never see.

A written answer's solution block ends with its rubric, which the marking page
shows beside the model answer (and students never see)::

    **Rubric**
    - (1 pt) States that ...
    - (2 pts) Explains why ...
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = [
    "BEGIN_HIDDEN",
    "BEGIN_SOLUTION",
    "END_HIDDEN",
    "END_SOLUTION",
    "SourceError",
    "cell_key",
    "grade_cells",
    "is_grade",
    "is_solution",
    "meta",
    "read_notebook",
    "rubric_criteria",
    "rubric_problems",
    "split_rubric",
    "split_solution",
    "student_words",
    "unanswered",
    "written_questions",
    "unrecorded_tests",
    "validate",
]

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
# What nbgrader's ClearSolutions leaves in a student's answer cell: an answer that is only these is no answer.
RECORD_CALLS = ("record(", "record_artefact(")  # how a test cell sends values to the grader
STUB_LINES = ("YOUR ANSWER HERE", "# YOUR CODE HERE", "raise NotImplementedError()", "raise NotImplementedError")


class SourceError(ValueError):
    """A malformed assignment source; the message names the notebook and cell."""


def meta(cell) -> dict:
    """A cell's nbgrader metadata; ``{}`` when absent or malformed (a submission can hold anything)."""
    metadata = cell.get("metadata") if isinstance(cell, dict) else None
    found = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return found if isinstance(found, dict) else {}


def is_grade(cell) -> bool:
    return bool(meta(cell).get("grade", False))


def is_solution(cell) -> bool:
    return bool(meta(cell).get("solution", False))


def cell_key(cell) -> str:
    """How a cell is matched between source and submission: grade_id, else the cell id."""
    grade_id = meta(cell).get("grade_id")
    return f"grade_id:{grade_id}" if grade_id else f"id:{cell.get('id', '')}"


def grade_cells(nb) -> list:
    return [cell for cell in nb.cells if is_grade(cell)]


def read_notebook(path: str | Path):
    """Read a notebook as nbformat 4 (upgrading older minor versions)."""
    return nbformat.read(str(path), as_version=4)


def _describe(index: int, cell) -> str:
    grade_id = meta(cell).get("grade_id")
    return f"cell {index} ({cell.cell_type}{', grade_id ' + repr(grade_id) if grade_id else ''})"


def _marker_problems(lines: Iterable[str], begin: str, end: str) -> str | None:
    depth = 0
    for line in lines:
        if begin in line:
            if depth:
                return f"nested {begin!r}"
            depth = 1
        elif end in line:
            if not depth:
                return f"{end!r} without a matching {begin!r}"
            depth = 0
    return f"{begin!r} is never closed by {end!r}" if depth else None


def validate(nb, name: str = "notebook") -> None:
    """Raise :class:`SourceError` unless ``nb`` is a well-formed assignment source.

    Checks: every nbgrader cell has a ``grade_id``, unique in the notebook;
    ``points`` only on grade cells, and a non-negative number there;
    solution and hidden-test markers balanced and in the right kind of
    cell; every code solution cell contains a solution region (otherwise
    the student version would give the answer away or replace the whole
    cell silently); at least one grade cell.
    """
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        where = _describe(index, cell)
        m = meta(cell)
        lines = cell.source.splitlines()
        for begin, end in ((BEGIN_SOLUTION, END_SOLUTION), (BEGIN_HIDDEN, END_HIDDEN)):
            problem = _marker_problems(lines, begin, end)
            if problem:
                problems.append(f"{where}: unbalanced markers: {problem}")
        has_solution = any(BEGIN_SOLUTION in line for line in lines)
        has_hidden = any(BEGIN_HIDDEN in line for line in lines)
        if not m:
            if has_solution or has_hidden:
                problems.append(
                    f"{where}: has markers but no nbgrader metadata (make it a solution or test cell)"
                )
            continue
        if m.get("schema_version", 3) != 3:
            problems.append(f"{where}: nbgrader schema_version must be 3, got {m.get('schema_version')!r}")
        grade_id = m.get("grade_id")
        if not grade_id or not isinstance(grade_id, str):
            problems.append(f"{where}: missing grade_id")
        elif grade_id in seen:
            problems.append(f"{where}: duplicate grade_id {grade_id!r} (also cell {seen[grade_id]})")
        else:
            seen[grade_id] = index
        grade, solution = bool(m.get("grade")), bool(m.get("solution"))
        if "points" in m and not grade:
            problems.append(f"{where}: points on a cell that is not a grade cell")
        if grade:
            points = m.get("points")
            if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
                problems.append(f"{where}: a grade cell needs points >= 0, got {points!r}")
        if solution and cell.cell_type == "code" and not has_solution:
            problems.append(f"{where}: solution cell with no {BEGIN_SOLUTION!r} marker")
        if has_solution and not solution:
            problems.append(f"{where}: {BEGIN_SOLUTION!r} in a cell that is not a solution cell")
        if has_hidden and not (grade and not solution and cell.cell_type == "code"):
            problems.append(f"{where}: hidden tests are only allowed in autograded test (code) cells")
    if not any(is_grade(cell) for cell in nb.cells):
        problems.append("no grade cell: the assignment has nothing to score")
    if problems:
        raise SourceError(f"{name} is not a valid assignment source:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class GradeItem:
    """One scored cell of an assignment."""

    grade_id: str
    points: float
    manual: bool  # graded by a person: a written answer, or nbgrader's "manually graded answer" code cell
    question: str = ""  # a manual cell's own text outside its solution markers (what the student version keeps)
    title: str = ""  # the heading of the task the cell belongs to, as the student reads it ("Task 8: ...")


def grade_items(nb) -> list[GradeItem]:
    """Every scored cell. As in nbgrader, a cell that is both ``grade`` and ``solution`` is graded by a person,
    whether it is markdown (a written answer) or code (a "manually graded answer")."""
    titles = task_titles(nb)
    return [GradeItem(meta(c)["grade_id"], float(meta(c).get("points", 0)), is_solution(c),
                      split_solution(c.source)[0] if is_solution(c) else "", titles.get(meta(c)["grade_id"], ""))
            for c in grade_cells(nb)]  # fmt: skip


_HEADING = re.compile(r"^#{2,6}\s+(?P<title>.+?)\s*$")  # level 1 is the notebook's own title
_POINTS = re.compile(r"\s*\([^)]*\bpoints?\b[^)]*\)")


def task_titles(nb) -> dict[str, str]:
    """``{grade_id: title}``: each grade cell's task, the last markdown heading above it, without its points.

    ``## Task 8 (2 points): edge magnitude`` gives ``Task 8: edge magnitude``; a grade cell with no
    heading above it is left out.
    """
    titles, current = {}, ""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and not is_grade(cell) and not is_solution(cell):  # not an answer's text
            first = str(cell.source).strip().splitlines()[0] if str(cell.source).strip() else ""
            if found := _HEADING.match(first):
                current = _POINTS.sub("", found.group("title")).strip()
        if is_grade(cell) and current:
            titles[meta(cell)["grade_id"]] = current
    return titles


def unanswered(text: str, question: str = "") -> bool:
    """Whether an answer cell holds nothing but the question and what ``cnnlab assign`` left there."""
    words = student_words(str(text), question)
    return not any(line.strip() and line.strip() not in STUB_LINES for line in words.splitlines())


def split_solution(text: str) -> tuple[str, str]:
    """``(question, model answer)`` of a written-answer cell: the text outside and inside the solution markers."""
    outside, inside, in_solution = [], [], False
    for line in text.splitlines():
        if BEGIN_SOLUTION in line or END_SOLUTION in line:
            in_solution = BEGIN_SOLUTION in line
            continue
        (inside if in_solution else outside).append(line)
    return "\n".join(outside).strip(), "\n".join(inside).strip()


_RUBRIC_HEADING = re.compile(r"^\W*rubric\b", re.IGNORECASE)
_CRITERION = re.compile(r"^\s*[-*]\s*\((\d+(?:\.\d+)?)\s*(?:pt|pts|point|points)\)\s*(\S.*)$", re.IGNORECASE)


def split_rubric(model: str) -> tuple[str, str]:
    """``(model answer, rubric)``: the rubric starts at a line reading ``**Rubric**`` ("" when there is none)."""
    lines = model.splitlines()
    for i, line in enumerate(lines):
        if _RUBRIC_HEADING.match(line):
            return "\n".join(lines[:i]).strip(), "\n".join(lines[i:]).strip()
    return model.strip(), ""


def rubric_criteria(rubric: str) -> list[tuple[float, str]]:
    """``[(points, criterion), ...]`` from the rubric's ``- (N pt) ...`` lines."""
    return [(float(m.group(1)), m.group(2).strip()) for m in map(_CRITERION.match, rubric.splitlines()) if m]


def rubric_problems(nb, name: str = "notebook") -> list[str]:
    """Written answers without a rubric, or whose criteria do not add up to the cell's points."""
    problems = []
    for cell in nb.cells:
        if not (is_grade(cell) and is_solution(cell)):
            continue
        grade_id, points = meta(cell).get("grade_id"), float(meta(cell).get("points", 0) or 0)
        criteria = rubric_criteria(split_rubric(split_solution(cell.source)[1])[1])
        if not criteria:
            problems.append(f"{name}: written answer {grade_id!r} has no rubric ('**Rubric**', then '- (1 pt) ...' lines)")
        elif abs(sum(p for p, _ in criteria) - points) > 1e-9:
            problems.append(f"{name}: the rubric of {grade_id!r} gives {sum(p for p, _ in criteria):g} points; "
                            f"the cell is worth {points:g}")  # fmt: skip
    return problems


def question_of(cells: list, index: int) -> str:
    """The question a person marks cell ``index`` against: the cell's own text outside its solution
    markers, or, when that is empty (the usual layout), the markdown cell just before it."""
    question = split_solution(str(cells[index].get("source", "")))[0]
    if question or index == 0:
        return question
    before = cells[index - 1]
    if before.get("cell_type") == "markdown" and not meta(before):
        return str(before.get("source", "")).strip()
    return ""


def written_questions(source: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """``{(assignment, grade_id): (question, model answer)}`` of every task a person marks under ``source``.

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
        for index, cell in enumerate(nb.cells):
            if is_grade(cell) and is_solution(cell):
                found[(assignment, meta(cell)["grade_id"])] = (question_of(nb.cells, index),
                                                               split_solution(cell.source)[1])  # fmt: skip
    return found


def student_words(text: str, question: str) -> str:
    """The student's words: their cell without the question the student version repeats."""
    stripped = text.strip()
    question = question.strip()
    if question and stripped.startswith(question):
        stripped = stripped[len(question):].strip()
    return stripped


def unrecorded_tests(nb) -> list[str]:
    """grade_ids of autograded test cells that never call ``record(`` or ``record_artefact(``.

    Their verdicts come from the kernel's replies alone, which a submission
    can forge (as under nbgrader); ``cnnlab assign`` warns about them.
    """
    return [meta(c)["grade_id"] for c in grade_cells(nb)
            if c.cell_type == "code" and not is_solution(c) and not any(call in c.source for call in RECORD_CALLS)]  # fmt: skip

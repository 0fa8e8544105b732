"""``cnnlab validate``: a student's check before submitting, run the way the grader runs it.

The notebook runs top to bottom in a fresh kernel, with the grader's time and
memory limits, its test cells restored from the notebook's own nbgrader cells
(so the visible tests, never the hidden ones: a student's copy has none), and
each task is reported as passed, failed (with the check's message), not
attempted (the answer still raises ``NotImplementedError``), or too slow.
This is nbgrader's ``validate`` and otter's ``check``, with the grader's
messages. No sandbox is needed: it is the student's own code on the
student's own machine.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cnnlab.grading.authoring.source import (
    SourceError,
    grade_items,
    is_grade,
    meta,
    read_notebook,
    unanswered,
)
from cnnlab.grading.pipeline.execute import Limits
from cnnlab.grading.pipeline.restore import restore
from cnnlab.grading.pipeline.sandbox import Sandbox
from cnnlab.grading.pipeline.score import score

__all__ = ["TaskCheck", "validate_notebook"]

_HEADING = re.compile(r"^#{1,3}\s+(Task[^\n]*)", re.M)
VERDICTS = ("passed", "failed", "not attempted", "too slow", "answered", "not answered")


@dataclass(frozen=True)
class TaskCheck:
    """One task's result: ``verdict`` is one of :data:`VERDICTS`; ``message`` says why it failed."""

    grade_id: str
    title: str
    points: float
    verdict: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict in ("passed", "answered")


def _titles(nb) -> dict[str, str]:
    """Each grade cell's task title: the last ``## Task ...`` heading above it, else its grade_id."""
    titles, current = {}, ""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (found := _HEADING.findall(cell.source)):
            current = found[-1].strip()
        if is_grade(cell):
            titles[meta(cell)["grade_id"]] = current or meta(cell)["grade_id"]
    return titles


def _verdict(passed: bool | None, message: str) -> tuple[str, str]:
    if passed:
        return "passed", ""
    if message.startswith("not implemented yet"):
        return "not attempted", ""
    if message == "timed out" or "(timeout)" in message:
        return "too slow", message
    return "failed", message


def validate_notebook(path: Path, limits: Limits | None = None) -> list[TaskCheck]:
    """Run ``path`` as the grader would (visible tests only); one :class:`TaskCheck` per graded task.

    ``limits`` default to the grader's. Raises :class:`SourceError` for a file that is not an assignment notebook.
    """
    limits = limits or Limits()
    from cnnlab.grading.pipeline.kernels import KernelFailure, Kernels  # noqa: PLC0415 -- it imports heavy modules
    from cnnlab.grading.pipeline.submission import run_with_reruns  # noqa: PLC0415

    try:
        nb = read_notebook(path)
    except Exception as error:  # noqa: BLE001 -- any unreadable file gets the same clear message
        raise SourceError(f"{path} is not a readable notebook ({type(error).__name__}: {error})") from None
    items = grade_items(nb)
    if not items:
        raise SourceError(f"{path} has no graded cells (nbgrader metadata): is it an assignment from exercises/?")
    with tempfile.TemporaryDirectory(prefix="cnnlab-validate-") as tmp:
        kernels = Kernels(Sandbox(enabled=False, limits=limits), limits, seed=0, root=Path(tmp), uids=[None])
        try:
            runs = run_with_reruns(restore(nb, nb), kernels, lambda *_: None)  # a crash costs its task only
        except KernelFailure as error:
            raise SourceError(f"{path}: {error}") from None
    executed, execution = runs.executed, runs.execution
    titles = _titles(nb)
    checks = []
    answers = {meta(c).get("grade_id"): c.source for c in nb.cells if meta(c).get("solution")}
    for item, result in zip(items, score(items, {}, executed, execution, failed=runs.failed), strict=True):
        if item.manual:
            # The student's copy has no solution markers, so no question can be told apart from the answer.
            verdict = "not answered" if unanswered(answers.get(item.grade_id, "")) else "answered"
            checks.append(TaskCheck(item.grade_id, titles.get(item.grade_id, item.grade_id), item.points, verdict))
        else:
            verdict, message = _verdict(result.passed, result.message)
            checks.append(TaskCheck(item.grade_id, titles.get(item.grade_id, item.grade_id), item.points, verdict, message))
    return checks

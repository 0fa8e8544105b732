"""One submission through the pipeline: intake's row -> read -> restore -> execute -> score -> a sheet row.

:func:`prepare` is everything before a kernel (what the grader's own machine
does, also for a Dask run); :func:`run_and_score` is the kernel and the
verdicts (what a Dask worker does). Both return rows; neither raises for
anything a submission does. ``cnnlab grade`` (:mod:`cnnlab.grading.grade`)
and its Dask workers (:mod:`cnnlab.grading.distribution.cluster`) both call them.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cnnlab.grading.authoring.source import GradeItem
from cnnlab.grading.pipeline.artefacts import measure_all
from cnnlab.grading.pipeline.execute import Execution, Limits
from cnnlab.grading.pipeline.intake import Submission, read_submission
from cnnlab.grading.pipeline.kernels import KernelFailure, Kernels
from cnnlab.grading.pipeline.restore import restore, segment
from cnnlab.grading.pipeline.score import CellResult, Reference, score
from cnnlab.grading.results.sheet import SubmissionResult

__all__ = ["Assignment", "grade_one", "grader_failure", "prepare", "run_and_score"]


@dataclass(frozen=True)
class Assignment:
    name: str
    path: Path
    nb: object
    items: tuple[GradeItem, ...]


def _row(sub: Submission, status: str, started: float, *, cells=(), notes=(), answers=()) -> SubmissionResult:
    """One grade-sheet row for ``sub``; intake notes follow the step's own notes."""
    return SubmissionResult(sub.student, sub.assignment, str(sub.path), status, tuple(cells), (*notes, *sub.notes),
                            tuple(answers), time.monotonic() - started, folder=sub.folder)  # fmt: skip


def _zero(assignment: Assignment) -> tuple[CellResult, ...]:
    """Every grade cell at 0 points: for a file that is not a gradable notebook."""
    return tuple(CellResult(i.grade_id, 0.0, i.points, None if i.manual else False, "not graded")
                 for i in assignment.items)  # fmt: skip


_STATUS_NOTES = {
    "timeout": "time limit reached ({cell:g} s per cell, {notebook:g} s per notebook); cells after it were not scored",
    "memory": "the kernel used more than {memory} MiB and was stopped",
    "processes": "the kernel started more than {processes} processes and was stopped",
    "kernel-died": "the kernel exited (os._exit, a crash, or a signal); tests after that point score 0",
}
_ENFORCED = {"cgroup": "the Linux kernel (a cgroup)", "watchdog": "the grader's watchdog"}


def _execution_notes(execution: Execution, limits: Limits) -> tuple[str, ...]:
    notes = []
    if template := _STATUS_NOTES.get(execution.status):
        note = template.format(cell=limits.cell_seconds, notebook=limits.notebook_seconds, memory=limits.memory_mb,
                               processes=limits.processes)  # fmt: skip
        if execution.status in ("memory", "processes"):
            note += f" (by {_ENFORCED.get(execution.enforced_by, execution.enforced_by)})"
        notes.append(note)
    if execution.memory_limit_hit and execution.status != "memory":
        notes.append(f"the kernel reached its memory limit of {limits.memory_mb} MiB, shared memory included: "
                     "requests for more failed")  # fmt: skip
    if execution.output_truncated:
        notes.append(f"output beyond {limits.output_bytes:,} bytes was dropped")
    return tuple(notes)


def prepare(sub: Submission, assignment: Assignment | None, reference: Reference | None,
             unavailable: str) -> tuple[SubmissionResult | None, object]:  # fmt: skip
    """Everything before a kernel: ``(the finished row, None)`` when nothing is to run, else ``(None, notebook)``."""
    started = time.monotonic()
    if sub.status:  # rejected or duplicate at intake
        cells = _zero(assignment) if sub.status == "rejected" and assignment else ()
        return _row(sub, sub.status, started, cells=cells, notes=(sub.problem,)), None
    if assignment is None:
        return _row(sub, "invalid-notebook", started, notes=(f"no assignment named {sub.assignment!r} in the sources",)), None
    if reference is None:
        return _row(sub, "not-gradable", started, notes=(unavailable,)), None
    nb, problem = read_submission(sub.path, assignment.nb, assignment.name)
    if nb is None:
        return _row(sub, "invalid-notebook", started, cells=_zero(assignment), notes=(problem,)), None
    return None, nb


def run_and_score(sub: Submission, assignment: Assignment, reference: Reference, nb, kernels: Kernels) -> SubmissionResult:
    """Execute a read submission ``nb`` in a fresh kernel and score it: the part a Dask worker does too."""
    started = time.monotonic()

    def source_compare(grade_id: str, key: str):
        found = reference.get(grade_id, {}).get(key)
        return found.compare if found is not None else None

    try:
        with tempfile.TemporaryDirectory(prefix="cnnlab-artefacts-") as folder:
            executed, execution = kernels.run(restore(assignment.nb, nb), artefacts=Path(folder))
            measure_all(executed, source_compare, Path(folder), kernels.measure)
    except KernelFailure as error:
        return _row(sub, "not-gradable", started, notes=(str(error),))
    manual = {item.grade_id for item in assignment.items if item.manual}
    answers = [(segment(c)["grade_id"], c.source) for c in executed.cells
               if segment(c).get("kind") == "answer" and segment(c).get("grade_id") in manual]  # fmt: skip
    return _row(sub, "graded" if execution.status == "ok" else execution.status, started,
                cells=score(list(assignment.items), reference, executed, execution),
                notes=_execution_notes(execution, kernels.limits), answers=answers)  # fmt: skip


def grade_one(sub: Submission, assignment: Assignment | None, reference: Reference | None, unavailable: str,
               kernels: Kernels) -> SubmissionResult:  # fmt: skip
    done, nb = prepare(sub, assignment, reference, unavailable)
    return done if done is not None else run_and_score(sub, assignment, reference, nb, kernels)


def grader_failure(sub: Submission, error: BaseException) -> SubmissionResult:
    """The row of a submission the grader itself failed on: not-gradable, never a zero."""
    return SubmissionResult(sub.student, sub.assignment, str(sub.path), "not-gradable", folder=sub.folder,
                            notes=(f"the grader failed: {type(error).__name__}: {str(error)[:500]}",))  # fmt: skip



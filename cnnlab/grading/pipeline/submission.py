"""One submission through the pipeline: intake's row -> read -> restore -> execute -> score -> a sheet row.

:func:`prepare` is everything before a kernel (what the grader's own machine
does, also for a Dask run); :func:`run_and_score` is the kernel and the
verdicts (what a Dask worker does). Both return rows; neither raises for
anything a submission does. ``cnnlab grade`` (:mod:`cnnlab.grading.grade`)
and its Dask workers (:mod:`cnnlab.grading.distribution.cluster`) both call them.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cnnlab.grading.authoring import variants
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
    per_student: bool = False  # nb's variant cell holds this student's own values (cnnlab grade --secret)


def _row(sub: Submission, status: str, started: float, *, cells=(), notes=(), answers=(), printed=()) -> SubmissionResult:
    """One grade-sheet row for ``sub``; intake notes follow the step's own notes."""
    return SubmissionResult(sub.student, sub.assignment, str(sub.path), status, tuple(cells), (*notes, *sub.notes),
                            tuple(answers), time.monotonic() - started, folder=sub.folder,
                            printed=tuple(printed))  # fmt: skip


def _zero(assignment: Assignment) -> tuple[CellResult, ...]:
    """Every grade cell at 0 points: for a file that is not a gradable notebook."""
    return tuple(CellResult(i.grade_id, 0.0, i.points, None if i.manual else False, "not graded", title=i.title)
                 for i in assignment.items)  # fmt: skip


_STATUS_NOTES = {
    "timeout": "time limit reached ({cell:g} s per cell, {notebook:g} s per notebook); cells after it were not scored",
    "memory": "the kernel used more than {memory} MiB and was stopped",
    "processes": "the kernel started more than {processes} processes, or more than {threads} processes and threads "
                 "together, and was stopped",
    "kernel-died": "the kernel exited (os._exit, a crash, or a signal); tests after that point score 0",
}
RERUNS = 3  # fresh kernels after a crash, per submission
CRASHES = ("kernel-died", "memory", "processes")  # a kernel that ended mid-cell; a time-out is interrupted instead
SKIPPED = "# skipped by the grader: the kernel died in this cell in an earlier run"
_ENFORCED = {"cgroup": "the Linux kernel (a cgroup)", "watchdog": "the grader's watchdog"}


def _execution_notes(execution: Execution, limits: Limits) -> tuple[str, ...]:
    notes = []
    if template := _STATUS_NOTES.get(execution.status):
        note = template.format(cell=limits.cell_seconds, notebook=limits.notebook_seconds, memory=limits.memory_mb,
                               processes=limits.processes, threads=limits.threads)  # fmt: skip
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


def crash_site(nb, index: int) -> tuple[set[int], str | None] | None:
    """What to leave out of the next run after the kernel died in cell ``index`` of a restored ``nb``.

    ``(cell indices to skip, grade_id of the test that fails for it or None)``, or None for an
    index outside the notebook:

    * in a test's visible or hidden part: every part of that test (the answer stays defined);
    * in an answer cell: the answer and every part of the test that follows it;
    * in a code cell the student added, or one of the source's own cells (which can call the
      student's code, or run after it changed something): that cell alone, and no task fails
      for it; a later task that needed it fails by itself.
    """
    if not 0 <= index < len(nb.cells):
        return None
    seg = segment(nb.cells[index])
    kind, grade_id = seg.get("kind"), seg.get("grade_id")

    def parts_of(test: str) -> set[int]:
        return {i for i, c in enumerate(nb.cells)
                if segment(c).get("grade_id") == test and segment(c).get("kind") in ("visible", "hidden")}  # fmt: skip

    if kind in ("student", "source"):
        return {index}, None
    if kind in ("visible", "hidden") and grade_id:
        return parts_of(grade_id), grade_id
    if kind == "answer":
        for later in nb.cells[index + 1 :]:
            test = segment(later)
            if test.get("kind") in ("visible", "hidden") and test.get("grade_id"):
                return {index} | parts_of(test["grade_id"]), test["grade_id"]
            if test.get("kind") == "answer":
                break
        return {index}, grade_id  # a manual code answer is its own grade cell
    return {index}, None  # a cell restore did not tag: skipped like a source cell


def without_cells(nb, skip: set[int]):
    """A copy of ``nb`` whose cells in ``skip`` do nothing (their segment tags are kept)."""
    out = copy.deepcopy(nb)
    for index in skip:
        out.cells[index].source = SKIPPED
    return out


@dataclass
class Runs:
    """The scored run of a submission, and what the runs before it left out.

    ``status``: the first run's (a crash stays on the row even when a rerun went through);
    ``failed``: {grade_id: why it scores 0}; ``notes``: one line per rerun, for the feedback.
    """

    executed: object
    execution: Execution
    status: str
    failed: dict[str, str]
    notes: list[str]


def run_with_reruns(restored, kernels: Kernels, measure) -> Runs:
    """Run ``restored``; after a crash in a task, run it again in a fresh kernel without that task.

    At most :data:`RERUNS` reruns, and none once the runs so far have taken longer than the
    notebook's own time limit. ``measure(executed, folder)`` measures the final run's artefacts.
    Raises :class:`KernelFailure` as :meth:`Kernels.run` does.
    """
    started, skip, failed, notes, first = time.monotonic(), set(), {}, [], None
    for attempt in range(RERUNS + 1):
        nb = without_cells(restored, skip)
        with tempfile.TemporaryDirectory(prefix="cnnlab-artefacts-") as folder:
            executed, execution = kernels.run(nb, artefacts=Path(folder))
            first = first or execution.status
            site = None
            if execution.status in CRASHES and execution.died_at_cell is not None:
                site = crash_site(restored, execution.died_at_cell)
            elapsed = time.monotonic() - started
            if site is None or not site[0] - skip or attempt == RERUNS or elapsed > kernels.limits.notebook_seconds:
                if site is not None and attempt == RERUNS:
                    notes.append(f"the kernel died {RERUNS + 1} times; no further run was made")
                elif site is not None:
                    notes.append(f"the kernel died after {elapsed:.0f} s of runs; no further run was made")
                measure(executed, Path(folder))
                return Runs(executed, execution, first, failed, notes)
        cells, test = site
        skip |= cells
        notes.extend(_execution_notes(execution, kernels.limits))
        where = f"in the test {test!r}" if test else (
            "in a code cell you added" if segment(restored.cells[execution.died_at_cell]).get("kind") == "student"
            else "in a cell of the assignment (it may have called your code)")
        notes.append(f"run {attempt + 1}: the kernel stopped ({execution.status}) {where}; the notebook was run "
                     f"again in a fresh kernel without {'that task' if test else 'that cell'}")  # fmt: skip
        if test:
            failed[test] = f"the kernel stopped ({execution.status}) while this task ran: it scores 0, " \
                           "and the later tasks were graded in a fresh kernel without it"  # fmt: skip
    raise AssertionError("unreachable")  # pragma: no cover


def run_and_score(sub: Submission, assignment: Assignment, reference: Reference, nb, kernels: Kernels) -> SubmissionResult:
    """Execute a read submission ``nb`` in a fresh kernel and score it: the part a Dask worker does too."""
    started = time.monotonic()

    def source_compare(grade_id: str, key: str):
        found = reference.get(grade_id, {}).get(key)
        return found.compare if found is not None else None

    try:
        runs = run_with_reruns(restore(assignment.nb, nb), kernels,
                               lambda done, folder: measure_all(done, source_compare, folder, kernels.measure))
    except KernelFailure as error:
        return _row(sub, "not-gradable", started, notes=(str(error),))
    manual = {item.grade_id for item in assignment.items if item.manual}
    variant_notes = _variant_notes(nb, assignment)
    answers = [(segment(c)["grade_id"], c.source) for c in runs.executed.cells
               if segment(c).get("kind") == "answer" and segment(c).get("grade_id") in manual]  # fmt: skip
    return _row(sub, "graded" if runs.status == "ok" else runs.status, started,
                cells=score(list(assignment.items), reference, runs.executed, runs.execution, failed=runs.failed),
                notes=(*variant_notes, *runs.notes, *_execution_notes(runs.execution, kernels.limits)),
                answers=answers, printed=printed_above_answers(runs.executed, manual))  # fmt: skip


PRINTED_CHARACTERS = 4_000  # kept of what the code above one written answer printed


def printed_above_answers(nb, manual: set[str]) -> list[tuple[str, str]]:
    """``(grade_id, text)``: what the code cells right above each written answer printed, for its marker.

    A written answer often quotes numbers its own notebook printed (with a variant, numbers no
    model answer holds). The text outputs (stdout and plain-text results) of the unbroken run of
    code cells just above the answer are kept, the first PRINTED_CHARACTERS of them. They come
    from the student's kernel: the marking page shows them as text, never as HTML.
    """
    found = []
    for index, cell in enumerate(nb.cells):
        seg = segment(cell)
        if seg.get("kind") != "answer" or seg.get("grade_id") not in manual:
            continue
        above = []
        for code in reversed(nb.cells[:index]):
            if code.get("cell_type") != "code":
                break
            above.insert(0, "".join(_printed(output) for output in code.get("outputs", [])))
        text = "".join(above).strip()
        if text:
            cut = len(text) > PRINTED_CHARACTERS
            found.append((seg["grade_id"], text[:PRINTED_CHARACTERS] + (" [...]" if cut else "")))
    return found


def _printed(output) -> str:
    """The text a notebook shows for one output: a stdout stream or a plain-text result; nothing else."""
    kind = output.get("output_type")
    if kind == "stream" and output.get("name") == "stdout":
        text = output.get("text", "")
    elif kind in ("execute_result", "display_data"):
        text = output.get("data", {}).get("text/plain", "")
    else:
        return ""
    text = "".join(text) if isinstance(text, list) else str(text)
    return text if text.endswith("\n") else text + "\n"


def _variant_notes(nb, assignment: Assignment) -> tuple[str, ...]:
    """A note when the submission's variant cell shows values other than those issued to its student."""
    issued = variants.values_in(assignment.nb, assignment.nb)
    shown = variants.values_in(nb, assignment.nb)
    if issued is None or shown is None or json.dumps(shown, sort_keys=True) == json.dumps(issued, sort_keys=True):
        return ()
    if not assignment.per_student:
        return (f"this notebook's variant cell shows {variants.describe(shown)}; it was graded with the assignment's "
                f"values ({variants.describe(issued)}), as the grader was given no course secret",)  # fmt: skip
    return (f"the values in this notebook's variant cell ({variants.describe(shown)}) are not the ones issued to you "
            f"({variants.describe(issued)}): it was graded with yours",)  # fmt: skip


def grade_one(sub: Submission, assignment: Assignment | None, reference: Reference | None, unavailable: str,
               kernels: Kernels) -> SubmissionResult:  # fmt: skip
    done, nb = prepare(sub, assignment, reference, unavailable)
    return done if done is not None else run_and_score(sub, assignment, reference, nb, kernels)


def grader_failure(sub: Submission, error: BaseException) -> SubmissionResult:
    """The row of a submission the grader itself failed on: not-gradable, never a zero."""
    return SubmissionResult(sub.student, sub.assignment, str(sub.path), "not-gradable", folder=sub.folder,
                            notes=(f"the grader failed: {type(error).__name__}: {str(error)[:500]}",))  # fmt: skip



"""``cnnlab grade``: score a class's submissions against the instructor sources.

The pipeline, one module per step, in the order the data flows:

1. :mod:`~cnnlab.grading.intake` finds the submissions (regular ``*.ipynb``
   files only; links, devices and duplicates get a status of their own) and
   reads each one;
2. :mod:`~cnnlab.grading.restore` rebuilds the notebook from the source: the
   tests (hidden ones included) come back from the source, the student's
   answers are kept;
3. :mod:`~cnnlab.grading.execute` runs it in a fresh kernel inside the
   :mod:`~cnnlab.grading.sandbox`, under time, memory, process, file and
   output limits;
4. :mod:`~cnnlab.grading.score` decides each test cell in this process, from
   the kernel's replies and the values the hidden tests recorded
   (:mod:`~cnnlab.grading.record`);
5. :mod:`~cnnlab.grading.report` writes the grade sheets and feedback pages.

This module ties them together: it runs each assignment's source once (its
records are the expected values, and it must pass its own tests), grades the
submissions side by side, and keeps the grader's own failures apart from the
students' results.

Tamper resistance
-----------------
The student's code and the tests share one Python kernel, so anything the
tests compute *inside* the kernel (an ``assert``, ``np.allclose``, the checks,
even ``AssertionError`` or IPython's exception display) can be monkeypatched
by the submission. So:

* **Values, not verdicts, leave the kernel.** Hidden tests call
  ``record(key, value)`` on the student's answers; the value travels as a
  display output to this process, which compares it with the source's, using
  the comparison the source asked for (close, equal, at least, at most). The
  grader never unpickles or executes anything the kernel produced.
* **Inputs chosen at grading time** (``grading_rng``, seeded per run).
* **The kernel's reply decides a failure,** not what it displayed.
* **The tests are the source's**, restored by ``grade_id``.
* **Deny by default.** The kernel sees the interpreter, its packages, the
  ``cnnlab`` package and the caches it reads; not the sources, the course
  folder, any ``.git``, any home directory or other submission. It runs as an
  unprivileged user, without network, in its own PID namespace. Without a
  working sandbox the grader refuses, unless told ``--sandbox none``.
* **The grader's failures are not zeros.** A kernel that cannot start, a full
  disk or a bug here marks the row ``not-gradable`` with the reason;
  ``--only-not-gradable`` grades those rows again later.

Limits: a test cell with no ``record`` call is decided by the kernel's
replies alone, which a determined submission can forge (as under nbgrader);
the run lists such cells at its start. A threshold (``at_least``) is judged
here, but on a value computed in the kernel.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import queue
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.grading import report
from cnnlab.grading.execute import Execution, Limits, execute
from cnnlab.grading.intake import Submission, find_submissions, read_submission
from cnnlab.grading.late import LatePolicy, submission_time
from cnnlab.grading.record import passes_own_bounds
from cnnlab.grading.report import SubmissionResult
from cnnlab.grading.restore import restore, segment
from cnnlab.grading.sandbox import KERNEL_NAME, Sandbox, kernel_uids, probe, write_kernelspec
from cnnlab.grading.score import CellResult, Reference, collect_records, partial_problems, score, unrecorded
from cnnlab.grading.source import GradeItem, SourceError, grade_items, read_notebook, validate

__all__ = ["Assignment", "GradeRun", "grade", "grader_failure", "load_assignments", "prepare", "run_and_score"]

SANDBOXES = ("bwrap", "none")
DISABLED_WARNING = ("warning: --sandbox none: kernels run unsandboxed, so a submission can read the sources and "
                    "any file this user can, and use the network; grades.csv records it")  # fmt: skip


@dataclass(frozen=True)
class Assignment:
    name: str
    path: Path
    nb: object
    items: tuple[GradeItem, ...]


@dataclass(frozen=True)
class GradeRun:
    source: Path
    out: Path
    limits: Limits = field(default_factory=Limits)
    workers: int = os.cpu_count() or 1
    seed: int | None = None  # None: drawn at random (or the earlier run's with only_not_gradable)
    sandbox: str = "bwrap"  # or "none"
    progress: bool = True
    only_not_gradable: bool = False  # re-grade the rows an earlier run in ``out`` could not grade
    scheduler: str | None = None  # a Dask scheduler's address: grade on its workers (cnnlab.grading.cluster)
    late_policy: LatePolicy | None = None  # deadline and penalty; None: no penalties


class KernelFailure(RuntimeError):
    """The grader could not run a kernel (no start, no disk): never the student's fault."""


def load_assignments(source: Path) -> dict[str, Assignment]:
    """``source/*.ipynb`` (one notebook per assignment) or ``source/<assignment>/*.ipynb``."""
    if not source.is_dir():
        raise SourceError(f"--source {source} is not a directory")
    named = [(p.stem, p) for p in sorted(source.glob("*.ipynb"))]
    if not named:
        for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
            notebooks = sorted(folder.glob("*.ipynb"))
            if len(notebooks) > 1:
                raise SourceError(f"{folder} holds {len(notebooks)} notebooks; one notebook per assignment is supported")
            named += [(folder.name, nb) for nb in notebooks]
    if not named:
        raise SourceError(f"no source notebooks in {source}")
    assignments = {}
    for name, path in named:
        nb = read_notebook(path)
        validate(nb, str(path))
        assignments[name] = Assignment(name, path, nb, tuple(grade_items(nb)))
    return assignments


class _Kernels:
    """Runs notebooks in fresh sandboxed kernels; each concurrent kernel has a slot: one of ``uids``."""

    def __init__(self, sandbox: Sandbox, limits: Limits, seed: int, root: Path,
                 uids: list[int | None] | queue.Queue):  # fmt: skip
        """``uids``: the slots, or a queue of them shared with other instances (a Dask worker's, across runs)."""
        self.sandbox, self.limits, self.seed, self.root = sandbox, limits, seed, root
        if isinstance(uids, queue.Queue):
            self.free = uids
        else:
            self.free = queue.Queue()
            for uid in uids:
                self.free.put(uid)

    def run(self, nb) -> tuple[object, Execution]:
        """``(executed notebook, execution)``; raises :class:`KernelFailure` when no kernel could run it.

        A kernel that does not start is tried once more: its failure is the machine's
        (a loaded host, a slot still being cleared), never anything the submission did.
        """
        try:
            return self._run_once(nb)
        except KernelFailure:
            return self._run_once(nb)

    def _run_once(self, nb) -> tuple[object, Execution]:
        uid = self.free.get()
        scratch = None
        try:
            scratch = Path(tempfile.mkdtemp(prefix="k", dir=self.root))
            kernels, ipc, work = scratch / "kernels", scratch / "ipc", scratch / "work"
            for folder in (ipc, work):
                folder.mkdir()
            write_kernelspec(kernels, ipc, self.sandbox, self.seed, uid, work)
            executed = copy.deepcopy(nb)
            execution = execute(executed, kernels, KERNEL_NAME, work, ipc, self.limits)
        except OSError as error:
            raise KernelFailure(f"the grader could not prepare a kernel ({error.strerror or error})") from None
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            self.free.put(uid)
        if execution.status == "not-started":
            raise KernelFailure(f"the kernel did not start ({execution.detail[:300] or 'no reason given'})")
        return executed, execution


def _reference(kernels: _Kernels, assignment: Assignment) -> tuple[Reference, list[str]]:
    """Run the source: its records are the expected values. Returns them and notes for the instructor.

    Raises :class:`SourceError` when the source fails its own tests, :class:`KernelFailure` when it cannot run.
    """
    executed, execution = kernels.run(restore(assignment.nb, assignment.nb))
    reference = collect_records(executed)
    failing = [r for r in score(list(assignment.items), reference, executed, execution) if r.passed is False]
    missed = [f"{g}: {k} misses its own bound {r.compare.describe()}"
              for g, found in reference.items() for k, r in found.items() if not passes_own_bounds(r)]  # fmt: skip
    missed += partial_problems(list(assignment.items), reference)
    if execution.status != "ok" or failing or missed:
        why = "; ".join([f"{r.grade_id}: {r.message}" for r in failing] + missed) or execution.status
        raise SourceError(f"the source {assignment.path} fails its own tests ({why}); fix it before grading")
    notes = []
    if cells := unrecorded(list(assignment.items), reference):
        notes.append(f"{assignment.name}: test cells that record no value, so their verdicts come from the kernel's "
                     f"replies alone (as under nbgrader; a submission can forge them): {', '.join(cells)}")  # fmt: skip
    for grade_id, found in reference.items():
        for key, rec in found.items():
            if rec.value.get("kind") == "bool" and rec.value.get("data") == [False]:
                notes.append(f"{assignment.name}: {grade_id} records {key!r} = False in the source itself; a "
                             "student whose answer makes it True will fail (record the value with at_least/at_most)")  # fmt: skip
    return reference, notes


def _row(sub: Submission, status: str, started: float, *, cells=(), notes=(), answers=()) -> SubmissionResult:
    """One grade-sheet row for ``sub``; intake notes follow the step's own notes."""
    return SubmissionResult(sub.student, sub.assignment, str(sub.path), status, tuple(cells), (*notes, *sub.notes),
                            tuple(answers), time.monotonic() - started)  # fmt: skip


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


def _execution_notes(execution: Execution, limits: Limits) -> tuple[str, ...]:
    notes = []
    if template := _STATUS_NOTES.get(execution.status):
        notes.append(template.format(cell=limits.cell_seconds, notebook=limits.notebook_seconds,
                                     memory=limits.memory_mb, processes=limits.processes))  # fmt: skip
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


def run_and_score(sub: Submission, assignment: Assignment, reference: Reference, nb, kernels: _Kernels) -> SubmissionResult:
    """Execute a read submission ``nb`` in a fresh kernel and score it: the part a Dask worker does too."""
    started = time.monotonic()
    try:
        executed, execution = kernels.run(restore(assignment.nb, nb))
    except KernelFailure as error:
        return _row(sub, "not-gradable", started, notes=(str(error),))
    answers = [(segment(c)["grade_id"], c.source) for c in executed.cells
               if c.cell_type == "markdown" and segment(c).get("kind") == "answer"]  # fmt: skip
    return _row(sub, "graded" if execution.status == "ok" else execution.status, started,
                cells=score(list(assignment.items), reference, executed, execution),
                notes=_execution_notes(execution, kernels.limits), answers=answers)  # fmt: skip


def _grade_one(sub: Submission, assignment: Assignment | None, reference: Reference | None, unavailable: str,
               kernels: _Kernels) -> SubmissionResult:  # fmt: skip
    done, nb = prepare(sub, assignment, reference, unavailable)
    return done if done is not None else run_and_score(sub, assignment, reference, nb, kernels)


def grader_failure(sub: Submission, error: BaseException) -> SubmissionResult:
    """The row of a submission the grader itself failed on: not-gradable, never a zero."""
    return SubmissionResult(sub.student, sub.assignment, str(sub.path), "not-gradable",
                            notes=(f"the grader failed: {type(error).__name__}: {error}",))  # fmt: skip


def _timed(result: SubmissionResult, policy: LatePolicy | None) -> SubmissionResult:
    """``result`` with its submission time (nbgrader's timestamp.txt) and, under ``policy``, its late penalty."""
    when = submission_time(Path(result.path))
    if when is None:
        return result
    hours, percent = policy.penalty(when) if policy else (0.0, 0.0)
    return dataclasses.replace(result, submitted_at=when.isoformat(), hours_late=hours, penalty_percent=percent)


def _run_all(jobs: list, workers: int, progress: bool) -> list[SubmissionResult]:
    from tqdm import tqdm  # noqa: PLC0415

    results: list[SubmissionResult | None] = [None] * len(jobs)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(_grade_one, *job): i for i, job in enumerate(jobs)}
        bar = tqdm(total=len(futures), desc="grading", unit="submission", disable=not progress)
        for future in as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except Exception as error:  # noqa: BLE001 -- a bug here is the grader's failure, not a zero
                results[index] = grader_failure(jobs[index][0], error)
            bar.update(1)
        bar.close()
    return [r for r in results if r is not None]


def _previous(run: GradeRun) -> tuple[int | None, list[SubmissionResult]]:
    if not run.only_not_gradable:
        return run.seed, []
    sheet = report.read_sheet(run.out)
    seed, sandbox, results, earlier = sheet.seed, sheet.sandbox, sheet.results, sheet.late_policy
    if earlier != run.late_policy:
        raise SourceError(f"the earlier run's late policy was {earlier.describe() if earlier else 'none'}; "
                          "re-grade with the same --due and penalty options")  # fmt: skip
    if run.seed is not None and run.seed != seed:
        raise SourceError(f"--seed {run.seed} differs from the earlier run's {seed}: re-grading must use the same seed")
    if sandbox != run.sandbox:
        raise SourceError(f"the earlier run used --sandbox {sandbox}; re-grade with the same")
    return seed, results


def grade(inputs: list[Path], run: GradeRun) -> list[SubmissionResult]:
    """Grade every submission under ``inputs``; write the reports into ``run.out``.

    Raises :class:`SourceError` (bad sources or arguments), ``FileNotFoundError`` (a missing input) and
    :class:`~cnnlab.grading.sandbox.SandboxUnavailable` (no working sandbox and no ``--sandbox none``).
    """
    if run.sandbox not in SANDBOXES:
        raise SourceError(f"sandbox must be one of {', '.join(SANDBOXES)}; got {run.sandbox!r}")
    assignments = load_assignments(run.source)
    seed, previous = _previous(run)
    submissions = find_submissions(inputs, set(assignments))
    if run.only_not_gradable:
        redo = {(r.student, r.assignment, r.path) for r in previous if r.status == "not-gradable"}
        submissions = [s for s in submissions if (s.student, s.assignment, str(s.path)) in redo]
        regraded = {(s.student, s.assignment, str(s.path)) for s in submissions}
        previous = [r for r in previous if (r.student, r.assignment, r.path) not in regraded]
    seed = seed if seed is not None else random.SystemRandom().randrange(1, 2**31)
    sandbox = Sandbox(enabled=run.sandbox == "bwrap", limits=run.limits)
    if sandbox.enabled:
        probe()
    else:
        print(DISABLED_WARNING, flush=True)
    run.out.mkdir(parents=True, exist_ok=True)
    slots = max(1, run.workers)
    with tempfile.TemporaryDirectory(prefix="cnnlab-grade-") as tmp, kernel_uids(slots) as uids:
        os.chmod(tmp, 0o711)  # kernels running as other uids reach their own socket folders only
        kernels = _Kernels(sandbox, run.limits, seed, Path(tmp), uids if sandbox.enabled else [None] * slots)
        references: dict[str, Reference] = {}
        unavailable: dict[str, str] = {}
        for name in sorted({s.assignment for s in submissions if s.assignment in assignments and not s.status}):
            try:
                references[name], notes = _reference(kernels, assignments[name])
            except KernelFailure as error:
                unavailable[name] = f"the source could not be run: {error}"
                continue
            for note in notes:
                print(f"note: {note}", flush=True)
        jobs = [(s, assignments.get(s.assignment), references.get(s.assignment), unavailable.get(s.assignment, ""),
                 kernels) for s in submissions]  # fmt: skip
        if run.scheduler:
            from cnnlab.grading import cluster  # noqa: PLC0415 -- distributed only when asked for

            graded = cluster.run_all(run.scheduler, [job[:4] for job in jobs], run.limits, seed, sandbox.enabled,
                                     run.progress)  # fmt: skip
        else:
            graded = _run_all(jobs, run.workers, run.progress)
        results = previous + [_timed(r, run.late_policy) for r in graded]
    return report.write_reports(results, run.out, seed=seed, sandbox=run.sandbox, source=str(run.source.resolve()),
                                late_policy=run.late_policy)  # fmt: skip

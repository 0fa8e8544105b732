"""``cnnlab grade``: score a class's submissions against the instructor sources.

Pipeline for one submission
---------------------------
1. Read and validate the JSON; identify the assignment (nbgrader layout
   ``submitted/<student>/<assignment>/<notebook>.ipynb``, or
   ``<student>/<notebook>.ipynb``). Anything unreadable, empty, or with none of
   the assignment's cells is ``invalid-notebook``.
2. Rebuild the notebook from the source (:func:`restore`): every cell comes
   from the source except the student's answers (matched by ``grade_id``) and
   cells the student added (kept where they were). Deleted or edited test
   cells therefore do not matter, and hidden tests are back.
3. Split each test cell into its visible and hidden parts, executed as
   separate cells, so a failure can be attributed without showing hidden code.
4. Execute in a fresh kernel (:mod:`cnnlab.grading.execute`) inside the
   sandbox (:mod:`cnnlab.grading.sandbox`), with time, memory and output
   limits.
5. Score in this process (:func:`score`), write CSV/JSON/HTML (:mod:`report`).

Tamper resistance: how a submission is kept from raising its own score
-----------------------------------------------------------------------
The student's code and the tests share one Python kernel, so anything the
tests compute *inside* the kernel (an ``assert``, ``np.allclose``,
``check_array``, even ``AssertionError`` or IPython's exception handling) can be
monkeypatched by the submission. The design therefore never trusts a verdict
made in the kernel to award points that a value can decide:

* **Values, not verdicts, leave the kernel.** Hidden tests call
  ``record(key, value)`` on the student's answers. The value travels as a
  JSON display output over the kernel's IOPub channel to this process. The
  grader never unpickles or executes anything the kernel produced.
* **Inputs chosen at grading time.** Hidden-test inputs come from
  ``grading_rng()``, seeded by a number the grader draws for each run
  (``--seed`` to reproduce). Answers copied from a leaked key for fixed
  inputs, or inputs altered by patching NumPy's random generators, do not
  match.
* **The reference comes from the source, run separately.** Before grading,
  the source notebook (with its solutions) runs once per assignment with the
  same seed in its own kernel; its records are the expected values, and
  their tolerances are the ones used (a submission cannot loosen them). A
  source that fails its own tests stops the run with a clear error.
* **A test cell scores only if** every key the reference recorded for it
  arrives exactly once and matches, and none of its parts raised. Missing,
  duplicated or extra-early records fail the cell. In-kernel asserts still run
  (they give students their messages and keep the source valid for
  nbgrader), but they can only take points away.
* **The tests are the source's.** Test cells are restored from the source by
  ``grade_id``; deleting or editing them, or adding cells, changes nothing.
* **Isolation.** Each submission gets a fresh kernel in its own scratch
  directory, inside bubblewrap where available: no network, a read-only file
  system, the sources, the grades output and every other submission hidden.
  Files a submission writes (a fake ``grades.csv``) stay in its scratch
  directory, which the grader never reads. Time, memory and output limits are
  enforced from outside the kernel.

Limits of the design: a test cell without any ``record`` call is decided
by in-kernel asserts alone, and the feedback says so; the instructor should
give every graded test cell a recorded hidden test. A student who calls a
library implementation of the answer (``cnnlab.conv`` is importable) gets
the right values: that is a matter of academic honesty, not of tampering.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from cnnlab.grading import report
from cnnlab.grading.execute import Execution, Limits, execute
from cnnlab.grading.record import MIME
from cnnlab.grading.sandbox import (
    DISABLED_WARNING,
    KERNEL_NAME,
    MISSING_WARNING,
    Sandbox,
    bwrap_available,
    write_kernelspec,
)
from cnnlab.grading.source import (
    BEGIN_HIDDEN,
    END_HIDDEN,
    GradeItem,
    SourceError,
    cell_key,
    grade_items,
    is_grade,
    is_solution,
    meta,
    read_notebook,
    validate,
)

__all__ = ["Assignment", "CellResult", "GradeRun", "SubmissionResult", "grade", "restore", "score"]

SEGMENT = "cnnlab_segment"


@dataclass
class Assignment:
    name: str
    path: Path
    nb: object
    items: list[GradeItem]
    reference: dict[str, dict[str, dict]] = field(default_factory=dict)  # grade_id -> key -> record


@dataclass
class CellResult:
    grade_id: str
    points: float
    max_points: float
    passed: bool | None  # None: graded by a person
    message: str = ""
    hidden: bool = False  # the cell has hidden tests
    unrecorded: bool = False  # no record(): verdict from in-kernel asserts only


@dataclass
class SubmissionResult:
    student: str
    assignment: str
    path: str
    status: str
    cells: list[CellResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manual_answers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def max_points(self) -> float:
        return sum(c.max_points for c in self.cells)

    @property
    def manual_pending(self) -> float:
        return sum(c.max_points for c in self.cells if c.passed is None)


# --------------------------------------------------------------------------- #
# Rebuilding the notebook to run
# --------------------------------------------------------------------------- #


def _split_hidden(source: str) -> list[tuple[str, str]]:
    """[(part, "visible"|"hidden"), ...] in order, without the marker lines."""
    parts: list[tuple[str, str]] = []
    current, kind = [], "visible"
    for line in source.splitlines():
        if BEGIN_HIDDEN in line or END_HIDDEN in line:
            if any(text.strip() for text in current):
                parts.append(("\n".join(current), kind))
            current, kind = [], "hidden" if BEGIN_HIDDEN in line else "visible"
            continue
        current.append(line)
    if any(text.strip() for text in current):
        parts.append(("\n".join(current), kind))
    return parts


def _tag(cell, grade_id: str | None, kind: str):
    cell.metadata[SEGMENT] = {"grade_id": grade_id, "kind": kind}
    return cell


def restore(source_nb, submission_nb):
    """The notebook to execute: the source's cells, the student's answers and extra cells.

    Test cells (and every other non-answer cell) come from the source, hidden
    tests included, each test cell split into visible and hidden parts.
    Cells the student added are kept after the source cell they followed.
    """
    source_keys = {cell_key(cell) for cell in source_nb.cells}
    answers, added, last = {}, {}, None
    for cell in submission_nb.cells:
        key = cell_key(cell)
        if key in source_keys:
            answers[key], last = cell, key
        elif cell.cell_type == "code":  # markdown the student added is irrelevant to grading
            added.setdefault(last, []).append(cell)
    out = nbformat.v4.new_notebook(metadata=copy.deepcopy(source_nb.metadata))
    for extra in added.get(None, []):
        out.cells.append(_tag(nbformat.v4.new_code_cell(extra.source), None, "student"))
    for cell in source_nb.cells:
        key, grade_id = cell_key(cell), meta(cell).get("grade_id")
        if is_solution(cell):
            student = answers.get(key)
            text = student.source if student is not None and student.cell_type == cell.cell_type else ""
            new = (
                nbformat.v4.new_code_cell(text)
                if cell.cell_type == "code"
                else nbformat.v4.new_markdown_cell(text)
            )
            out.cells.append(_tag(new, grade_id, "answer"))
        elif is_grade(cell) and cell.cell_type == "code":
            for text, kind in _split_hidden(cell.source):
                out.cells.append(_tag(nbformat.v4.new_code_cell(text), grade_id, kind))
        elif cell.cell_type == "code":
            out.cells.append(_tag(nbformat.v4.new_code_cell(cell.source), None, "source"))
        else:
            out.cells.append(_tag(nbformat.v4.new_markdown_cell(cell.source), None, "source"))
        for extra in added.get(key, []):
            out.cells.append(_tag(nbformat.v4.new_code_cell(extra.source), None, "student"))
    return out


# --------------------------------------------------------------------------- #
# Scoring, in the grader's process
# --------------------------------------------------------------------------- #


def _records(cell) -> tuple[dict[str, list[dict]], int]:
    """Records found in a cell's outputs, by key; and how many payloads were malformed."""
    found: dict[str, list[dict]] = {}
    malformed = 0
    for output in cell.get("outputs", []):
        payload = output.get("data", {}).get(MIME) if output.get("output_type") == "display_data" else None
        if payload is None:
            continue
        if isinstance(payload, str):  # some front ends keep JSON MIME bundles as text
            try:
                payload = json.loads(payload)
            except ValueError:
                malformed += 1
                continue
        if not (
            isinstance(payload, dict)
            and isinstance(payload.get("key"), str)
            and isinstance(payload.get("value"), dict)
        ):
            malformed += 1
            continue
        found.setdefault(payload["key"], []).append(payload)
    return found, malformed


def _decode(value: dict):
    kind = value.get("kind")
    if kind == "array":
        data = np.array([float(v) for v in value.get("data", [])], dtype=np.float64)
        return data.reshape([int(n) for n in value.get("shape", [])])
    if kind == "bool":
        return np.array([bool(v) for v in value.get("data", [])]).reshape(
            [int(n) for n in value.get("shape", [])]
        )
    if kind in ("text", "none"):
        return value.get("data")
    raise ValueError(f"unknown record kind {kind!r}")


def values_match(student: dict, reference: dict) -> bool:
    """Compare a student's record with the reference's, with the reference's tolerances."""
    try:
        got, expected = _decode(student["value"]), _decode(reference["value"])
    except (ValueError, TypeError, KeyError):
        return False
    if isinstance(expected, np.ndarray):
        if (
            not isinstance(got, np.ndarray)
            or got.shape != expected.shape
            or got.dtype.kind != expected.dtype.kind
        ):
            return False
        if expected.dtype.kind == "b":
            return bool(np.array_equal(got, expected))
        return bool(np.allclose(got, expected, rtol=float(reference["rtol"]), atol=float(reference["atol"]),
                                equal_nan=True))  # fmt: skip
    return got == expected


def _error_text(cell) -> tuple[str, str] | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return str(output.get("ename", "Error"))[:200], str(output.get("evalue", ""))[:500]
    return None


def score(assignment: Assignment, executed, execution: Execution) -> list[CellResult]:
    """One :class:`CellResult` per grade cell of the assignment."""
    by_grade: dict[str, list] = {}
    for index, cell in enumerate(executed.cells):
        segment = cell.metadata.get(SEGMENT, {})
        if segment.get("grade_id"):
            by_grade.setdefault(segment["grade_id"], []).append((index, cell, segment["kind"]))
    died = execution.died_at_cell
    results = []
    for item in assignment.items:
        parts = by_grade.get(item.grade_id, [])
        if item.manual:
            results.append(
                CellResult(item.grade_id, 0.0, item.points, None, "written answer: graded by a person")
            )
            continue
        tests = [(i, c, k) for i, c, k in parts if k in ("visible", "hidden", "answer")]
        hidden = any(k == "hidden" for _, _, k in tests)
        reference = assignment.reference.get(item.grade_id, {})
        result = CellResult(item.grade_id, 0.0, item.points, False, hidden=hidden, unrecorded=not reference)
        failure = None
        received: dict[str, list[dict]] = {}
        for index, cell, kind in tests:
            if index in execution.timed_out_cells:
                failure = "timed out"
                break
            if died is not None and index >= died:
                failure = f"not run: the kernel stopped ({execution.status}) before or during this test"
                break
            if cell.cell_type == "code" and cell.get("execution_count") is None and not cell.get("outputs"):
                failure = "not run"
                break
            error = _error_text(cell)
            if error:
                ename, evalue = error
                if ename == "NotImplementedError":
                    failure = "not implemented yet: the answer still raises NotImplementedError"
                elif kind == "hidden":
                    failure = f"hidden test failed ({ename})"
                else:
                    failure = f"{ename}: {evalue}".rstrip(": ")
                break
            records, malformed = _records(cell)
            if malformed:
                failure = "malformed test result"
                break
            for key, payloads in records.items():
                received.setdefault(key, []).extend(payloads)
        if failure is None:
            for key, expected in reference.items():
                got = received.get(key, [])
                if len(got) != 1:
                    failure = f"hidden test result {key!r} {'missing' if not got else 'sent more than once'}"
                    break
                if not values_match(got[0], expected):
                    failure = f"hidden test {key!r}: wrong value"
                    break
        if failure is None:
            result.points, result.passed = item.points, True
        else:
            result.message = failure
        results.append(result)
    return results


# --------------------------------------------------------------------------- #
# Finding assignments and submissions
# --------------------------------------------------------------------------- #


def load_assignments(source: Path) -> dict[str, Assignment]:
    """``source/*.ipynb`` (one notebook per assignment) or ``source/<assignment>/*.ipynb``."""
    if not source.is_dir():
        raise SourceError(f"--source {source} is not a directory")
    paths = sorted(source.glob("*.ipynb"))
    named = [(p.stem, p) for p in paths]
    if not named:
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            notebooks = sorted(folder.glob("*.ipynb"))
            if len(notebooks) > 1:
                raise SourceError(
                    f"{folder} holds {len(notebooks)} notebooks; one notebook per assignment is supported"
                )
            named += [(folder.name, nb) for nb in notebooks]
    if not named:
        raise SourceError(f"no source notebooks in {source}")
    assignments = {}
    for name, path in named:
        nb = read_notebook(path)
        validate(nb, str(path))
        assignments[name] = Assignment(name, path, nb, grade_items(nb))
    return assignments


@dataclass(frozen=True)
class Submission:
    student: str
    assignment: str | None
    path: Path


def find_submissions(inputs: list[Path], assignments: dict[str, Assignment]) -> list[Submission]:
    """Each input file, or every file under each input folder, as a submission."""
    found: list[Submission] = []
    for item in inputs:
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith(".")):
                if path.suffix != ".ipynb" and path.stat().st_size > 0:
                    continue
                parts = path.relative_to(item).parts
                if len(parts) >= 3 and parts[-2] in assignments:  # <student>/<assignment>/<notebook>
                    found.append(Submission(parts[-3], parts[-2], path))
                else:  # <student>/<notebook>, or a notebook directly in a folder named for the student
                    found.append(Submission(parts[-2] if len(parts) >= 2 else item.name, None, path))
        elif item.is_file():
            found.append(Submission(item.parent.name or item.stem, None, item))
        else:
            raise FileNotFoundError(f"submission {item} does not exist")
    resolved = []
    for sub in found:
        name = sub.assignment
        if name is None:
            stem = sub.path.stem
            name = (
                stem if stem in assignments else (next(iter(assignments)) if len(assignments) == 1 else stem)
            )
        resolved.append(Submission(sub.student, name, sub.path))
    return resolved


# --------------------------------------------------------------------------- #
# The run
# --------------------------------------------------------------------------- #


@dataclass
class GradeRun:
    source: Path
    out: Path
    limits: Limits = field(default_factory=Limits)
    workers: int = os.cpu_count() or 1
    seed: int | None = None
    sandbox: bool | None = None  # None: use bwrap when it works
    progress: bool = True


def _read_submission(sub: Submission, assignment: Assignment | None) -> tuple[object | None, str]:
    if assignment is None:
        return None, f"no assignment named {sub.assignment!r} in the sources"
    try:
        raw = sub.path.read_bytes()
    except OSError as error:
        return None, f"cannot read the file: {error}"
    if not raw.strip():
        return None, "the file is empty"
    try:
        nb = nbformat.reads(raw.decode("utf-8", "replace"), as_version=4)
    except Exception as error:  # noqa: BLE001 -- any parse failure means not a notebook
        return None, f"not a valid notebook ({type(error).__name__}: {str(error)[:200]})"
    if not isinstance(nb.get("cells"), list):
        return None, "not a valid notebook (no cells)"
    expected = {meta(c).get("grade_id") for c in assignment.nb.cells if meta(c).get("grade_id")}
    present = {meta(c).get("grade_id") for c in nb.cells if isinstance(c, dict) and meta(c).get("grade_id")}
    ids = {c.get("id") for c in assignment.nb.cells} & {c.get("id") for c in nb.cells if isinstance(c, dict)}
    if not (expected & present) and not ids:
        other = ", ".join(sorted(str(p) for p in present)[:5]) or "none"
        return None, (f"this is not assignment {assignment.name!r}: none of its cells are here "
                      f"(grade ids found: {other})")  # fmt: skip
    return nb, ""


class _Runner:
    def __init__(
        self, run: GradeRun, assignments: dict[str, Assignment], hidden: Sandbox, scratch_root: Path
    ):
        self.run, self.assignments, self.sandbox, self.scratch_root = run, assignments, hidden, scratch_root
        self.counter = 0
        self.lock = threading.Lock()

    def _scratch(self) -> Path:
        with self.lock:
            self.counter += 1
            path = self.scratch_root / f"s{self.counter:05d}"
        path.mkdir(parents=True)
        return path

    def execute(self, nb) -> tuple[object, Execution]:
        scratch = self._scratch()
        try:
            kernels = write_kernelspec(scratch, self.scratch_root, self.sandbox, self.run.seed)
            executed = copy.deepcopy(nb)
            execution = execute(executed, kernels, scratch, self.run.limits, KERNEL_NAME)
            return executed, execution
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def reference(self, assignment: Assignment) -> None:
        """Run the source itself: its records are the expected values; it must pass its own tests."""
        executed, execution = self.execute(restore(assignment.nb, assignment.nb))
        recorded: dict[str, dict[str, dict]] = {}
        for cell in executed.cells:
            grade_id = cell.metadata.get(SEGMENT, {}).get("grade_id")
            records, _ = _records(cell)
            for key, payloads in records.items():
                recorded.setdefault(grade_id, {})[key] = payloads[-1]
        assignment.reference = {g: r for g, r in recorded.items() if g}
        failing = [r for r in score(assignment, executed, execution) if r.passed is False]
        if execution.status != "ok" or failing:
            why = "; ".join(f"{r.grade_id}: {r.message}" for r in failing) or execution.status
            raise SourceError(
                f"the source {assignment.path} fails its own tests ({why}); fix it before grading"
            )

    def grade_one(self, sub: Submission) -> SubmissionResult:
        started = time.monotonic()
        assignment = self.assignments.get(sub.assignment)
        result = SubmissionResult(sub.student, sub.assignment or "?", str(sub.path), "graded")
        nb, problem = _read_submission(sub, assignment)
        if nb is None:
            result.status = "invalid-notebook"
            result.notes.append(problem)
            if assignment is not None:
                result.cells = _ungraded(assignment)
            return result
        try:
            executed, execution = self.execute(restore(assignment.nb, nb))
            result.cells = score(assignment, executed, execution)
            result.status = {"ok": "graded"}.get(execution.status, execution.status)
            result.notes += _execution_notes(execution, self.run.limits)
            result.manual_answers = {
                c.metadata[SEGMENT]["grade_id"]: c.source for c in executed.cells
                if c.cell_type == "markdown" and c.metadata.get(SEGMENT, {}).get("kind") == "answer"
            }  # fmt: skip
        except Exception as error:  # noqa: BLE001 -- one submission never stops the batch
            result.status = "grader-error"
            result.notes.append(f"the grader failed on this submission: {type(error).__name__}: {error}")
            result.cells = _ungraded(assignment)
        result.seconds = time.monotonic() - started
        return result


def _ungraded(assignment: Assignment) -> list[CellResult]:
    """Every grade cell at 0 points: for submissions that could not be run."""
    return [
        CellResult(i.grade_id, 0.0, i.points, None if i.manual else False, "not graded")
        for i in assignment.items
    ]


def _execution_notes(execution: Execution, limits: Limits) -> list[str]:
    notes = []
    if execution.status == "timeout":
        notes.append(f"time limit reached ({limits.cell_seconds:g} s per cell, {limits.notebook_seconds:g} s "
                     "per notebook); cells after it were not scored")  # fmt: skip
    if execution.status == "memory":
        notes.append(f"the kernel used more than {limits.memory_mb} MiB and was stopped")
    if execution.status == "kernel-died":
        notes.append("the kernel exited (os._exit, a crash, or a signal); tests after that point score 0")
    if execution.output_truncated:
        notes.append(f"output beyond {limits.output_bytes:,} bytes was dropped")
    return notes


def grade(inputs: list[Path], run: GradeRun) -> list[SubmissionResult]:
    """Grade every submission under ``inputs``; write the reports into ``run.out``."""
    assignments = load_assignments(run.source)
    submissions = find_submissions(inputs, assignments)
    if run.seed is None:
        run.seed = random.SystemRandom().randrange(1, 2**31)
    use_sandbox = bwrap_available() if run.sandbox is None else run.sandbox
    if not use_sandbox:
        print(MISSING_WARNING if run.sandbox is None else DISABLED_WARNING, flush=True)
    run.out.mkdir(parents=True, exist_ok=True)
    hidden = Sandbox(
        hidden_dirs=[run.source, run.out],
        hidden_files=[s.path for s in submissions],
        enabled=use_sandbox,
    )
    with tempfile.TemporaryDirectory(prefix="cnnlab-grade-") as tmp:
        runner = _Runner(run, assignments, hidden, Path(tmp))
        needed = {s.assignment for s in submissions if s.assignment in assignments}
        for name in sorted(needed):
            runner.reference(assignments[name])
        results = _run_all(runner, submissions, run)
    report.write_reports(results, run.out, seed=run.seed, sandboxed=use_sandbox)
    return results


def _run_all(runner: _Runner, submissions: list[Submission], run: GradeRun) -> list[SubmissionResult]:
    from tqdm import tqdm  # noqa: PLC0415

    results: list[SubmissionResult | None] = [None] * len(submissions)
    with ThreadPoolExecutor(max_workers=max(1, run.workers)) as pool:
        futures = {pool.submit(runner.grade_one, sub): i for i, sub in enumerate(submissions)}
        bar = tqdm(total=len(futures), desc="grading", unit="submission", disable=not run.progress)
        for future in as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except Exception as error:  # noqa: BLE001 -- defensive: grade_one already catches
                sub = submissions[index]
                results[index] = SubmissionResult(sub.student, sub.assignment or "?", str(sub.path), "grader-error",
                                                  notes=[f"{type(error).__name__}: {error}"])  # fmt: skip
            bar.update(1)
        bar.close()
    return [r for r in results if r is not None]

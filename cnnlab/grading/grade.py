"""``cnnlab grade``: score a class's submissions against the instructor sources.

The pipeline, one module per step, in the order the data flows:

1. :mod:`~cnnlab.grading.pipeline.intake` finds the submissions (regular ``*.ipynb``
   files only; links, devices and duplicates get a status of their own) and
   reads each one;
2. :mod:`~cnnlab.grading.pipeline.restore` rebuilds the notebook from the source: the
   tests (hidden ones included) come back from the source, the student's
   answers are kept;
3. :mod:`~cnnlab.grading.pipeline.execute` runs it in a fresh kernel inside the
   :mod:`~cnnlab.grading.pipeline.sandbox`, under time, memory, process, file and
   output limits;
4. :mod:`~cnnlab.grading.pipeline.score` decides each test cell in this process, from
   the kernel's replies and the values the hidden tests recorded
   (:mod:`~cnnlab.grading.record`);
5. :mod:`~cnnlab.grading.results.report` writes the grade sheets and feedback pages.

:mod:`~cnnlab.grading.pipeline.submission` takes one submission through steps 1-4.
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
* **No finished row is lost.** The grade folder and its ``marks.json`` are
  checked before the first kernel; each finished row goes to the journal as
  it completes (:class:`cnnlab.grading.results.sheet.Journal`), and the same command
  after a crash, a full disk or Ctrl-C resumes from it. A run that grades
  some students merges their rows into the folder's sheet and keeps
  everyone else's.

Limits: a test cell with no ``record`` call is decided by the kernel's
replies alone, which a determined submission can forge (as under nbgrader);
the run lists such cells at its start. A threshold (``at_least``) is judged
here, but on a value computed in the kernel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.grading.authoring import variants
from cnnlab.grading.authoring.source import SourceError, grade_items, read_notebook, validate
from cnnlab.grading.distribution import cluster
from cnnlab.grading.pipeline import cgroups
from cnnlab.grading.pipeline.artefacts import measure_all
from cnnlab.grading.pipeline.execute import Limits
from cnnlab.grading.pipeline.intake import Submission, find_submissions
from cnnlab.grading.pipeline.kernels import KernelFailure, Kernels
from cnnlab.grading.pipeline.restore import restore
from cnnlab.grading.pipeline.sandbox import Sandbox, kernel_uid_range, kernel_uids, probe
from cnnlab.grading.pipeline.score import Reference, collect_records, partial_problems, score, unrecorded
from cnnlab.grading.pipeline.submission import Assignment, grade_one, grader_failure
from cnnlab.grading.record import passes_own_bounds
from cnnlab.grading.results import marks
from cnnlab.grading.results.late import LatePolicy, arrival
from cnnlab.grading.results.sheet import (
    SHEET_FILE,
    Journal,
    Sheet,
    SheetError,
    SubmissionResult,
    locked,
    merge,
    read_sheet,  # fmt: skip
)

__all__ = ["GradeRun", "Interrupted", "grade", "load_assignments"]

SANDBOXES = ("bwrap", "none")
DISABLED_WARNING = ("warning: --sandbox none: kernels run unsandboxed, so a submission can read the sources and "
                    "any file this user can, and use the network; grades.csv records it")  # fmt: skip


@dataclass(frozen=True)
class GradeRun:
    source: Path
    out: Path
    limits: Limits = field(default_factory=Limits)
    workers: int = os.cpu_count() or 1
    seed: int | None = None  # None: the grade folder's, the journal's, or drawn at random
    sandbox: str = "bwrap"  # or "none"
    progress: bool = True
    only_not_gradable: bool = False  # re-grade the rows an earlier run in ``out`` could not grade
    scheduler: str | None = None  # a Dask scheduler's address: grade on its workers (cnnlab.grading.distribution.cluster)
    late_policy: LatePolicy | None = None  # deadline and penalty; None: no penalties
    insecure: bool = False  # allow a plain tcp:// scheduler (recorded in grades.json)
    tls: tuple[str, str, str] | None = None  # (CA file, certificate, key) for a tls:// scheduler
    kernel_uids: str | None = None  # START-END: the uids kernels run as (default: sandbox.KERNEL_UIDS)
    secret: bytes | None = field(default=None, repr=False)  # course secret: each student's variant values


class Interrupted(RuntimeError):
    """The run was stopped (Ctrl-C); its finished rows are in the journal and the same command resumes."""


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
        variants.choices(nb)  # a malformed variant cell stops the run here, before any kernel
        assignments[name] = Assignment(name, path, nb, tuple(grade_items(nb)))
    return assignments


def _reference(kernels: Kernels, assignment: Assignment) -> tuple[Reference, list[str]]:
    """Run the source: its records are the expected values. Returns them and notes for the instructor.

    Raises :class:`SourceError` when the source fails its own tests, :class:`KernelFailure` when it cannot run.
    """
    with tempfile.TemporaryDirectory(prefix="cnnlab-artefacts-") as folder:
        executed, execution = kernels.run(restore(assignment.nb, assignment.nb), artefacts=Path(folder))
        own = collect_records(executed)  # the source's own records say how its artefacts are measured
        measure_all(executed, lambda g, k: own[g][k].compare if k in own.get(g, {}) else None, Path(folder),
                    kernels.measure)  # fmt: skip
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


def _references(kernels: Kernels, needed: dict[tuple[str, str], Assignment],
                workers: int) -> tuple[dict[tuple[str, str], Reference], dict[tuple[str, str], str]]:
    """Run each distinct (assignment, variant) source once, side by side: ``(references, why unavailable)``.

    Raises :class:`SourceError` when a source (in any variant) fails its own tests.
    """
    references, unavailable, notes = {}, {}, set()

    def one(item):
        (name, key), assignment = item
        try:
            references[name, key], found = _reference(kernels, assignment)
            notes.update(found)
        except KernelFailure as error:
            unavailable[name, key] = f"the source could not be run: {error}"

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done in [pool.submit(one, item) for item in sorted(needed.items())]:
            done.result()
    for note in sorted(notes):
        print(f"note: {note}", flush=True)
    if len(needed) > len({name for name, _ in needed}):
        print(f"variants: the sources ran once for each of {len(needed)} distinct (assignment, variant) pairs",
              flush=True)  # fmt: skip
    return references, unavailable


def _timed(result: SubmissionResult, policy: LatePolicy | None) -> SubmissionResult:
    """``result`` with its submission time and, under ``policy``, its late penalty (:func:`~cnnlab.grading.results.late.arrival`)."""
    when, note = arrival(Path(result.path), policy)
    if when is None:
        return result
    hours, percent = policy.penalty(when) if policy else (0.0, 0.0)
    return dataclasses.replace(result, submitted_at=when.isoformat(), hours_late=hours, penalty_percent=percent,
                               notes=(*result.notes, note) if note else result.notes)  # fmt: skip


def _run_all(jobs: list, workers: int, progress: bool, finished) -> list[SubmissionResult]:
    """Grade ``jobs`` side by side; ``finished(row)`` is called for each row as it completes, in its thread."""
    from tqdm import tqdm  # noqa: PLC0415

    def one(job) -> SubmissionResult:
        try:
            return finished(grade_one(*job))
        except Exception as error:  # noqa: BLE001 -- a bug here is the grader's failure, not a zero
            return finished(grader_failure(job[0], error))

    results: list[SubmissionResult | None] = [None] * len(jobs)
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = {pool.submit(one, job): i for i, job in enumerate(jobs)}
        with tqdm(total=len(futures), desc="grading", unit="submission", disable=not progress) as bar:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return [r for r in results if r is not None]


def _secret_fingerprint(secret: bytes | None) -> str | None:
    """Names the course secret in a journal without revealing it (None: the source's values for everyone)."""
    return None if secret is None else hashlib.sha256(b"cnnlab variants\0" + secret).hexdigest()[:12]


def variant_of(assignment: Assignment, student: str, secret: bytes | None) -> tuple[Assignment, str]:
    """``(the assignment as ``student`` was issued it, a key naming that variant)``.

    With a course secret and a variant cell in the source, the cell's values are drawn for the
    student's name (:func:`~cnnlab.grading.authoring.variants.draw`), never read from the notebook;
    otherwise the source is used as it is (key ``""``).
    """
    options = variants.choices(assignment.nb)
    if not options or secret is None:
        return assignment, ""
    values = variants.draw(secret, assignment.name, student, options)
    key = json.dumps(values, sort_keys=True)
    return dataclasses.replace(assignment, nb=variants.with_values(assignment.nb, values), per_student=True), key


def _sources_digest(assignments: dict[str, Assignment]) -> str:
    digest = hashlib.sha256()
    for name in sorted(assignments):
        digest.update(name.encode() + b"\0" + assignments[name].path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _open_folder(run: GradeRun) -> Sheet | None:
    """Check, before any kernel runs, that ``run.out`` can take this run; its earlier sheet, if any.

    Raises :class:`SheetError` naming what is wrong: not a writable folder, an unreadable
    ``marks.json`` or ``grades.json``, or a sheet made from other sources or settings.
    """
    out = run.out
    if out.exists() and not out.is_dir():
        raise SheetError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as error:
        raise SheetError(f"--out {out}: cannot write there ({error.strerror or error})") from None
    marks.load(out)  # raises ValueError for a marks.json this version did not write
    if not (out / SHEET_FILE).exists():
        if run.only_not_gradable:
            raise SheetError(f"--only-not-gradable: {out / SHEET_FILE} does not exist; grade the class first")
        return None
    earlier = read_sheet(out)
    problems = []
    if earlier.source and earlier.source != str(run.source.resolve()):
        problems.append(f"its sources were {earlier.source}, not {run.source.resolve()}")
    if earlier.sandbox != run.sandbox:
        problems.append(f"it was graded with --sandbox {earlier.sandbox}")
    if earlier.late_policy != run.late_policy:
        problems.append(f"its late policy was {earlier.late_policy.describe() if earlier.late_policy else 'none'}")
    if run.seed is not None and run.seed != earlier.seed:
        problems.append(f"its seed was {earlier.seed}, not {run.seed}")
    if problems:
        raise SheetError(f"--out {out} holds grades made differently ({'; '.join(problems)}); grading into it would "
                         "mix the two. Grade with the same settings (rows are then merged), or into another --out")  # fmt: skip
    return earlier


def _same_folders(submissions: list[Submission], earlier: Sheet | None) -> None:
    """Refuse a run that would replace a row with one found in another folder (a student's nested folder
    named after someone else, graded on its own, would otherwise stand in for that someone)."""
    if earlier is None:
        return
    kept = {r.key: r.folder for r in earlier.results if r.folder}
    clashes = [f"{s.student}/{s.assignment}: the sheet's row is from {kept[(s.student, s.assignment)]}, this one from "
               f"{s.folder}" for s in submissions if kept.get((s.student, s.assignment)) not in (None, s.folder)]  # fmt: skip
    if clashes:
        raise SheetError("these rows would be replaced by submissions found in other folders; grade the class "
                         "folder they came from, or into another --out:\n  " + "\n  ".join(clashes[:20]))  # fmt: skip


def grade(inputs: list[Path], run: GradeRun) -> list[SubmissionResult]:
    """Grade every submission under ``inputs``; merge the rows into ``run.out`` and write its reports.

    Returns the whole sheet as written. Raises :class:`SourceError` (bad sources or arguments),
    :class:`SheetError` (a grade folder that cannot take this run), ``FileNotFoundError`` (a missing
    input), :class:`~cnnlab.grading.pipeline.sandbox.SandboxUnavailable` (no working sandbox and no
    ``--sandbox none``) and :class:`Interrupted` (Ctrl-C: the finished rows are kept).
    """
    if run.sandbox not in SANDBOXES:
        raise SourceError(f"sandbox must be one of {', '.join(SANDBOXES)}; got {run.sandbox!r}")
    if run.scheduler:
        cluster.check_address(run.scheduler, run.insecure)
    assignments = load_assignments(run.source)
    earlier = _open_folder(run)
    submissions = find_submissions(inputs, set(assignments))
    _same_folders(submissions, earlier)
    if run.only_not_gradable:
        redo = {(r.student, r.assignment) for r in earlier.results if r.status == "not-gradable"}
        submissions = [s for s in submissions if (s.student, s.assignment) in redo]
    header = {"sandbox": run.sandbox, "source": str(run.source.resolve()), "sources": _sources_digest(assignments),
              "late_policy": run.late_policy.to_json() if run.late_policy else None,
              "variants": _secret_fingerprint(run.secret)}  # fmt: skip
    seed = run.seed if run.seed is not None else earlier.seed if earlier else Journal.seed_in(run.out, header)
    seed = seed if seed is not None else random.SystemRandom().randrange(1, 2**31)
    journal = Journal(run.out, {**header, "seed": seed})
    resumed, why = journal.earlier_rows()
    if why:
        print(f"note: {why}", flush=True)
    done = {(r.student, r.assignment, r.path) for r in resumed}
    todo = [s for s in submissions if (s.student, s.assignment, str(s.path)) not in done]
    if resumed:
        print(f"resuming an interrupted run: {len(submissions) - len(todo)} of {len(submissions)} rows were already "
              f"graded ({journal.path.name})", flush=True)  # fmt: skip
    sandbox = Sandbox(enabled=run.sandbox == "bwrap", limits=run.limits)
    if sandbox.enabled:
        probe()
    else:
        print(DISABLED_WARNING, flush=True)
    uid_range = kernel_uid_range(run.kernel_uids) if os.geteuid() == 0 else None
    journal.start(resumed)
    enforced = "cgroup" if cgroups.available()[0] else "watchdog"
    slots = max(1, run.workers)
    try:
        with tempfile.TemporaryDirectory(prefix="cnnlab-grade-") as tmp, kernel_uids(slots, uids=uid_range) as uids:
            os.chmod(tmp, 0o711)  # kernels running as other uids reach their own socket folders only
            kernels = Kernels(sandbox, run.limits, seed, Path(tmp), uids if sandbox.enabled else [None] * slots)
            graded = _grade_all(todo, assignments, kernels, run, seed, journal)
    except KeyboardInterrupt:
        journal.close(remove=False)
        raise Interrupted(f"interrupted: the finished rows are kept in {journal.path}; run the same command again "
                          "to grade the rest") from None  # fmt: skip
    with locked(run.out):
        current = read_sheet(run.out).results if (run.out / SHEET_FILE).exists() else []
        sheet = Sheet(seed, run.sandbox, merge(merge(current, resumed), graded), str(run.source.resolve()),
                      run.late_policy, enforced, run.scheduler or "", bool(run.scheduler and run.insecure))  # fmt: skip
        written = marks.publish(run.out, sheet)
    journal.close(remove=True)
    return written.results


def _grade_all(submissions: list[Submission], assignments: dict[str, Assignment], kernels: Kernels, run: GradeRun,
               seed: int, journal: Journal) -> list[SubmissionResult]:  # fmt: skip
    """Run each assignment's source, then grade ``submissions``, journaling each row as it finishes."""
    issued = {(s.student, s.assignment): variant_of(assignments[s.assignment], s.student, run.secret)
              for s in submissions if s.assignment in assignments}  # fmt: skip
    if run.secret is None and (declared := sorted(n for n, a in assignments.items() if variants.choices(a.nb))):
        print(f"note: {', '.join(declared)} declare variant parameters, but no --secret was given: every submission "
              "is graded with the source's values", flush=True)  # fmt: skip
    needed = {}  # one reference run per distinct (assignment, variant) that a gradable submission needs
    for s in submissions:
        if s.assignment in assignments and not s.status:
            assignment, key = issued[s.student, s.assignment]
            needed[s.assignment, key] = assignment
    references, unavailable = _references(kernels, needed, run.workers)

    def finished(row: SubmissionResult) -> SubmissionResult:
        row = _timed(row, run.late_policy)
        journal.append(row)
        return row

    jobs = []
    for s in submissions:
        assignment, key = issued.get((s.student, s.assignment), (None, ""))
        jobs.append((s, assignment, references.get((s.assignment, key)), unavailable.get((s.assignment, key), ""),
                     kernels))  # fmt: skip
    if run.scheduler:
        return cluster.run_all(run.scheduler, [job[:4] for job in jobs], run.limits, seed, kernels.sandbox.enabled,
                               run.progress, finished, insecure=run.insecure, tls=run.tls)  # fmt: skip
    return _run_all(jobs, run.workers, run.progress, finished)

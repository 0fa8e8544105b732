"""The grade sheet: its rows, how they are stored, the journal of a run, and the one lock on a grade folder.

A grade folder (``cnnlab grade --out``) holds

* ``grades.json`` -- the :class:`Sheet`: every row with every cell's verdict,
  and how the rows were made (seed, sandbox, source folder, late policy);
* ``grades.journal.jsonl`` -- while a run is under way, each finished row as
  it completes, one JSON line each, flushed to disk. A run that dies (a full
  disk, an OOM kill, Ctrl-C) loses no finished row: the same command again
  resumes from the journal, and grades only what is missing;
* ``.grades.lock`` -- the one lock that every writer of the folder takes
  (:func:`locked`): the end of a grading run and every mark saved from the
  marking page or a CSV import. A mark saved during a re-grade therefore
  cannot put the old sheet back.

Rows are keyed by (student, assignment): intake gives each pair one row,
:func:`merge` keeps it so (a re-grade of some students replaces their rows and
keeps everyone else's), and :func:`check_unique` refuses a sheet where it is
not so.

Everything here is standard library plus ``filelock``: no TensorFlow, no Jupyter.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from cnnlab.grading.pipeline.score import CellResult, Check
from cnnlab.grading.results.late import LatePolicy

__all__ = ["JOURNAL_FILE", "SHEET_FILE", "STATUSES", "UNSCORED", "Journal", "Sheet", "SheetError", "SubmissionResult",
           "check_unique", "display_name", "locked", "merge", "read_sheet", "row_from_dict", "row_to_dict",
           "sheet_to_json", "write_atomically"]  # fmt: skip

SHEET_FILE = "grades.json"
JOURNAL_FILE = "grades.journal.jsonl"
LOCK_FILE = ".grades.lock"
JOURNAL_VERSION = 1

# Every status a row can have; the first group scores points, the second does not.
STUDENT_STATUSES = ("graded", "timeout", "memory", "processes", "kernel-died", "rejected", "invalid-notebook")
UNSCORED = ("not-gradable", "duplicate")  # nobody could score these: empty points, never zeros
STATUSES = STUDENT_STATUSES + UNSCORED
_VERDICT = {True: "passed", False: "failed", None: "manual"}


class SheetError(ValueError):
    """A grade folder that cannot take this run (another source, seed or policy; an unreadable file)."""


def display_name(text: str) -> str:
    """``text`` as it can be written anywhere: bytes that were not UTF-8 become ``\\xNN`` escapes.

    A folder unpacked from a ZIP with CP-1252 names reaches Python as lone surrogates
    (``os.fsdecode``), which no UTF-8 file can hold. The escaped form is stable, so a
    re-grade finds the same student.
    """
    return os.fsencode(text).decode("utf-8", "backslashreplace") if isinstance(text, str) else str(text)


@dataclass(frozen=True)
class SubmissionResult:
    """One row of the grade sheet."""

    student: str
    assignment: str
    path: str
    status: str
    cells: tuple[CellResult, ...] = ()
    notes: tuple[str, ...] = ()
    manual_answers: tuple[tuple[str, str], ...] = ()  # (grade_id, the student's written answer)
    seconds: float = 0.0
    submitted_at: str = ""  # ISO time the submission is taken to have arrived; "" when unknown
    hours_late: float = 0.0
    penalty_percent: float = 0.0  # of the points earned
    folder: str = ""  # the owner's folder the submission was found in ("" in sheets from before it was kept)
    printed: tuple[tuple[str, str], ...] = ()  # (grade_id, what the notebook printed just above that written answer)

    @property
    def key(self) -> tuple[str, str]:
        return self.student, self.assignment

    @property
    def scored(self) -> bool:
        return self.status not in UNSCORED

    @property
    def total(self) -> float:
        return sum(c.points for c in self.cells)

    @property
    def max_points(self) -> float:
        return sum(c.max_points for c in self.cells)

    @property
    def manual_pending(self) -> float:
        return sum(c.max_points for c in self.cells if c.passed is None and not c.marked)

    @property
    def final(self) -> float:
        """The total after the late penalty."""
        return round(self.total * (1 - self.penalty_percent / 100), 4)


@dataclass(frozen=True)
class Sheet:
    """What ``grades.json`` holds: the results and how they were made."""

    seed: int
    sandbox: str
    results: list[SubmissionResult] = field(default_factory=list)
    source: str = ""  # the folder of assignment sources (the marking page reads questions from it)
    late_policy: LatePolicy | None = None
    limits_enforced_by: str = ""  # "cgroup" or "watchdog": what held memory and processes to their limits
    scheduler: str = ""  # the Dask scheduler the rows were graded on, "" for this machine
    insecure_scheduler: bool = False  # graded over a plain-TCP Dask connection (--insecure)


# --------------------------------------------------------------------------- rows as JSON
def _cell_dict(c: CellResult) -> dict:
    found = {"grade_id": c.grade_id, "points": c.points, "max": c.max_points,
             "result": "marked" if c.marked else _VERDICT[c.passed], "message": c.message, "hidden_tests": c.hidden,
             "unrecorded": c.unrecorded, "title": c.title}  # fmt: skip
    if c.checks:
        found["checks"] = [{"key": k.key, "points": k.points, "max": k.max_points, "message": k.message}
                           for k in c.checks]  # fmt: skip
    if c.marked:
        found["comment"] = c.comment
    return found


def row_to_dict(result: SubmissionResult) -> dict:
    """``result`` as the JSON object ``grades.json`` and the journal hold."""
    return {
        "student": result.student, "assignment": result.assignment, "submission": result.path,
        "status": result.status, "total": result.total if result.scored else None,
        "max": result.max_points if result.scored else None,
        "manual_pending": result.manual_pending, "submitted_at": result.submitted_at,
        "hours_late": round(result.hours_late, 3), "penalty_percent": result.penalty_percent,
        "final": result.final if result.scored else None, "seconds": round(result.seconds, 2),
        "notes": list(result.notes), "answers": dict(result.manual_answers),
        "cells": [_cell_dict(c) for c in result.cells], "folder": result.folder, "printed": dict(result.printed),
    }  # fmt: skip


def row_from_dict(row: dict) -> SubmissionResult:
    """The inverse of :func:`row_to_dict`. Raises ``KeyError``/``TypeError``/``ValueError`` on anything else."""
    verdict = {v: k for k, v in _VERDICT.items()} | {"marked": None}
    if row["status"] not in STATUSES:  # a hand-edited "Graded" would otherwise read as a scored row of no known kind
        raise ValueError(f"status {row['status']!r} is not one of {', '.join(STATUSES)}")
    cells = tuple(
        CellResult(c["grade_id"], float(c["points"]), float(c["max"]), verdict[c["result"]], c.get("message", ""),
                   bool(c.get("hidden_tests")), bool(c.get("unrecorded")),
                   tuple(Check(k["key"], float(k["points"]), float(k["max"]), k.get("message", ""))
                         for k in c.get("checks", [])),
                   c["result"] == "marked", c.get("comment", ""), str(c.get("title", "")))
        for c in row.get("cells", [])
    )  # fmt: skip
    return SubmissionResult(str(row["student"]), str(row["assignment"]), str(row["submission"]), str(row["status"]),
                            cells, tuple(row.get("notes", [])), tuple(row.get("answers", {}).items()),
                            float(row.get("seconds", 0)), str(row.get("submitted_at", "")),
                            float(row.get("hours_late", 0)), float(row.get("penalty_percent", 0)),
                            str(row.get("folder", "")),
                            tuple((str(k), str(v)) for k, v in row.get("printed", {}).items()))  # fmt: skip


def sheet_to_json(sheet: Sheet) -> str:
    """The text of ``grades.json`` (ASCII: names that were not UTF-8 travel as escapes)."""
    document = {"seed": sheet.seed, "sandbox": sheet.sandbox, "source": sheet.source,
                "late_policy": sheet.late_policy.to_json() if sheet.late_policy else None,
                "limits_enforced_by": sheet.limits_enforced_by, "scheduler": sheet.scheduler,
                "insecure_scheduler": sheet.insecure_scheduler,
                "submissions": [row_to_dict(r) for r in sheet.results]}  # fmt: skip
    return json.dumps(document, indent=1)


def read_sheet(out: Path) -> Sheet:
    """The :class:`Sheet` in ``out/grades.json``. Raises ``FileNotFoundError``/``ValueError``."""
    path = Path(out) / SHEET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no `cnnlab grade --out {out}` has run yet")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        policy = data.get("late_policy")
        return Sheet(int(data["seed"]), str(data["sandbox"]), [row_from_dict(r) for r in data["submissions"]],
                     str(data.get("source", "")), LatePolicy.from_json(policy) if policy else None,
                     str(data.get("limits_enforced_by", "")), str(data.get("scheduler", "")),
                     bool(data.get("insecure_scheduler", False)))  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        raise ValueError(f"{path} is not a grade sheet this version wrote ({type(error).__name__}: {error})") from None


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a reader sees the old file or the new, never half of one.

    The temporary name is short (a long page name plus a suffix would pass the 255-byte
    limit of a file name), and text that cannot be UTF-8 is escaped rather than lost.
    """
    token = hashlib.sha1(f"{path.name}{os.getpid()}{threading.get_ident()}".encode("utf-8", "surrogateescape"))
    temporary = path.with_name(f".tmp-{token.hexdigest()[:16]}")
    try:
        with open(temporary, "w", encoding="utf-8", errors="backslashreplace", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- one lock per grade folder
_locks: dict[str, FileLock] = {}
_locks_guard = threading.Lock()


def locked(out: Path) -> FileLock:
    """The lock on grade folder ``out``: ``with locked(out): ...``. Re-entrant in a thread, exclusive across
    threads and processes (``out`` must exist)."""
    key = os.path.abspath(out)
    with _locks_guard:
        if key not in _locks:
            _locks[key] = FileLock(os.path.join(key, LOCK_FILE))
        return _locks[key]


# --------------------------------------------------------------------------- merging runs into one sheet
def check_unique(results: list[SubmissionResult]) -> None:
    """Raise ``ValueError`` when two rows share a (student, assignment): one of them would be lost downstream."""
    seen: set[tuple[str, str]] = set()
    for r in results:
        if r.key in seen:
            raise ValueError(f"two rows for student {r.student!r}, assignment {r.assignment!r}")
        seen.add(r.key)


def merge(earlier: list[SubmissionResult], new: list[SubmissionResult]) -> list[SubmissionResult]:
    """``earlier`` with every row of ``new`` in place of the row it grades again; the rest kept."""
    replaced = {r.key for r in new}
    return [r for r in earlier if r.key not in replaced] + list(new)


# --------------------------------------------------------------------------- the journal of a run
class Journal:
    """Finished rows of one run, appended as they complete (``out/grades.journal.jsonl``).

    The first line is the run's header (what must match for a later run to resume from it);
    each further line is one row. A line cut short by a crash is ignored on reading.
    """

    def __init__(self, out: Path, header: dict):
        self.path = Path(out) / JOURNAL_FILE
        self.header = {"journal": JOURNAL_VERSION, **header}
        self._guard = threading.Lock()
        self._handle = None

    @staticmethod
    def seed_in(out: Path, header: dict) -> int | None:
        """The seed of an interrupted run in ``out`` whose header otherwise matches ``header``, or None."""
        path = Path(out) / JOURNAL_FILE
        try:
            with open(path, encoding="utf-8") as handle:
                found = json.loads(handle.readline())
        except (OSError, ValueError, RecursionError):
            return None
        if not isinstance(found, dict) or not isinstance(found.get("seed"), int):
            return None
        rest = {k: v for k, v in found.items() if k not in ("seed", "journal")}
        return found["seed"] if rest == header else None

    def earlier_rows(self) -> tuple[list[SubmissionResult], str]:
        """``(rows, "")`` of an interrupted run with the same header, or ``([], why none are used)``.

        A journal of a different run (other sources, seed, sandbox or policy) is set aside as
        ``grades.journal-<n>.jsonl``, never deleted.
        """
        if not self.path.exists():
            return [], ""
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except ValueError:
            header = None
        if header != self.header:
            kept = self._set_aside()
            return [], f"an earlier run's journal was for other settings; kept as {kept.name}"
        rows = []
        for line in lines[1:]:
            try:
                rows.append(row_from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
                continue  # the line a crash cut short
        return merge([], rows), ""

    def _set_aside(self) -> Path:
        n = 1
        while (target := self.path.with_name(f"grades.journal-{n}.jsonl")).exists():
            n += 1
        os.replace(self.path, target)
        return target

    def start(self, rows: list[SubmissionResult]) -> None:
        """Begin the journal afresh with the header and ``rows`` (those resumed from an earlier journal)."""
        temporary = self.path.with_name(f".{JOURNAL_FILE}.new")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(self.header) + "\n")
            for row in rows:
                handle.write(json.dumps(row_to_dict(row)) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 -- held until close()

    def append(self, row: SubmissionResult) -> None:
        """Write ``row`` to disk now (thread-safe). A full disk is reported, never raised: the row stays in memory."""
        line = json.dumps(row_to_dict(row)) + "\n"
        with self._guard:
            if self._handle is None:
                return
            try:
                self._handle.write(line)
                self._handle.flush()
                os.fsync(self._handle.fileno())
            except OSError as error:
                print(f"warning: could not journal {row.student}/{row.assignment} ({error.strerror or error}); "
                      "the row is kept in memory", flush=True)  # fmt: skip

    def close(self, *, remove: bool) -> None:
        with self._guard:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
        if remove:
            self.path.unlink(missing_ok=True)

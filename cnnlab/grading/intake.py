"""Step 1 of grading: find the submissions and read each one, trusting none of them.

Layouts: nbgrader's ``submitted/<student>/<assignment>/<notebook>.ipynb``, or
``<student>/<notebook>.ipynb``, or notebooks given one by one.

* Only regular ``*.ipynb`` files are submissions. Files are examined with
  ``lstat`` and never followed: a symbolic link (to a file or a folder), a
  FIFO, a device, or a path that leads outside the submission folder gets a
  status of its own (``rejected``) and 0 points, and is never opened.
* Hidden files and folders (``.ipynb_checkpoints``, ``.git``) and files that
  are not notebooks are ignored.
* Two notebooks for one (student, assignment) give one row: the one named
  after the assignment if there is exactly one such, with a note naming the
  others; otherwise a ``duplicate`` row, graded by nobody until the
  instructor keeps one.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nbformat

from cnnlab.grading.source import meta

__all__ = ["Submission", "find_submissions", "read_submission"]

MAX_NOTEBOOK_BYTES = 100 * 2**20


@dataclass(frozen=True)
class Submission:
    """One row of the grade sheet. ``problem`` is set for a file that must not be graded."""

    student: str
    assignment: str
    path: Path
    problem: str = ""  # why it is rejected, or why it is a duplicate
    status: str = ""  # "" (to grade), "rejected" or "duplicate"
    notes: tuple[str, ...] = ()


def _kind_problem(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link: links are never followed; submit the notebook file itself"
    if stat.S_ISFIFO(mode):
        return "a named pipe, not a notebook file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a notebook file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a notebook file"
    return "not a regular file"


def _walk(folder: Path) -> list[tuple[Path, str]]:
    """(path, problem) for every candidate under ``folder``: ``*.ipynb`` entries and linked folders."""
    found: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in list(dirs):
            path = Path(root) / name
            if path.is_symlink():
                dirs.remove(name)
                found.append((path, "a symbolic link to a folder: links are never followed"))
        for name in sorted(files):
            if name.startswith(".") or not name.endswith(".ipynb"):
                continue
            path = Path(root) / name
            mode = os.lstat(path).st_mode
            found.append((path, "" if stat.S_ISREG(mode) else _kind_problem(mode)))
    return found


def _single(path: Path) -> tuple[Path, str]:
    try:
        mode = os.lstat(path).st_mode
    except OSError as error:
        raise FileNotFoundError(f"submission {path} does not exist ({error.strerror})") from None
    return path, "" if stat.S_ISREG(mode) else _kind_problem(mode)


def _owner(path: Path, top: Path | None, assignments: set[str]) -> tuple[str, str | None]:
    """(student, assignment or None when the layout does not say)."""
    if top is None:
        return path.parent.name or path.stem, None
    parts = path.relative_to(top).parts
    if not path.name.endswith(".ipynb"):  # a linked folder: it stands where a notebook would be inside it
        parts += ("?.ipynb",)
    if len(parts) >= 3 and parts[-2] in assignments:
        return parts[-3], parts[-2]
    return (parts[-2] if len(parts) >= 2 else top.name), None


def _assignment_for(path: Path, named: str | None, assignments: set[str]) -> str:
    if named is not None:
        return named
    if path.stem in assignments or len(assignments) != 1:
        return path.stem
    return next(iter(assignments))


def find_submissions(inputs: list[Path], assignments: set[str]) -> list[Submission]:
    """One :class:`Submission` per (student, assignment), plus one per rejected file.

    ``inputs`` are files or folders; ``assignments`` the names of the assignments graded.
    Raises ``FileNotFoundError`` for an input that does not exist.
    """
    candidates: list[tuple[Path, str, Path | None]] = []
    for item in inputs:
        if item.is_dir() and not item.is_symlink():
            candidates += [(path, problem, item) for path, problem in _walk(item)]
        else:
            candidates.append((*_single(item), None))
    rows: list[Submission] = []
    grouped: dict[tuple[str, str], list[Path]] = {}
    for path, problem, top in candidates:
        student, named = _owner(path, top, assignments)
        assignment = _assignment_for(path, named, assignments)
        if top is not None and not problem and not path.resolve().is_relative_to(top.resolve()):
            problem = "leads outside the submission folder"
        if problem:
            rows.append(Submission(student, assignment, path, problem, "rejected"))
        else:
            grouped.setdefault((student, assignment), []).append(path)
    for (student, assignment), paths in grouped.items():
        if len(paths) == 1:
            rows.append(Submission(student, assignment, paths[0]))
            continue
        exact = [p for p in paths if p.stem == assignment]
        names = ", ".join(p.name for p in paths)
        if len(exact) == 1:
            others = ", ".join(p.name for p in paths if p != exact[0])
            rows.append(Submission(student, assignment, exact[0],
                                   notes=(f"also found {others}: not graded (only {exact[0].name} is)",)))  # fmt: skip
        else:
            rows.append(Submission(student, assignment, paths[0], f"{len(paths)} notebooks for this assignment "
                                   f"({names}); keep one and grade again", "duplicate"))  # fmt: skip
    return rows


def read_submission(path: Path, source_nb, name: str) -> tuple[object | None, str]:
    """``(notebook, "")``, or ``(None, why it cannot be graded)``; never follows a link.

    ``source_nb`` is the assignment's source, ``name`` the assignment's name.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        return None, f"cannot open the file ({error.strerror})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, _kind_problem(info.st_mode)
        if info.st_size > MAX_NOTEBOOK_BYTES:
            return None, f"the file is {info.st_size / 2**20:.0f} MiB; notebooks over {MAX_NOTEBOOK_BYTES // 2**20} MiB are not graded"
        with os.fdopen(fd, "rb", closefd=False) as handle:
            raw = handle.read()
    except OSError as error:
        return None, f"cannot read the file ({error.strerror})"
    finally:
        os.close(fd)
    if not raw.strip():
        return None, "the file is empty"
    try:
        nb = nbformat.reads(raw.decode("utf-8", "replace"), as_version=4)
    except Exception as error:  # noqa: BLE001 -- any parse failure means not a notebook
        return None, f"not a valid notebook ({type(error).__name__}: {str(error)[:200]})"
    if not isinstance(nb.get("cells"), list) or not all(isinstance(c, dict) for c in nb.cells):
        return None, "not a valid notebook (no list of cells)"
    expected = {meta(c).get("grade_id") for c in source_nb.cells if meta(c).get("grade_id")}
    present = {meta(c).get("grade_id") for c in nb.cells if isinstance(meta(c).get("grade_id"), str)}
    ids = {c.get("id") for c in source_nb.cells} & {c.get("id") for c in nb.cells}
    if not (expected & present) and not ids:
        other = ", ".join(sorted(present)[:5]) or "none"
        return None, f"this is not assignment {name!r}: none of its cells are here (grade ids found: {other})"
    return nb, ""

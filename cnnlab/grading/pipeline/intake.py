"""Step 1 of grading: find the submissions and read each one, trusting none of them.

Who a notebook belongs to is decided by where it lies, at one level only:

* a class folder (``cnnlab grade submitted/``): each entry directly inside is
  one student (nbgrader's ``submitted/<student>/<assignment>/`` layout, or
  ``<student>/<notebook>.ipynb``). Everything below a student's folder is that
  student's, however deep: a folder named after another student inside it
  changes nothing;
* one student's folder (``cnnlab grade submitted/bob``, recognised by a
  subfolder named after an assignment or a notebook directly inside it): all
  of it is that student's;
* one student's assignment folder (``submitted/bob/03_mnist_cnn``, named after
  an assignment): the student is the folder above it;
* notebooks given one by one: the student is the folder they are in (the one
  above an assignment-named folder).

Which assignment: the assignment-named folder it is in, else its file name,
else the only assignment graded.

* Only regular ``*.ipynb`` files are submissions. Files are examined with
  ``lstat`` and never followed: a symbolic link (to a file or a folder), a
  FIFO, a device, or a path that leads outside the submission folder is
  never opened, and is reported on its owner's row.
* Hidden files and folders inside a student's folder (``.ipynb_checkpoints``,
  ``.git``) and files that are not notebooks are ignored; a student *folder*
  whose name starts with a dot is a student like any other.
* One row per (student, assignment), always: two notebooks give one row (the
  one named after the assignment if there is exactly one such, with a note
  naming the others; otherwise a ``duplicate`` row, graded by nobody until the
  instructor keeps one); a link or device beside a notebook is a note on its
  row; only a student with nothing gradable gets a ``rejected`` row.
* Names that are not UTF-8 (a ZIP unpacked with CP-1252 names) are kept as
  ``\\xNN`` escapes (:func:`cnnlab.grading.results.sheet.display_name`).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nbformat

from cnnlab.grading.authoring.source import meta
from cnnlab.grading.results.sheet import display_name

__all__ = ["Submission", "find_submissions", "read_submission"]

MAX_NOTEBOOK_BYTES = 100 * 2**20
TOOL_FOLDERS = (".ipynb_checkpoints", ".git")  # never a student, even directly in a class folder


@dataclass(frozen=True)
class Submission:
    """One row of the grade sheet. ``problem`` is set for a file that must not be graded."""

    student: str
    assignment: str
    path: Path
    problem: str = ""  # why it is rejected, or why it is a duplicate
    status: str = ""  # "" (to grade), "rejected" or "duplicate"
    notes: tuple[str, ...] = ()
    folder: str = ""  # the owner's folder, absolute: a later run may replace this row only from the same one


@dataclass(frozen=True)
class _Candidate:
    """A file found under a student's folder: whose, for which assignment (None: unknown), and why not gradable."""

    student: str
    assignment: str | None
    path: Path
    problem: str = ""
    folder: str = ""


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


def _by_name(name: str, assignments: set[str]) -> str | None:
    """The assignment a notebook's file name names; the only one when one is graded; else None."""
    stem = name[: -len(".ipynb")] if name.endswith(".ipynb") else name
    if stem in assignments:
        return stem
    return next(iter(assignments)) if len(assignments) == 1 else None


def _student_files(folder: Path, student: str, assignments: set[str], assignment: str | None = None) -> list[_Candidate]:
    """Every candidate under one student's ``folder``: its ``*.ipynb`` entries and linked folders."""
    found: list[_Candidate] = []
    owner = os.path.abspath(folder)
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        inside = here.relative_to(folder).parts
        named = assignment or next((p for p in inside[:1] if p in assignments), None)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in list(dirs):
            if (here / name).is_symlink():
                dirs.remove(name)
                guess = named or (name if name in assignments else _by_name(name, assignments))
                found.append(_Candidate(student, guess, here / name,
                                        f"{name}/ is a symbolic link to a folder: links are never followed", owner))  # fmt: skip
        for name in sorted(files):
            if name.startswith(".") or not name.endswith(".ipynb"):
                continue
            path = here / name
            mode = os.lstat(path).st_mode
            problem = "" if stat.S_ISREG(mode) else f"{name}: {_kind_problem(mode)}"
            found.append(_Candidate(student, named or _by_name(name, assignments), path, problem, owner))
    return found


def _has_notebooks(folder: Path) -> bool:
    try:
        return any(entry.name.endswith(".ipynb") and not entry.name.startswith(".") for entry in os.scandir(folder))
    except OSError:
        return False


def _folder(item: Path, assignments: set[str]) -> list[_Candidate]:
    """Candidates under one folder given on the command line, with their owners (see the module's rules)."""
    absolute = Path(os.path.abspath(item))
    if absolute.name in assignments:  # submitted/bob/03_mnist_cnn
        owner = display_name(absolute.parent.name or absolute.name)
        return [dataclasses.replace(c, folder=str(absolute.parent))
                for c in _student_files(item, owner, assignments, absolute.name)]  # fmt: skip
    children = sorted(os.scandir(item), key=lambda e: e.name)
    if _has_notebooks(item) or any(c.name in assignments and c.is_dir(follow_symlinks=False) for c in children):
        return _student_files(item, display_name(absolute.name), assignments)  # submitted/bob
    found: list[_Candidate] = []
    for child in children:  # a class folder: one student per entry
        if child.name in TOOL_FOLDERS:
            continue
        student = display_name(child.name)
        if child.is_symlink():
            found.append(_Candidate(student, None, Path(child.path),
                                    f"the student folder {student} is a symbolic link: links are never followed",
                                    os.path.abspath(child.path)))  # fmt: skip
        elif child.is_dir(follow_symlinks=False):
            found += _student_files(Path(child.path), student, assignments)
    return found


def _single(path: Path, assignments: set[str]) -> _Candidate:
    """A notebook given by name: its student is its folder (the one above an assignment-named folder)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as error:
        raise FileNotFoundError(f"submission {path} does not exist ({error.strerror})") from None
    absolute = Path(os.path.abspath(path))
    folder = absolute.parent
    assignment = folder.name if folder.name in assignments else _by_name(absolute.name, assignments)
    if folder.name in assignments:
        folder = folder.parent
    problem = "" if stat.S_ISREG(mode) else _kind_problem(mode)
    return _Candidate(display_name(folder.name or absolute.stem), assignment or absolute.stem, path, problem, str(folder))


def _row(student: str, assignment: str, found: list[_Candidate]) -> Submission:
    """The one row of (student, assignment) from everything found for it."""
    good = [c.path for c in found if not c.problem]
    bad = [c.problem for c in found if c.problem]
    folder = found[0].folder
    if not good:
        return Submission(student, assignment, found[0].path, bad[0], "rejected", tuple(bad[1:]), folder)
    notes = tuple(f"not graded: {problem}" for problem in bad)
    if len(good) == 1:
        return Submission(student, assignment, good[0], notes=notes, folder=folder)
    exact = [p for p in good if p.stem == assignment]
    if len(exact) == 1:
        others = ", ".join(display_name(p.name) for p in good if p != exact[0])
        return Submission(student, assignment, exact[0], folder=folder,
                          notes=(f"also found {others}: not graded (only {display_name(exact[0].name)} is)", *notes))  # fmt: skip
    names = ", ".join(display_name(p.name) for p in good)
    return Submission(student, assignment, good[0], f"{len(good)} notebooks for this assignment ({names}); keep one "
                      "and grade again", "duplicate", notes, folder)  # fmt: skip


def find_submissions(inputs: list[Path], assignments: set[str]) -> list[Submission]:
    """One :class:`Submission` per (student, assignment) that has any notebook, link or device.

    ``inputs`` are files or folders; ``assignments`` the names of the assignments graded.
    Raises ``FileNotFoundError`` for an input that does not exist.
    """
    candidates: list[_Candidate] = []
    for item in inputs:
        if item.is_dir() and not item.is_symlink():
            top = Path(os.path.realpath(item))
            for found in _folder(item, assignments):
                if not found.problem and not Path(os.path.realpath(found.path)).is_relative_to(top):
                    found = _Candidate(found.student, found.assignment, found.path, "leads outside the submission folder")
                candidates.append(found)
        else:
            candidates.append(_single(item, assignments))
    grouped: dict[tuple[str, str], list[_Candidate]] = {}
    unknown: dict[str, list[_Candidate]] = {}  # a linked folder in a run of several assignments
    for found in candidates:
        if found.assignment is None:
            unknown.setdefault(found.student, []).append(found)
        else:
            grouped.setdefault((found.student, found.assignment), []).append(found)
    for student, found in unknown.items():
        theirs = [key for key in grouped if key[0] == student] or [(student, a) for a in sorted(assignments)]
        for key in theirs:
            grouped.setdefault(key, []).extend(found)
    return [_row(student, assignment, found) for (student, assignment), found in grouped.items()]


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

"""Finding submissions: regular notebooks only, nothing followed, one row per student and assignment."""

import os
import shutil
from pathlib import Path

import pytest

from cnnlab.grading.authoring.source import read_notebook
from cnnlab.grading.pipeline.intake import find_submissions, read_submission

FIXTURES = Path(__file__).parents[1] / "fixtures"
CORRECT = FIXTURES / "submissions" / "correct" / "conv_basics.ipynb"
SOURCE = FIXTURES / "source" / "conv_basics.ipynb"
ONE = {"conv_basics"}


def _put(path: Path, content: Path = CORRECT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(content, path)
    return path


def _rows(tmp_path, assignments=ONE):
    return {(s.student, s.assignment): s for s in find_submissions([tmp_path], assignments)}


def test_nbgrader_and_plain_layouts(tmp_path):
    _put(tmp_path / "submitted" / "alice" / "conv_basics" / "conv_basics.ipynb")
    _put(tmp_path / "plain" / "bob" / "conv_basics.ipynb")
    rows = {(s.student, s.assignment): s for s in find_submissions([tmp_path / "submitted", tmp_path / "plain"], ONE)}
    assert set(rows) == {("alice", "conv_basics"), ("bob", "conv_basics")}
    assert all(not s.status for s in rows.values())


@pytest.mark.parametrize("given", ["submitted/bob", "submitted/bob/conv_basics", "plain/bob",
                                   "submitted/bob/conv_basics/conv_basics.ipynb"])  # fmt: skip
def test_one_students_folder_or_notebook_is_that_student(tmp_path, given):
    _put(tmp_path / "submitted" / "bob" / "conv_basics" / "conv_basics.ipynb")
    _put(tmp_path / "plain" / "bob" / "conv_basics.ipynb")
    [row] = find_submissions([tmp_path / given], ONE)
    assert (row.student, row.assignment, row.status) == ("bob", "conv_basics", "")


def test_the_owner_is_the_top_folder_however_deep_a_notebook_lies(tmp_path):
    """A saboteur's nested folders named after others neither touch their rows nor make new students."""
    victim = _put(tmp_path / "p_victim" / "conv_basics" / "conv_basics.ipynb")
    _put(tmp_path / "p_saboteur" / "conv_basics" / "conv_basics.ipynb")
    _put(tmp_path / "p_saboteur" / "conv_basics" / "p_victim" / "conv_basics.ipynb", SOURCE)
    _put(tmp_path / "p_saboteur" / "conv_basics" / "p_ghost" / "conv_basics.ipynb", SOURCE)
    os.symlink(tmp_path / "p_victim", tmp_path / "p_saboteur" / "data")
    os.symlink(victim, tmp_path / "p_saboteur" / "conv_basics" / "p_victim.ipynb")
    rows = _rows(tmp_path)
    assert set(rows) == {("p_victim", "conv_basics"), ("p_saboteur", "conv_basics")}
    assert not rows[("p_victim", "conv_basics")].status and rows[("p_victim", "conv_basics")].path == victim
    saboteur = rows[("p_saboteur", "conv_basics")]
    assert saboteur.status == "duplicate"  # three notebooks of its own named conv_basics: graded by nobody
    assert any("symbolic link" in note for note in saboteur.notes)


def test_links_beside_a_notebook_are_notes_on_its_one_row(tmp_path):
    _put(tmp_path / "ann" / "conv_basics.ipynb")
    os.symlink(tmp_path / "ann" / "conv_basics.ipynb", tmp_path / "ann" / "copy.ipynb")
    [row] = find_submissions([tmp_path], ONE)
    assert row.student == "ann" and not row.status and "symbolic link" in row.notes[0]


def test_dot_folders_are_students_and_checkpoints_are_not(tmp_path):
    _put(tmp_path / "..\\..\\x" / "conv_basics.ipynb")
    _put(tmp_path / ".hidden" / "conv_basics.ipynb")
    _put(tmp_path / ".ipynb_checkpoints" / "conv_basics-checkpoint.ipynb")
    assert {s.student for s in find_submissions([tmp_path], ONE)} == {"..\\..\\x", ".hidden"}


def test_names_that_are_not_utf8_become_stable_escapes(tmp_path):
    folder = os.path.join(os.fsencode(tmp_path), b"p_j\xf3zef")  # CP-1252 bytes, as a ZIP unpacks them
    os.makedirs(folder)
    shutil.copy(CORRECT, os.path.join(folder, b"conv_basics.ipynb"))
    [row] = find_submissions([tmp_path], ONE)
    assert row.student == "p_j\\xf3zef" and row.student.encode("utf-8")
    assert [s.student for s in find_submissions([tmp_path], ONE)] == [row.student]


def test_checkpoints_hidden_folders_and_other_files_are_ignored(tmp_path):
    _put(tmp_path / "ann" / "conv_basics.ipynb")
    _put(tmp_path / "ann" / ".ipynb_checkpoints" / "conv_basics-checkpoint.ipynb")
    _put(tmp_path / "ann" / ".git" / "conv_basics.ipynb")
    (tmp_path / "ann" / "notes.txt").write_text("hello")
    (tmp_path / "ann" / "empty.py").write_text("")
    assert list(_rows(tmp_path)) == [("ann", "conv_basics")]


def test_links_are_rejected_and_never_followed(tmp_path):
    outside = _put(tmp_path.parent / f"{tmp_path.name}-outside" / "conv_basics.ipynb", SOURCE)
    (tmp_path / "linker").mkdir()
    os.symlink(outside, tmp_path / "linker" / "conv_basics.ipynb")
    os.symlink(outside.parent, tmp_path / "folder_linker")
    rows = _rows(tmp_path)
    assert rows[("linker", "conv_basics")].status == "rejected"
    assert "symbolic link" in rows[("linker", "conv_basics")].problem
    assert rows[("folder_linker", "conv_basics")].status == "rejected"
    assert len(rows) == 2


def test_a_fifo_is_rejected_without_being_opened(tmp_path):
    (tmp_path / "piper").mkdir()
    os.mkfifo(tmp_path / "piper" / "conv_basics.ipynb")  # opening it for reading would block for ever
    row = _rows(tmp_path)[("piper", "conv_basics")]
    assert row.status == "rejected" and "named pipe" in row.problem
    nb, problem = read_submission(tmp_path / "piper" / "conv_basics.ipynb", read_notebook(SOURCE), "conv_basics")
    assert nb is None and "named pipe" in problem


def test_two_notebooks_for_one_assignment(tmp_path):
    _put(tmp_path / "dee" / "conv_basics.ipynb")
    _put(tmp_path / "dee" / "conv_basics (1).ipynb")
    _put(tmp_path / "eve" / "Untitled.ipynb")
    _put(tmp_path / "eve" / "Untitled1.ipynb")
    rows = _rows(tmp_path)
    assert len(rows) == 2
    dee, eve = rows[("dee", "conv_basics")], rows[("eve", "conv_basics")]
    assert not dee.status and dee.path.name == "conv_basics.ipynb" and "conv_basics (1).ipynb" in dee.notes[0]
    assert eve.status == "duplicate" and "Untitled.ipynb, Untitled1.ipynb" in eve.problem


def test_a_notebook_given_directly_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_submissions([tmp_path / "missing.ipynb"], ONE)


@pytest.mark.parametrize("content, problem", [
    (b"", "the file is empty"), (b'{"cells": [ nope', "not a valid notebook"),
    (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", "metadata": [], "source": ""}]}',
     "not a valid notebook"),
    ((FIXTURES / "other" / "pooling.ipynb").read_bytes(), "this is not assignment 'conv_basics'"),
])  # fmt: skip
def test_unreadable_notebooks_say_why(tmp_path, content, problem):
    path = tmp_path / "x.ipynb"
    path.write_bytes(content)
    nb, why = read_submission(path, read_notebook(SOURCE), "conv_basics")
    assert nb is None and problem in why

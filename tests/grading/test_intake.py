"""Finding submissions: regular notebooks only, nothing followed, one row per student and assignment."""

import os
import shutil
from pathlib import Path

import pytest

from cnnlab.grading.intake import find_submissions, read_submission
from cnnlab.grading.source import read_notebook

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
    _put(tmp_path / "bob" / "conv_basics.ipynb")
    rows = _rows(tmp_path)
    assert set(rows) == {("alice", "conv_basics"), ("bob", "conv_basics")}
    assert all(not s.status for s in rows.values())


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

"""`cnnlab validate`: a student's check before submitting, on real notebooks in real kernels."""

from pathlib import Path

import nbformat
import pytest

from cnnlab import cli
from cnnlab.grading.pipeline.execute import Limits
from cnnlab.grading.validate import validate_notebook

ROOT = Path(__file__).parents[2]
NAME = "01_conv1d_by_hand.ipynb"
pytestmark = pytest.mark.slow


def _answer(nb, grade_id, source):
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    cell.source = source


def test_a_solution_passes_every_task_and_exits_zero(capsys):
    assert cli.main(["validate", str(ROOT / "solutions" / NAME)]) == 0
    printed = capsys.readouterr().out
    assert printed.count(" passed") == 5 and "answered" in printed and "6 of 6 tasks" in printed
    assert "Ctrl-C" not in printed  # the kernel's own banner stays out of the student's terminal


def test_an_untouched_exercise_is_not_attempted_and_exits_non_zero(capsys):
    assert cli.main(["validate", str(ROOT / "exercises" / NAME)]) == 1
    printed = capsys.readouterr().out
    assert printed.count("not attempted") == 5 and "not answered" in printed and "0 of 6 tasks" in printed
    assert "Task 1 (3 points): cross-correlation with loops" in printed


def test_a_wrong_answer_shows_the_checks_message_and_a_slow_one_is_too_slow(tmp_path):
    nb = nbformat.read(ROOT / "exercises" / NAME, as_version=4)
    _answer(nb, "conv1d_valid", "import numpy as np\n\ndef conv1d_valid(x, w):\n"
                                "    return np.array([np.dot(x[i:i + len(w)], w[::-1]) for i in range(len(x) - len(w) + 1)])\n")
    _answer(nb, "output_length", "def output_length(n, f, p=0, s=1):\n    while True:\n        pass\n")
    path = tmp_path / NAME
    nbformat.write(nb, path)
    checks = {c.grade_id: c for c in validate_notebook(path, Limits(cell_seconds=8, notebook_seconds=120))}
    assert checks["test_conv1d_valid"].verdict == "failed"
    assert "flip" in checks["test_conv1d_valid"].message  # the check's own helpful message
    assert checks["test_output_length"].verdict == "too slow"
    assert checks["test_conv1d_general"].verdict == "not attempted"


def test_a_task_that_kills_the_kernel_costs_only_itself(tmp_path):
    nb = nbformat.read(ROOT / "solutions" / NAME, as_version=4)
    _answer(nb, "conv1d_general", "import os\nos._exit(3)\n")
    path = tmp_path / NAME
    nbformat.write(nb, path)
    checks = {c.grade_id: c for c in validate_notebook(path)}
    assert checks["test_conv1d_general"].verdict == "failed"
    assert "the kernel stopped (kernel-died) while this task ran" in checks["test_conv1d_general"].message
    assert [checks[t].verdict for t in ("test_conv1d_valid", "test_output_length", "test_graph_gradients",
                                        "test_conv1d_backward")] == ["passed"] * 4  # fmt: skip


def test_a_file_that_is_not_an_assignment_gets_one_clear_line(tmp_path, capsys):
    (tmp_path / "notes.ipynb").write_text("not json")
    lesson = ROOT / "notebooks" / NAME
    assert cli.main(["validate", str(tmp_path / "notes.ipynb"), str(lesson)]) == 1
    err = capsys.readouterr().err
    assert "is not a readable notebook" in err and "has no graded cells" in err

"""Rebuilding the notebook to run: tests from the source, answers from the student."""

import json
from pathlib import Path

import nbformat

from cnnlab.grading.authoring.source import read_notebook
from cnnlab.grading.pipeline.restore import restore, segment, split_hidden

SOURCE = Path(__file__).parents[1] / "fixtures" / "source" / "conv_basics.ipynb"


def test_hidden_parts_are_split_out_without_markers():
    parts = split_hidden("a = 1\n### BEGIN HIDDEN TESTS\nb = 2\n### END HIDDEN TESTS\nc = 3")
    assert parts == [("a = 1", "visible"), ("b = 2", "hidden"), ("c = 3", "visible")]


def test_restore_puts_back_deleted_and_edited_tests_and_keeps_student_cells():
    source = read_notebook(SOURCE)
    student = nbformat.from_dict(json.loads(json.dumps(source)))
    student.cells = [c for c in student.cells if c.metadata["nbgrader"]["grade_id"] != "test_conv1d"]
    student.cells[-2].source = "pass"  # edits test_output_length
    helper = nbformat.v4.new_code_cell("def helper():\n    return 1")
    student.cells.insert(3, helper)  # after the conv1d answer
    rebuilt = restore(source, student)
    kinds = [(segment(c)["grade_id"], segment(c)["kind"]) for c in rebuilt.cells]
    assert ("test_conv1d", "hidden") in kinds and ("test_output_length", "hidden") in kinds
    sources = [c.source for c in rebuilt.cells]
    assert "pass" not in sources
    assert sources.index(helper.source) == sources.index(source.cells[2].source) + 1


def test_an_answer_of_the_wrong_cell_type_counts_as_empty():
    source = read_notebook(SOURCE)
    student = nbformat.from_dict(json.loads(json.dumps(source)))
    answer = next(c for c in student.cells if c.metadata["nbgrader"]["grade_id"] == "conv1d")
    answer.cell_type = "markdown"
    rebuilt = restore(source, student)
    cell = next(c for c in rebuilt.cells if segment(c).get("grade_id") == "conv1d")
    assert cell.cell_type == "code" and cell.source == ""

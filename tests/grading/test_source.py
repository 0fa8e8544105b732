"""cnnlab.grading.authoring.source.validate: a malformed source is rejected with the cell named."""

import copy
from pathlib import Path

import nbformat
import pytest

from cnnlab.grading import SourceError
from cnnlab.grading.authoring.source import question_of, read_notebook, validate

SOURCE = Path(__file__).parents[1] / "fixtures" / "source" / "conv_basics.ipynb"


@pytest.fixture
def nb():
    return read_notebook(SOURCE)


def test_the_fixture_source_is_valid(nb):
    validate(nb)


def _broken(nb, index, change):
    nb = copy.deepcopy(nb)
    change(nb.cells[index])
    return nb


@pytest.mark.parametrize(
    ("index", "change", "message"),
    [
        (
            3,
            lambda c: c.metadata.nbgrader.update(grade_id="conv1d"),
            "cell 3 .*duplicate grade_id 'conv1d' \\(also cell 2\\)",
        ),
        (3, lambda c: c.metadata.nbgrader.pop("grade_id"), "cell 3 \\(code\\): missing grade_id"),
        (
            2,
            lambda c: c.metadata.nbgrader.update(points=2),
            "cell 2 .*points on a cell that is not a grade cell",
        ),
        (
            2,
            lambda c: setattr(c, "source", c.source.replace("### END SOLUTION", "")),
            "cell 2 .*never closed",
        ),
        (
            3,
            lambda c: setattr(c, "source", c.source.replace("### BEGIN HIDDEN TESTS", "")),
            "cell 3 .*without a matching",
        ),
        (
            2,
            lambda c: setattr(c, "source", "def conv1d(x, w):\n    return x"),
            "cell 2 .*solution cell with no",
        ),
        (3, lambda c: c.metadata.nbgrader.update(points=-1), "cell 3 .*needs points >= 0"),
        (
            1,
            lambda c: setattr(c, "source", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
            "cell 1 .*not a solution cell",
        ),
    ],
)
def test_malformed_sources_name_the_cell(nb, index, change, message):
    with pytest.raises(SourceError, match=message):
        validate(_broken(nb, index, change), "conv_basics.ipynb")


def test_a_source_without_grade_cells_is_rejected(nb):
    nb = copy.deepcopy(nb)
    nb.cells = nb.cells[:3]
    with pytest.raises(SourceError, match="no grade cell"):
        validate(nb)


def test_the_question_of_a_written_task_is_its_own_text_or_the_cell_before():
    """The shipped assignments put the question in the markdown cell before the answer cell."""
    asked = nbformat.v4.new_markdown_cell("## Task 5: why does the CNN beat the MLP?")
    answer = nbformat.v4.new_markdown_cell("### BEGIN SOLUTION\nShared filters.\n### END SOLUTION",
                                           metadata={"nbgrader": {"grade": True, "solution": True}})  # fmt: skip
    inline = nbformat.v4.new_markdown_cell("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION",
                                           metadata={"nbgrader": {"grade": True, "solution": True}})  # fmt: skip
    cells = [asked, answer, inline]
    assert question_of(cells, 1) == "## Task 5: why does the CNN beat the MLP?"
    assert question_of(cells, 2) == "Why?"

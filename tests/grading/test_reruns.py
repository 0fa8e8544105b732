"""A task whose answer kills the kernel costs that task only: what a rerun leaves out (submission.crash_site)."""

import nbformat

from cnnlab.grading.pipeline.restore import SEGMENT
from cnnlab.grading.pipeline.submission import SKIPPED, crash_site, without_cells


def _nb(*segments):
    nb = nbformat.v4.new_notebook()
    for grade_id, kind in segments:
        cell = nbformat.v4.new_code_cell(f"# {kind} {grade_id}")
        cell.metadata[SEGMENT] = {"grade_id": grade_id, "kind": kind}
        nb.cells.append(cell)
    return nb


NB = _nb((None, "source"), ("conv", "answer"), ("test_conv", "visible"), ("test_conv", "hidden"),
         (None, "student"), ("length", "answer"), ("test_length", "visible"), ("test_length", "hidden"),
         ("why", "answer"))  # fmt: skip


def test_a_crash_in_a_test_skips_every_part_of_that_test_and_keeps_the_answer():
    assert crash_site(NB, 3) == ({2, 3}, "test_conv")
    assert crash_site(NB, 6) == ({6, 7}, "test_length")


def test_a_crash_in_an_answer_skips_the_answer_and_its_test():
    assert crash_site(NB, 1) == ({1, 2, 3}, "test_conv")
    assert crash_site(NB, 5) == ({5, 6, 7}, "test_length")


def test_a_crash_in_a_cell_the_student_added_skips_that_cell_and_fails_no_task():
    assert crash_site(NB, 4) == ({4}, None)


def test_a_manual_code_answer_is_its_own_task():
    assert crash_site(NB, 8) == ({8}, "why")


def test_a_crash_in_the_sources_own_cell_skips_that_cell_and_fails_no_task():
    assert crash_site(NB, 0) == ({0}, None)  # it may have called the student's code


def test_an_index_outside_the_notebook_is_no_crash_site():
    assert crash_site(NB, 99) is None and crash_site(NB, -1) is None


def test_skipped_cells_do_nothing_and_keep_their_tags():
    out = without_cells(NB, {2, 3})
    assert [c.source for c in out.cells[2:4]] == [SKIPPED, SKIPPED]
    assert out.cells[2].metadata[SEGMENT] == {"grade_id": "test_conv", "kind": "visible"}
    assert NB.cells[2].source == "# visible test_conv"  # the original is untouched

"""Verdicts from synthetic executed notebooks: no kernel, no sandbox."""

import nbformat
import pytest

from cnnlab.grading.authoring.source import GradeItem
from cnnlab.grading.pipeline.execute import Execution, Reply
from cnnlab.grading.pipeline.restore import SEGMENT
from cnnlab.grading.pipeline.score import (
    NOT_ANSWERED,
    WITHHELD,
    WRITTEN_PENDING,
    collect_records,
    partial_problems,
    score,
    unrecorded,
)
from cnnlab.grading.record import MIME, Comparison, Record, encode

ITEMS = [GradeItem("test_a", 3.0, False), GradeItem("test_b", 2.0, False), GradeItem("essay", 1.0, True)]


def _cell(grade_id, kind, outputs=()):
    cell = nbformat.v4.new_code_cell("...")
    cell.metadata[SEGMENT] = {"grade_id": grade_id, "kind": kind}
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return cell


def _out(key, value, **compare):
    payload = {"key": key, "value": encode(value), "compare": (Comparison(**compare) if compare else Comparison()).to_json()}
    return {"output_type": "display_data", "data": {MIME: payload}, "metadata": {}}


def _error(ename="AssertionError", evalue="boom"):
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def _run(cells, replies=None, **execution):
    """A notebook of ``cells``, then the student's written answer to ``essay``."""
    nb = nbformat.v4.new_notebook()
    essay = nbformat.v4.new_markdown_cell("My essay.")
    essay.metadata[SEGMENT] = {"grade_id": "essay", "kind": "answer"}
    nb.cells = [*cells, essay]
    replies = replies if replies is not None else {i: Reply("ok") for i in range(len(cells))}
    return nb, Execution(replies=replies, **execution)


def _reference(**records):
    return {"test_a": {k: Record(k, encode(v), Comparison()) for k, v in records.items()}}


def test_passing_and_failing_cells():
    nb, ex = _run([_cell("test_a", "visible"), _cell("test_a", "hidden", [_out("x", [1.0, 2.0])]),
                   _cell("test_b", "visible")], {0: Reply("ok"), 1: Reply("ok"), 2: Reply("error", "AssertionError", "no")})
    results = score(ITEMS, _reference(x=[1.0, 2.0]), nb, ex)
    assert [(r.points, r.passed) for r in results] == [(3.0, True), (0.0, False), (0.0, None)]
    assert results[1].message == "AssertionError: no" and results[1].unrecorded


def test_an_error_reply_fails_the_cell_even_when_no_error_was_displayed():
    """A custom exception handler can suppress the error output; the reply still says error."""
    nb, ex = _run([_cell("test_b", "visible")], {0: Reply("error")})
    result = score(ITEMS, {}, nb, ex)[1]
    assert result.passed is False and "no message was shown" in result.message


def test_hidden_failures_show_only_the_graders_words():
    """A kernel can read hidden code as it runs and put it in its error's name: none of that is shown."""
    nb, ex = _run([_cell("test_b", "hidden", [_error(evalue="expected 42")])],
                  {0: Reply("error", "assert output_size(7, 3, 1, 2) == 4", "expected 42")})
    assert score(ITEMS, {}, nb, ex)[1].message == "hidden test failed"


def test_a_visible_message_quoting_hidden_code_is_withheld():
    hidden = _cell("test_a", "hidden")
    hidden.source = "assert output_size(7, 3, 1, 2) == 4"
    visible = _cell("test_b", "visible")
    nb, ex = _run([hidden, visible], {0: Reply("ok"), 1: Reply("error", "ValueError", "assert output_size(7, 3, 1, 2) == 4")})
    assert score(ITEMS, {}, nb, ex)[1].message == WITHHELD


@pytest.mark.parametrize("text, pending", [("My essay.", True), ("YOUR ANSWER HERE", False), ("  \n", False),
                                           ("YOUR ANSWER HERE\nBut here is my answer.", True),
                                           ("# YOUR CODE HERE\nraise NotImplementedError()", False)])
def test_a_written_answer_left_as_given_is_not_queued_for_marking(text, pending):
    nb, ex = _run([])
    nb.cells[-1].source = text
    essay = score(ITEMS, {}, nb, ex)[2]
    assert (essay.passed, essay.points) == ((None, 0.0) if pending else (False, 0.0))
    assert essay.message == (WRITTEN_PENDING if pending else NOT_ANSWERED)


def test_not_implemented_is_named():
    nb, ex = _run([_cell("test_b", "visible")], {0: Reply("error", "NotImplementedError", "")})
    assert "not implemented yet" in score(ITEMS, {}, nb, ex)[1].message


@pytest.mark.parametrize("outputs, message", [
    ([], "'x' missing"),
    ([_out("x", [1.0, 2.0]), _out("x", [1.0, 2.0])], "sent more than once"),
    ([_out("x", [1.0, 2.5])], "'x': wrong value"),
    ([{"output_type": "display_data", "data": {MIME: {"key": "x"}}, "metadata": {}}], "malformed"),
])  # fmt: skip
def test_records_must_arrive_once_and_match(outputs, message):
    nb, ex = _run([_cell("test_a", "hidden", outputs)])
    result = score(ITEMS, _reference(x=[1.0, 2.0]), nb, ex)[0]
    assert result.passed is False and message in result.message


def test_a_better_value_than_the_reference_passes_a_bound():
    reference = {"test_a": {"acc": Record("acc", encode(0.96), Comparison("bounds", low=0.95))}}
    better, worse = (_run([_cell("test_a", "hidden", [_out("acc", v)])]) for v in (0.99, 0.90))
    assert score(ITEMS, reference, *better)[0].passed is True
    result = score(ITEMS, reference, *worse)[0]
    assert result.passed is False and result.message == "hidden test 'acc': not >= 0.95"


def test_timeouts_and_a_dead_kernel_fail_what_they_reached():
    cells = [_cell("test_a", "visible"), _cell("test_b", "visible")]
    nb, ex = _run(cells, {0: Reply("error", "CellTimeout")}, timed_out_cells={0})
    assert score(ITEMS, {}, nb, ex)[0].message == "timed out"
    nb, ex = _run(cells, {0: Reply("ok")}, status="kernel-died", died_at_cell=1)
    results = score(ITEMS, {}, nb, ex)
    assert results[0].passed is True and "kernel stopped (kernel-died)" in results[1].message


def test_a_cell_that_never_ran_fails():
    nb, ex = _run([_cell("test_a", "visible")], {})
    assert score(ITEMS, {}, nb, ex)[0].message == "not run"
    nb, ex = _run([])  # the test cell is missing altogether
    assert score(ITEMS, {}, nb, ex)[0].message == "not run"


def test_the_reference_is_what_the_source_recorded():
    nb, _ = _run([_cell("test_a", "hidden", [_out("x", 1.0), _out("y", 2.0, kind="equal")]), _cell(None, "source")])
    reference = collect_records(nb)
    assert set(reference) == {"test_a"} and reference["test_a"]["y"].compare.kind == "equal"
    assert unrecorded(ITEMS, reference) == ["test_b"]


def _shared(points, **records):
    """A reference for test_a whose records split the cell's points (partial credit)."""
    return {"test_a": {k: Record(k, encode(v), Comparison(), points) for k, v in records.items()}}


def test_partial_credit_gives_each_check_its_share():
    nb, ex = _run([_cell("test_a", "hidden", [_out("a", 1.0), _out("b", 5.0), _out("c", 3.0)])],
                  {0: Reply("error", "AssertionError", "")})  # the hidden asserts fail after recording
    result = score(ITEMS, _shared(1.0, a=1.0, b=2.0, c=3.0), nb, ex)[0]
    assert (result.points, result.max_points, result.passed) == (2.0, 3.0, False)
    assert [(k.key, k.points, k.passed, k.message) for k in result.checks] == [
        ("a", 1.0, True, ""), ("b", 0.0, False, "wrong value"), ("c", 1.0, True, "")]
    assert result.message == "2 of 3 checks passed; hidden test failed"


def test_partial_credit_checks_that_never_arrived_score_nothing():
    nb, ex = _run([_cell("test_a", "hidden", [_out("a", 1.0), _out("a", 1.0)])], timed_out_cells={0})
    result = score(ITEMS, _shared(1.5, a=1.0, b=2.0), nb, ex)[0]
    assert result.points == 0.0 and [k.message for k in result.checks] == ["sent more than once", "missing"]
    assert result.message == "timed out"  # no check passed: what stopped them is the message


def test_partial_credit_of_an_answer_not_yet_written_says_so():
    nb, ex = _run([_cell("test_a", "hidden", [])], {0: Reply("error", "NotImplementedError", "")})
    result = score(ITEMS, _shared(1.5, a=1.0, b=2.0), nb, ex)[0]
    assert result.points == 0.0 and result.message.startswith("not implemented yet")


def test_partial_credit_all_checks_passing_earns_the_cell():
    nb, ex = _run([_cell("test_a", "hidden", [_out("a", 1.0), _out("b", 2.0)])])
    result = score(ITEMS, _shared(1.5, a=1.0, b=2.0), nb, ex)[0]
    assert (result.points, result.passed, result.message) == (3.0, True, "")


def test_a_submission_cannot_give_its_own_checks_points():
    """Points, like comparisons, are read from the source's record only."""
    payload = _out("a", 1.0)
    payload["data"][MIME]["points"] = 3.0
    nb, ex = _run([_cell("test_a", "hidden", [payload])])
    result = score(ITEMS, _reference(a=2.0), nb, ex)[0]
    assert result.points == 0.0 and not result.checks


@pytest.mark.parametrize("points, problem", [((1.0, None), "give points on every record"),
                                             ((1.0, 1.0), "add up to 2, but the cell is worth 3")])
def test_sources_whose_shares_do_not_add_up_are_refused(points, problem):
    reference = {"test_a": {k: Record(k, encode(1.0), Comparison(), p) for k, p in zip("ab", points, strict=True)}}
    (found,) = partial_problems(ITEMS, reference)
    assert problem in found and found.startswith("test_a")
    assert partial_problems(ITEMS, _shared(1.0, a=1, b=2, c=3)) == []

"""cnnlab.grading.pipeline.submission: what a marker is shown beside a written answer."""

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cnnlab.grading.pipeline.restore import SEGMENT
from cnnlab.grading.pipeline.submission import PRINTED_CHARACTERS, printed_above_answers
from cnnlab.grading.results.sheet import SubmissionResult, row_from_dict, row_to_dict


def _answer(grade_id: str, text: str = "My numbers say ...") -> nbformat.NotebookNode:
    cell = new_markdown_cell(text)
    cell.metadata[SEGMENT] = {"grade_id": grade_id, "kind": "answer"}
    return cell


def _run(*outputs) -> nbformat.NotebookNode:
    cell = new_code_cell("...")
    cell.outputs = list(outputs)
    return cell


def test_the_code_right_above_a_written_answer_is_what_its_marker_sees():
    nb = new_notebook(cells=[
        _run(new_output("stream", name="stdout", text="not this: a task above\n")),
        new_markdown_cell("## Task 8: what do your numbers say?"),
        _run(new_output("stream", name="stdout", text="test digits 400 to 599: 193 of 200 flipped")),
        _run(new_output("stream", name="stderr", text="a warning, not shown\n"),
             new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure size 640x480>"}),
             new_output("execute_result", data={"text/plain": "0.15", "text/html": "<b>0.15</b>"}, execution_count=3),
             new_output("error", ename="ValueError", evalue="no", traceback=[])),
        _answer("interpret_numbers"),
        _answer("nothing_above"),  # a markdown cell right above: nothing printed
        _run(new_output("stream", name="stdout", text="x" * (PRINTED_CHARACTERS + 50))),
        _answer("long"),
        _run(new_output("stream", name="stdout", text="an answer not marked by a person\n")),
        _answer("automatic"),
    ])  # fmt: skip
    found = dict(printed_above_answers(nb, {"interpret_numbers", "nothing_above", "long"}))
    assert found["interpret_numbers"] == "test digits 400 to 599: 193 of 200 flipped\n<Figure size 640x480>\n0.15"
    assert "nothing_above" not in found and "automatic" not in found
    assert found["long"] == "x" * PRINTED_CHARACTERS + " [...]"


def test_the_printed_text_travels_through_the_grade_sheet():
    row = SubmissionResult("ann", "05", "ann/05.ipynb", "graded", manual_answers=(("t8", "median 0.150"),),
                           printed=(("t8", "median 0.150 (38 grey levels)"),))  # fmt: skip
    assert row_from_dict(row_to_dict(row)) == row
    old = row_to_dict(row)
    del old["printed"]  # a sheet written before the field existed
    assert row_from_dict(old).printed == ()

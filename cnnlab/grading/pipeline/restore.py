"""Step 2 of grading: rebuild the notebook to execute from the source and the student's answers.

Every cell comes from the instructor's source except the student's answers
(matched by ``grade_id``, else by cell id) and code cells the student added
(kept after the source cell they followed). Deleted or edited test cells
therefore change nothing, and the hidden tests are back. Each test cell is
split into its visible and hidden parts, run as separate cells, so that a
failure can be attributed without showing hidden code.

Every cell of the result carries ``metadata["cnnlab_segment"] = {"grade_id":
str | None, "kind": "answer" | "visible" | "hidden" | "source" | "student"}``.
"""

from __future__ import annotations

import copy

import nbformat

from cnnlab.grading.authoring.source import BEGIN_HIDDEN, END_HIDDEN, cell_key, is_grade, is_solution, meta

__all__ = ["SEGMENT", "restore", "segment", "split_hidden"]

SEGMENT = "cnnlab_segment"


def segment(cell) -> dict:
    """``{"grade_id": ..., "kind": ...}`` of a cell made by :func:`restore` (empty for any other cell)."""
    value = cell.get("metadata", {}).get(SEGMENT, {})
    return value if isinstance(value, dict) else {}


def split_hidden(source: str) -> list[tuple[str, str]]:
    """``[(code, "visible" | "hidden"), ...]`` in order, without the marker lines and empty parts."""
    parts: list[tuple[str, str]] = []
    current, kind = [], "visible"
    for line in source.splitlines():
        if BEGIN_HIDDEN in line or END_HIDDEN in line:
            if any(text.strip() for text in current):
                parts.append(("\n".join(current), kind))
            current, kind = [], "hidden" if BEGIN_HIDDEN in line else "visible"
            continue
        current.append(line)
    if any(text.strip() for text in current):
        parts.append(("\n".join(current), kind))
    return parts


def _tagged(cell, grade_id: str | None, kind: str):
    cell.metadata[SEGMENT] = {"grade_id": grade_id, "kind": kind}
    return cell


def restore(source_nb, submission_nb):
    """The notebook to execute: the source's cells, the student's answers and added code cells."""
    source_keys = {cell_key(cell) for cell in source_nb.cells}
    answers, added, last = {}, {}, None
    for cell in submission_nb.cells:
        key = cell_key(cell)
        if key in source_keys:
            answers[key], last = cell, key
        elif cell.get("cell_type") == "code":  # markdown the student added is irrelevant to grading
            added.setdefault(last, []).append(cell)
    out = nbformat.v4.new_notebook(metadata=copy.deepcopy(source_nb.metadata))

    def add_student_cells(after):
        for extra in added.get(after, []):
            out.cells.append(_tagged(nbformat.v4.new_code_cell(str(extra.get("source", ""))), None, "student"))

    add_student_cells(None)
    for cell in source_nb.cells:
        key, grade_id = cell_key(cell), meta(cell).get("grade_id")
        if is_solution(cell):
            student = answers.get(key)
            same_type = student is not None and student.get("cell_type") == cell.cell_type
            text = str(student.get("source", "")) if same_type else ""
            new = nbformat.v4.new_code_cell(text) if cell.cell_type == "code" else nbformat.v4.new_markdown_cell(text)
            out.cells.append(_tagged(new, grade_id, "answer"))
        elif is_grade(cell) and cell.cell_type == "code":
            for text, kind in split_hidden(cell.source):
                out.cells.append(_tagged(nbformat.v4.new_code_cell(text), grade_id, kind))
        elif cell.cell_type == "code":
            out.cells.append(_tagged(nbformat.v4.new_code_cell(cell.source), None, "source"))
        else:
            out.cells.append(_tagged(nbformat.v4.new_markdown_cell(cell.source), None, "source"))
        add_student_cells(key)
    return out

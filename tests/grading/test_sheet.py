"""The grade sheet's rows: the journal of a run, merging runs, one row per (student, assignment), safe files."""

import csv
import io

import pytest

from cnnlab.grading.pipeline.score import CellResult
from cnnlab.grading.results.report import feedback_paths, safe_name
from cnnlab.grading.results.sheet import (
    JOURNAL_FILE,
    STATUSES,
    Journal,
    SubmissionResult,
    check_unique,
    display_name,
    merge,
    row_from_dict,
    row_to_dict,
    write_atomically,  # fmt: skip
)
from cnnlab.grading.results.spreadsheet import cell, csv_text, read_cell

HEADER = {"seed": 3, "sandbox": "bwrap", "source": "/s", "sources": "abc", "late_policy": None}


def _row(student, total=1.0, assignment="conv"):
    return SubmissionResult(student, assignment, f"{student}/conv.ipynb", "graded", (CellResult("t", total, 2.0, True),))


def test_the_journal_keeps_every_finished_row_and_ignores_a_line_cut_short(tmp_path):
    journal = Journal(tmp_path, HEADER)
    journal.start([])
    journal.append(_row("ann"))
    journal.append(_row("bob", 2.0))
    journal.close(remove=False)
    with open(tmp_path / JOURNAL_FILE, "a") as handle:
        handle.write('{"student": "cy", "assign')  # the grader died mid-line
    rows, why = Journal(tmp_path, HEADER).earlier_rows()
    assert why == "" and [(r.student, r.total) for r in rows] == [("ann", 1.0), ("bob", 2.0)]
    assert Journal.seed_in(tmp_path, {k: v for k, v in HEADER.items() if k != "seed"}) == 3


@pytest.mark.parametrize("status", STATUSES)
def test_every_status_reads_back_and_no_other_does(status):
    row = row_to_dict(SubmissionResult("ann", "conv", "ann/conv.ipynb", status, ()))
    assert row_from_dict(row).status == status
    with pytest.raises(ValueError, match="status 'Graded' is not one of graded, timeout"):
        row_from_dict({**row, "status": "Graded"})  # hand-edited: it would have counted as a scored row


def test_a_journal_of_other_settings_is_set_aside_not_lost(tmp_path):
    journal = Journal(tmp_path, HEADER)
    journal.start([_row("ann")])
    journal.close(remove=False)
    rows, why = Journal(tmp_path, {**HEADER, "seed": 4}).earlier_rows()
    assert rows == [] and "grades.journal-1.jsonl" in why
    assert "ann" in (tmp_path / "grades.journal-1.jsonl").read_text() and not (tmp_path / JOURNAL_FILE).exists()


def test_merge_replaces_the_rows_graded_again_and_keeps_the_rest():
    merged = merge([_row("ann"), _row("bob"), _row("ann", assignment="pool")], [_row("bob", 2.0)])
    assert [(r.student, r.assignment, r.total) for r in merged] == [("ann", "conv", 1.0), ("ann", "pool", 1.0),
                                                                    ("bob", "conv", 2.0)]  # fmt: skip
    with pytest.raises(ValueError, match="two rows for student 'ann'"):
        check_unique([_row("ann"), _row("ann", 2.0)])


@pytest.mark.parametrize("names", [("p_józef", "p_jözef"), ("a b", "a_b"), ("ünï", "çøð"), ("Bob", "bob"),
                                   ("x" * 240, "x" * 241), ("..\\..\\x", "x")])  # fmt: skip
def test_feedback_pages_never_collide_and_fit_a_file_name(tmp_path, names):
    paths = feedback_paths(tmp_path, [_row(n) for n in names])
    assert len({str(p).casefold() for p in paths.values()}) == len(names)
    assert all(len(part.encode()) <= 255 and part not in (".", "..") for p in paths.values() for part in p.parts)
    assert safe_name("ann") == "ann"


def test_long_and_non_utf8_names_are_written(tmp_path):
    name = display_name("p_j\udcf3zef")  # os.fsdecode of CP-1252 bytes
    assert name == "p_j\\xf3zef"
    page = tmp_path / f"{'y' * 250}.html"
    write_atomically(page, "text \udcff")  # a lone surrogate is escaped, never an exception
    assert page.read_text() == "text \\udcff" and [p.name for p in tmp_path.iterdir()] == [page.name]


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_spreadsheet_formulas_are_text_and_read_back(text):
    assert cell(text) == "'" + text and read_cell(cell(text)) == text
    assert read_cell("'plain") == "'plain" and cell("ann") == "ann"
    assert next(csv.reader(io.StringIO(csv_text([[text, 3]])))) == ["'" + text, "3"]


def test_names_equal_but_for_case_get_folders_of_their_own(tmp_path):
    """macOS and Windows ignore case: Bob's 03 and bob's 05 must not share a release folder."""
    paths = feedback_paths(tmp_path, [_row("Bob", assignment="03"), _row("bob", assignment="05")])
    folders = {p.parents[1].name.casefold() for p in paths.values()}
    assert len(folders) == 2


def test_a_row_is_never_replaced_by_one_found_in_another_folder(tmp_path):
    """`cnnlab grade submitted/bob`, where bob holds a folder alice/: it must not stand in for alice's row."""
    from cnnlab.grading.grade import _same_folders  # noqa: PLC0415
    from cnnlab.grading.pipeline.intake import Submission  # noqa: PLC0415
    from cnnlab.grading.results.sheet import Sheet, SheetError  # noqa: PLC0415

    sheet = Sheet(1, "bwrap", [SubmissionResult("alice", "conv", "s/alice/conv.ipynb", "graded", folder="/s/alice")])
    _same_folders([Submission("alice", "conv", tmp_path, folder="/s/alice")], sheet)  # the same folder: fine
    with pytest.raises(SheetError, match="alice/conv: the sheet's row is from /s/alice, this one from /s/bob/alice"):
        _same_folders([Submission("alice", "conv", tmp_path, folder="/s/bob/alice")], sheet)

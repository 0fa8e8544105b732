"""cnnlab grade against the corpus of hostile and broken submissions in tests/fixtures/submissions."""

import csv
import json
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from cnnlab import cli
from cnnlab.grading.grade import SEGMENT, _split_hidden, find_submissions, load_assignments, restore
from cnnlab.grading.record import encode
from cnnlab.grading.sandbox import bwrap_available
from cnnlab.grading.source import read_notebook

FIXTURES = Path(__file__).parents[1] / "fixtures"
SOURCE = FIXTURES / "source"
SUBMISSIONS = FIXTURES / "submissions"
EXPECTED = json.loads((SUBMISSIONS / "expected.json").read_text())
LIMITS = ["--timeout", "10", "--notebook-timeout", "90", "--memory-mb", "1500", "--workers", "2"]
needs_bwrap = pytest.mark.skipif(
    not bwrap_available(), reason="bubblewrap is not installed (apt-get install bubblewrap)"
)


# ---------------------------------------------------------------- fast: rebuilding the notebook
def _source():
    return read_notebook(SOURCE / "conv_basics.ipynb")


def test_hidden_parts_are_split_out_without_markers():
    parts = _split_hidden("a = 1\n### BEGIN HIDDEN TESTS\nb = 2\n### END HIDDEN TESTS\nc = 3")
    assert parts == [("a = 1", "visible"), ("b = 2", "hidden"), ("c = 3", "visible")]


def test_restore_puts_back_deleted_and_edited_tests_and_keeps_student_cells():
    source = _source()
    student = nbformat.from_dict(json.loads(json.dumps(source)))
    student.cells = [c for c in student.cells if c.metadata["nbgrader"]["grade_id"] != "test_conv1d"]
    student.cells[-2].source = "pass"  # edits test_output_length
    helper = nbformat.v4.new_code_cell("def helper():\n    return 1")
    student.cells.insert(3, helper)  # after the conv1d answer
    rebuilt = restore(source, student)
    kinds = [(c.metadata[SEGMENT]["grade_id"], c.metadata[SEGMENT]["kind"]) for c in rebuilt.cells]
    assert ("test_conv1d", "hidden") in kinds and ("test_output_length", "hidden") in kinds
    sources = [c.source for c in rebuilt.cells]
    assert "pass" not in sources
    assert sources.index(helper.source) == sources.index(source.cells[2].source) + 1


def test_submissions_are_found_in_nbgrader_and_plain_layouts(tmp_path):
    assignments = load_assignments(SOURCE)
    nbgrader_style = tmp_path / "submitted" / "alice" / "conv_basics" / "conv_basics.ipynb"
    nbgrader_style.parent.mkdir(parents=True)
    shutil.copy(SUBMISSIONS / "correct" / "conv_basics.ipynb", nbgrader_style)
    plain = tmp_path / "bob" / "conv_basics.ipynb"
    plain.parent.mkdir()
    shutil.copy(SUBMISSIONS / "correct" / "conv_basics.ipynb", plain)
    found = {(s.student, s.assignment) for s in find_submissions([tmp_path], assignments)}
    assert found == {("alice", "conv_basics"), ("bob", "conv_basics")}


def test_record_encoding_is_plain_json():
    import numpy as np

    payload = encode(np.array([[1.0, np.nan], [np.inf, 2.0]]))
    assert json.loads(json.dumps(payload)) == {
        "kind": "array",
        "shape": [2, 2],
        "data": [1.0, "nan", "inf", 2.0],
    }
    assert encode("text") == {"kind": "text", "data": "text"}


# ---------------------------------------------------------------- slow: the whole corpus
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    out = tmp_path_factory.mktemp("grades")
    (out / "grades.csv").write_text("sentinel")  # must be replaced by the grader, not by a submission
    assert (
        cli.main(
            ["grade", str(SUBMISSIONS), "--source", str(SOURCE), "--out", str(out), "--seed", "11", *LIMITS]
        )
        == 0
    )
    return out


@pytest.mark.slow
@needs_bwrap
def test_every_case_gets_its_expected_status_and_score(graded):
    rows = {row["student"]: row for row in csv.DictReader((graded / "grades.csv").open())}
    assert set(rows) == set(EXPECTED)
    wrong = {
        case: (rows[case]["status"], float(rows[case]["total"]))
        for case, want in EXPECTED.items()
        if (rows[case]["status"], float(rows[case]["total"])) != (want["status"], want["total"])
    }
    assert not wrong, f"cases graded differently from tests/fixtures/submissions/expected.json: {wrong}"
    assert all(row["max"] == "6" and row["manual_pending"] == "1" for row in rows.values())


@pytest.mark.slow
@needs_bwrap
def test_feedback_pages_never_show_hidden_code_or_expected_values(graded):
    pages = {p.stem: p.read_text() for p in (graded / "feedback" / "conv_basics").glob("*.html")}
    assert set(pages) == set(EXPECTED)
    for page in pages.values():
        assert "grading_rng" not in page and "np.correlate" not in page and "HIDDEN TESTS" not in page
    assert "hidden test &#x27;conv1d_0&#x27;: wrong value" in pages["fools_in_kernel_asserts"]
    assert (
        "Because the kernel has to fit inside the signal." in pages["correct"]
    )  # the written answer, for the grader
    assert "output beyond 1,000,000 bytes was dropped" in pages["prints_100mb"]
    assert "no recorded values" not in pages["correct"]  # every test cell of the fixture records
    assert "the kernel used more than 1500 MiB" in pages["allocates_30gb"]
    data = json.loads((graded / "grades.json").read_text())
    assert data["seed"] == 11 and data["sandboxed"] is True


@pytest.mark.slow
@needs_bwrap
def test_a_submission_cannot_write_the_grade_sheet(graded):
    text = (graded / "grades.csv").read_text()
    assert "hacked" not in text and "100" not in text.split("writes_fake_grades_csv")[1].splitlines()[0]


@pytest.mark.slow
def test_the_tampering_case_really_fools_every_in_kernel_check(tmp_path):
    """Run outside the grader, every test cell of that submission passes: only the records catch it."""
    nb = restore(_source(), read_notebook(SUBMISSIONS / "fools_in_kernel_asserts" / "conv_basics.ipynb"))
    NotebookClient(
        nb,
        timeout=60,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    errors = [c for c in nb.cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert errors == []


@pytest.mark.slow
@needs_bwrap
def test_batch_of_20_with_two_workers(tmp_path, capsys):
    batch = tmp_path / "batch"
    for i in range(20):
        target = batch / f"student{i:02d}" / "conv_basics.ipynb"
        target.parent.mkdir(parents=True)
        shutil.copy(SUBMISSIONS / "correct" / "conv_basics.ipynb", target)
    start = time.monotonic()
    assert (
        cli.main(["grade", str(batch), "--source", str(SOURCE), "--out", str(tmp_path / "out"), *LIMITS]) == 0
    )
    minutes = (time.monotonic() - start) / 60
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").open()))
    assert len(rows) == 20 and all(r["status"] == "graded" and r["total"] == "5" for r in rows)
    with capsys.disabled():
        print(f"\n[grading throughput] 20 submissions, 2 workers: {20 / minutes:.1f} submissions/minute")


def test_bad_source_directory_is_a_clear_error(tmp_path, capsys):
    assert (
        cli.main(
            [
                "grade",
                str(SUBMISSIONS / "correct"),
                "--source",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.slow
def test_without_the_sandbox_it_grades_and_says_what_is_missing(tmp_path, capsys):
    args = [
        "grade",
        str(SUBMISSIONS / "warns_on_stderr"),
        "--source",
        str(SOURCE),
        "--out",
        str(tmp_path),
        "--sandbox",
        "no",
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("warning: sandbox disabled") == 1 and "can read the sources" in out
    row = next(csv.DictReader((tmp_path / "grades.csv").open()))
    assert (row["status"], row["total"]) == ("graded", "5")  # stderr output does not zero a cell

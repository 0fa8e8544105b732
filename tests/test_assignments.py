"""Every assignment: the source earns full automatic marks, the student version none, each with a clear line.

The source's own full marks are checked by the grade run itself: the grader runs each source as the reference and
refuses to grade (SourceError, a non-zero exit) when it fails any of its own tests. Grading the untouched source a
second time as a student would repeat that run (about 130 s of kernel time), so no "solutions" student is graded.
"""

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from alternative_answers import SETS  # tests/ is on sys.path

from cnnlab import cli
from cnnlab.grading.authoring.source import meta, read_notebook, rubric_problems

ROOT = Path(__file__).parents[1]
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if not ASSIGNMENTS:
        pytest.skip("no assignments in solutions/ yet")
    work = tmp_path_factory.mktemp("assignments")
    (work / "in" / "exercises").mkdir(parents=True)
    for name in ASSIGNMENTS:
        shutil.copy(ROOT / "exercises" / name, work / "in" / "exercises" / name)
    for student, answers in SETS.items():
        (work / "in" / student).mkdir(parents=True)
        for name in ASSIGNMENTS:
            if Path(name).stem in answers:
                nbformat.write(with_answers(ROOT / "solutions" / name, answers[Path(name).stem]), work / "in" / student / name)
    args = [
        "grade",
        str(work / "in"),
        "--source",
        str(ROOT / "solutions"),
        "--out",
        str(work / "out"),
        "--workers",
        "2",
    ]
    assert cli.main(args) == 0  # 0: every source passed its own tests as the reference
    return json.loads((work / "out" / "grades.json").read_text())["submissions"]


def with_answers(source: Path, answers: dict[str, str]):
    """The source notebook with the answer cells named in ``answers`` rewritten."""
    nb = read_notebook(source)
    cells = {meta(c).get("grade_id"): c for c in nb.cells if meta(c).get("solution")}
    unknown = sorted(set(answers) - set(cells))
    assert not unknown, f"{source.name}: no answer cells {unknown}"
    for grade_id, text in answers.items():
        cells[grade_id].source = text
    return nb


@pytest.mark.slow
def test_alternative_correct_answers_earn_every_automatic_point(graded):
    """Keyword and positional calls, float32, lists, separate activation layers, other hyperparameters, ..."""
    for student, answers in SETS.items():
        rows = {r["assignment"]: r for r in graded if r["student"] == student}
        assert set(rows) == set(answers), student
        for assignment, row in rows.items():
            lost = [(c["grade_id"], c["message"]) for c in row["cells"] if c["result"] == "failed"]
            assert row["status"] == "graded" and not lost, (student, assignment, lost)
            assert row["total"] == row["max"] - row["manual_pending"], (student, assignment)


def test_every_written_answer_has_a_rubric_that_adds_up():
    for name in ASSIGNMENTS:
        assert not rubric_problems(read_notebook(ROOT / "solutions" / name), name)


@pytest.mark.slow
def test_every_assignment_is_graded_in_full_with_enough_tasks(graded):
    """Each assignment (its source passed its own tests to get here): >= 5 graded tasks and >= 20 points."""
    rows = [r for r in graded if r["student"] == "alternatives"]
    assert sorted(r["assignment"] + ".ipynb" for r in rows) == ASSIGNMENTS
    for row in rows:
        assert row["status"] == "graded" and row["total"] == row["max"] - row["manual_pending"], row
        assert row["max"] >= 20 and len(row["cells"]) >= 5, row


@pytest.mark.slow
def test_exercises_earn_nothing_and_say_not_implemented(graded):
    rows = [r for r in graded if r["student"] == "exercises"]
    assert len(rows) == len(ASSIGNMENTS)
    for row in rows:
        assert row["status"] == "graded" and row["total"] == 0
        written = [c for c in row["cells"] if c["message"].startswith("not answered")]
        automatic = [c for c in row["cells"] if c not in written]
        assert len(automatic) >= 4 and row["manual_pending"] == 0  # an untouched written answer is not queued
        assert all(c["message"].startswith("not implemented yet") for c in automatic), automatic


def test_sources_store_no_recorded_values():
    """A test cell ending in record(...) would display the value: it is hidden test data, and float noise for nbval."""
    import nbformat

    for name in ASSIGNMENTS:
        nb = nbformat.read(ROOT / "solutions" / name, as_version=4)
        shown = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                 and any(o.get("output_type") == "execute_result" for o in c.get("outputs", []))]  # fmt: skip
        assert not shown, f"{name}: cells {shown} store an execute_result"

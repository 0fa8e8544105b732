"""The similarity report (cnnlab.grading.results.similarity): a renamed copy is flagged, independent answers are not."""

import builtins
import copy
import io
import keyword
import re
import tokenize
from pathlib import Path

import nbformat
import pytest
from alternative_answers import SETS  # tests/ is on sys.path

from cnnlab import cli
from cnnlab.grading.authoring.source import is_solution, meta, read_notebook
from cnnlab.grading.results import similarity

SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"


def _reference_answers(source):
    return {meta(c)["grade_id"]: re.sub(r"\n\s*### (BEGIN|END) SOLUTION", "", c.source)
            for c in source.cells if is_solution(c) and c.cell_type == "code"}  # fmt: skip


def _renamed(code: str) -> str:
    """``code`` with every name it defines or uses (but keywords, builtins and modules) renamed v0, v1, ..."""
    keep = set(dir(builtins)) | set(keyword.kwlist) | {"np", "tf", "keras", "math"}
    names = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.NAME and tok.string not in keep:
            names.setdefault(tok.string, f"v{len(names)}")
    return re.sub(r"(?<![\w.])([A-Za-z_]\w*)\b", lambda m: names.get(m.group(1), m.group(1)), code)


def _notebook(source, answers):
    nb = copy.deepcopy(source)
    for cell in nb.cells:
        if is_solution(cell) and cell.cell_type == "code" and meta(cell)["grade_id"] in answers:
            cell.source = answers[meta(cell)["grade_id"]]
    return nb


@pytest.mark.parametrize("assignment", ["01_conv1d_by_hand", "02_2d_filters"])
def test_a_renamed_copy_is_flagged_and_independent_answers_are_not(assignment):
    source = read_notebook(SOLUTIONS / f"{assignment}.ipynb")
    reference = _reference_answers(source)
    students = [("reference", _notebook(source, reference)),
                ("renamed_copy", _notebook(source, {k: _renamed(v) for k, v in reference.items()})),
                ("alternative_a", _notebook(source, SETS["alternatives"][assignment])),
                ("alternative_b", _notebook(source, SETS["alternatives_b"][assignment]))]  # fmt: skip
    assert "v0" in students[1][1].cells[3].source or any("v0" in c.source for c in students[1][1].cells)
    docs, given = similarity.documents(students, source, assignment)
    everything = {(p.first.student, p.second.student): p.similarity for p in similarity.compare(docs, given, 1e-9)}
    flagged = similarity.compare(docs, given)  # the default threshold, 0.5
    assert [(p.first.student, p.second.student) for p in flagged] == [("reference", "renamed_copy")]
    assert min(flagged[0].similarity) > 0.85
    independent = [max(s) for pair, s in everything.items() if pair != ("reference", "renamed_copy")]
    assert len(independent) == 5 and max(independent) < 0.45


def test_the_given_code_alone_matches_nothing():
    source = read_notebook(SOLUTIONS / "02_2d_filters.ipynb")
    untouched = copy.deepcopy(source)
    for cell in untouched.cells:
        if is_solution(cell) and cell.cell_type == "code":
            cell.source = re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION", "# YOUR CODE HERE\nraise NotImplementedError()",
                                 cell.source, flags=re.S)  # fmt: skip
    docs, given = similarity.documents([("a", untouched), ("b", copy.deepcopy(untouched))], source, "02")
    assert similarity.compare(docs, given, 0.05) == []  # two blank exercises share only what everyone was given


def test_the_page_marks_the_matches_side_by_side_and_escapes_names(tmp_path):
    source = read_notebook(SOLUTIONS / "01_conv1d_by_hand.ipynb")
    reference = _reference_answers(source)
    folder = tmp_path / "submitted"
    for student, answers in (("ann<script>", reference), ("bob", {k: _renamed(v) for k, v in reference.items()}),
                             ("cat", SETS["alternatives"]["01_conv1d_by_hand"])):  # fmt: skip
        (folder / student / "01_conv1d_by_hand").mkdir(parents=True)
        nbformat.write(_notebook(source, answers), folder / student / "01_conv1d_by_hand" / "01_conv1d_by_hand.ipynb")
    assert cli.main(["similarity", str(folder), "--source", str(SOLUTIONS), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "similarity.html").read_text()
    assert "3 pairs compared" in page and "1 share at least 50%" in page
    assert "ann&lt;script&gt;" in page and "<script>" not in page
    assert page.count("<mark>") > 3 and "not who copied" in page
    with pytest.raises(SystemExit):  # argparse: "--threshold: must be a share in (0, 1]"
        cli.main(["similarity", str(folder), "--source", str(SOLUTIONS), "--threshold", "2"])

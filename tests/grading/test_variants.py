"""A variant per student (cnnlab.grading.authoring.variants): declared in the source, drawn by HMAC, graded by name."""

import csv
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import nbformat
import pytest

from cnnlab import cli
from cnnlab.grading.authoring import assign, variants
from cnnlab.grading.authoring.source import read_notebook
from tests.fixtures.build_fixtures import KERNELSPEC, nbgrader

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"a course secret of at least sixteen bytes"


def _source(stride_choices=(2, 3), default=2):
    """A one-task source: pick every STRIDE-th element, STRIDE drawn per student."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    variant = nbformat.v4.new_code_cell(f"# Your values\nSTRIDE = {default}", metadata=nbgrader("variant", locked=True))
    variant.metadata["cnnlab"] = {"variant": {"STRIDE": list(stride_choices)}}
    nb.cells = [
        nbformat.v4.new_code_cell("import numpy as np\nfrom cnnlab.grading import grading_rng, record",
                                  metadata=nbgrader("imports", locked=True)),  # fmt: skip
        variant,
        nbformat.v4.new_markdown_cell("Return every STRIDE-th element of x.", metadata=nbgrader("text", locked=True)),
        nbformat.v4.new_code_cell("def every(x):\n    ### BEGIN SOLUTION\n    return x[::STRIDE]\n    ### END SOLUTION",
                                  metadata=nbgrader("every", solution=True)),  # fmt: skip
        nbformat.v4.new_code_cell(
            "assert len(every(np.arange(6))) == len(range(0, 6, STRIDE))\n### BEGIN HIDDEN TESTS\n"
            "rng = grading_rng(3)\nx = rng.standard_normal(int(rng.integers(10, 20)))\n"
            "got = record('every', every(x))\nassert np.allclose(got, x[::STRIDE])\n### END HIDDEN TESTS",
            metadata=nbgrader("test_every", grade=True, points=2)),  # fmt: skip
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    return nb


def test_the_real_sources_declare_fair_variants():
    edges = variants.choices(read_notebook(ROOT / "solutions" / "02_2d_filters.ipynb"))
    digits = variants.choices(read_notebook(ROOT / "solutions" / "05_filter_visualisation.ipynb"))
    assert edges == {"EDGE_WEIGHTS": [[1, 1, 1], [1, 2, 1], [3, 10, 3]]}
    assert digits == {"FIRST_DIGIT": [0, 200, 400, 600, 800]}
    assert variants.choices(read_notebook(ROOT / "solutions" / "01_conv1d_by_hand.ipynb")) == {}


@pytest.mark.parametrize("change, message", [
    (lambda c: c.metadata.cnnlab.__setitem__("variant", {"STRIDE": []}), "non-empty list"),
    (lambda c: setattr(c, "source", "STRIDE = 7"), "not one of its choices"),
    (lambda c: setattr(c, "source", "# nothing assigned"), "not assigned"),
    (lambda c: c.metadata.nbgrader.__setitem__("locked", False), "locked code cell"),
    (lambda c: c.metadata.cnnlab.__setitem__("variant", {"not a name": [1]}), "not a Python name"),
])  # fmt: skip
def test_a_malformed_variant_cell_is_a_clear_error(change, message):
    nb = _source()
    change(nb.cells[1])
    with pytest.raises(variants.VariantError, match=message):
        variants.choices(nb)


def test_two_variant_cells_are_refused():
    nb = _source()
    nb.cells.append(nbformat.from_dict(json.loads(json.dumps(nb.cells[1]))))
    with pytest.raises(variants.VariantError, match="2 cells declare"):
        variants.choices(nb)


def test_values_are_reproducible_spread_over_the_choices_and_need_the_secret():
    options = {"STRIDE": [2, 3, 4], "DIGIT": list(range(10))}
    class_of_60 = [f"student{i:02d}" for i in range(60)]
    drawn = [variants.draw(SECRET, "hw", s, options) for s in class_of_60]
    assert drawn == [variants.draw(SECRET, "hw", s, options) for s in class_of_60]
    assert {d["STRIDE"] for d in drawn} == {2, 3, 4} and {d["DIGIT"] for d in drawn} == set(range(10))
    other_secret = [variants.draw(b"another secret, sixteen bytes+", "hw", s, options) for s in class_of_60]
    assert sum(a != b for a, b in zip(drawn, other_secret, strict=True)) > 40
    other_assignment = [variants.draw(SECRET, "hw2", s, options) for s in class_of_60]
    assert drawn != other_assignment


def test_with_values_rewrites_only_the_declared_assignments_and_values_in_reads_them_back():
    nb = _source()
    changed = variants.with_values(nb, {"STRIDE": 3})
    assert changed.cells[1].source == "# Your values\nSTRIDE = 3" and nb.cells[1].source.endswith("STRIDE = 2")
    assert variants.values_in(changed, nb) == {"STRIDE": 3}
    student = variants.with_values(nb, {})
    student.cells[1].source = "STRIDE = (lambda: 9)()"  # not a literal: shown as unknown, never run
    assert variants.values_in(student, nb) == {"STRIDE": None}
    student.cells[1].source = "(" * 200_000
    assert variants.values_in(student, nb) == {"STRIDE": None}


def test_the_roster_is_read_from_lines_or_a_csv_column(tmp_path):
    lines = tmp_path / "roster.txt"
    lines.write_text("alice\n\nbob\n")
    assert variants.read_roster(lines) == ["alice", "bob"]
    table = tmp_path / "roster.csv"
    with open(table, "w", newline="") as handle:
        csv.writer(handle).writerows([["Name", "login"], ["Alice A", "alice"], ["Bob B", "bob"]])
    assert variants.read_roster(table, "login") == ["alice", "bob"]
    with pytest.raises(variants.VariantError, match="no 'student' column"):
        variants.read_roster(table)
    bad = tmp_path / "bad.txt"
    bad.write_text("alice\n../etc\n.hidden\nalice\n")
    with pytest.raises(variants.VariantError) as error:
        variants.read_roster(bad)
    assert "line 2: '../etc'" in str(error.value) and "line 3" in str(error.value) and "line 4: 'alice' is listed twice" in str(error.value)


def test_secrets_are_made_private_and_never_overwritten(tmp_path):
    path = tmp_path / "secret"
    made = variants.new_secret(path)
    assert variants.read_secret(path) == made and oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(FileExistsError):
        variants.new_secret(path)
    (tmp_path / "short").write_text("abc")
    with pytest.raises(variants.VariantError, match="at least 16"):
        variants.read_secret(tmp_path / "short")


def test_assign_writes_each_student_their_own_values(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    nbformat.write(_source(), source / "hw.ipynb")
    roster = ["alice", "bob", "carol", "dave"]
    result = assign.assign_per_student(source, tmp_path / "release", roster, SECRET)
    assert len(result.written) == 4
    for student in roster:
        nb = read_notebook(tmp_path / "release" / student / "hw" / "hw.ipynb")
        issued = variants.draw(SECRET, "hw", student, {"STRIDE": [2, 3]})
        assert variants.values_in(nb, _source()) == issued
        assert "BEGIN SOLUTION" not in nbformat.writes(nb) and "grading_rng(3)" not in nbformat.writes(nb)


def test_assign_on_the_command_line_makes_a_secret_and_says_where(tmp_path, capsys):
    roster = tmp_path / "roster.txt"
    roster.write_text("alice\nbob\n")
    code = cli.main(["assign", str(ROOT / "solutions"), str(tmp_path / "release"), "--roster", str(roster),
                     "--secret", str(tmp_path / "course.secret")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "wrote a new course secret" in out and "12 notebooks for 2 students" in out
    secret = variants.read_secret(tmp_path / "course.secret")
    for student in ("alice", "bob"):
        nb = read_notebook(tmp_path / "release" / student / "02_2d_filters" / "02_2d_filters.ipynb")
        source = read_notebook(ROOT / "solutions" / "02_2d_filters.ipynb")
        assert variants.values_in(nb, source) == variants.draw(secret, "02_2d_filters", student, variants.choices(source))
    assert cli.main(["assign", "--roster", str(roster)]) == 1
    assert "--roster needs --secret" in capsys.readouterr().err


def _two_students_with_different_strides():
    names = [f"s{i}" for i in range(50)]
    by_stride = {}
    for name in names:
        by_stride.setdefault(variants.draw(SECRET, "hw", name, {"STRIDE": [2, 3]})["STRIDE"], name)
    return by_stride[2], by_stride[3]


@pytest.mark.slow
def test_grading_uses_the_values_issued_to_each_student_and_spots_a_copy(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    nbformat.write(_source(), source / "hw.ipynb")
    (tmp_path / "secret").write_bytes(SECRET)
    two, three = _two_students_with_different_strides()
    release = tmp_path / "release"
    assign.assign_per_student(source, release, [two, three, "carol"], SECRET)

    def submit(student, body, copied_from=None):
        nb = read_notebook(release / (copied_from or student) / "hw" / "hw.ipynb")
        next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "every").source = body
        folder = tmp_path / "submitted" / student / "hw"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "hw.ipynb")

    submit(two, "def every(x):\n    return x[::2]")  # right for its own values, hard-coded
    submit(three, "def every(x):\n    return x[::2]", copied_from=two)  # a copy of the notebook above
    submit("carol", "def every(x):\n    return x[::STRIDE]")
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = cli.main(["grade", str(tmp_path / "submitted"), "--source", str(source), "--out", str(tmp_path / "out"),
                         "--secret", str(tmp_path / "secret"), "--sandbox", "none", "--workers", "2", "--timeout", "60"])  # fmt: skip
    assert code == 0, buffer.getvalue()
    rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "out" / "grades.csv"))}
    assert float(rows[two]["total"]) == 2 and float(rows["carol"]["total"]) == 2
    assert float(rows[three]["total"]) == 0  # graded against the copier's own stride, not the notebook's
    assert "ran once for each of 2 distinct" in buffer.getvalue()
    graded = json.loads((tmp_path / "out" / "grades.json").read_text())
    notes = {r["student"]: " ".join(r["notes"]) for r in graded["submissions"]}
    assert "are not the ones issued to you (STRIDE = 3)" in notes[three] and "STRIDE = 2" in notes[three]
    assert "not the ones issued" not in notes[two] + notes["carol"]
    (page,) = (tmp_path / "out" / "feedback" / three / "hw").glob("*.html")
    assert "are not the ones issued to you" in page.read_text()
    assert SECRET.decode() not in (tmp_path / "out" / "grades.json").read_text()


@pytest.mark.slow
def test_every_variant_of_assignment_02_passes_its_own_tests_and_grades_a_generic_answer_in_full(tmp_path):
    """The reference runs once per variant (and must pass its own tests in each); a generic answer earns every point."""
    import re  # noqa: PLC0415

    from cnnlab.grading.authoring.source import is_solution, meta  # noqa: PLC0415

    source = tmp_path / "source"
    source.mkdir()
    (source / "02_2d_filters.ipynb").write_bytes((ROOT / "solutions" / "02_2d_filters.ipynb").read_bytes())
    (tmp_path / "secret").write_bytes(SECRET)
    options = variants.choices(read_notebook(source / "02_2d_filters.ipynb"))
    by_weights = {}
    for i in range(100):
        by_weights.setdefault(json.dumps(variants.draw(SECRET, "02_2d_filters", f"s{i}", options)), f"s{i}")
    assert len(by_weights) == 3  # Prewitt, Sobel and Scharr each have a student
    students = sorted(by_weights.values())
    assign.assign_per_student(source, tmp_path / "release", students, SECRET)
    reference = read_notebook(source / "02_2d_filters.ipynb")
    answers = {meta(c)["grade_id"]: re.sub(r"\s*### (BEGIN|END) SOLUTION", "", c.source)
               for c in reference.cells if is_solution(c) and c.cell_type == "code"}  # fmt: skip
    for student in students:
        nb = read_notebook(tmp_path / "release" / student / "02_2d_filters" / "02_2d_filters.ipynb")
        for cell in nb.cells:
            if meta(cell).get("grade_id") in answers:
                cell.source = answers[meta(cell)["grade_id"]]
        (tmp_path / "submitted" / student / "02_2d_filters").mkdir(parents=True)
        nbformat.write(nb, tmp_path / "submitted" / student / "02_2d_filters" / "02_2d_filters.ipynb")
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = cli.main(["grade", str(tmp_path / "submitted"), "--source", str(source), "--out", str(tmp_path / "out"),
                         "--secret", str(tmp_path / "secret"), "--workers", "2", "--timeout", "60"])  # fmt: skip
    assert code == 0, buffer.getvalue()
    assert "ran once for each of 3 distinct" in buffer.getvalue()
    rows = json.loads((tmp_path / "out" / "grades.json").read_text())["submissions"]
    for row in rows:
        automatic = [c for c in row["cells"] if c["grade_id"].startswith("test_")]
        assert all(c["points"] == pytest.approx(c["max"]) for c in automatic), (row["student"], automatic)
        assert not any("not the ones issued" in note for note in row["notes"])

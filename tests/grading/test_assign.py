"""cnnlab assign: student versions from the sources, deterministic, checked for staleness."""

import shutil
from pathlib import Path

from cnnlab import cli
from cnnlab.grading.authoring.assign import assign, check, render, student_version
from cnnlab.grading.authoring.source import read_notebook

SOURCES = Path(__file__).parents[1] / "fixtures" / "source"


def _student():
    return student_version(read_notebook(SOURCES / "conv_basics.ipynb"))


def test_solutions_are_replaced_and_hidden_tests_removed():
    nb = _student()
    text = render(nb)
    assert "### BEGIN SOLUTION" not in text and "np.dot(x[i:i + len(w)], w)" not in text
    assert "HIDDEN TESTS" not in text and "grading_rng(1)" not in text
    by_id = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells}
    assert "# YOUR CODE HERE\n    raise NotImplementedError()" in by_id["conv1d"].source
    assert by_id["conv1d"].source.startswith("def conv1d(x, w):")  # the signature stays
    assert by_id["why_shorter"].source == "Why is the output shorter than the input?\n\nYOUR ANSWER HERE"
    assert "check_array(" in by_id["test_conv1d"].source  # visible tests stay
    assert by_id["test_conv1d"].metadata["editable"] is False
    assert by_id["test_conv1d"].metadata["deletable"] is False
    assert all(c.get("outputs", []) == [] for c in nb.cells)
    assert nb.metadata["kernelspec"]["display_name"] == "Python 3 (ipykernel)"
    assert [c.id for c in nb.cells] == [c.id for c in read_notebook(SOURCES / "conv_basics.ipynb").cells]


def test_generation_is_byte_identical_run_to_run(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assign(SOURCES, first)
    assign(SOURCES, second)
    assert (first / "conv_basics.ipynb").read_bytes() == (second / "conv_basics.ipynb").read_bytes()


def test_check_lists_stale_missing_and_orphan_files(tmp_path, capsys):
    out = tmp_path / "exercises"
    assert cli.main(["assign", str(SOURCES), str(out)]) == 0
    assert cli.main(["assign", "--check", str(SOURCES), str(out)]) == 0
    target = out / "conv_basics.ipynb"
    target.write_text(target.read_text().replace("YOUR CODE HERE", "my edit"))
    shutil.copy(target, out / "orphan.ipynb")
    assert cli.main(["assign", "--check", str(SOURCES), str(out)]) == 1
    printed = capsys.readouterr().out
    assert "conv_basics.ipynb: differs from its source" in printed
    assert "orphan.ipynb: has no source" in printed
    target.unlink()
    assert any("missing" in line for line in check(SOURCES, out).stale)


def test_a_malformed_source_is_one_clear_error(tmp_path, capsys):
    source = tmp_path / "solutions"
    source.mkdir()
    text = (
        (SOURCES / "conv_basics.ipynb")
        .read_text()
        .replace('"grade_id": "test_conv1d"', '"grade_id": "conv1d"')
    )
    (source / "broken.ipynb").write_text(text)
    assert cli.main(["assign", str(source), str(tmp_path / "out")]) == 1
    assert "duplicate grade_id 'conv1d'" in capsys.readouterr().err


def test_assign_warns_about_test_cells_that_record_nothing(tmp_path, capsys):
    fixtures = Path(__file__).parents[1] / "fixtures"
    assert cli.main(["assign", str(fixtures / "plain"), str(tmp_path)]) == 0
    assert "test_conv1d, test_output_length" in capsys.readouterr().err
    assert cli.main(["assign", "--check", str(fixtures / "source"), str(tmp_path / "other")]) == 1
    assert "no record() call" not in capsys.readouterr().err


def test_check_fails_on_test_cells_that_record_nothing_unless_allowed(tmp_path, capsys):
    """`make test` checks the project's own sources this way: a forgeable verdict is an error there."""
    fixtures = Path(__file__).parents[1] / "fixtures"
    assert cli.main(["assign", str(fixtures / "plain"), str(tmp_path)]) == 0
    capsys.readouterr()
    assert cli.main(["assign", "--check", str(fixtures / "plain"), str(tmp_path)]) == 1
    assert "error:" in capsys.readouterr().err
    assert cli.main(["assign", "--check", "--allow-unrecorded", str(fixtures / "plain"), str(tmp_path)]) == 0
    assert "warning:" in capsys.readouterr().err

"""Thresholds judged on artefacts the grader measures itself: the forgeries that passed on the kernel's word fail.

A toy assignment trains a small Keras classifier; its hidden test records the model with
``record_artefact``. The grader copies the saved model out of the sandbox, measures it in a fresh
sandboxed process and compares the measures with the source's bounds.
"""

import json
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from cnnlab import cli
from cnnlab.grading.pipeline.artefacts import fetch, measure_all
from cnnlab.grading.pipeline.restore import SEGMENT
from cnnlab.grading.record import MIME, Comparison, Record, artefact_comparison, matches

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
IMPORTS = """import keras
import numpy as np
from cnnlab.data import load_mnist
from cnnlab.grading import record, record_artefact

(x_train, y_train), (x_test, y_test) = load_mnist(quiet=True)"""
SOLUTION = '''def train_model():
    """A 784 -> 32 -> 10 classifier trained on 2,000 digits."""
    ### BEGIN SOLUTION
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train[:2000], y_train[:2000], epochs=3, batch_size=32, verbose=0)
    return model
    ### END SOLUTION'''
TEST = """model = train_model()
### BEGIN HIDDEN TESTS
record_artefact("trained", model, task="keras-classifier", data="mnist-test",
                at_least={"accuracy": 0.8, "parameters": 25_450}, at_most={"parameters": 25_450})
### END HIDDEN TESTS"""
UNTRAINED = """def train_model():
    return keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])
"""
FORGED = {"kind": "measures", "data": {"accuracy": 1.0, "parameters": 25450}}
COMPARE = {"kind": "within", "rtol": 1e-6, "atol": 1e-8}  # any comparison: the grader reads the source's
ATTACKS = {
    "correct": (None, 2),
    # Rebinds record_artefact to send a measurement of its own: only the grader writes measures.
    "rebinds_record_artefact": (UNTRAINED + "from IPython.display import display\n"
                                "def record_artefact(key, value, **kwargs):\n"
                                f"    display({{{MIME!r}: {{'key': key, 'value': {FORGED!r}, 'compare': {COMPARE!r}}}}}, raw=True)\n", 0),
    # Sends a forged record from a hook as the hidden cell runs, and makes the real one send nothing.
    "forges_from_a_hook": (UNTRAINED + "from IPython.display import display\n"
                           "record_artefact = lambda *args, **kwargs: None\n"
                           "def _forge(result):\n"
                           f"    display({{{MIME!r}: {{'key': 'trained', 'value': {FORGED!r}, 'compare': {COMPARE!r}}}}}, raw=True)\n"
                           "get_ipython().events.register('post_run_cell', _forge)\n", 0),
    # Hands in the trained network the course caches (read-only in the sandbox): not the specified model.
    "copies_a_cached_model": ("from cnnlab import models\n"
                              "def train_model():\n    return models.load_or_train_mnist_convnet(quiet=True)\n", 0),
}


def _nbgrader(grade_id, **flags):
    return {"nbgrader": {"schema_version": 3, "grade_id": grade_id, "locked": False, "task": False,
                         "grade": flags.get("grade", False), "solution": flags.get("solution", False),
                         **({"points": flags["points"]} if "points" in flags else {})}}  # fmt: skip


def _source() -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": KERNELSPEC})
    nb.cells = [new_code_cell(IMPORTS, metadata=_nbgrader("imports")),
                new_code_cell(SOLUTION, metadata=_nbgrader("train", solution=True)),
                new_code_cell(TEST, metadata=_nbgrader("test_train", grade=True, points=2))]  # fmt: skip
    return nb


# --------------------------------------------------------------------------- without a kernel
def test_an_artefact_comparison_round_trips_and_judges_only_grader_measures():
    compare = artefact_comparison("keras-classifier", {"data": "mnist-test"}, {"accuracy": 0.9}, {"parameters": 100})
    assert Comparison.from_json(json.loads(json.dumps(compare.to_json()))) == compare
    reference = Record("m", {"kind": "measures", "data": {"accuracy": 0.95, "parameters": 90}}, compare)

    def student(value):
        return Record("m", value, Comparison())

    assert matches(student({"kind": "measures", "data": {"accuracy": 0.91, "parameters": 100}}), reference)
    assert not matches(student({"kind": "measures", "data": {"accuracy": 0.89, "parameters": 100}}), reference)
    assert not matches(student({"kind": "measures", "data": {"accuracy": 0.99}}), reference)  # parameters missing
    assert not matches(student({"kind": "measures", "error": "no model"}), reference)
    assert not matches(student({"kind": "artefact", "file": "1-m.keras"}), reference)  # never measured
    with pytest.raises(ValueError, match="task must be one of"):
        artefact_comparison("run-anything", {}, {"accuracy": 0.9}, None)
    with pytest.raises(ValueError, match="give at_least and/or at_most"):
        artefact_comparison("keras-classifier", {}, None, None)


def _cell_with(*payloads):
    cell = new_code_cell("...")
    cell.metadata[SEGMENT] = {"grade_id": "test_train", "kind": "hidden"}
    cell.outputs = [nbformat.from_dict({"output_type": "display_data", "data": {MIME: p}, "metadata": {}})
                    for p in payloads]  # fmt: skip
    return cell


def test_fetch_copies_regular_files_only_and_never_follows_a_link(tmp_path):
    scratch, dest = tmp_path / "scratch", tmp_path / "dest"
    (scratch / ".cnnlab-artefacts").mkdir(parents=True)
    (scratch / ".cnnlab-artefacts" / "1-ok.npy").write_bytes(b"x" * 10)
    (tmp_path / "secret").write_text("host file")
    os.symlink(tmp_path / "secret", scratch / ".cnnlab-artefacts" / "2-link.npy")
    cell = _cell_with(*({"key": k, "value": {"kind": "artefact", "file": f}} for k, f in
                        (("a", "1-ok.npy"), ("b", "2-link.npy"), ("c", "../../secret"), ("d", "3-big.npy"))))  # fmt: skip
    (scratch / ".cnnlab-artefacts" / "3-big.npy").write_bytes(b"x" * 100)
    budget = [50]
    fetch(cell, str(scratch), (), dest, budget)
    assert sorted(p.name for p in dest.iterdir()) == ["1-ok.npy"] and budget == [40]
    os.rename(scratch / ".cnnlab-artefacts", scratch / "real")
    os.symlink(scratch / "real", scratch / ".cnnlab-artefacts")  # the folder itself a link: nothing is read
    fetch(cell, str(scratch), (), tmp_path / "dest2", [10**6])
    assert not (tmp_path / "dest2").exists()


def test_measurements_sent_by_the_notebook_are_marked_forged(tmp_path):
    compare = artefact_comparison("keras-classifier", {"data": "mnist-test"}, {"accuracy": 0.9}, None)
    nb = new_notebook()
    nb.cells = [_cell_with({"key": "trained", "value": FORGED}, {"key": "other", "value": {"kind": "artefact", "file": "1-x.keras"}})]
    calls = []
    measure_all(nb, lambda g, k: compare, tmp_path, lambda jobs: calls.append(jobs) or [{"measures": {}}] * len(jobs))
    values = [o["data"][MIME]["value"] for o in nb.cells[0].outputs]
    assert "not made by the grader" in values[0]["error"] and "never reached the grader" in values[1]["error"]
    assert calls == []


# --------------------------------------------------------------------------- real kernels, real measurements
@pytest.mark.slow
def test_forged_thresholds_fail_and_a_trained_model_passes(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    nbformat.write(_source(), source / "train_digits.ipynb")
    from cnnlab.grading.authoring.assign import student_version  # noqa: PLC0415

    exercise = student_version(_source())
    submitted = tmp_path / "submitted"
    for student, (answer, _) in ATTACKS.items():
        nb = nbformat.from_dict(json.loads(json.dumps(exercise)))
        if answer is not None:
            next(c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "train").source = answer
        else:
            nb = _source()
        (submitted / student).mkdir(parents=True)
        nbformat.write(nb, submitted / student / "train_digits.ipynb")
    out = tmp_path / "out"
    assert cli.main(["grade", str(submitted), "--source", str(source), "--out", str(out), "--workers", "2",
                     "--timeout", "120", "--memory-mb", "3000", "--seed", "2"]) == 0  # fmt: skip
    rows = {r["student"]: r for r in json.loads((out / "grades.json").read_text())["submissions"]}
    got = {student: rows[student]["total"] for student in ATTACKS}
    assert got == {student: float(points) for student, (_, points) in ATTACKS.items()}, rows
    messages = {s: rows[s]["cells"][0]["message"] for s in ATTACKS}
    assert "not made by the grader" in messages["rebinds_record_artefact"]
    assert "parameters" in messages["copies_a_cached_model"] and "measured: accuracy" in messages["copies_a_cached_model"]


def test_one_measurement_for_all_of_a_submissions_artefacts_and_gains_over_a_baseline(tmp_path):
    """TensorFlow starts once per submission; a gain is measured against the baseline the source names."""
    base = artefact_comparison("keras-classifier", {"data": "mnist-test"}, {"accuracy": 0.5}, None)
    gain = artefact_comparison("keras-classifier", {"data": "mnist-test", "baseline": "before"},
                               {"accuracy_gain": 0.05}, None)  # fmt: skip
    for name in ("1-before.keras", "2-after.keras"):
        (tmp_path / name).write_bytes(b"model")
    nb = new_notebook()
    nb.cells = [_cell_with({"key": "before", "value": {"kind": "artefact", "file": "1-before.keras"}},
                           {"key": "after", "value": {"kind": "artefact", "file": "2-after.keras"}})]  # fmt: skip
    calls = []

    def measure(jobs):
        calls.append([(path.name, task, params) for path, task, params in jobs])
        return [{"measures": {"accuracy": 0.70}}, {"measures": {"accuracy": 0.78}}]

    measure_all(nb, lambda g, k: {"before": base, "after": gain}[k], tmp_path, measure)
    assert calls == [[("1-before.keras", "keras-classifier", {"data": "mnist-test"}),
                      ("2-after.keras", "keras-classifier", {"data": "mnist-test"})]]  # fmt: skip
    after = nb.cells[0].outputs[1]["data"][MIME]["value"]["data"]
    assert after["accuracy_gain"] == pytest.approx(0.08)

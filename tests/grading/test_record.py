"""The grading protocol: values encoded in the kernel, decoded and compared in the grader."""

import importlib
import json

import numpy as np
import pytest

from cnnlab.grading.record import MIME, Comparison, Record, decode, encode, matches, records_in

rec = importlib.import_module("cnnlab.grading.record")  # the package exports the function under the same name


def _record(value, **compare):
    comparison = rec.comparison_for(rtol=compare.pop("rtol", 1e-6), atol=compare.pop("atol", 1e-8),
                                    equal=compare.pop("equal", False), at_least=compare.pop("at_least", None),
                                    at_most=compare.pop("at_most", None))  # fmt: skip
    return Record("k", json.loads(json.dumps(encode(value))), comparison)


@pytest.mark.parametrize("value", [np.array([[1.0, np.nan], [np.inf, -2.5]]), np.arange(6).reshape(2, 3),
                                   np.array([True, False]), 3, 2.5, True, "relu", None, np.zeros((0, 3))])  # fmt: skip
def test_encode_then_decode_round_trips_through_json(value):
    back = decode(json.loads(json.dumps(encode(value))))
    if value is None or isinstance(value, str):
        assert back == value
    else:
        np.testing.assert_array_equal(back, np.asarray(value))
        assert back.shape == np.asarray(value).shape


def test_within_uses_the_references_tolerance():
    reference = _record([1.0, 2.0], rtol=0, atol=1e-3)
    assert matches(_record([1.0005, 2.0]), reference)
    assert not matches(_record([1.01, 2.0]), reference)
    assert not matches(_record([1.0, 2.0, 3.0]), reference)  # shape
    assert not matches(_record("1.0"), reference)  # kind


def test_the_students_own_comparison_is_ignored():
    reference = _record([1.0, 2.0])
    loose = _record([5.0, 5.0], at_least=-1e9)
    assert not matches(loose, reference)


def test_equal_is_exact():
    reference = _record(0.1 + 0.2, equal=True)
    assert matches(_record(0.1 + 0.2), reference)
    assert not matches(_record(0.3), reference)


def test_bounds_judge_the_value_not_the_reference():
    reference = _record(0.96, at_least=0.95)
    assert matches(_record(0.99), reference)  # better than the reference: passes
    assert matches(_record(0.95), reference)
    assert not matches(_record(0.94), reference)
    assert not matches(_record(np.nan), reference)
    assert not matches(_record(True), reference)  # a boolean is not a number here
    assert not matches(_record("0.99"), reference)
    both = _record(10.0, at_least=0, at_most=40)
    assert matches(_record(39.9), both) and not matches(_record(41), both) and not matches(_record(-1), both)


def test_booleans_and_text_must_be_equal():
    assert matches(_record(True), _record(True)) and not matches(_record(False), _record(True))
    assert not matches(_record(1), _record(True))
    assert matches(_record("relu"), _record("relu")) and not matches(_record("tanh"), _record("relu"))
    assert matches(_record(None), _record(None)) and not matches(_record("None"), _record(None))


@pytest.mark.parametrize("kwargs, message", [
    ({"equal": True, "at_least": 1}, "either equal"), ({"at_least": 2, "at_most": 1}, "greater than"),
    ({"at_least": float("nan")}, "finite number"), ({"rtol": -1}, "rtol and atol"),
])  # fmt: skip
def test_contradictory_comparisons_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rec.record("k", 1.0, **kwargs)


def test_outside_a_grading_run_record_returns_its_value(monkeypatch):
    monkeypatch.delenv(rec.SEED_ENV, raising=False)
    value = np.arange(3)
    assert rec.record("k", value, at_least=0) is value


def test_records_are_read_from_outputs_and_malformed_ones_counted():
    good = {"key": "a", "value": encode([1.0]), "compare": Comparison().to_json()}
    cell = {"outputs": [
        {"output_type": "display_data", "data": {MIME: good}},
        {"output_type": "display_data", "data": {MIME: json.dumps(good)}},  # kept as text by some front ends
        {"output_type": "display_data", "data": {MIME: {"key": "b", "value": {"kind": "array", "shape": [2], "data": [1]}}}},
        {"output_type": "display_data", "data": {MIME: {"key": "c", "value": encode(1), "compare": {"kind": "?"}}}},
        {"output_type": "stream", "text": "not a record"},
    ]}  # fmt: skip
    found, malformed = records_in(cell)
    assert [r.key for r in found["a"]] == ["a", "a"] and malformed == 2


def test_reference_that_misses_its_own_bound_is_caught():
    assert rec.passes_own_bounds(_record(0.96, at_least=0.95))
    assert not rec.passes_own_bounds(_record(0.90, at_least=0.95))



def test_points_travel_with_the_record_and_bad_points_are_refused(monkeypatch):
    module = rec
    shown = []
    monkeypatch.setenv(module.SEED_ENV, "4")
    monkeypatch.setattr("IPython.display.display", lambda payload, raw: shown.append(payload))
    module.record("a", 1.0, points=2)
    found, malformed = records_in({"outputs": [{"output_type": "display_data", "data": shown[0]}]})
    assert malformed == 0 and found["a"][0].points == 2.0
    for bad in (0, -1, float("nan"), True, "2"):
        with pytest.raises(ValueError, match="points must be a number > 0"):
            module.record("a", 1.0, points=bad)

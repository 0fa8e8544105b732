"""Values out of the kernel, verdicts outside it: the grading protocol, both ends.

Kernel side (imported by assignment notebooks; NumPy only):

* :func:`grading_rng` draws hidden-test inputs from the seed of the grading
  run, so answers copied for fixed inputs do not match.
* :func:`record` publishes a value as a display output of MIME type
  ``application/vnd.cnnlab.record+json``, with how it is to be compared:

  ==============================================  ============================================
  call                                            the grader passes the student's value when
  ==============================================  ============================================
  ``record(key, value)``                          it is within ``rtol``/``atol`` of the reference
  ``record(key, value, rtol=1e-4, atol=1e-6)``    (same, looser)
  ``record(key, value, equal=True)``              it equals the reference exactly
  ``record(key, value, at_least=0.95)``           it is >= 0.95 (the reference's value is not used)
  ``record(key, value, at_most=40)``              it is <= 40
  ==============================================  ============================================

  A bound on a number the kernel computed can be forged (a submission can
  rebind ``record`` or send its messages itself). :func:`record_artefact`
  sends the thing instead, a Keras model or an array, which the grader
  measures itself (:mod:`cnnlab.grading.pipeline.artefacts`)::

      record_artefact("trained", model, task="keras-classifier", data="mnist-test",
                      at_least={"accuracy": 0.95}, at_most={"parameters": 20_000})

  Partial credit: ``record(key, value, points=1)`` gives this check its own
  share of the test cell's points. In a cell whose records carry ``points``,
  every record must, and their points add up to the cell's; each check then
  earns its share on its own (2 of 4 points when two of four hidden cases
  match). Without ``points`` a cell scores all or nothing.

Grader side (:func:`records_in`, :func:`matches`): decode the payloads found
in an executed cell and compare them, in the grader's own process, using the
comparison the *source* notebook recorded. A submission cannot loosen a
tolerance or move a bound: whatever it sends besides its value is ignored.

Outside a grading run (a student running the notebook, or nbgrader's own
autograder) ``record`` returns its value and publishes nothing, and
``grading_rng`` uses seed 0, so the same source works there unchanged.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np

__all__ = ["ARTEFACTS", "MIME", "SEED_ENV", "Comparison", "decode", "encode", "grading_rng", "matches", "record",
           "record_artefact", "records_in"]  # fmt: skip

MIME = "application/vnd.cnnlab.record+json"
SEED_ENV = "CNNLAB_GRADING_SEED"
MAX_ELEMENTS = 200_000
ARTEFACTS = ".cnnlab-artefacts"  # the folder in the kernel's $TMPDIR where record_artefact saves
TASKS = ("keras-classifier", "fgsm-images", "filter-ascent")  # what cnnlab.grading.pipeline.measure can measure
_saved = [0]  # artefacts saved by this kernel so far (file names stay unique)


# --------------------------------------------------------------------------- kernel side
def grading_seed() -> int:
    """The seed of this grading run, or 0 outside one."""
    try:
        return int(os.environ.get(SEED_ENV, "0"))
    except ValueError:
        return 0


def grading_rng(salt: int = 0) -> np.random.Generator:
    """A NumPy generator for hidden-test inputs, seeded by the grading run (plus ``salt``)."""
    return np.random.default_rng([grading_seed(), int(salt)])


def encode(value) -> dict:
    """A JSON-safe description of ``value``: numbers and arrays, booleans, strings, None.

    ``{"kind": "array" | "bool", "shape": [...], "data": [...]}`` or
    ``{"kind": "text" | "none", "data": ...}``. NaN and infinities travel as
    the strings ``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no such numbers).
    """
    if value is None or isinstance(value, str):
        return {"kind": "text" if value is not None else "none", "data": value}
    if hasattr(value, "numpy") and callable(value.numpy):  # a TensorFlow tensor
        value = value.numpy()
    array = np.asarray(value)
    if array.size > MAX_ELEMENTS:
        raise ValueError(f"record: value has {array.size} elements; at most {MAX_ELEMENTS} are sent")
    if array.dtype.kind == "b":
        return {"kind": "bool", "shape": list(array.shape), "data": array.ravel().tolist()}
    if array.dtype.kind in "iuf":
        data = [v if math.isfinite(v) else repr(v) for v in array.astype(np.float64).ravel().tolist()]
        return {"kind": "array", "shape": list(array.shape), "data": data}
    return {"kind": "text", "data": repr(value)}


@dataclass(frozen=True)
class Comparison:
    """How a recorded value is judged: ``within`` (rtol, atol), ``equal``, ``bounds`` (low, high), or
    ``artefact``: measured by the grader (``task`` with JSON ``params``), each measure within ``limits``
    (``(measure, low or None, high or None)``)."""

    kind: str = "within"
    rtol: float = 1e-6
    atol: float = 1e-8
    low: float | None = None
    high: float | None = None
    task: str = ""
    params: str = ""
    limits: tuple[tuple[str, float | None, float | None], ...] = ()

    def to_json(self) -> dict:
        if self.kind == "artefact":
            return {"kind": "artefact", "task": self.task, "params": json.loads(self.params or "{}"),
                    "at_least": {m: lo for m, lo, _ in self.limits if lo is not None},
                    "at_most": {m: hi for m, _, hi in self.limits if hi is not None}}  # fmt: skip
        if self.kind == "within":
            return {"kind": "within", "rtol": self.rtol, "atol": self.atol}
        if self.kind == "bounds":
            return {"kind": "bounds", "at_least": self.low, "at_most": self.high}
        return {"kind": "equal"}

    @classmethod
    def from_json(cls, data) -> Comparison:
        """Raises ``ValueError`` for anything that is not a comparison this module writes."""
        if not isinstance(data, dict):
            raise ValueError("comparison is not an object")
        kind = data.get("kind")
        if kind == "within":
            return cls("within", rtol=_number(data["rtol"]), atol=_number(data["atol"]))
        if kind == "equal":
            return cls("equal")
        if kind == "bounds":
            low, high = data.get("at_least"), data.get("at_most")
            return cls("bounds", low=None if low is None else _number(low), high=None if high is None else _number(high))
        if kind == "artefact":
            return artefact_comparison(data.get("task"), data.get("params") or {}, data.get("at_least"),
                                       data.get("at_most"))  # fmt: skip
        raise ValueError(f"unknown comparison {kind!r}")

    def describe(self) -> str:
        if self.kind == "artefact":
            parts = [f"{m} >= {lo:g}" for m, lo, _ in self.limits if lo is not None]
            parts += [f"{m} <= {hi:g}" for m, _, hi in self.limits if hi is not None]
            return " and ".join(parts) + " (measured by the grader)"
        if self.kind == "bounds":
            parts = ([f">= {self.low:g}"] if self.low is not None else []) + (
                [f"<= {self.high:g}"] if self.high is not None else [])  # fmt: skip
            return " and ".join(parts)
        return "equal to the reference" if self.kind == "equal" else "close to the reference"


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)


def comparison_for(*, rtol: float, atol: float, equal: bool, at_least, at_most) -> Comparison:
    """The :class:`Comparison` that :func:`record`'s keywords ask for; raises on a mix that makes no sense."""
    if at_least is not None or at_most is not None:
        if equal:
            raise ValueError("record: give either equal=True or at_least/at_most, not both")
        low = None if at_least is None else _number(at_least)
        high = None if at_most is None else _number(at_most)
        if low is not None and high is not None and low > high:
            raise ValueError(f"record: at_least={low:g} is greater than at_most={high:g}")
        return Comparison("bounds", low=low, high=high)
    if equal:
        return Comparison("equal")
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"record: rtol and atol must be >= 0, got rtol={rtol!r}, atol={atol!r}")
    return Comparison("within", rtol=float(rtol), atol=float(atol))


def artefact_comparison(task, params, at_least, at_most) -> Comparison:
    """The :class:`Comparison` of :func:`record_artefact`'s arguments; raises ``ValueError`` naming what is wrong."""
    if task not in TASKS:
        raise ValueError(f"record_artefact: task must be one of {', '.join(TASKS)}, got {task!r}")
    if not isinstance(params, dict):
        raise ValueError("record_artefact: the task's parameters must be keywords")
    limits: dict[str, list] = {}
    for name, bounds, slot in (("at_least", at_least, 0), ("at_most", at_most, 1)):
        if bounds is None:
            continue
        if not isinstance(bounds, dict) or not all(isinstance(k, str) for k in bounds):
            raise ValueError(f"record_artefact: {name} must map measure names to numbers, e.g. {{'accuracy': 0.9}}")
        for measure, bound in bounds.items():
            limits.setdefault(measure, [None, None])[slot] = _number(bound)
    if not limits:
        raise ValueError("record_artefact: give at_least and/or at_most: what the grader checks of its measures")
    return Comparison("artefact", task=task, params=json.dumps(params, sort_keys=True),
                      limits=tuple((m, lo, hi) for m, (lo, hi) in sorted(limits.items())))  # fmt: skip


def _points(points) -> float | None:
    """``points`` of a check: None (all-or-nothing cell) or a finite number > 0."""
    if points is None:
        return None
    if isinstance(points, bool) or not isinstance(points, (int, float)) or not math.isfinite(points) or points <= 0:
        raise ValueError(f"record: points must be a number > 0 (this check's share of the cell), got {points!r}")
    return float(points)


def record(key: str, value, *, rtol: float = 1e-6, atol: float = 1e-8, equal: bool = False,
           at_least: float | None = None, at_most: float | None = None, points: float | None = None):  # fmt: skip
    """Send ``value`` to the grader under ``key`` (unique within the test cell); return ``value``.

    Args:
        key: the name of this check; the source and the submission must record the same keys.
        value: a number, array, tensor, boolean, string or None.
        rtol, atol: a value passes when ``numpy.allclose(value, reference, rtol, atol)``.
        equal: a value passes only when it equals the reference exactly.
        at_least, at_most: a value passes when it lies within these bounds; the
            reference's own value is not compared (a better answer never scores less).
        points: this check's share of the test cell's points (partial credit); give it on
            every record of the cell or on none.

    The grader reads the comparison and the points from the *source* notebook's record,
    never from the submission's.
    """
    comparison = comparison_for(rtol=rtol, atol=atol, equal=equal, at_least=at_least, at_most=at_most)
    share = _points(points)
    if os.environ.get(SEED_ENV) is None:
        return value
    payload = {"key": str(key), "value": encode(value), "compare": comparison.to_json()}
    if share is not None:
        payload["points"] = share
    from IPython.display import display  # noqa: PLC0415 -- only inside a kernel

    display({MIME: payload}, raw=True)
    return value


def record_artefact(key: str, value, *, task: str, at_least: dict | None = None, at_most: dict | None = None,
                    points: float | None = None, **params):  # fmt: skip
    """Send ``value`` (a Keras model or an array) for the grader to measure itself; return ``value``.

    Args:
        key: the name of this check, as for :func:`record`.
        value: a Keras model (saved as ``.keras``) or an array (``.npy``).
        task: what the grader measures (:mod:`cnnlab.grading.pipeline.measure`): ``"keras-classifier"``
            (``data=``: accuracy, parameters), ``"fgsm-images"`` or ``"filter-ascent"``.
        at_least, at_most: bounds on the measures, e.g. ``at_least={"accuracy": 0.95}``.
        points: this check's share of the cell's points, as for :func:`record`.
        params: the task's parameters (JSON-safe), e.g. ``data="mnist-test"``.

    The grader measures the saved file in a sandboxed process that runs no student code,
    with the task, parameters and bounds of the *source's* record. Outside a grading run
    nothing is saved or sent.
    """
    comparison = artefact_comparison(task, params, at_least, at_most)
    json.dumps(params)  # parameters must travel as JSON
    share = _points(points)
    if os.environ.get(SEED_ENV) is None:
        return value
    import re  # noqa: PLC0415

    folder = os.path.join(os.environ.get("TMPDIR") or "/tmp", ARTEFACTS)
    os.makedirs(folder, exist_ok=True)
    _saved[0] += 1
    stem = f"{_saved[0]}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(key))[:60] or 'x'}"
    if hasattr(value, "save") and hasattr(value, "count_params"):
        name = f"{stem}.keras"
        value.save(os.path.join(folder, name))
    else:
        name = f"{stem}.npy"
        np.save(os.path.join(folder, name), np.asarray(value), allow_pickle=False)
    payload = {"key": str(key), "value": {"kind": "artefact", "file": name}, "compare": comparison.to_json()}
    if share is not None:
        payload["points"] = share
    from IPython.display import display  # noqa: PLC0415 -- only inside a kernel

    display({MIME: payload}, raw=True)
    return value


# --------------------------------------------------------------------------- grader side
@dataclass(frozen=True)
class Record:
    """One decoded record: the key, the encoded value, the comparison it asked for, its points (or None)."""

    key: str
    value: dict
    compare: Comparison
    points: float | None = None


def _parse(payload) -> Record:
    if isinstance(payload, str):  # some front ends keep JSON MIME bundles as text
        payload = json.loads(payload)
    if isinstance(payload, dict) and isinstance(payload.get("value"), dict) and payload["value"].get("kind") == "artefact":
        payload = {**payload, "value": {"kind": "measures", "error": "not measured"}}  # the grader never saw it
    if not (isinstance(payload, dict) and isinstance(payload.get("key"), str) and isinstance(payload.get("value"), dict)):
        raise ValueError("not a record")
    decode(payload["value"])  # raises for a value this module cannot have written
    points = payload.get("points")
    return Record(payload["key"], payload["value"], Comparison.from_json(payload.get("compare")),
                  None if points is None else _points(points))  # fmt: skip


def records_in(cell) -> tuple[dict[str, list[Record]], int]:
    """The records among an executed cell's outputs, by key; and how many payloads were malformed."""
    found: dict[str, list[Record]] = {}
    malformed = 0
    for output in cell.get("outputs", []):
        data = output.get("data") if output.get("output_type") in ("display_data", "execute_result") else None
        if not isinstance(data, dict) or MIME not in data:
            continue
        try:
            parsed = _parse(data[MIME])
        except Exception:  # noqa: BLE001 -- nothing a kernel sends may make the grader raise (RecursionError, ...)
            malformed += 1
            continue
        found.setdefault(parsed.key, []).append(parsed)
    return found, malformed


def decode(value: dict):
    """The inverse of :func:`encode`: an ``ndarray`` (float64 or bool), a string, or None."""
    kind = value.get("kind")
    if kind in ("array", "bool"):
        shape = [int(n) for n in value.get("shape", [])]
        data = value.get("data", [])
        if not isinstance(data, list) or any(n < 0 for n in shape) or math.prod(shape) != len(data):
            raise ValueError("record data does not fit its shape")
        if kind == "bool":
            if not all(isinstance(v, bool) for v in data):
                raise ValueError("boolean record holds something else")
            return np.array(data, dtype=bool).reshape(shape)
        return np.array([float(v) for v in data], dtype=np.float64).reshape(shape)
    if kind == "text":
        if not isinstance(value.get("data"), str):
            raise ValueError("text record holds something else")
        return value["data"]
    if kind == "none":
        return None
    if kind == "measures":
        if isinstance(value.get("error"), str):
            return {"error": value["error"]}
        measures = value.get("data")
        if not isinstance(measures, dict) or not all(isinstance(k, str) for k in measures):
            raise ValueError("measures hold something else")
        return {"measures": {k: _number(v) for k, v in measures.items()}}
    raise ValueError(f"unknown record kind {kind!r}")


def matches(student: Record, reference: Record) -> bool:
    """Does the student's value pass the comparison the *reference* asked for?"""
    try:
        got = decode(student.value)
        expected = None if reference.compare.kind == "artefact" else decode(reference.value)
    except Exception:  # noqa: BLE001 -- a value this module cannot have written never passes
        return False
    compare = reference.compare
    if compare.kind == "artefact":
        measures = got.get("measures") if isinstance(got, dict) else None
        if not isinstance(measures, dict):
            return False
        return all(name in measures and (lo is None or measures[name] >= lo) and (hi is None or measures[name] <= hi)
                   for name, lo, hi in compare.limits)  # fmt: skip
    if compare.kind == "bounds":
        if not isinstance(got, np.ndarray) or got.dtype.kind != "f" or got.size == 0 or np.isnan(got).any():
            return False
        low_ok = compare.low is None or bool(np.all(got >= compare.low))
        return low_ok and (compare.high is None or bool(np.all(got <= compare.high)))
    if isinstance(expected, np.ndarray):
        if not isinstance(got, np.ndarray) or got.shape != expected.shape or got.dtype.kind != expected.dtype.kind:
            return False
        if compare.kind == "equal" or expected.dtype.kind == "b":
            return bool(np.array_equal(got, expected, equal_nan=expected.dtype.kind == "f"))
        return bool(np.allclose(got, expected, rtol=compare.rtol, atol=compare.atol, equal_nan=True))
    return type(got) is type(expected) and got == expected


def passes_own_bounds(reference: Record) -> bool:
    """A bound the reference solution itself misses would fail every student."""
    return reference.compare.kind != "bounds" or matches(reference, reference)

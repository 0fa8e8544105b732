"""Kernel side of the grading protocol: inputs chosen at grading time, values sent out.

A hidden test does not decide its own verdict. It computes the student's
answers on inputs drawn from :func:`grading_rng` and hands them to
:func:`record`, which publishes them as a display output of MIME type
``application/vnd.cnnlab.record+json``. The grader receives that output over
the kernel's message channel, in its own process, and compares it there with
the value the *source solution* recorded for the same key with the same seed.
Nothing the submission monkeypatches in its kernel can change that
comparison; see :mod:`cnnlab.grading.grade` for the whole design.

Outside a grading run (a student running the notebook, or nbgrader's own
autograder) ``record`` returns its value and publishes nothing, and
``grading_rng`` uses a fixed seed, so the same source works there unchanged.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["MIME", "SEED_ENV", "grading_rng", "record"]

MIME = "application/vnd.cnnlab.record+json"
SEED_ENV = "CNNLAB_GRADING_SEED"
MAX_ELEMENTS = 200_000


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
    """A JSON-safe description of ``value``: numbers, arrays, strings, booleans, None."""
    if value is None or isinstance(value, str):
        return {"kind": "text" if value is not None else "none", "data": value}
    if hasattr(value, "numpy") and callable(value.numpy):  # a TensorFlow tensor
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype.kind == "b":
        return {"kind": "bool", "shape": list(array.shape), "data": array.ravel().tolist()}
    if array.dtype.kind in "iuf":
        if array.size > MAX_ELEMENTS:
            raise ValueError(f"record: value has {array.size} elements; at most {MAX_ELEMENTS} are sent")
        # JSON has no NaN or infinity: those travel as the strings "nan", "inf", "-inf".
        data = [v if math.isfinite(v) else repr(v) for v in array.astype(np.float64).ravel().tolist()]
        return {"kind": "array", "shape": list(array.shape), "data": data}
    return {"kind": "text", "data": repr(value)}


def record(key: str, value, *, rtol: float = 1e-6, atol: float = 1e-8):
    """Send ``value`` to the grader under ``key`` (unique within the test cell); return ``value``.

    ``rtol`` / ``atol`` are the tolerances of the comparison. The grader reads
    them from the *source* notebook's record, never from the submission's.
    """
    if os.environ.get(SEED_ENV) is None:
        return value
    payload = {"key": str(key), "value": encode(value), "rtol": float(rtol), "atol": float(atol)}
    from IPython.display import display  # noqa: PLC0415 -- only inside a kernel

    display({MIME: payload}, raw=True)
    return value

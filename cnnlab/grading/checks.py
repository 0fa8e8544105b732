"""Student-side checks: the helpers visible tests call, with messages that teach.

    check_array("conv1d(x, w)", got, expected)   # prints "conv1d(x, w): ok (shape (5,))"

On failure they raise :class:`CheckFailed` (an ``AssertionError``) saying
what was expected and what came back: type, shape, dtype, the first index
that differs with both values, and a hint when the answer is the
true-convolution (flipped-kernel) version, or a reversed array.

These checks help students; they are not what the grader trusts for hidden
tests (see :mod:`cnnlab.grading.grade`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CheckFailed", "check_array", "check_close", "check_equal", "check_loads_safely", "check_raises", "check_shape"]


class CheckFailed(AssertionError):
    """A visible check failed; the message says how."""


def _show(value) -> str:
    """``value`` as a student reads it: numbers as numbers (``1.0``, not ``np.float64(1.0)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return np.array2string(value, threshold=20, separator=", ")
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_show, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(map(_show, value)) + "]"
    return repr(value)


def _as_array(name: str, value) -> np.ndarray:
    if value is None:
        raise CheckFailed(f"{name}: got None. Did the function forget to `return` its result?")
    if hasattr(value, "numpy") and callable(value.numpy):
        value = value.numpy()
    try:
        array = np.asarray(value)
    except Exception as error:  # noqa: BLE001
        raise CheckFailed(f"{name}: expected an array, got {type(value).__name__} ({error})") from None
    if array.dtype == object:
        raise CheckFailed(f"{name}: expected a numeric array, got {type(value).__name__} of mixed objects")
    return array


def check_shape(name: str, got, expected_shape: tuple[int, ...]) -> None:
    """Pass when ``got`` has shape ``expected_shape``."""
    array = _as_array(name, got)
    expected_shape = tuple(expected_shape)
    if array.shape != expected_shape:
        hint = ""
        if array.size == int(np.prod(expected_shape)):
            hint = " The number of elements is right: check the order of axes or a missing reshape."
        elif array.ndim != len(expected_shape):
            hint = f" Expected {len(expected_shape)} axes, got {array.ndim}."
        raise CheckFailed(f"{name}: expected shape {expected_shape}, got {array.shape}.{hint}")
    print(f"{name}: ok (shape {array.shape})")


def _first_difference(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> tuple | None:
    close = np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None
    index = tuple(int(i) for i in np.argwhere(~close)[0])
    return index, int((~close).sum())


def check_array(
    name: str,
    got,
    expected,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    flipped=None,
) -> None:
    """Pass when ``got`` matches ``expected`` elementwise within tolerance.

    Args:
        name: what is being checked, as the student would write it (``"conv1d(x, w)"``).
        got, expected: array-likes (NumPy, lists, TensorFlow tensors).
        rtol, atol: tolerances, as ``numpy.isclose``.
        flipped: optionally, the answer computed with the kernel flipped (true
            convolution); a ``got`` equal to it earns a specific hint.
    """
    got_array, expected_array = _as_array(name, got), _as_array(f"{name} (expected)", expected)
    if got_array.shape != expected_array.shape:
        raise CheckFailed(
            f"{name}: expected shape {expected_array.shape}, got {got_array.shape}. "
            f"Check the output-size formula (n - f + 2p) / s + 1 and the padding."
        )
    if got_array.dtype.kind not in "biuf":
        raise CheckFailed(f"{name}: expected numbers, got dtype {got_array.dtype}")
    difference = _first_difference(got_array, expected_array, rtol, atol)
    if difference is None:
        print(f"{name}: ok (shape {got_array.shape})")
        return
    index, count = difference
    message = (
        f"{name}: {count} of {got_array.size} values differ. First at index {index}: "
        f"expected {_show(expected_array[index])}, got {_show(got_array[index])} "
        f"(shape {got_array.shape}, dtype {got_array.dtype})."
    )
    if flipped is not None and _first_difference(got_array, _as_array(name, flipped), rtol, atol) is None:
        message += (
            " Your result is the TRUE convolution (kernel flipped). Deep-learning 'convolution' is "
            "cross-correlation: slide the kernel without flipping it."
        )
    elif got_array.ndim >= 1 and _first_difference(got_array[::-1], expected_array, rtol, atol) is None:
        message += " Your result is the expected one reversed: check the direction of your loop or slice."
    elif np.allclose(got_array, -expected_array, rtol=rtol, atol=atol):
        message += " Your result has the opposite sign of the expected one."
    raise CheckFailed(message)


def check_close(name: str, got, expected: float, *, rtol: float = 1e-6, atol: float = 1e-8) -> None:
    """Pass when the number ``got`` is within tolerance of ``expected``."""
    try:
        value = float(got)
    except (TypeError, ValueError):
        raise CheckFailed(f"{name}: expected a number, got {type(got).__name__}: {_show(got)}") from None
    if not np.isclose(value, expected, rtol=rtol, atol=atol):
        raise CheckFailed(
            f"{name}: expected {_show(expected)}, got {_show(value)} (difference {value - expected:+.3g})."
        )
    print(f"{name}: ok ({value:.6g})")


def check_equal(name: str, got, expected) -> None:
    """Pass when ``got == expected`` exactly (ints, strings, tuples)."""
    if (
        got != expected
        or type(got) is not type(expected)
        and not (isinstance(got, (int, np.integer)) and isinstance(expected, (int, np.integer)))
    ):
        raise CheckFailed(
            f"{name}: expected {_show(expected)} ({type(expected).__name__}), got {_show(got)} ({type(got).__name__})."
        )
    print(f"{name}: ok ({_show(got)})")


def check_raises(name: str, fn, error: type[BaseException], match: str | None = None) -> None:
    """Pass when calling ``fn()`` raises ``error`` (whose message contains ``match``)."""
    try:
        fn()
    except error as raised:
        if match is not None and match not in str(raised):
            raise CheckFailed(
                f"{name}: raised {error.__name__} as expected, but its message {str(raised)!r} "
                f"does not mention {match!r}."
            ) from None
        print(f"{name}: ok (raises {error.__name__})")
        return
    except Exception as other:  # noqa: BLE001
        raise CheckFailed(f"{name}: expected {error.__name__}, got {type(other).__name__}: {other}") from None
    raise CheckFailed(f"{name}: expected {error.__name__} to be raised, but nothing was raised.")


def check_loads_safely(name: str, model) -> None:
    """Pass when ``model`` survives what the grader does to it: saved, then loaded with Keras's ``safe_mode``.

    The grader measures a model a notebook sends (``record_artefact``) in a process of its own,
    which can load only built-in layers in a Sequential or functional model: no ``Lambda`` layer
    (write ``1 - x`` as ``keras.layers.Rescaling(-1.0, 1.0)``) and no subclass of ``keras.Model``.
    """
    import tempfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from cnnlab.grading.pipeline.measure import load_model  # noqa: PLC0415 -- the grader's own loading

    with tempfile.TemporaryDirectory(prefix="cnnlab-check-") as folder:
        path = Path(folder) / "model.keras"
        try:
            model.save(path)
            load_model(path)
        except Exception as error:  # noqa: BLE001 -- whatever fails here fails in the grader too
            raise CheckFailed(
                f"{name}: the grader could not load this model ({type(error).__name__}: {str(error)[:200]}). "
                "Use built-in keras.layers in a Sequential or functional model: no Lambda layer "
                "(1 - x is keras.layers.Rescaling(-1.0, 1.0)), no subclass of keras.Model."
            ) from None
    print(f"{name}: ok (saved and loaded as the grader does)")


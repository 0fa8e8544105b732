"""Student-side checks: a pass is one short line, a failure says what and where."""

import numpy as np
import pytest

from cnnlab.conv import conv1d
from cnnlab.grading.checks import (
    CheckFailed,
    check_array,
    check_close,
    check_equal,
    check_loads_safely,
    check_raises,
    check_shape,
)


def test_a_pass_prints_one_short_line(capsys):
    check_array("conv1d(x, w)", [1.0, 2.0], np.array([1.0, 2.0]))
    assert capsys.readouterr().out == "conv1d(x, w): ok (shape (2,))\n"


def test_a_mismatch_names_index_values_shape_and_dtype():
    with pytest.raises(CheckFailed) as failure:
        check_array("y", np.array([1.0, 2.0, 5.0]), [1.0, 2.0, 3.0])
    message = str(failure.value)
    assert "1 of 3 values differ" in message and "index (2,)" in message
    assert "expected 3.0, got 5.0" in message.replace("np.float64(", "").replace(")", "")
    assert "shape (3,)" in message and "dtype float64" in message


def test_true_convolution_gets_its_own_hint():
    x, w = np.arange(6.0), np.array([1.0, 2.0, 4.0])
    expected, flipped = conv1d(x, w), conv1d(x, w, flip=True)
    with pytest.raises(CheckFailed, match="TRUE convolution \\(kernel flipped\\)"):
        check_array("conv1d(x, w)", flipped, expected, flipped=flipped)


def test_reversed_and_sign_hints():
    with pytest.raises(CheckFailed, match="reversed"):
        check_array("y", [3.0, 2.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(CheckFailed, match="opposite sign"):
        check_array("y", [-1.0, -2.0], [1.0, 2.0])


def test_shape_problems_are_explained():
    with pytest.raises(CheckFailed, match="expected shape \\(3,\\), got \\(2,\\)"):
        check_array("y", [1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(CheckFailed, match="number of elements is right"):
        check_shape("y", np.zeros((2, 3)), (3, 2))
    with pytest.raises(CheckFailed, match="forget to `return`"):
        check_array("y", None, [1.0])


def test_scalars_exact_values_and_errors(capsys):
    check_close("f", 0.7310585786, 0.73105857863)
    check_equal("n_out", 4, 4)
    check_raises("bad stride", lambda: 1 / 0, ZeroDivisionError)
    with pytest.raises(CheckFailed, match="expected 4 \\(int\\), got 4.5"):
        check_equal("n_out", 4.5, 4)
    with pytest.raises(CheckFailed, match="difference"):
        check_close("f", 0.5, 0.73)
    with pytest.raises(CheckFailed, match="nothing was raised"):
        check_raises("bad stride", lambda: None, ValueError)
    with pytest.raises(CheckFailed, match="does not mention 'stride'"):
        check_raises(
            "bad stride", lambda: (_ for _ in ()).throw(ValueError("nope")), ValueError, match="stride"
        )
    assert capsys.readouterr().out.count(": ok") == 3


def test_messages_show_numbers_as_numbers_not_numpy_reprs(capsys):
    with pytest.raises(CheckFailed) as raised:
        check_close("f", np.float64(1.0), 2.0)
    assert "expected 2.0, got 1.0" in str(raised.value)
    with pytest.raises(CheckFailed) as raised:
        check_array("y", np.array([1.0, 2.0]), [1.0, 3.0])
    assert "expected 3.0, got 2.0" in str(raised.value) and "np." not in str(raised.value)
    check_equal("pair", (np.int64(3), np.True_), (3, True))
    assert capsys.readouterr().out == "pair: ok ((3, True))\n"


@pytest.mark.slow
def test_a_model_the_grader_cannot_load_fails_its_check_with_the_way_out(capsys):
    import keras

    inputs = keras.Input((4,))
    good = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Rescaling(-1.0, 1.0)(inputs)))
    check_loads_safely("rescaled", good)
    assert "rescaled: ok" in capsys.readouterr().out
    bad = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Lambda(lambda t: 1.0 - t)(inputs)))
    with pytest.raises(CheckFailed, match="no Lambda layer"):
        check_loads_safely("lambda", bad)

"""Winograd's F(2x2, 3x3) on the CPU (lab_conv_winograd.h): the 3x3, stride-1 layers whose
channels fill whole vectors. It must agree with an exact reference as closely as the
direct kernel does, take every padding, odd size and partial tile, and spread a NaN to
exactly the outputs whose window holds it."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import ops
from cnnlab.env import import_tensorflow

tf = import_tensorflow()

SWITCH = "CNNLAB_CONV_WINOGRAD"  # "0": the direct kernels instead, on the same layers
# Relative to the output's largest magnitude: float32 rounding over a 3x3x64 sum is about 1e-6 of it.
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def _exact(x, w, padding):
    return tf.nn.conv2d(x.astype(np.float64), w.astype(np.float64), 1, padding).numpy()


def _data(x_shape, c_out, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = (rng.standard_normal((3, 3, x_shape[3], c_out)) / np.sqrt(9 * x_shape[3])).astype(dtype)
    return x, w


def _assert_close(got, want, dtype):
    assert got.shape == want.shape
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype] * scale)


@st.composite
def layers(draw):
    """3x3, stride-1 layers with whole vectors of channels: every one of them takes Winograd."""
    batch = draw(st.integers(0, 3))
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    padding = draw(st.sampled_from(["SAME", "VALID"] if min(height, width) >= 3 else ["SAME"]))
    c_in, c_out = draw(st.sampled_from([16, 32, 64])), draw(st.sampled_from([16, 32, 48]))
    return (batch, height, width, c_in), c_out, padding, draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None)
@given(layers(), st.sampled_from([np.float32, np.float64]))
def test_forward_and_input_gradient_match_the_exact_convolution(layer, dtype):
    x_shape, c_out, padding, seed = layer
    x, w = _data(x_shape, c_out, dtype, seed)
    y = ops.conv2d(x, w, 1, padding).numpy()
    _assert_close(y, _exact(x, w, padding), dtype)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
    dx = ops.conv2d_backprop_input(list(x_shape), w, dy, 1, padding).numpy()
    want = tf.raw_ops.Conv2DBackpropInput(input_sizes=list(x_shape), filter=w.astype(np.float64),
                                          out_backprop=dy.astype(np.float64), strides=[1, 1, 1, 1],
                                          padding=padding).numpy()  # fmt: skip
    _assert_close(dx, want, dtype)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_the_fused_bias_and_relu_finish_every_output_of_a_partial_tile(padding):
    x, w = _data((2, 13, 11, 32), 64, np.float32)  # odd sizes: the last tiles reach past the output
    bias = np.linspace(-1, 1, 64).astype(np.float32)
    y = ops.fused_conv2d(x, w, bias, 1, padding, "relu").numpy()
    _assert_close(y, np.maximum(_exact(x, w, padding) + bias, 0), np.float32)
    assert (y == 0).any() and (y > 0).any()


def test_it_is_a_different_algorithm_from_the_direct_kernels_and_as_accurate(monkeypatch):
    x, w = _data((4, 28, 28, 32), 64, np.float32)
    exact = _exact(x, w, "SAME")
    winograd = ops.conv2d(x, w, 1, "SAME").numpy()
    monkeypatch.setenv(SWITCH, "0")
    direct = ops.conv2d(x, w, 1, "SAME").numpy()
    assert not np.array_equal(winograd, direct)  # the sums are ordered differently: another algorithm ran
    error = {name: np.abs(y - exact).max() / np.abs(exact).max() for name, y in [("winograd", winograd), ("direct", direct)]}
    assert error["winograd"] <= 2 * error["direct"], error


def test_other_layers_never_take_it(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 12, 12, 32)).astype(np.float32)
    for w_shape, stride in [((3, 3, 32, 32), 2), ((5, 5, 32, 32), 1), ((3, 3, 32, 12), 1)]:
        w = rng.standard_normal(w_shape).astype(np.float32)
        monkeypatch.delenv(SWITCH, raising=False)
        default = ops.conv2d(x, w, stride, "SAME").numpy()
        monkeypatch.setenv(SWITCH, "0")
        assert np.array_equal(default, ops.conv2d(x, w, stride, "SAME").numpy()), (w_shape, stride)


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize(("row", "col"), [(0, 0), (3, 4), (6, 5), (7, 8)])
def test_a_nan_reaches_exactly_the_outputs_whose_window_holds_it(padding, row, col):
    x, w = _data((1, 8, 9, 16), 16, np.float32)
    x[0, row, col, 5] = np.nan
    y = ops.conv2d(x, w, 1, padding).numpy()
    ones = np.zeros_like(x[..., :1])
    ones[0, row, col, 0] = 1
    reached = tf.nn.conv2d(ones, np.ones((3, 3, 1, 1), np.float32), 1, padding).numpy()[0, ..., 0] > 0
    assert np.array_equal(np.isnan(y[0]).any(axis=-1), reached)
    assert np.isnan(y[0][reached]).all()  # every output channel of those pixels

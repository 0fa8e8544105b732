"""cnnlab.conv against scipy.signal and TensorFlow, over shapes, strides and paddings."""

import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st

from cnnlab import conv
from cnnlab.env import import_tensorflow


# ---------------------------------------------------------------- sizes and formulas
def test_output_size_matches_the_decks():
    assert conv.output_size(9, 3, stride=2) == 4  # deck 004
    assert conv.output_size(32, 5, stride=1, padding=2) == 32  # 32x32x3, 5x5, pad 2
    assert conv.output_size(6, 2, stride=2) == 3  # deck 003: 5 padded to 6, kernel 2, stride 2
    assert conv.output_size(9, 3, padding="same") == 9
    assert conv.output_size(10, 3, stride=3, padding="same") == 4


def test_a_stride_that_does_not_fit_says_why():
    with pytest.raises(
        ValueError, match=r"\(9 - 3\) / 4 \+ 1 is not an integer; use padding or another stride"
    ):
        conv.output_size(9, 3, stride=4)
    assert conv.output_size(9, 3, stride=4, strict=False) == 2


def test_padding_that_keeps_the_size_is_f_minus_1_over_2():
    for f in (1, 3, 5, 7):
        assert conv.output_size(28, f, padding=(f - 1) // 2) == 28


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: conv.output_size(0, 3), "n_in must be a positive integer"),
        (lambda: conv.output_size(9, 3, stride=0), "stride must be a positive integer"),
        (lambda: conv.output_size(9, 3, padding="full"), "padding must be 'valid', 'same'"),
        (lambda: conv.output_size(9, 3, padding=-1), "padding must be 'valid', 'same'"),
        (lambda: conv.output_size(2, 5), "kernel size 5 is larger than the padded input"),
        (lambda: conv.receptive_fields([3, 3], [1]), "one entry per layer"),
        (lambda: conv.receptive_fields([]), "at least one layer"),
        (lambda: conv.conv_params(3, 0, 4), "in_channels must be a positive integer"),
        (lambda: conv.pool2d(np.ones((4, 4)), mode="median"), "mode must be 'max' or 'average'"),
    ],
)
def test_bad_arguments_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_same_padding_puts_the_odd_zero_after():
    assert conv.padding_amounts(5, 2, 1, "same") == (0, 1)
    assert conv.padding_amounts(5, 4, 1, "same") == (1, 2)
    assert conv.padding_amounts(9, 3, 2, "same") == (1, 1)


def test_receptive_field_growth():
    assert conv.receptive_fields([3, 3, 3]) == [3, 5, 7]
    # conv3 s1, pool2 s2, conv3 s1: 3, 4, 4 + 2*2 = 8
    assert conv.receptive_fields([3, 2, 3], [1, 2, 1]) == [3, 4, 8]
    assert conv.receptive_field([5]) == 5


def test_parameter_counts_match_the_decks():
    assert conv.conv_params(5, 3, 10) == 760
    assert conv.conv_params((5, 5), 3, 1) == 76
    assert conv.dense_params(1028 * 768, 1, use_bias=False) == 789_504
    assert conv.dense_params(200 * 200, 1, use_bias=False) == 40_000
    assert conv.conv_params(4, 1, 1, use_bias=False) == 16
    assert conv.conv_params(2, 1, 2, spatial_dims=1) == 6  # deck 003: two 2x1 filters with biases


# ---------------------------------------------------------------- worked examples
def test_change_detector_from_deck_003():
    x = np.array([1, 1, 1, 0, 0, 0], float)  # high -> low between inputs 3 and 4
    y = conv.conv1d_loops(x, np.array([1.0, -1.0]))
    np.testing.assert_array_equal(y, [0, 0, 1, 0, 0])  # output length = input - 1
    moved = conv.conv1d(np.roll(x, 1), np.array([1.0, -1.0]))
    assert np.argmax(moved) == 3  # the shared filter finds the change where it moved


def test_true_convolution_flips_the_kernel():
    x = np.arange(6.0)
    w = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(conv.conv1d(x, w, flip=True), np.convolve(x, w, mode="valid"))
    np.testing.assert_allclose(conv.conv1d(x, w), np.correlate(x, w, mode="valid"))


# ---------------------------------------------------------------- against scipy
@st.composite
def signal_and_kernel_2d(draw):
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    fh, fw = draw(st.integers(1, h)), draw(st.integers(1, w))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    return rng.standard_normal((h, w)), rng.standard_normal((fh, fw))


@given(signal_and_kernel_2d(), st.booleans(), st.booleans())
def test_conv2d_matches_scipy(data, flip, loops):
    x, w = data
    fn = conv.conv2d_loops if loops else conv.conv2d
    expected = (scipy.signal.convolve if flip else scipy.signal.correlate)(x, w, mode="valid")
    np.testing.assert_allclose(fn(x, w, flip=flip), expected, atol=1e-12)
    # "full" = zero padding f - 1 on every side
    full = (scipy.signal.convolve if flip else scipy.signal.correlate)(x, w, mode="full")
    if w.shape[0] == w.shape[1]:
        np.testing.assert_allclose(fn(x, w, padding=w.shape[0] - 1, flip=flip), full, atol=1e-12)


@given(st.integers(1, 20), st.integers(1, 6), st.booleans(), st.integers(0, 2**16))
def test_conv1d_matches_scipy(n, f, flip, seed):
    f = min(f, n)
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(n), rng.standard_normal(f)
    expected = (scipy.signal.convolve if flip else scipy.signal.correlate)(x, w, mode="valid")
    np.testing.assert_allclose(conv.conv1d(x, w, flip=flip), expected, atol=1e-12)
    np.testing.assert_allclose(conv.conv1d_loops(x, w, flip=flip), expected, atol=1e-12)


# ---------------------------------------------------------------- against TensorFlow
@pytest.fixture(scope="module")
def tf():
    return import_tensorflow()


@st.composite
def conv_case(draw, spatial):
    batch = draw(st.integers(1, 2))
    sizes = [draw(st.integers(1, 9)) for _ in range(spatial)]
    kernel = [draw(st.integers(1, n)) for n in sizes]
    strides = [draw(st.integers(1, 3)) for _ in range(spatial)]
    padding = draw(st.sampled_from(["valid", "same", 0, 1, 2]))
    c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.standard_normal((batch, *sizes, c_in))
    w = rng.standard_normal((*kernel, c_in, c_out))
    b = rng.standard_normal(c_out)
    return x, w, b, strides, padding


def _tf_reference(tf, x, w, b, strides, padding, spatial):
    if isinstance(padding, int):
        x = np.pad(x, [(0, 0)] + [(padding, padding)] * spatial + [(0, 0)])
        padding = "valid"
    op = tf.nn.conv1d if spatial == 1 else tf.nn.conv2d
    stride = strides[0] if spatial == 1 else [1, *strides, 1]
    return op(tf.constant(x), tf.constant(w), stride, padding.upper()).numpy() + b


@given(conv_case(spatial=2))
def test_conv2d_matches_tensorflow(tf, case):
    x, w, b, strides, padding = case
    expected = _tf_reference(tf, x, w, b, strides, padding, 2)
    np.testing.assert_allclose(conv.conv2d(x, w, b, strides, padding, strict=False), expected, atol=1e-10)
    np.testing.assert_allclose(
        conv.conv2d_loops(x, w, b, strides, padding, strict=False), expected, atol=1e-10
    )


@given(conv_case(spatial=1))
def test_conv1d_matches_tensorflow(tf, case):
    x, w, b, strides, padding = case
    expected = _tf_reference(tf, x, w, b, strides, padding, 1)
    np.testing.assert_allclose(conv.conv1d(x, w, b, strides[0], padding, strict=False), expected, atol=1e-10)
    np.testing.assert_allclose(
        conv.conv1d_loops(x, w, b, strides[0], padding, strict=False), expected, atol=1e-10
    )


def test_shapes_single_channel_multi_channel_batched():
    rng = np.random.default_rng(0)
    assert conv.conv2d(rng.random((9, 9)), rng.random((3, 3)), stride=2).shape == (4, 4)
    assert conv.conv2d(rng.random((32, 32, 3)), rng.random((5, 5, 3, 10)), padding=2).shape == (32, 32, 10)
    assert conv.conv2d(rng.random((2, 8, 8, 1)), rng.random((3, 3, 1, 4))).shape == (2, 6, 6, 4)
    # deck 003's summary: input 5x1 padded to 6x1, kernel 2x1, stride 2 -> 3x1, K channels
    assert conv.padding_amounts(5, 2, 2, "same") == (0, 1)
    assert conv.conv1d(rng.random((5, 1)), rng.random((2, 1, 4)), stride=2, padding="same").shape == (3, 4)


def test_channel_mismatch_is_explained():
    with pytest.raises(ValueError, match=r"x has 3 input channels but w expects 2"):
        conv.conv2d(np.ones((5, 5, 3)), np.ones((3, 3, 2, 1)))


# ---------------------------------------------------------------- pooling
def test_pool2d_max_and_average():
    x = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(conv.pool2d(x, 2), [[5, 7], [13, 15]])
    np.testing.assert_array_equal(conv.pool2d(x, 2, mode="average"), [[2.5, 4.5], [10.5, 12.5]])
    assert conv.pool2d(np.ones((2, 8, 8, 3)), 2).shape == (2, 4, 4, 3)  # per channel, 75% removed


@given(st.integers(2, 12), st.integers(1, 3), st.sampled_from(["max", "average"]), st.integers(0, 99))
def test_pool1d_matches_tensorflow(tf, n, size, mode, seed):
    size = min(size, n)
    x = np.random.default_rng(seed).standard_normal((1, n, 2))
    pool = tf.nn.max_pool1d if mode == "max" else tf.nn.avg_pool1d
    expected = pool(x, size, size, "VALID").numpy()
    np.testing.assert_allclose(conv.pool1d(x, size, mode=mode, strict=False), expected, atol=1e-12)

"""cnnlab.ops.conv2d against tf.nn.conv2d: forward, both gradients, graphs, errors."""

import numpy as np
import pytest
from conv_reference import CASES  # tests/ is on sys.path: see tests/conv_reference.py
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab import ops
from cnnlab.env import import_tensorflow

tf = import_tensorflow()


@st.composite
def cases(draw):
    batch = draw(st.integers(1, 3))
    height, width = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    padding = draw(st.sampled_from(["VALID", "SAME"]))
    limit_h, limit_w = (height, width) if padding == "VALID" else (5, 5)
    fh, fw = draw(st.integers(1, min(limit_h, 5))), draw(st.integers(1, min(limit_w, 5)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    # Channels that fill whole SIMD vectors (8 doubles, 16 floats with AVX-512) take the direct
    # kernels; the others take im2col + GEMM. Both are drawn.
    c_in, c_out = draw(st.sampled_from([1, 2, 3, 8, 16, 32])), draw(st.sampled_from([1, 2, 5, 8, 16, 24, 32, 48]))
    seed = draw(st.integers(0, 2**16))
    return (batch, height, width, c_in), (fh, fw, c_in, c_out), strides, padding, seed


def _compare(case, dtype, rtol, atol):
    """Forward and both gradients; ``atol`` is per unit of sqrt(terms summed), the size of rounding noise."""
    x_shape, w_shape, strides, padding, seed = case
    (batch, height, width, _), (fh, fw, c_in, c_out) = x_shape, w_shape
    atol *= np.sqrt(max(fh * fw * c_in, fh * fw * c_out, batch * height * width))
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal(x_shape), dtype)
    w = tf.constant(rng.standard_normal(w_shape), dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, w])
        ours = ops.conv2d(x, w, strides, padding)
        reference = tf.nn.conv2d(x, w, [1, *strides, 1], padding)
        upstream = tf.constant(rng.standard_normal(reference.shape), dtype)
        loss_ours = tf.reduce_sum(ours * upstream)
        loss_reference = tf.reduce_sum(reference * upstream)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=atol)
    for got, expected in zip(
        tape.gradient(loss_ours, [x, w]), tape.gradient(loss_reference, [x, w]), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


@settings(max_examples=60)
@given(cases())
def test_float64_forward_and_gradients_match_tensorflow(case):
    _compare(case, tf.float64, rtol=1e-10, atol=1e-10)


@settings(max_examples=60)
@given(cases())
def test_float32_forward_and_gradients_match_tensorflow(case):
    _compare(case, tf.float32, rtol=1e-5, atol=1e-5)


BAND_CASES = [  # bands of output rows: several per image, one row per band, a band wider than the image
    ((1, 90, 3, 16), (3, 3, 16, 16), (1, 1), "SAME"),
    ((1, 3, 300, 8), (2, 2, 8, 16), (1, 2), "SAME"),
    ((2, 40, 9, 32), (1, 1, 32, 16), (1, 1), "VALID"),
    ((1, 9, 9, 16), (7, 7, 16, 32), (1, 1), "SAME"),
    ((2, 9, 7, 16), (3, 3, 16, 16), (2, 2), "SAME"),
    # the forward pass's blocks of pixels that read the same taps: uneven padding (1 before, 2 after),
    # a rim only below and right (stride 2), no column with every tap inside, bands with no rim above or below
    ((1, 70, 20, 16), (4, 4, 16, 16), (1, 1), "SAME"),
    ((2, 33, 40, 16), (3, 3, 16, 32), (2, 2), "SAME"),
    ((1, 40, 2, 16), (3, 3, 16, 16), (1, 1), "SAME"),
    ((1, 100, 30, 16), (5, 3, 16, 64), (1, 1), "SAME"),
    # a filter 70 taps wide: nearly every output column reads its own range of taps, each a block
    ((1, 2, 80, 16), (1, 70, 16, 16), (1, 1), "SAME"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES + BAND_CASES, ids=str)
def test_fixed_cases_match_tensorflow(case, dtype):
    """tests/gpu's cases (the MNIST and 56x56 layers among them) and the direct kernels' band edges."""
    tolerance = 1e-5 if dtype == "float32" else 1e-10
    _compare((*case, 0), getattr(tf, dtype), rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize(("strides", "padding"), [((1, 1), "VALID"), ((2, 1), "SAME"), ((2, 3), "SAME")])
def test_numeric_gradient_agrees_in_float64(strides, padding):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal((2, 6, 5, 2)))
    w = tf.constant(rng.standard_normal((3, 2, 2, 3)))
    theoretical, numerical = tf.test.compute_gradient(lambda a, b: ops.conv2d(a, b, strides, padding), [x, w])
    for t, n in zip(theoretical, numerical, strict=True):
        np.testing.assert_allclose(t, n, rtol=1e-7, atol=1e-7)


def test_second_order_gradients_match_tensorflow():
    rng = np.random.default_rng(2)
    x = tf.constant(rng.standard_normal((2, 6, 6, 2)))
    w = tf.constant(rng.standard_normal((3, 3, 2, 2)))

    def grad_norm(conv):
        with tf.GradientTape() as outer:
            outer.watch([x, w])
            with tf.GradientTape() as inner:
                inner.watch([x, w])
                y = tf.reduce_sum(tf.sin(conv(x, w)))
            gx, gw = inner.gradient(y, [x, w])
            penalty = tf.reduce_sum(gx**2) + tf.reduce_sum(gw**2)
        return outer.gradient(penalty, [x, w])

    ours = grad_norm(lambda a, b: ops.conv2d(a, b, 2, "SAME"))
    reference = grad_norm(lambda a, b: tf.nn.conv2d(a, b, 2, "SAME"))
    for got, expected in zip(ours, reference, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_shapes_infer_inside_tf_function():
    seen = {}

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 3], tf.float32)])
    def run(x):
        y = ops.conv2d(x, tf.ones([3, 3, 3, 8]), strides=2, padding="SAME")
        seen["shape"] = y.shape.as_list()
        return y

    assert run(tf.ones([4, 28, 28, 3])).shape == (4, 14, 14, 8)
    assert seen["shape"] == [None, 14, 14, 8]


def test_jit_compile_gives_a_clear_error():
    @tf.function(jit_compile=True)
    def run(x):
        return ops.conv2d(x, tf.ones([3, 3, 1, 1]))

    with pytest.raises(RuntimeError, match="cannot run under XLA"):
        run(tf.ones([1, 5, 5, 1]))


def test_empty_batch_gives_empty_output_and_zero_filter_gradient():
    x = tf.zeros([0, 5, 5, 2])
    w = tf.ones([3, 3, 2, 4])
    with tf.GradientTape() as tape:
        tape.watch(w)
        y = ops.conv2d(x, w)
        loss = tf.reduce_sum(y)
    assert y.shape == (0, 3, 3, 4)
    np.testing.assert_array_equal(tape.gradient(loss, w), np.zeros([3, 3, 2, 4]))


def _output_size(size, window, stride, padding):
    return -(-size // stride) if padding == "SAME" else (size - window) // stride + 1


@st.composite
def zero_sized_cases(draw):
    """Geometries with at least one of batch, height, width, in or out channels 0; strides up to 3, uneven."""
    sizes = {name: draw(st.integers(0, 6)) for name in ("batch", "height", "width", "c_in", "c_out")}
    zeroed = draw(st.lists(st.sampled_from(sorted(sizes)), min_size=1, max_size=3, unique=True))
    sizes.update(dict.fromkeys(zeroed, 0))
    padding = "SAME" if 0 in (sizes["height"], sizes["width"]) else draw(st.sampled_from(["VALID", "SAME"]))
    fh = draw(st.integers(1, 3 if padding == "SAME" else max(1, min(3, sizes["height"]))))
    fw = draw(st.integers(1, 3 if padding == "SAME" else max(1, min(3, sizes["width"]))))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    x_shape = (sizes["batch"], sizes["height"], sizes["width"], sizes["c_in"])
    return x_shape, (fh, fw, sizes["c_in"], sizes["c_out"]), strides, padding


ZERO_SIZED = [  # the cases that once killed the process
    ((2, 0, 5, 3), (3, 3, 3, 16), (1, 1), "SAME"),  # zero height: the filter gradient divided by zero (SIGFPE)
    ((2, 4, 0, 16), (3, 3, 16, 16), (2, 2), "SAME"),  # zero width, stride 2: a negative band width (length_error)
    ((2, 5, 5, 0), (3, 3, 0, 4), (1, 1), "SAME"),
    ((2, 5, 5, 3), (3, 3, 3, 0), (2, 1), "VALID"),
    ((0, 5, 5, 16), (3, 3, 16, 16), (1, 1), "SAME"),
]


def _check_zero_sized(x_shape, w_shape, strides, padding, dtype):
    """Every pass returns its full shape, all zeros: with a zero dimension each result is empty or sums nothing."""
    (batch, height, width, _), (fh, fw, _, c_out) = x_shape, w_shape
    y_shape = (batch, _output_size(height, fh, strides[0], padding), _output_size(width, fw, strides[1], padding), c_out)
    x, w = tf.ones(x_shape, dtype), tf.ones(w_shape, dtype)
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = ops.conv2d(x, w, strides, padding)
        loss = tf.reduce_sum(y * tf.ones(y_shape, dtype))
    dx, dw = tape.gradient(loss, [x, w])
    for name, got, shape in (("y", y, y_shape), ("dx", dx, x_shape), ("dw", dw, w_shape)):
        assert tuple(got.shape) == shape, name
        np.testing.assert_array_equal(got, np.zeros(shape), err_msg=name)


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
@pytest.mark.parametrize("case", ZERO_SIZED, ids=str)
def test_the_cases_that_crashed_give_empty_or_zero_results(case, dtype):
    _check_zero_sized(*case, dtype)


@settings(max_examples=40)
@given(zero_sized_cases(), st.sampled_from([tf.float32, tf.float64]))
def test_any_zero_dimension_gives_empty_or_zero_results(case, dtype):
    _check_zero_sized(*case, dtype)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"padding": "FULL"}, ValueError, "padding must be 'VALID' or 'SAME'"),
        ({"strides": 0}, ValueError, "strides must be positive"),
        ({"strides": (1, 2, 3)}, ValueError, "strides must be a positive int or a pair"),
        ({"filters": np.ones((3, 3, 2, 1), np.float32)}, ValueError, "x has 1 channels but filters expect 2"),
        ({"x": np.ones((5, 5, 1), np.float32)}, ValueError, "x must be rank 4"),
        ({"x": np.ones((1, 5, 5, 1), np.int32)}, TypeError, "x must be float32 or float64"),
        ({"filters": tf.ones((3, 3, 1, 1), tf.float64)}, TypeError, "same dtype"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    arguments = {"x": np.ones((1, 5, 5, 1), np.float32), "filters": np.ones((3, 3, 1, 1), np.float32)}
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        ops.conv2d(**arguments)


def test_the_kernel_itself_validates_what_python_cannot_see():
    library = ops.load_library()
    with pytest.raises(tf.errors.InvalidArgumentError, match="input channels \\(3\\) must equal"):
        library.lab_conv2d(tf.ones([1, 5, 5, 3]), tf.ones([3, 3, 2, 1]), strides=[1, 1], padding="VALID")
    with pytest.raises(tf.errors.InvalidArgumentError, match="strides must be positive"):
        library.lab_conv2d(tf.ones([1, 5, 5, 1]), tf.ones([3, 3, 1, 1]), strides=[0, 1], padding="VALID")
    with pytest.raises(tf.errors.InvalidArgumentError, match="must fit inside the input"):
        library.lab_conv2d(tf.ones([1, 2, 2, 1]), tf.ones([3, 3, 1, 1]), strides=[1, 1], padding="VALID")
    with pytest.raises(tf.errors.InvalidArgumentError, match="out_backprop has shape"):
        library.lab_conv2d_backprop_input(
            [1, 5, 5, 1], tf.ones([3, 3, 1, 1]), tf.ones([1, 2, 2, 1]), strides=[1, 1], padding="VALID"
        )


def test_it_is_not_tf_nn_conv2d_in_disguise():
    @tf.function
    def run(x, w):
        return ops.conv2d(x, w)

    graph = run.get_concrete_function(tf.TensorSpec([1, 5, 5, 1]), tf.TensorSpec([3, 3, 1, 1])).graph
    types = {op.type for op in graph.get_operations()}
    assert "LabConv2D" in types and "Conv2D" not in types


# ---- fused_conv2d: activation(conv2d + bias) in one op -------------------------------------------


def _reference_fused(x, w, bias, strides, padding, activation):
    y = tf.nn.conv2d(x, w, [1, *strides, 1], padding) + bias
    return tf.nn.relu(y) if activation == "relu" else y


def _compare_fused(case, activation, dtype, rtol, atol):
    """Forward and the three gradients (x, filters, bias) against TensorFlow's unfused ops."""
    x_shape, w_shape, strides, padding, seed = case
    (batch, height, width, _), (fh, fw, c_in, c_out) = x_shape, w_shape
    atol *= np.sqrt(max(fh * fw * c_in, fh * fw * c_out, batch * height * width))
    rng = np.random.default_rng(seed)
    x, w = tf.constant(rng.standard_normal(x_shape), dtype), tf.constant(rng.standard_normal(w_shape), dtype)
    bias = tf.constant(rng.standard_normal(c_out), dtype)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, w, bias])
        ours = ops.fused_conv2d(x, w, bias, strides, padding, activation)
        reference = _reference_fused(x, w, bias, strides, padding, activation)
        upstream = tf.constant(rng.standard_normal(reference.shape), dtype)
        loss_ours, loss_reference = tf.reduce_sum(ours * upstream), tf.reduce_sum(reference * upstream)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=atol)
    got, expected = tape.gradient(loss_ours, [x, w, bias]), tape.gradient(loss_reference, [x, w, bias])
    for name, g, e in zip(("x", "filters", "bias"), got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=name)


@settings(max_examples=40)
@given(cases(), st.sampled_from(["linear", "relu"]), st.sampled_from([tf.float32, tf.float64]))
def test_fused_forward_and_gradients_match_tensorflow(case, activation, dtype):
    tolerance = 1e-10 if dtype == tf.float64 else 1e-4
    _compare_fused(case, activation, dtype, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", CASES + BAND_CASES, ids=str)
def test_fused_fixed_cases_match_tensorflow(case, activation):
    # The direct kernels finish each band of rows, the GEMM path each block, the few-outputs path its own bands.
    _compare_fused((*case, 0), activation, tf.float32, rtol=1e-4, atol=1e-4)


def test_fused_numeric_gradient_agrees_in_float64():
    rng = np.random.default_rng(4)
    x, w = tf.constant(rng.standard_normal((2, 6, 5, 2))), tf.constant(rng.standard_normal((3, 2, 2, 3)))
    bias = tf.constant(rng.standard_normal(3))
    theoretical, numerical = tf.test.compute_gradient(
        lambda a, b, c: ops.fused_conv2d(a, b, c, (2, 1), "SAME"), [x, w, bias]
    )
    for t, n in zip(theoretical, numerical, strict=True):
        np.testing.assert_allclose(t, n, rtol=1e-7, atol=1e-7)


def test_fused_second_order_gradients_match_tensorflow():
    rng = np.random.default_rng(5)
    x, w = tf.constant(rng.standard_normal((2, 6, 6, 2))), tf.constant(rng.standard_normal((3, 3, 2, 2)))
    bias = tf.constant(rng.standard_normal(2))

    def grad_norm(conv):
        with tf.GradientTape() as outer:
            outer.watch([x, w, bias])
            with tf.GradientTape() as inner:
                inner.watch([x, w, bias])
                y = tf.reduce_sum(tf.sin(conv(x, w, bias)))
            penalty = sum(tf.reduce_sum(g**2) for g in inner.gradient(y, [x, w, bias]))
        return outer.gradient(penalty, [x, w, bias])

    ours = grad_norm(lambda a, b, c: ops.fused_conv2d(a, b, c, 1, "SAME", "relu"))
    reference = grad_norm(lambda a, b, c: _reference_fused(a, b, c, (1, 1), "SAME", "relu"))
    for got, expected in zip(ours, reference, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("activation", ["linear", "relu"])
@pytest.mark.parametrize("case", ZERO_SIZED, ids=str)
def test_fused_zero_sized_cases_give_the_bias_where_there_is_nothing_to_sum(case, activation):
    x_shape, w_shape, strides, padding = case
    bias = tf.constant(np.linspace(-1, 1, w_shape[3]), tf.float32)
    x, w = tf.ones(x_shape), tf.ones(w_shape)
    with tf.GradientTape() as tape:
        tape.watch([x, w, bias])
        y = ops.fused_conv2d(x, w, bias, strides, padding, activation)
        loss = tf.reduce_sum(y)
    expected = tf.broadcast_to(tf.nn.relu(bias) if activation == "relu" else bias, y.shape)
    np.testing.assert_array_equal(y, expected)  # with no input channel, each output is activation(bias)
    dx, dw, dbias = tape.gradient(loss, [x, w, bias])
    np.testing.assert_array_equal(dx, np.zeros(x_shape))
    np.testing.assert_array_equal(dw, np.zeros(w_shape))
    pixels = y.shape[0] * y.shape[1] * y.shape[2]
    passed = (bias.numpy() > 0) if activation == "relu" else np.ones(w_shape[3], bool)
    np.testing.assert_array_equal(dbias, pixels * passed.astype(np.float32))


@pytest.mark.parametrize("out_c", [1, 16])  # GEMM path, direct kernel (finished in its tiles)
def test_fused_relu_keeps_nan_as_tensorflow_does(out_c):
    x = tf.constant([[[[np.nan]], [[-1.0]], [[2.0]]]])  # (1, 3, 1, 1)
    w, bias = tf.ones([1, 1, 1, out_c]), tf.zeros([out_c])
    y = ops.fused_conv2d(x, w, bias, activation="relu").numpy()
    np.testing.assert_array_equal(y, tf.nn.relu(tf.nn.conv2d(x, w, 1, "VALID") + bias))
    assert np.isnan(y[0, 0, 0]).all() and (y[0, 1, 0] == 0).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"bias": np.ones(3, np.float32)}, ValueError, r"bias must have shape \(out_channels,\) = \(1,\)"),
        ({"bias": np.ones((1, 1), np.float32)}, ValueError, "bias must have shape"),
        ({"bias": tf.ones(1, tf.float64)}, TypeError, "bias must have the dtype of x"),
        ({"activation": "tanh"}, ValueError, "activation must be one of 'linear', 'relu'"),
        ({"activation": None}, ValueError, "activation must be one of"),
        ({"padding": "FULL"}, ValueError, "padding must be 'VALID' or 'SAME'"),
        ({"filters": np.ones((3, 3, 2, 1), np.float32)}, ValueError, "x has 1 channels but filters expect 2"),
    ],
)
def test_fused_bad_arguments_are_named(kwargs, error, message):
    arguments = {
        "x": np.ones((1, 5, 5, 1), np.float32), "filters": np.ones((3, 3, 1, 1), np.float32),
        "bias": np.ones(1, np.float32),
    }  # fmt: skip
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        ops.fused_conv2d(**arguments)


def test_the_fused_kernel_validates_the_bias_it_is_given():
    library = ops.load_library()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"bias must have shape \(out_channels,\) = \(2,\)"):
        library.lab_fused_conv2d(tf.ones([1, 5, 5, 1]), tf.ones([3, 3, 1, 2]), tf.ones([3]))

    @tf.function(input_signature=[tf.TensorSpec(None)])  # unknown rank: only the kernel sees the shape
    def unknown(bias):
        return library.lab_fused_conv2d(tf.ones([1, 5, 5, 1]), tf.ones([3, 3, 1, 2]), bias)

    with pytest.raises(tf.errors.InvalidArgumentError, match="bias must have shape"):
        unknown(tf.ones([2, 1]))


def test_a_first_call_inside_tf_function_loads_the_op_without_an_autograph_warning(tmp_path):
    """A model's first fit() calls the op inside a tf.function; loading it there must print nothing."""
    import subprocess
    import sys

    script = (
        "from cnnlab.env import import_tensorflow\n"
        "tf = import_tensorflow()\n"
        "from cnnlab import ops\n"
        "run = tf.function(lambda x: ops.fused_conv2d(x, tf.ones([3, 3, 1, 2]), tf.zeros([2]), activation='relu'))\n"
        "print(run(tf.ones([1, 5, 5, 1])).shape)\n"
    )
    path = tmp_path / "first_fit.py"  # a file: AutoGraph converts what it can read the source of, unlike -c
    path.write_text(script)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("(1, 3, 3, 2)")
    assert "AutoGraph" not in done.stderr and "report this to the TensorFlow team" not in done.stderr, done.stderr[-2000:]

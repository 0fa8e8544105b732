"""LabConv2D: a Keras layer on the custom op that trains, serialises and refuses XLA clearly."""

import numpy as np
import pytest

from cnnlab.env import import_tensorflow

tf = import_tensorflow()
import keras  # noqa: E402

from cnnlab.layers import LabConv2D  # noqa: E402


def _pair(padding="same", strides=1):
    keras.utils.set_random_seed(0)
    ours = LabConv2D(4, 3, strides=strides, padding=padding, activation="relu")
    theirs = keras.layers.Conv2D(4, 3, strides=strides, padding=padding, activation="relu")
    x = np.random.default_rng(0).standard_normal((2, 9, 9, 3)).astype(np.float32)
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    return ours, theirs, x


@pytest.mark.parametrize(("padding", "strides"), [("same", 1), ("valid", 2), ("same", (2, 1))])
def test_matches_keras_conv2d(padding, strides):
    ours, theirs, x = _pair(padding, strides)
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    assert ours.compute_output_shape(x.shape) == theirs.compute_output_shape(x.shape)


FUSED_OR_NOT = [  # (activation, use_bias, the op types the layer's graph holds)
    ("relu", True, {"LabFusedConv2D"}),
    ("relu", False, {"LabFusedConv2D"}),
    (None, True, {"LabFusedConv2D"}),
    ("linear", False, {"LabConv2D"}),
    ("tanh", True, {"LabConv2D", "Tanh"}),
    ("gelu", False, {"LabConv2D"}),
]


@pytest.mark.parametrize(("activation", "use_bias", "op_types"), FUSED_OR_NOT)
def test_every_activation_and_bias_matches_keras_conv2d_forward_and_backward(activation, use_bias, op_types):
    keras.utils.set_random_seed(1)
    ours = LabConv2D(16, 3, padding="same", activation=activation, use_bias=use_bias)
    theirs = keras.layers.Conv2D(16, 3, padding="same", activation=activation, use_bias=use_bias)
    x = tf.constant(np.random.default_rng(1).standard_normal((2, 7, 7, 3)), tf.float32)
    for layer in (ours, theirs):
        layer.build(x.shape)
    weights = ours.get_weights()
    if use_bias:
        weights[1] = np.linspace(-0.5, 0.5, 16).astype(np.float32)  # a bias that moves outputs across zero
    ours.set_weights(weights)
    theirs.set_weights(weights)

    def forward_and_gradients(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.sin(y) * y)
        return [y, *tape.gradient(loss, [x, *layer.trainable_weights])]

    for got, expected in zip(forward_and_gradients(ours), forward_and_gradients(theirs), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    graph = tf.function(ours).get_concrete_function(tf.TensorSpec(x.shape)).graph
    types = {op.type for op in graph.get_operations()}
    assert op_types <= types
    assert "LabConv2D" not in types or "LabFusedConv2D" not in types  # one convolution, fused or not
    if "LabFusedConv2D" in op_types:  # bias and activation happen inside the op, not after it
        assert not types & {"Relu", "AddV2", "Add", "BiasAdd"}


def _model(jit_compile=False):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((12, 12, 1)),
            LabConv2D(6, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            LabConv2D(8, 3, padding="same", strides=2),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit_compile)
    return model


def _toy_data():
    rng = np.random.default_rng(0)
    x = rng.random((64, 12, 12, 1)).astype(np.float32)
    y = (x[:, :6].mean(axis=(1, 2, 3)) > x[:, 6:].mean(axis=(1, 2, 3))).astype(np.int64)
    return x, y


@pytest.mark.slow
def test_trains_inside_model_fit_and_round_trips_through_a_keras_file(tmp_path):
    x, y = _toy_data()
    model = _model()
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.layers[0], LabConv2D)
    np.testing.assert_array_equal(model.predict(x, verbose=0), restored.predict(x, verbose=0))


def test_auto_jit_stays_off_and_explicit_jit_is_refused_with_a_message():
    assert _model(jit_compile="auto").jit_compile is False
    # Keras reads supports_jit = False and says so instead of failing inside XLA.
    with pytest.warns(UserWarning, match="doesn't support `jit_compile=True`"):
        model = _model(jit_compile=True)
    assert model.jit_compile is False


def test_a_layer_called_inside_an_xla_function_raises_a_clear_error():
    layer = LabConv2D(2, 3)

    @tf.function(jit_compile=True)
    def run(x):
        return layer(x)

    with pytest.raises(RuntimeError, match="cannot run under XLA"):
        run(tf.ones([1, 5, 5, 1]))


def test_get_config_round_trip():
    layer = LabConv2D(5, (3, 2), strides=(2, 1), padding="valid", activation="tanh", use_bias=False)
    clone = LabConv2D.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.strides, clone.padding, clone.use_bias) == (
        5,
        (3, 2),
        (2, 1),
        "valid",
        False,
    )
    assert clone.supports_jit is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": 0, "kernel_size": 3}, "filters must be a positive int"),
        ({"filters": 2, "kernel_size": (3, 0)}, "kernel_size must be a positive int or a pair"),
        ({"filters": 2, "kernel_size": 3, "padding": "causal"}, "padding must be 'valid' or 'same'"),
        ({"filters": 2, "kernel_size": 3, "strides": -1}, "strides must be a positive int"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LabConv2D(**kwargs)

"""cnnlab.transfer: cutting, freezing, few-label sampling, fixed-step training, the experiments, MobileNetV2 features."""

import numpy as np
import pytest

import cnnlab
from cnnlab import data, models, transfer
from cnnlab.data import Split
from cnnlab.env import import_tensorflow

import_tensorflow()
import keras  # noqa: E402


@pytest.fixture(scope="module")
def base():
    keras.utils.set_random_seed(3)
    model = models.digit_base()
    x = np.random.default_rng(0).random((64, 28, 28, 1)).astype("float32")
    return transfer.fit_steps(model, x, np.arange(64) % 5, steps=3)


def digits(n=40, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28, 1)).astype("float32"), np.arange(n) % classes


def test_few_labels_balances_the_classes_and_is_seeded():
    x, y = digits(100)
    xs, ys = transfer.few_labels(x, y, 12, seed=1)
    counts = np.bincount(ys, minlength=5)
    assert len(ys) == 12 and counts.sum() == 12 and counts.min() == 2 and counts.max() == 3
    assert all(any(np.array_equal(a, b) for b in x[y == label]) for a, label in zip(xs, ys, strict=True))
    again = transfer.few_labels(x, y, 12, seed=1)
    assert np.array_equal(again[1], ys) and np.array_equal(again[0], xs)
    assert not np.array_equal(transfer.few_labels(x, y, 12, seed=2)[0], xs)


@pytest.mark.parametrize(("n", "message"), [(3, "n must be an int >= the number of classes \\(5\\)"),
                                              (True, "n must be an int"), (120, "needs 24 examples of class 0, but only 20 exist")])  # fmt: skip
def test_few_labels_rejects_impossible_requests(n, message):
    x, y = digits(100)
    with pytest.raises(ValueError, match=message):
        transfer.few_labels(x, y, n)


def test_fit_steps_runs_exactly_that_many_steps_on_any_amount_of_data():
    for n in (7, 100):
        x, y = digits(n)
        model = transfer.fit_steps(models.digit_base(), x, y, steps=5, batch_size=32)
        assert int(model.optimizer.iterations.numpy()) == 5
    with pytest.raises(ValueError, match="steps must be >= 1"):
        transfer.fit_steps(models.digit_base(), x, y, steps=0)


def _compiled_and_fitted(model, x, y, *, steps, learning_rate, seed):
    """What fit_steps does without its reused twin: compile this model, fit it (lesson 06 writes it so)."""
    batch_size, rng = min(32, len(x)), np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(x)) for _ in range(steps)])
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy")
    model.fit(x[order][: steps * batch_size], y[order][: steps * batch_size], batch_size=batch_size, epochs=1,
              shuffle=False, verbose=0)  # fmt: skip
    return model


@pytest.mark.parametrize("keep, first, learning_rate", [(None, None, 1e-3), ("pool2", "conv2", 1e-4)])
def test_fit_steps_trains_exactly_as_a_freshly_compiled_model_run_after_run(base, keep, first, learning_rate):
    """The compiled twin is reused from the second run on; weights and Adam's state match a fresh model's bit for bit.

    Bit for bit needs TensorFlow's op determinism, which the lessons turn on with cnnlab.setup.
    """
    cnnlab.setup(seed=0)
    x, y = digits(40)
    for seed in (0, 1, 2):
        pair = []
        for _ in range(2):
            keras.utils.set_random_seed(seed)
            model = transfer.transfer_model(base, keep, 5)
            if first:
                transfer.unfreeze_from(model, first)
            pair.append(model)
        fresh = _compiled_and_fitted(pair[0], x, y, steps=4, learning_rate=learning_rate, seed=seed)
        reused = transfer.fit_steps(pair[1], x, y, steps=4, learning_rate=learning_rate, seed=seed)
        for a, b in zip(fresh.get_weights(), reused.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(fresh.optimizer.variables, reused.optimizer.variables, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(reused.optimizer.iterations.numpy()) == 4


class _Scale(keras.layers.Layer):
    """A student's custom layer with an argument and no get_config: Keras cannot clone it."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def call(self, x):
        return x * self.factor


def test_fit_steps_trains_a_model_it_cannot_clone_itself():
    x, y = digits(40)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), _Scale(2.0), keras.layers.Flatten(),
                              keras.layers.Dense(5, activation="softmax")])  # fmt: skip
    before = model.get_weights()[0].copy()
    assert transfer.fit_steps(model, x, y, steps=3) is model
    assert int(model.optimizer.iterations.numpy()) == 3 and not np.array_equal(before, model.get_weights()[0])


def test_transfer_model_copies_kept_layers_and_reinitialises_the_rest(base):
    before = [w.copy() for w in base.get_weights()]
    model = transfer.transfer_model(base, "pool2", 3)
    assert model.output_shape == (None, 3) and model.layers[-1].name == "new_output"
    for original, copy in zip(base.layers[:-1], model.layers[:-1], strict=True):
        kept = original.name in ("conv1", "bn1", "conv2", "bn2")
        if original.weights:
            same = all(
                np.array_equal(a, b) for a, b in zip(original.get_weights(), copy.get_weights(), strict=True)
            )
            assert same == kept, original.name
        assert copy is not original and copy.trainable == (original.name not in
                                                            ("conv1", "bn1", "relu1", "pool1", "conv2", "bn2", "relu2", "pool2"))  # fmt: skip
    x, y = digits(32, classes=3)
    transfer.fine_tune(transfer.fit_steps(model, x, y, steps=2), x, y, first="conv1", steps=2)
    assert all(np.array_equal(a, b) for a, b in zip(before, base.get_weights(), strict=True)), "base changed"


def test_transfer_model_from_scratch_and_its_errors(base):
    scratch = transfer.transfer_model(base, None, 5, freeze=True)
    assert transfer.trainable_count(scratch) == sum(int(np.prod(w.shape)) for w in scratch.trainable_weights)
    assert transfer.trainable_count(scratch) == 224_485  # all but the batch-norm moving statistics
    with pytest.raises(
        ValueError, match=r"keep must be None or one of the base's hidden layers \(conv1, bn1"
    ):
        transfer.transfer_model(base, "output", 5)
    with pytest.raises(ValueError, match="classes must be an int >= 2"):
        transfer.transfer_model(base, "pool1", 1)


def test_freezing_and_unfreezing_by_trainable_count(base):
    model = transfer.transfer_model(base, "dense", 5)
    assert transfer.trainable_count(model) == 128 * 5 + 5  # only the new softmax
    transfer.unfreeze_from(model, "conv2")
    bn2 = model.get_layer("bn2")
    assert not bn2.trainable and not model.get_layer("bn1").trainable
    assert transfer.trainable_count(model) == 3 * 3 * 32 * 64 + 1600 * 128 + 128 + 645
    with pytest.raises(ValueError, match="first must be one of the model's layers"):
        transfer.unfreeze_from(model, "conv9")


def test_fine_tuning_leaves_batch_norm_statistics_alone(base):
    model = transfer.transfer_model(base, "pool2", 5)
    x, y = digits(64)
    transfer.fit_steps(model, x, y, steps=2)
    moving = [w.copy() for w in model.get_layer("bn2").get_weights()]
    conv2 = model.get_layer("conv2").get_weights()[0].copy()
    transfer.fine_tune(model, x * 3.0, y, first="conv2", steps=3, learning_rate=1e-2)
    assert all(
        np.array_equal(a, b) for a, b in zip(moving, model.get_layer("bn2").get_weights(), strict=True)
    )
    assert not np.array_equal(conv2, model.get_layer("conv2").get_weights()[0])
    assert model.optimizer.learning_rate.numpy() == pytest.approx(1e-2)


def test_accuracy_counts_argmax_hits(base):
    x, _ = digits(10)
    predicted = base.predict(x, verbose=0).argmax(axis=1)
    assert transfer.accuracy(base, x, predicted) == 1.0
    assert transfer.accuracy(base, x, (predicted + 1) % 5) == 0.0


def test_mobilenet_features_offline_raise_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(data, "_WEIGHTS_HOST", ("192.0.2.1", 443))
    with pytest.raises(
        data.WeightsUnavailable, match="not in Keras's cache and 192.0.2.1 cannot be reached"
    ):
        transfer.mobilenet_v2_features(np.zeros((2, 28, 28, 1), "float32"))


def test_mobilenet_features_shape_and_arguments():
    grey = np.random.default_rng(0).random((3, 25, 25, 1)).astype("float32")
    assert transfer.mobilenet_v2_features(grey, weights=None).shape == (3, 1280)
    with pytest.raises(ValueError, match="size must be one of 96, 128"):
        transfer.mobilenet_v2_features(grey, size=100, weights=None)
    with pytest.raises(ValueError, match=r"images must be \(n, h, w, 1\) or \(n, h, w, 3\)"):
        transfer.mobilenet_v2_features(grey[..., 0], weights=None)


def test_cut_shares_the_base_weights_and_new_head_fits_its_output(base):
    features = transfer.cut(base, "pool2")
    assert features.output_shape == (None, 5, 5, 64)
    assert features.get_layer("conv2") is base.get_layer("conv2")
    head = transfer.new_head(base, "pool2", 3)
    assert [layer.name for layer in head.layers] == ["flatten", "dense", "new_output"]
    assert head.input_shape == (None, 5, 5, 64) and head.output_shape == (None, 3)
    with pytest.raises(ValueError, match="None keeps nothing"):
        transfer.cut(base, None)


def test_a_head_trained_on_features_carries_over_into_the_transfer_model(base):
    x, y = digits(32, classes=3)
    features = transfer.cut(base, "pool2").predict(x, verbose=0)
    head = transfer.fit_steps(transfer.new_head(base, "pool2", 3), features, y, steps=3)
    model = transfer.transfer_model(base, "pool2", 3, head=head)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), head.predict(features, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert transfer.trainable_count(model) == transfer.trainable_count(head)
    with pytest.raises(ValueError, match="head must end in 4 classes, but it outputs 3"):
        transfer.transfer_model(base, "pool2", 4, head=head)


def test_mobilenet_features_use_weights_from_keras_cache_without_the_network(tmp_path, monkeypatch):
    """The online path once the weights are cached: Keras's legacy .h5 file, loaded by name."""
    import h5py  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415
    from keras.src.legacy.saving import legacy_h5_format  # noqa: PLC0415

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")  # proves nothing is downloaded
    keras.utils.set_random_seed(1)
    net = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), include_top=False, pooling="avg", weights=None
    )
    (tmp_path / "models").mkdir()
    with h5py.File(
        tmp_path / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5", "w"
    ) as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, net)
    grey = np.random.default_rng(0).random((2, 25, 25, 1)).astype("float32")
    expected = net.predict(tf.repeat(tf.image.resize(grey, (96, 96)), 3, axis=-1) * 2.0 - 1.0, verbose=0)
    np.testing.assert_allclose(transfer.mobilenet_v2_features(grey), expected, rtol=1e-5, atol=1e-6)


def test_learning_curves_keep_one_row_per_seed(base):
    x, y = digits(n=40)
    split = Split(x, y, x, y, "test")
    runs = transfer.learning_curves(base, split, [10, 20], seeds=(0, 1), steps=2)
    assert set(runs) == set(transfer.METHODS)
    assert all(values.shape == (2, 2) and np.all((values >= 0) & (values <= 1)) for values in runs.values())
    again = transfer.learning_curves(base, split, [10], seeds=(1,), steps=2)
    assert all(again[method][0, 0] == runs[method][1, 0] for method in transfer.METHODS)  # seed 1 is seed 1

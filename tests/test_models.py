"""cnnlab.models: parameter counts, shapes, shortcuts, the twins, the cached trained convnet."""

import numpy as np
import pytest

from cnnlab import models
from cnnlab.env import import_tensorflow

import_tensorflow()
import keras  # noqa: E402

from cnnlab.layers import LabConv2D  # noqa: E402


def test_parameter_counts_match_the_formulas():
    assert models.mnist_convnet().count_params() == 34_826
    lab = models.mnist_convnet(conv=LabConv2D)
    assert lab.count_params() == 34_826 and isinstance(lab.layers[0], LabConv2D)


def test_plain_and_residual_twins_have_identical_parameters():
    plain, residual = models.deep_net(20, residual=False), models.deep_net(20, residual=True)
    assert plain.count_params() == residual.count_params() == 46_730
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in plain.layers) == 21  # stem + 20
    with pytest.raises(ValueError, match="depth must be an even number"):
        models.deep_net(7, residual=True)


@pytest.mark.slow
def test_the_trained_convnet_is_cached_and_reloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    path = tmp_path / "convnet.keras"
    first = models.load_or_train_mnist_convnet(epochs=1, path=path, quiet=True)
    assert path.is_file()
    again = models.load_or_train_mnist_convnet(epochs=1, path=path, quiet=True)
    probe = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(first.predict(probe, verbose=0), again.predict(probe, verbose=0))


def test_digit_base_blocks_and_shapes():
    model = models.digit_base(classes=5)
    names = [layer.name for layer in model.layers]
    assert all(end in names for end in models.BLOCK_ENDS)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}
    assert shapes["pool1"] == (13, 13, 32) and shapes["pool2"] == (5, 5, 64) and shapes["dense"] == (128,)
    assert model.output_shape == (None, 5)


def test_pretrained_digit_base_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    path = tmp_path / "base.keras"
    first = models.pretrained_digit_base(classes=(0, 1), steps=3, path=path, quiet=True)
    assert path.is_file() and first.output_shape == (None, 2)
    second = models.pretrained_digit_base(classes=(0, 1), steps=3, path=path, quiet=True)
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), second.get_weights(), strict=True))

"""cnnlab.models: parameter counts, shapes, shortcuts, the twins, the cached trained convnet."""

import numpy as np
import pytest

from cnnlab import conv, models
from cnnlab.env import import_tensorflow

import_tensorflow()
import keras  # noqa: E402

from cnnlab.layers import LabConv2D  # noqa: E402


def test_parameter_counts_match_the_formulas():
    assert models.mnist_convnet().count_params() == 34_826
    assert models.lenet5().count_params() == 61_706
    assert models.mlp().count_params() == conv.dense_params(784, 128) + conv.dense_params(128, 10)
    lab = models.mnist_convnet(conv=LabConv2D)
    assert lab.count_params() == 34_826 and isinstance(lab.layers[0], LabConv2D)


def test_inception_block_with_and_without_bottlenecks():
    x = keras.Input((28, 28, 192))
    naive = keras.Model(x, models.inception_block(x, 64, 128, 32, 32, name="n"))
    reduced = keras.Model(x, models.inception_block(x, 64, 128, 32, 32, reduce3=96, reduce5=16, name="r"))
    assert naive.output.shape[1:] == reduced.output.shape[1:] == (28, 28, 256)
    convs = [sum(isinstance(layer, keras.layers.Conv2D) for layer in m.layers) for m in (naive, reduced)]
    assert convs == [4, 6]
    assert (naive.count_params(), reduced.count_params()) == (393_472, 163_696)


def test_residual_block_uses_a_projection_only_when_the_shape_changes():
    x = keras.Input((28, 28, 16))
    same = keras.Model(x, models.residual_block(x, 16, name="a"))
    wider = keras.Model(x, models.residual_block(x, 32, stride=2, name="b"))
    assert same.output.shape[1:] == (28, 28, 16) and wider.output.shape[1:] == (14, 14, 32)
    assert not any("projection" in layer.name for layer in same.layers)
    assert any("projection" in layer.name for layer in wider.layers)


def test_plain_and_residual_twins_have_identical_parameters():
    plain, residual = models.deep_net(20, residual=False), models.deep_net(20, residual=True)
    assert plain.count_params() == residual.count_params() == 46_730
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in plain.layers) == 21  # stem + 20
    with pytest.raises(ValueError, match="depth must be an even number"):
        models.deep_net(7, residual=True)


def test_small_nets_classify_mnist_shaped_input():
    x = np.zeros((2, 28, 28, 1), np.float32)
    for build in (models.small_inception_net, models.small_resnet):
        assert build()(x).shape == (2, 10)


@pytest.mark.slow
def test_the_trained_convnet_is_cached_and_reloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    path = tmp_path / "convnet.keras"
    first = models.load_or_train_mnist_convnet(epochs=1, path=path, quiet=True)
    assert path.is_file()
    again = models.load_or_train_mnist_convnet(epochs=1, path=path, quiet=True)
    probe = np.random.default_rng(0).random((4, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(first.predict(probe, verbose=0), again.predict(probe, verbose=0))

"""cnnlab.explain on a small seeded convnet: shapes, ranges, and the Sequential Grad-CAM case."""

import numpy as np
import pytest

from cnnlab import explain, models
from cnnlab.env import import_tensorflow

import_tensorflow()
import keras  # noqa: E402


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return models.mnist_convnet()  # a Sequential model, as in the notebooks


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)


def test_activations_of_named_layers(model, images):
    maps = explain.activations(model, images, ["conv1", "pool2"])
    assert maps["conv1"].shape == (3, 26, 26, 32) and maps["pool2"].shape == (3, 5, 5, 64)
    with pytest.raises(ValueError, match="are not layers of mnist_convnet; its layers are"):
        explain.activations(model, images, ["conv9"])


def test_grad_cam_works_on_a_sequential_model(model, images):
    cam = explain.grad_cam(model, images, [0, 1, 2], "conv2")
    assert cam.shape == (3, 28, 28) and cam.min() >= 0 and np.all(cam.max(axis=(1, 2)) <= 1 + 1e-6)


def test_saliency_is_a_non_negative_map(model, images):
    sal = explain.saliency(model, images, [3, 4, 5])
    assert sal.shape == (3, 28, 28) and sal.min() >= 0 and sal.max() > 0


def test_fgsm_moves_each_pixel_by_at_most_epsilon_and_stays_in_range(model, images):
    labels = np.array([0, 1, 2])
    adversarial = explain.fgsm(model, images, labels, 0.1)
    assert np.abs(adversarial - images).max() <= 0.1 + 1e-6
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    np.testing.assert_array_equal(explain.fgsm(model, images, labels, 0.0), images)
    with pytest.raises(ValueError, match="epsilon must be >= 0"):
        explain.fgsm(model, images, labels, -0.1)


def test_filter_ascent_raises_the_linear_response(model):
    before = np.random.default_rng(0).random((2, 28, 28, 1)).astype(np.float32)  # the ascent's starting point
    after = explain.maximize_filters(model, "conv2", [0, 5], steps=20)
    for i, f in enumerate([0, 5]):
        assert explain.activations(model, after[i : i + 1], ["conv2"])["conv2"][..., f].mean() >= (
            explain.activations(model, before[i : i + 1], ["conv2"])["conv2"][..., f].mean()
        )
    assert model.get_layer("conv2").activation is keras.activations.relu  # restored after the ascent
    with pytest.raises(ValueError, match="filters must be in 0..63"):
        explain.maximize_filters(model, "conv2", [64])

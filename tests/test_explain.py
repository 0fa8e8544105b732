"""cnnlab.explain on a small seeded convnet: logits, shapes, ranges, and the Sequential Grad-CAM case."""

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


def test_logits_are_the_scores_the_softmax_turns_into_the_model_output(model, images):
    scores = explain.logits(model, images)
    np.testing.assert_allclose(keras.ops.softmax(scores).numpy(), model(images).numpy(), rtol=1e-5, atol=1e-7)
    assert model.layers[-1].activation is keras.activations.softmax  # put back afterwards


def test_saliency_is_the_gradient_of_the_logit_by_finite_differences(model, images):
    sal = explain.saliency(model, images[:1], [4])
    row, col = np.unravel_index(np.argmax(sal[0]), sal[0].shape)
    step = np.zeros_like(images[:1])
    step[0, row, col, 0] = 1e-2
    slope = (explain.logits(model, images[:1] + step)[0, 4] - explain.logits(model, images[:1] - step)[0, 4]) / 2e-2
    np.testing.assert_allclose(abs(slope), sal[0, row, col], rtol=0.05)


def test_a_model_without_a_final_activation_is_refused(images):
    inputs = keras.Input((28, 28, 1))
    bare = keras.Model(inputs, keras.layers.Flatten()(inputs))
    with pytest.raises(ValueError, match="must end in a layer with an activation"):
        explain.saliency(bare, images, [0, 1, 2])

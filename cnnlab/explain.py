"""What a trained network learned: activations, saliency, Grad-CAM, FGSM.

Lesson 05 writes each of these with ``tf.GradientTape`` in its own cells and then checks
that this module gives the same result; assignment 05's reference uses none of it.

Shapes: images ``(batch, h, w, c)`` float32 in [0, 1]; ``model`` maps them to class
probabilities ``(batch, classes)`` through a final layer with a softmax activation.
Saliency and Grad-CAM differentiate the class *logit* (that layer's output before the
softmax), as Simonyan et al. (2014) and Selvaraju et al. (2017) do: the probability
saturates near 0 and 1, where its gradient vanishes.
Works for Sequential and functional Keras 3 models.

Keras 3 broke the classic Grad-CAM recipe for Sequential models
(``keras.Model(model.inputs, [model.get_layer(name).output, model.output])`` fails
because a Sequential model's layers may have no symbolic history). :func:`traced`
avoids it by calling the layers again on a fresh ``keras.Input``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from cnnlab.env import import_tensorflow

tf = import_tensorflow()

import keras  # noqa: E402

__all__ = ["activations", "fgsm", "grad_cam", "logits", "saliency", "traced"]


def traced(model: keras.Model, layer_names: Sequence[str]) -> keras.Model:
    """A functional model returning the outputs of ``layer_names`` and then the model's output.

    Raises:
        ValueError: a name is not a layer of ``model`` (the message lists the layers).
    """
    names = [layer.name for layer in model.layers]
    missing = [n for n in layer_names if n not in names]
    if missing:
        raise ValueError(f"layer_names {missing} are not layers of {model.name}; its layers are {names}")
    inputs = keras.Input(model.input_shape[1:])
    x, outputs = inputs, {}
    for layer in model.layers:
        x = layer(x)
        outputs[layer.name] = x
    return keras.Model(inputs, [outputs[n] for n in layer_names] + [x])


def activations(model: keras.Model, x, layer_names: Sequence[str]) -> dict[str, np.ndarray]:
    """``{name: array}`` of each named layer's output for the batch ``x``."""
    values = traced(model, layer_names)(np.asarray(x, np.float32), training=False)
    return {name: np.asarray(v) for name, v in zip(layer_names, values[:-1], strict=True)}





@contextmanager
def _softmax_removed(model: keras.Model) -> Iterator[None]:
    """Within the block, ``model`` returns logits: its final layer's activation is the identity."""
    last = model.layers[-1]
    saved = getattr(last, "activation", None)
    if saved is None:
        raise ValueError(f"model {model.name!r} must end in a layer with an activation (a softmax), "
                         f"got {type(last).__name__}")  # fmt: skip
    last.activation = keras.activations.linear
    try:
        yield
    finally:
        last.activation = saved


def logits(model: keras.Model, x) -> np.ndarray:
    """The class scores before the softmax: ``(batch, classes)``."""
    with _softmax_removed(model):
        return np.asarray(model(np.asarray(x, np.float32), training=False))


def _class_logit(outputs, classes: Sequence[int]):
    """``outputs[i, classes[i]]`` for each image i: ``(batch,)``."""
    return tf.gather(outputs, tf.constant(list(classes)), axis=1, batch_dims=1)


def saliency(model: keras.Model, x, classes: Sequence[int]) -> np.ndarray:
    """``|d logit(class) / d pixel|``, the largest over channels: ``(batch, h, w)``."""
    images = tf.convert_to_tensor(np.asarray(x, np.float32))
    with tf.GradientTape() as tape, _softmax_removed(model):
        tape.watch(images)
        scores = _class_logit(model(images, training=False), classes)
    return tf.reduce_max(tf.abs(tape.gradient(scores, images)), axis=-1).numpy()


def grad_cam(model: keras.Model, x, classes: Sequence[int], layer_name: str) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for each class lies.

    The feature maps of ``layer_name`` are weighted by the spatial mean of the class logit's
    gradient, summed, passed through a ReLU, upsampled to the input size and scaled to [0, 1].

    Returns:
        ``(batch, h, w)`` heatmaps.
    """
    probe = traced(model, [layer_name])
    images = np.asarray(x, np.float32)
    with tf.GradientTape() as tape, _softmax_removed(model):
        maps, outputs = probe(images, training=False)
        scores = _class_logit(outputs, classes)
    weights = tf.reduce_mean(tape.gradient(scores, maps), axis=[1, 2], keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
    return (cam / tf.maximum(peak, 1e-12)).numpy()


def fgsm(model: keras.Model, x, y, epsilon: float) -> np.ndarray:
    """Fast gradient sign method (Goodfellow et al. 2015): ``clip(x + epsilon * sign(d loss / d x), 0, 1)``."""
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    images = tf.convert_to_tensor(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = keras.losses.sparse_categorical_crossentropy(np.asarray(y), model(images, training=False))
    return tf.clip_by_value(images + epsilon * tf.sign(tape.gradient(loss, images)), 0.0, 1.0).numpy()

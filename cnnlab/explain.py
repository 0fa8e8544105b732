"""What a trained network learned: activations, inputs that excite filters, saliency, Grad-CAM, FGSM.

Shapes: images ``(batch, h, w, c)`` float32 in [0, 1]; ``model`` maps them to class
probabilities ``(batch, classes)``. Works for Sequential and functional Keras 3 models.

Keras 3 broke the classic Grad-CAM recipe for Sequential models
(``keras.Model(model.inputs, [model.get_layer(name).output, model.output])`` fails
because a Sequential model's layers may have no symbolic history). :func:`traced`
avoids it by calling the layers again on a fresh ``keras.Input``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cnnlab.env import import_tensorflow

tf = import_tensorflow()

import keras  # noqa: E402

__all__ = ["activations", "fgsm", "grad_cam", "maximize_class", "maximize_filters", "saliency", "traced"]


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


def _ascend(score_fn, start: np.ndarray, steps: int, step_size: float, l2: float) -> np.ndarray:
    """Normalised gradient ascent on ``score_fn(images) -> (batch,)``, images kept in [0, 1]."""
    images = tf.Variable(start)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            score = tf.reduce_sum(score_fn(images)) - l2 * tf.reduce_sum(tf.square(images - 0.5))
        grad = tape.gradient(score, images)
        grad /= tf.sqrt(tf.reduce_mean(tf.square(grad), axis=[1, 2, 3], keepdims=True)) + 1e-8
        images.assign(tf.clip_by_value(images + step_size * grad, 0.0, 1.0))
    return images.numpy()


def maximize_filters(model: keras.Model, layer_name: str, filters: Sequence[int] | None = None, *,
                     steps: int = 60, step_size: float = 0.02, l2: float = 0.001, seed: int = 0) -> np.ndarray:  # fmt: skip
    """The input that maximises each filter's mean response in ``layer_name``.

    The ascent follows the filter's *linear* response (before its ReLU): after the ReLU a
    filter that is off everywhere has no gradient and would never switch on. All filters
    are optimised at once, one image each, from uniform noise in [0, 1].

    Returns:
        ``(len(filters), h, w, c)`` images in [0, 1].
    """
    probe = traced(model, [layer_name])
    channels = probe.outputs[0].shape[-1]
    filters = list(range(channels)) if filters is None else list(filters)
    if any(not 0 <= f < channels for f in filters):
        raise ValueError(f"filters must be in 0..{channels - 1} for layer {layer_name!r}, got {filters}")
    start = np.random.default_rng(seed).random((len(filters), *model.input_shape[1:])).astype(np.float32)
    index = tf.constant(filters)
    layer = model.get_layer(layer_name)

    def score(images):
        maps = probe(images, training=False)[0]  # (n, h, w, channels)
        mine = tf.gather(maps, index, axis=3, batch_dims=1)  # image i's map of filter filters[i]: (n, h, w)
        return tf.reduce_mean(mine, axis=[1, 2])

    saved = getattr(layer, "activation", None)
    if saved is not None:
        layer.activation = keras.activations.linear
    try:
        return _ascend(score, start, steps, step_size, l2)
    finally:
        if saved is not None:
            layer.activation = saved


def maximize_class(model: keras.Model, classes: Sequence[int], *, steps: int = 80, step_size: float = 0.05,
                   l2: float = 0.02, seed: int = 0) -> np.ndarray:  # fmt: skip
    """The input that maximises the log-probability of each class; ``(len(classes), h, w, c)``."""
    rng = np.random.default_rng(seed)
    start = (0.5 + 0.05 * rng.standard_normal((len(classes), *model.input_shape[1:]))).astype(np.float32)
    one_hot = tf.one_hot(list(classes), model.output_shape[-1])
    return _ascend(lambda images: tf.reduce_sum(one_hot * tf.math.log(model(images, training=False) + 1e-9), axis=1),
                   start, steps, step_size, l2)  # fmt: skip


def saliency(model: keras.Model, x, classes: Sequence[int]) -> np.ndarray:
    """``|d p(class) / d pixel|``, the largest over channels: ``(batch, h, w)``."""
    images = tf.convert_to_tensor(np.asarray(x, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(images)
        scores = tf.reduce_sum(
            model(images, training=False) * tf.one_hot(list(classes), model.output_shape[-1]), axis=1
        )
    return tf.reduce_max(tf.abs(tape.gradient(scores, images)), axis=-1).numpy()


def grad_cam(model: keras.Model, x, classes: Sequence[int], layer_name: str) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): where in the image the evidence for each class lies.

    The feature maps of ``layer_name`` are weighted by the spatial mean of the class score's
    gradient, summed, passed through a ReLU, upsampled to the input size and scaled to [0, 1].

    Returns:
        ``(batch, h, w)`` heatmaps.
    """
    probe = traced(model, [layer_name])
    images = np.asarray(x, np.float32)
    with tf.GradientTape() as tape:
        maps, probabilities = probe(images, training=False)
        scores = tf.reduce_sum(probabilities * tf.one_hot(list(classes), model.output_shape[-1]), axis=1)
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

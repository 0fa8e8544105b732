"""Transfer learning: re-use the first layers of a trained convnet on a new task.

The recipe of lecture 002: keep the first N layers of a network trained on one
task, strip the rest, put new layers and a new softmax on top, and train on the
new task. Two ways to train:

- **feature extraction**: the kept layers are frozen; only the new layers learn;
- **fine-tuning**: afterwards, the top kept layers are unfrozen too and trained
  at a low learning rate. Batch normalisation stays frozen, so it keeps using the
  statistics it learned on the first task (the ``training=False`` caveat).

Images are ``(batch, 28, 28, 1)`` floats in [0, 1]; labels ``(batch,)`` ints.

The network transferred from (:func:`cnnlab.models.pretrained_digit_base`) is built
and cached in :mod:`cnnlab.models`; the data it is trained on and the ImageNet
weights download are in :mod:`cnnlab.data`. This module holds the recipe itself
and the experiments lesson 06 runs with it.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np

from cnnlab.env import import_tensorflow

import_tensorflow()

import keras  # noqa: E402
from tensorflow.python.framework.config import is_op_determinism_enabled  # noqa: E402  (not in tf.config)

from cnnlab.data import imagenet_weights  # noqa: E402
from cnnlab.models import BLOCK_ENDS  # noqa: E402

__all__ = [
    "METHODS",
    "accuracy",
    "cut",
    "accuracy_vs_kept",
    "feature_extraction",
    "few_labels",
    "fine_tune",
    "fit_steps",
    "learning_curves",
    "mobilenet_v2_features",
    "new_head",
    "transfer_model",
    "three_ways",
    "trainable_count",
    "unfreeze_from",
]


def few_labels(x: np.ndarray, y: np.ndarray, n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled examples drawn with every class as equally represented as ``n`` allows.

    Each class gets ``n // k`` examples; the ``n % k`` left over go to random classes.
    Returns ``(x[idx], y[idx])`` in a shuffled order.
    """
    labels = np.unique(y)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < len(labels):
        raise ValueError(f"n must be an int >= the number of classes ({len(labels)}), got {n!r}")
    rng = np.random.default_rng(seed)
    per_class = np.full(len(labels), n // len(labels))
    per_class[rng.choice(len(labels), n % len(labels), replace=False)] += 1
    chosen = []
    for label, count in zip(labels, per_class, strict=True):
        pool = np.flatnonzero(y == label)
        if count > len(pool):
            raise ValueError(f"n={n} needs {count} examples of class {label}, but only {len(pool)} exist")
        chosen.append(rng.choice(pool, count, replace=False))
    idx = rng.permutation(np.concatenate(chosen))
    return x[idx], y[idx]


def fit_steps(model: keras.Model, x: np.ndarray, y: np.ndarray, *, steps: int, learning_rate: float = 1e-3,
              batch_size: int = 32, seed: int = 0) -> keras.Model:  # fmt: skip
    """Train ``model`` with a fresh Adam for exactly ``steps`` mini-batches, whatever ``len(x)`` is.

    A fixed number of steps makes runs on 20 and on 500 examples cost the same,
    so learning curves compare data, not training time. The batches walk through
    shuffled passes over the data.

    The steps run in a compiled twin of ``model`` (:func:`_compiled_twin`); the trained
    weights and Adam's state are copied back, so ``model`` ends compiled and trained as
    if it had been fitted itself. Returns ``model``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    batch_size = min(batch_size, len(x))
    rng = np.random.default_rng(seed)
    passes = math.ceil(steps * batch_size / len(x))
    order = np.concatenate([rng.permutation(len(x)) for _ in range(passes)])[: steps * batch_size]
    twin = _compiled_twin(model, learning_rate)
    if twin is None:  # a model that cannot be cloned: compile and train it itself, as Keras would
        _compile(model, learning_rate)
        model.fit(x[order], y[order], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
        return model
    twin.set_weights(model.get_weights())
    twin.fit(x[order], y[order], batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    model.set_weights(twin.get_weights())
    _compile(model, learning_rate)  # no tracing: cheap
    model.optimizer.build(model.trainable_variables)
    for mine, trained in zip(model.optimizer.variables, twin.optimizer.variables, strict=True):
        mine.assign(trained)
    return model


def _compile(model: keras.Model, learning_rate: float) -> None:
    """A fresh Adam at ``learning_rate`` and the loss of integer labels: how every model here is trained."""
    model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy")


_TWINS: OrderedDict[str, keras.Model] = OrderedDict()  # compiled models by _architecture, most recent last
_MAX_TWINS = 24


def _architecture(model: keras.Model, learning_rate: float) -> str:
    """What makes two models train identically from the same weights: layers (names aside), trainability, rate.

    And whether op determinism is on: a training graph traced before ``cnnlab.setup`` turned
    it on sums in another order than one traced after (seen as last-bit differences).
    """
    layers = [[type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"}, layer.trainable]
              for layer in model.layers]  # fmt: skip
    deterministic = is_op_determinism_enabled()
    return json.dumps([layers, list(model.input_shape), float(learning_rate), deterministic], sort_keys=True,
                      default=str)  # fmt: skip


def _compiled_twin(model: keras.Model, learning_rate: float) -> keras.Model | None:
    """A compiled model with ``model``'s architecture and a zeroed Adam: a fresh model, minus the retrace.

    Keras traces a new training graph for every model it compiles: about 1.5 s here,
    more than 100 steps of training take. Lesson 06 trains about a hundred models of
    a few architectures, so each architecture is compiled once and reused. Reuse is
    exact: the caller's weights are copied in, and Adam's state (step count, first
    and second moments, all zero-initialised) is set back to zero, so every run
    starts where a freshly compiled model would, and gives the same numbers.

    ``None`` for a model Keras cannot describe or clone (a custom layer without
    ``get_config``, a subclassed model): it is then trained itself.
    """
    try:
        key = _architecture(model, learning_rate)
    except (AttributeError, NotImplementedError, TypeError, ValueError):
        return None
    twin = _TWINS.get(key)
    if twin is None:
        try:
            twin = keras.models.clone_model(model)
        except (NotImplementedError, TypeError, ValueError):
            return None
        for copy, original in zip(twin.layers, model.layers, strict=True):
            copy.trainable = original.trainable
        _compile(twin, learning_rate)
        _TWINS[key] = twin
        if len(_TWINS) > _MAX_TWINS:
            _TWINS.popitem(last=False)
    else:
        _TWINS.move_to_end(key)
        for variable in twin.optimizer.variables:
            if variable.name != "learning_rate":  # Adam's other variables all start at zero
                variable.assign(np.zeros(variable.shape, variable.dtype))
    return twin


def _eager_outputs(model: keras.Model, x: np.ndarray, chunk: int = 512) -> np.ndarray:
    """``model(x, training=False)`` in chunks, as NumPy.

    For the small arrays here a direct call is faster than ``predict``, which traces a
    new graph for every model (and again for a last, shorter batch).
    """
    return np.concatenate(
        [np.asarray(model(x[i : i + chunk], training=False)) for i in range(0, len(x), chunk)]
    )


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``x`` whose most probable class is ``y``."""
    return float(np.mean(_eager_outputs(model, x).argmax(axis=1) == y))


def _fresh_copy(layer: keras.layers.Layer) -> keras.layers.Layer:
    """A new, unbuilt layer with ``layer``'s configuration (and so freshly initialised weights)."""
    return layer.__class__.from_config(layer.get_config())


def _kept_count(base: keras.Sequential, keep: str | None) -> int:
    """How many of ``base``'s layers ``keep`` names: 0 for ``None``, else up to and including ``keep``."""
    names = [layer.name for layer in base.layers[:-1]]
    if keep is not None and keep not in names:
        raise ValueError(
            f"keep must be None or one of the base's hidden layers ({', '.join(names)}); got {keep!r}"
        )
    return names.index(keep) + 1 if keep else 0


def cut(base: keras.Sequential, keep: str) -> keras.Model:
    """The feature extractor: ``base``'s layers up to and including ``keep``, sharing their weights.

    ``(batch, 28, 28, 1)`` -> the output of ``keep``, e.g. ``(batch, 5, 5, 64)`` for ``"pool2"``.
    Use it to compute features once (``cut(base, "pool2").predict(x)``); it must not be trained.
    """
    if keep is None:
        raise ValueError(
            "keep must name one of the base's hidden layers; None keeps nothing to extract features with"
        )
    inputs = keras.Input(base.input_shape[1:])
    y = inputs
    for layer in base.layers[: _kept_count(base, keep)]:
        y = layer(y, training=False)
    return keras.Model(inputs, y, name=f"features_{keep}")


def new_head(base: keras.Sequential, keep: str | None, classes: int) -> keras.Sequential:
    """What goes on top of the kept layers: fresh copies of ``base``'s layers after ``keep``, and a new softmax.

    Input: the output shape of ``keep`` (the image shape for ``keep=None``);
    output ``(batch, classes)`` from a softmax layer named ``new_output``.
    """
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes must be an int >= 2, got {classes!r}")
    kept = _kept_count(base, keep)
    input_shape = base.layers[kept - 1].output.shape[1:] if kept else base.input_shape[1:]
    rest = [_fresh_copy(layer) for layer in base.layers[kept:-1]]
    head = keras.layers.Dense(classes, activation="softmax", name="new_output")
    return keras.Sequential([keras.Input(input_shape), *rest, head], name=f"head_after_{keep}")


def transfer_model(base: keras.Sequential, keep: str | None, classes: int, *, head: keras.Sequential | None = None,
                   freeze: bool = True, name: str | None = None) -> keras.Sequential:  # fmt: skip
    """``base``'s architecture with the layers up to ``keep`` pretrained, and a new head on top.

    Args:
        base: a trained ``keras.Sequential`` (e.g. :func:`pretrained_digit_base`); left unchanged.
        keep: name of the last layer whose trained weights are kept (``"pool2"`` keeps
            two blocks of :func:`digit_base`); ``None`` keeps nothing: training from scratch.
        classes: outputs of the new softmax, which replaces the base's last layer.
        head: the layers to put on top, e.g. a head already trained on features from
            :func:`cut` (its layers are used as they are); default :func:`new_head`.
        freeze: make the kept layers non-trainable (feature extraction).

    Returns:
        A new ``Sequential``: copies of the kept layers carrying the trained weights,
        then the head's layers, ending in the softmax ``new_output``.
    """
    kept = _kept_count(base, keep)
    head = head if head is not None else new_head(base, keep, classes)
    if head.output_shape[-1] != classes:
        raise ValueError(f"head must end in {classes} classes, but it outputs {head.output_shape[-1]}")
    copies = [_fresh_copy(layer) for layer in base.layers[:kept]]
    model = keras.Sequential(
        [keras.Input(base.input_shape[1:]), *copies, *head.layers], name=name or f"transfer_{keep}"
    )
    for original, copy in zip(base.layers[:kept], copies, strict=True):
        copy.set_weights(original.get_weights())
        copy.trainable = not freeze
    return model


def unfreeze_from(model: keras.Model, first: str) -> None:
    """Make ``first`` and every later layer trainable, except batch normalisation.

    Batch norm stays frozen: a frozen ``BatchNormalization`` runs in inference mode
    (Keras 3), normalising with the statistics of the first task instead of
    re-estimating them from a handful of new examples, which would wreck the
    features the later layers were trained on.
    """
    names = [layer.name for layer in model.layers]
    if first not in names:
        raise ValueError(f"first must be one of the model's layers ({', '.join(names)}); got {first!r}")
    for layer in model.layers[names.index(first) :]:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)


def trainable_count(model: keras.Model) -> int:
    """Number of trainable scalars: what the optimiser will update."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def fine_tune(model: keras.Model, x: np.ndarray, y: np.ndarray, *, first: str, steps: int,
              learning_rate: float = 1e-4, seed: int = 0) -> keras.Model:  # fmt: skip
    """Unfreeze from layer ``first`` on (batch norm excepted) and train at a low learning rate.

    ``model`` should already have a trained head (feature extraction first): a
    random head would send large gradients into the pretrained layers.
    """
    unfreeze_from(model, first)
    return fit_steps(model, x, y, steps=steps, learning_rate=learning_rate, seed=seed)


METHODS = ("scratch", "feature extraction", "fine-tuning")


def feature_extraction(base: keras.Sequential, keep: str, x: np.ndarray, y: np.ndarray, *, steps: int,
                       seed: int = 0) -> keras.Sequential:  # fmt: skip
    """Run the frozen layers up to ``keep`` once, then train a new head on the cached features.

    Much cheaper than training through the frozen layers at every step, and the
    same thing: frozen layers give the same features every time. Returns the trained
    head (``keep``'s output shape -> ``(batch, classes)``); put it back on the base
    with ``transfer_model(base, keep, classes, head=head)``.

    ``y`` holds labels ``0 .. classes - 1`` with every class present (as :func:`few_labels`
    guarantees); ``classes`` is ``max(y) + 1``.
    """
    classes = int(np.max(y)) + 1
    keras.utils.set_random_seed(seed)
    features = _eager_outputs(cut(base, keep), x)
    return fit_steps(new_head(base, keep, classes), features, y, steps=steps, seed=seed)


def _from_scratch(base, x, y, classes: int, *, steps: int, seed: int) -> keras.Sequential:
    """``base``'s architecture, seeded random weights, every layer trained on ``(x, y)``."""
    keras.utils.set_random_seed(seed)
    return fit_steps(transfer_model(base, None, classes), x, y, steps=steps, seed=seed)


def _extracted(base, keep: str, x, y, classes: int, *, steps: int, seed: int) -> keras.Sequential:
    """The frozen layers up to ``keep`` under a head trained by :func:`feature_extraction`."""
    return transfer_model(
        base, keep, classes, head=feature_extraction(base, keep, x, y, steps=steps, seed=seed)
    )


def three_ways(base: keras.Sequential, x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
               keep: str = "pool2", first: str = "conv2", steps: int = 100, seed: int = 0) -> dict[str, float]:  # fmt: skip
    """Test accuracy of the three ways to learn a new task from ``(x, y)``, same data, same steps.

    - ``"scratch"``: :func:`digit_base`'s architecture, randomly initialised, all layers trained;
    - ``"feature extraction"``: the layers up to ``keep`` frozen, a new head trained (:func:`feature_extraction`);
    - ``"fine-tuning"``: that model, then unfrozen from ``first`` on and trained ``steps`` more at a low rate.

    Labels are ``0 .. classes - 1``; ``classes`` is taken from ``y_test``.
    """
    classes = int(np.max(y_test)) + 1
    scratch = _from_scratch(base, x, y, classes, steps=steps, seed=seed)
    model = _extracted(base, keep, x, y, classes, steps=steps, seed=seed)
    extracted = accuracy(model, x_test, y_test)
    fine_tune(model, x, y, first=first, steps=steps, seed=seed)
    return {"scratch": accuracy(scratch, x_test, y_test), "feature extraction": extracted,
            "fine-tuning": accuracy(model, x_test, y_test)}  # fmt: skip


def learning_curves(base: keras.Sequential, split, sizes, *, seeds=(0,), **options) -> dict[str, np.ndarray]:
    """:func:`three_ways` for ``n`` labelled examples of ``split.x_train``, for every ``n`` in ``sizes``.

    Args:
        split: a :class:`cnnlab.data.Split` of the target task (labels ``0 .. k - 1``).
        sizes: numbers of labelled examples, each at least ``k``.
        seeds: one run per seed, each with its own sample of labels and initialisation.
        options: passed on to :func:`three_ways` (``keep``, ``first``, ``steps``).

    Returns:
        ``{method: accuracies}`` with accuracies ``(len(seeds), len(sizes))``, one row per seed.
    """
    runs = {method: np.zeros((len(seeds), len(sizes))) for method in METHODS}
    for i, seed in enumerate(seeds):
        for j, n in enumerate(sizes):
            x, y = few_labels(split.x_train, split.y_train, n, seed=seed)
            for method, value in three_ways(
                base, x, y, split.x_test, split.y_test, seed=seed, **options
            ).items():
                runs[method][i, j] = value
    return runs


def accuracy_vs_kept(base: keras.Sequential, split, n: int, keeps=(None, *BLOCK_ENDS), *, steps: int = 100,
                     seed: int = 0) -> np.ndarray:  # fmt: skip
    """Feature-extraction test accuracy with ``n`` labels, keeping each of ``keeps`` (``None``: from scratch).

    Returns ``(len(keeps),)`` accuracies.
    """
    x, y = few_labels(split.x_train, split.y_train, n, seed=seed)
    classes = int(np.max(split.y_test)) + 1
    result = []
    for keep in keeps:
        if keep is None:
            model = _from_scratch(base, x, y, classes, steps=steps, seed=seed)
        else:
            model = _extracted(base, keep, x, y, classes, steps=steps, seed=seed)
        result.append(accuracy(model, split.x_test, split.y_test))
    return np.array(result)


def mobilenet_v2_features(
    images: np.ndarray, *, size: int = 96, weights: str | None = "imagenet"
) -> np.ndarray:
    """MobileNetV2's global-average-pooled features: ``(n, h, w, 1 or 3)`` in [0, 1] -> ``(n, 1280)``.

    Images are resized to ``size`` x ``size``, grey ones repeated to three
    channels, and scaled to [-1, 1] as MobileNetV2 expects.

    Raises:
        WeightsUnavailable: ``weights="imagenet"`` and the weights are not in
            Keras's cache and cannot be downloaded (offline, or ``CNNLAB_OFFLINE=1``).
    """
    import tensorflow as tf  # noqa: PLC0415

    if size not in (96, 128, 160, 192, 224):
        raise ValueError(f"size must be one of 96, 128, 160, 192, 224 (MobileNetV2's weights), got {size!r}")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be (n, h, w, 1) or (n, h, w, 3), got shape {images.shape}")
    if weights == "imagenet":
        weights = str(
            imagenet_weights(f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5")
        )
    net = keras.applications.MobileNetV2(
        input_shape=(size, size, 3), include_top=False, pooling="avg", weights=weights
    )
    x = tf.image.resize(images.astype("float32"), (size, size))
    if x.shape[-1] == 1:
        x = tf.repeat(x, 3, axis=-1)
    return net.predict(x * 2.0 - 1.0, batch_size=64, verbose=0)

"""Model builders that assignments and cached networks need, and the model cache.

Lessons define and train the networks they teach in their own cells; this module
keeps what the assignments and tests need: the keras-io MNIST convnet (lesson 05
trains it; ``cnnlab pretrain`` trains it the same way and caches it for assignment
05), the plain/residual twins of assignment 04, the digit base that assignment 06
transfers from (lesson 06 pretrains its own the same way), and the cache itself.

Shapes are channels-last: images ``(batch, 28, 28, 1)`` for MNIST.
``conv`` arguments take any layer class with ``Conv2D``'s signature
(``keras.layers.Conv2D`` or :class:`cnnlab.layers.LabConv2D`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from cnnlab.env import import_tensorflow

import_tensorflow()

import keras  # noqa: E402

__all__ = [
    "BLOCK_ENDS",
    "digit_base",
    "pretrained_digit_base",
    "deep_net",
    "load_or_train",
    "load_or_train_mnist_convnet",
    "model_cache_dir",
    "mnist_convnet_path",
    "save_atomically",
    "mnist_convnet",
]


# Batch-norm moving averages with Keras's default momentum (0.99) lag far behind in the
# few hundred steps a notebook trains for, and inference then sees stale statistics.
BN_MOMENTUM = 0.9


def mnist_convnet(
    input_shape=(28, 28, 1), classes: int = 10, conv=keras.layers.Conv2D, dropout: float = 0.5
) -> keras.Model:
    """The keras-io MNIST convnet: Conv32 -> Pool -> Conv64 -> Pool -> Flatten -> Dropout -> Dense. 34,826 parameters."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            conv(32, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            conv(64, 3, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dropout(dropout, name="dropout"),
            keras.layers.Dense(classes, activation="softmax", name="output"),
        ],
        name="mnist_convnet",
    )


def deep_net(
    depth: int, *, residual: bool, width: int = 16, input_shape=(14, 14, 1), classes: int = 10
) -> keras.Model:
    """A stem convolution, ``depth`` 3x3 convolutions, global pooling, softmax: plain or residual.

    No batch norm in either twin, so the only difference is the shortcut ``x + F(x)`` around
    each pair of convolutions; both have exactly the same parameters. ``depth`` must be even.
    """
    if depth < 2 or depth % 2:
        raise ValueError(f"depth must be an even number >= 2, got {depth!r}")
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="stem")(inputs)
    for pair in range(depth // 2):
        y = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{2 * pair + 1}")(x)
        y = keras.layers.Conv2D(width, 3, padding="same", name=f"conv{2 * pair + 2}")(y)
        x = keras.layers.ReLU(name=f"relu{pair}")(
            keras.layers.Add(name=f"add{pair}")([x, y]) if residual else y
        )
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"{'residual' if residual else 'plain'}_{depth}")


def model_cache_dir() -> Path:
    """The trained networks later notebooks start from: :func:`cnnlab.paths.models_cache`."""
    from cnnlab.paths import models_cache  # noqa: PLC0415

    return models_cache()


def mnist_convnet_path() -> Path:
    """Where :func:`load_or_train_mnist_convnet` caches the convnet of assignment 05."""
    return model_cache_dir() / "mnist_convnet.keras"


def load_or_train(path: Path, train: Callable[[], keras.Model]) -> keras.Model:
    """The model saved at ``path``, or ``train()``'s model, saved there for next time."""
    path = Path(path)
    if path.is_file():
        return keras.models.load_model(path)
    model = train()
    save_atomically(model, path)
    return model


def load_or_train_mnist_convnet(
    *, epochs: int = 15, seed: int = 0, path: Path | None = None, quiet: bool = False
):
    """The MNIST convnet of notebooks 03 and 05, trained as lesson 05 trains it, for assignment 05.

    Loads ``path`` (default ``~/.cache/cnnlab/models/mnist_convnet.keras``) when it
    exists, else trains :func:`mnist_convnet` deterministically on
    ``load_mnist(sample=True)`` (the same 4,000 digits on every machine) and saves it there.
    """
    from cnnlab.data import load_mnist  # noqa: PLC0415

    def train() -> keras.Model:
        data = load_mnist(quiet=quiet, sample=True)
        keras.utils.set_random_seed(seed)
        model = mnist_convnet()
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(data.x_train, data.y_train, batch_size=32, epochs=epochs, verbose=0)
        return model

    return load_or_train(path or mnist_convnet_path(), train)


def save_atomically(model: keras.Model, path: Path) -> bool:
    """Save to ``path`` through a temporary file, so a reader never sees half a file.

    Returns False (and saves nothing) where the folder is read-only, e.g. inside the grader's sandbox.
    """
    import os  # noqa: PLC0415

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.stem}.{os.getpid()}.keras")
        model.save(staged)
    except OSError:
        return False
    staged.replace(path)
    return True


# The layers that end each block of :func:`digit_base`: keeping N blocks means
# keeping every layer up to and including ``BLOCK_ENDS[N - 1]``.
BLOCK_ENDS = ("pool1", "pool2", "dense")


def digit_base(input_shape=(28, 28, 1), classes: int = 5, name: str = "digit_base") -> keras.Sequential:
    """The convnet pretrained for transfer: three blocks and a softmax.

    ``conv1 bn1 relu1 pool1 | conv2 bn2 relu2 pool2 | flatten dense | output``:
    ``(batch, 28, 28, 1)`` -> 13x13x32 -> 5x5x64 -> 128 -> ``(batch, classes)``.
    """
    layers = [keras.Input(input_shape)]
    for block, filters in ((1, 32), (2, 64)):
        layers += [
            keras.layers.Conv2D(filters, 3, use_bias=False, name=f"conv{block}"),
            keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"bn{block}"),
            keras.layers.ReLU(name=f"relu{block}"),
            keras.layers.MaxPooling2D(2, name=f"pool{block}"),
        ]
    layers += [
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(128, activation="relu", name="dense"),
        keras.layers.Dense(classes, activation="softmax", name="output"),
    ]
    return keras.Sequential(layers, name=name)


def pretrained_digit_base(*, classes=(0, 1, 2, 3, 4), steps: int = 1200, seed: int = 0,
                          path: Path | None = None, quiet: bool = False) -> keras.Sequential:  # fmt: skip
    """:func:`digit_base` trained on the MNIST digits ``classes``, cached on disk.

    Loads ``path`` (default ``~/.cache/cnnlab/models/digit_base_<classes>.keras``)
    when it exists, else trains deterministically on those digits of
    ``load_mnist(sample=True)`` and three shifted copies of them (about 20 seconds
    on 2 cores) and saves it there.
    """
    from cnnlab.data import load_mnist, select_classes, shifted_copies  # noqa: PLC0415
    from cnnlab.transfer import fit_steps  # noqa: PLC0415  (transfer imports this module)

    classes = list(classes)

    def train() -> keras.Sequential:
        data = load_mnist(quiet=quiet, sample=True)
        x, y = select_classes(data.x_train, data.y_train, classes)
        x, y = shifted_copies(x, 3, seed=seed), np.tile(y, 4)
        keras.utils.set_random_seed(seed)
        return fit_steps(digit_base(classes=len(classes)), x, y, steps=steps, seed=seed)

    tag = "".join(str(c) for c in classes)
    return load_or_train(path or model_cache_dir() / f"digit_base_{tag}_{steps}_{seed}.keras", train)

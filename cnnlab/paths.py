"""Where every cache lives: one module, standard library and ``platformdirs`` only (no TensorFlow).

==========================  ======================================  ==============================
cache                       default (Linux)                         set it with
==========================  ======================================  ==============================
the root of cnnlab's own    ``$XDG_CACHE_HOME/cnnlab``              ``CNNLAB_CACHE``
                            (``~/.cache/cnnlab``; macOS:
                            ``~/Library/Caches/cnnlab``)
the compiled op             ``<root>/ops``                          ``CNNLAB_OPS_CACHE``
the trained networks        ``<root>/models``                       ``CNNLAB_MODELS_CACHE``
Keras's data sets           ``~/.keras`` (``/tmp/.keras`` when      ``KERAS_HOME``
                            that is not writable), as Keras has it
==========================  ======================================  ==============================

The grader reads these to bind them read-only into its sandbox and passes the
same variables to each kernel, so a kernel finds what the grader's machine built.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "MODELS_ENV", "OPS_ENV", "cache_root", "keras_cache_file", "keras_home", "models_cache",
           "ops_cache"]  # fmt: skip

CACHE_ENV, OPS_ENV, MODELS_ENV = "CNNLAB_CACHE", "CNNLAB_OPS_CACHE", "CNNLAB_MODELS_CACHE"


def _explicit(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else None


def cache_root() -> Path:
    """``$CNNLAB_CACHE``, else the platform's user cache folder for cnnlab."""
    if (explicit := _explicit(CACHE_ENV)) is not None:
        return explicit
    if os.environ.get("XDG_CACHE_HOME") or os.name == "posix" and not _is_macos():
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "cnnlab"
    import platformdirs  # noqa: PLC0415 -- macOS and Windows conventions

    return Path(platformdirs.user_cache_dir("cnnlab", appauthor=False))


def _is_macos() -> bool:
    return os.uname().sysname == "Darwin" if hasattr(os, "uname") else False


def ops_cache() -> Path:
    """The compiled custom op: ``$CNNLAB_OPS_CACHE``, else ``<cache_root>/ops``."""
    return _explicit(OPS_ENV) or cache_root() / "ops"


def models_cache() -> Path:
    """The trained networks later notebooks start from: ``$CNNLAB_MODELS_CACHE``, else ``<cache_root>/models``."""
    return _explicit(MODELS_ENV) or cache_root() / "models"


def keras_home() -> Path:
    """Keras's own folder: ``$KERAS_HOME``, else ``~/.keras``."""
    return Path(os.path.expanduser(os.environ.get("KERAS_HOME", os.path.join("~", ".keras"))))


def keras_cache_file(subdir: str, filename: str) -> Path:
    """Where ``keras.utils.get_file(filename, cache_subdir=subdir)`` keeps (or would keep) a file.

    Mirrors ``get_file``: ``$KERAS_HOME`` or ``~/.keras``, falling back to
    ``/tmp/.keras`` when that is not writable.
    """
    candidates = [keras_home() / subdir / filename, Path("/tmp/.keras") / subdir / filename]
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]

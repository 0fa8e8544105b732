"""cnnlab: a coursework suite on convolutional neural networks.

Importing ``cnnlab`` is cheap and silent: it imports neither TensorFlow nor
Keras, prints nothing and downloads nothing. It only sets two environment
variables, when they are unset, so that a TensorFlow imported later is quiet
and Keras uses the TensorFlow backend:

* ``TF_CPP_MIN_LOG_LEVEL=3`` -- TensorFlow's C++ log lines stay out of notebooks;
* ``KERAS_BACKEND=tensorflow``.

A notebook's first cell calls :func:`cnnlab.setup`.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from cnnlab.env import import_tensorflow, setup  # noqa: E402

__version__ = "0.1.0"
__all__ = ["__version__", "import_tensorflow", "setup"]

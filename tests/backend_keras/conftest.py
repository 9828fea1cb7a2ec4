"""The Keras tests run Keras 3 on its torch backend."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras

# These tests measure Keras's torch backend (what its train step hands the optimizer, the tensors'
# addresses); a session that runs keras on another backend leaves them out.
collect_ignore_glob = [] if keras.backend.backend() == "torch" else ["test_*.py"]

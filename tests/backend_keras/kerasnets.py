"""Tiny Keras 3 models and a seeded fit, shared by the Keras adapter's tests (torch backend, CPU)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from typing import Any

import keras
import numpy as np

__all__ = ["BACKBONE", "HEAD", "STATISTICS", "build_net", "data", "fit", "moved", "values"]

BACKBONE = [
    "net/backbone/dense/kernel",
    "net/backbone/dense/bias",
    "net/backbone/bn/gamma",
    "net/backbone/bn/beta",
]
STATISTICS = ["net/backbone/bn/moving_mean", "net/backbone/bn/moving_variance"]
HEAD = ["net/head/kernel", "net/head/bias"]


def build_net(seed: int = 0) -> tuple[Any, Any, Any]:
    """``net``: a backbone (Dense 4->8, BatchNormalization, ReLU) and a head (Dense 8->2); 90 weights."""
    keras.utils.set_random_seed(seed)
    backbone = keras.Sequential(
        [keras.layers.Dense(8, name="dense"), keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU()],
        name="backbone",
    )
    head = keras.layers.Dense(2, name="head")
    model = keras.Sequential([keras.Input((4,)), backbone, head], name="net")
    return model, backbone, head


def data() -> tuple[np.ndarray, np.ndarray]:
    """32 samples: 4 steps per epoch at batch size 8."""
    rng = np.random.default_rng(1)
    return rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")


def fit(model: Any, epochs: int = 1, callbacks: list[Any] | None = None, seed: int = 0) -> None:
    x, y = data()
    keras.utils.set_random_seed(seed)  # the same shuffles for every run
    model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, callbacks=callbacks)


def values(model: Any) -> dict[str, bytes]:
    """Each weight's raw bytes, read through torch (``Variable.numpy()`` warns under NumPy 2)."""
    return {v.path: v.value.detach().numpy().tobytes() for v in model.weights}


def moved(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    return sorted(name for name in before if before[name] != after[name])

"""The walkthrough's model in NumPy, with a real forward and backward pass.

The four parameters are the walkthrough's own dicts, with its shapes and values.
The backbone (a 3x3 convolution, 64 channels) turns 8x8 RGB images into 4
features (ReLU, global average pooling, channels averaged in groups of 16); the
head (``x @ W + b``, W of shape [4, 2]) classifies them with softmax cross-entropy.
Like MindSpore's ``value_and_grad`` over ``opt.parameters``, parameters that do
not require grad receive a zero gradient.
"""

from __future__ import annotations

from typing import Any

from paramgate.demo import DemoKit
from paramgate_numpy.optim import Momentum

__all__ = ["KIT", "build_model", "train_step"]

LEARNING_RATE = 0.01
MOMENTUM = 0.9


def build_model() -> list[dict[str, Any]]:
    """The walkthrough's ``all_model_params``, seeded so every run prints the same."""
    import numpy as np

    rng = np.random.default_rng(0)
    backbone_conv1_w = {
        "name": "backbone.conv1.weight",
        "data": rng.random((64, 3, 3, 3)),
        "requires_grad": False,
    }
    backbone_conv1_b = {"name": "backbone.conv1.bias", "data": np.zeros(64), "requires_grad": False}
    head_dense_w = {
        "name": "head.dense.weight",
        "data": np.array([[10, 2], [10, 1], [-8, 9], [1, 10]], dtype=np.float32),
        "requires_grad": True,
    }
    head_dense_b = {"name": "head.dense.bias", "data": np.array([0.5, 0.5], dtype=np.float32), "requires_grad": True}
    return [backbone_conv1_w, backbone_conv1_b, head_dense_w, head_dense_b]


def _batch() -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(1)
    images = rng.random((8, 3, 8, 8)) * 0.1
    labels = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    return images, labels


def _loss_and_grads(model: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    p = {q["name"]: q["data"] for q in model}
    images, labels = _batch()
    windows = sliding_window_view(images, (3, 3), axis=(2, 3))  # N, C, H', W', 3, 3
    conv = np.einsum("nchwij,ocij->nohw", windows, p["backbone.conv1.weight"])
    conv += p["backbone.conv1.bias"][None, :, None, None]
    pooled = np.maximum(conv, 0.0).mean(axis=(2, 3))  # N, 64
    feats = pooled.reshape(len(images), 4, 16).mean(axis=2)  # N, 4
    logits = feats @ p["head.dense.weight"] + p["head.dense.bias"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    n = len(labels)
    loss = float(-np.log(probs[np.arange(n), labels] + 1e-12).mean())
    dlogits = probs.copy()
    dlogits[np.arange(n), labels] -= 1.0
    dlogits /= n
    grads = {"head.dense.weight": feats.T @ dlogits, "head.dense.bias": dlogits.sum(axis=0)}
    return loss, grads


def train_step(model: object, optimizer: object) -> float:
    """One forward, backward and ``opt(grads)`` step; frozen parameters get zero gradients."""
    import numpy as np

    assert isinstance(model, list) and isinstance(optimizer, Momentum)
    loss, grads = _loss_and_grads(model)
    optimizer(
        [
            grads[p["name"]] if p["requires_grad"] and p["name"] in grads else np.zeros_like(p["data"])
            for p in optimizer.parameters
        ]
    )
    return loss


def _make_optimizer(params: list[object], weight_decay: float) -> object:
    return Momentum(params, learning_rate=LEARNING_RATE, momentum=MOMENTUM, weight_decay=weight_decay)


KIT = DemoKit(
    framework="numpy",
    build_model=build_model,
    all_parameters=lambda model: list(model),  # type: ignore[call-overload]
    make_optimizer=_make_optimizer,
    optimizer_code=(
        f"opt = Momentum({{params}}, learning_rate={LEARNING_RATE}, momentum={MOMENTUM}, weight_decay={{weight_decay}})"
    ),
    train_step=train_step,
)

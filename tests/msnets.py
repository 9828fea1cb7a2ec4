"""Small real MindSpore networks and training steps for the MindSpore backend's tests."""

from __future__ import annotations

from typing import Any

import mindspore as ms
import numpy as np
from mindspore import nn


class Net(nn.Cell):
    """A conv + BatchNorm backbone and a dense head: the fine-tuning shape the seed describes."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.SequentialCell(
            [nn.Conv2d(3, 4, 3, has_bias=True, weight_init="ones", pad_mode="valid"), nn.BatchNorm2d(4), nn.ReLU()]
        )
        self.head = nn.Dense(4, 2, weight_init="ones")

    def construct(self, x: Any) -> Any:
        return self.head(self.backbone(x).mean(axis=(2, 3)))


def frozen_net() -> Net:
    """The seed's set-up: every backbone parameter has requires_grad=False."""
    net = Net()
    for p in net.backbone.get_parameters():
        p.requires_grad = False
    return net


def batch(seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    images = ms.Tensor(rng.random((4, 3, 8, 8)).astype(np.float32))
    labels = ms.Tensor(np.array([0, 1, 0, 1], np.int32))
    return images, labels


LOSS = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")


def train(net: Any, opt: Any, steps: int = 3, *, backbone_eval: bool = False) -> list[float]:
    """Real steps the MindSpore 2.x way: ``value_and_grad`` over the optimizer's parameters, then ``opt(grads)``.

    ``backbone_eval`` keeps the backbone's BatchNorm in eval mode (the way to freeze its statistics).
    """

    def forward(images: Any, labels: Any) -> Any:
        return LOSS(net(images), labels)

    grad_fn = ms.value_and_grad(forward, None, opt.parameters)
    net.set_train(True)
    if backbone_eval:
        net.backbone.set_train(False)
    losses = []
    for i in range(steps):
        loss, grads = grad_fn(*batch(i))
        opt(grads)
        losses.append(float(loss.asnumpy()))
    return losses


def train_cell(net: Any, opt: Any, steps: int = 3, *, backbone_eval: bool = False) -> None:
    """Real steps through ``TrainOneStepCell``: the path graph mode compiles."""
    step = nn.TrainOneStepCell(nn.WithLossCell(net, LOSS), opt)
    step.set_train(True)
    if backbone_eval:
        net.backbone.set_train(False)
    for i in range(steps):
        step(*batch(i))


def dataset() -> Any:
    rng = np.random.default_rng(0)
    data = {"x": rng.random((8, 3, 8, 8)).astype(np.float32), "y": np.array([0, 1] * 4, np.int32)}
    return ms.dataset.NumpySlicesDataset(data, shuffle=False).batch(4)


def raw(p: Any) -> bytes:
    """A parameter's bytes, for tests that compare before and after."""
    return bytes(p.asnumpy().reshape(-1).view(np.uint8))

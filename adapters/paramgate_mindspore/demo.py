"""The walkthrough's model as MindSpore cells, trained with ``nn.Momentum``.

The walkthrough is MindSpore's own: ``Momentum(filter(lambda x: x.requires_grad,
head_net.get_parameters()), ...)``.  The same four parameters as the NumPy demo,
with the seed's shapes and values: ``backbone.conv1`` (a 3x3 convolution to 64
channels, frozen) and ``head.dense`` (``x @ W + b`` with W of shape [4, 2],
trainable).  The forward pass is the NumPy demo's: ReLU, global average pooling,
channels averaged in groups of 16, softmax cross-entropy.  ``--buggy`` is the
seed's warning come true: every parameter goes to ``Momentum(weight_decay=0.01)``,
and MindSpore decays the frozen backbone even though its gradient is zero.
"""

from __future__ import annotations

from typing import Any

from paramgate.demo import DemoKit

__all__ = ["build_model", "kit", "train_step"]

LEARNING_RATE = 0.01
MOMENTUM = 0.9


def build_model() -> Any:
    """The walkthrough's backbone and head as an ``nn.Cell`` (no MindSpore RNG consumed)."""
    import mindspore as ms
    import numpy as np
    from mindspore import nn

    class Dense(nn.Cell):  # type: ignore[misc]
        """``x @ weight + bias`` with weight [in, out], the layout of the walkthrough's head."""

        def __init__(self, weight: Any, bias: Any) -> None:
            super().__init__()
            self.weight = ms.Parameter(ms.Tensor(weight, ms.float32), name="weight")
            self.bias = ms.Parameter(ms.Tensor(bias, ms.float32), name="bias")

        def construct(self, x: Any) -> Any:
            return ms.ops.matmul(x, self.weight) + self.bias

    class Backbone(nn.Cell):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(0)  # the NumPy demo's values
            self.conv1 = nn.Conv2d(
                3,
                64,
                3,
                pad_mode="valid",
                has_bias=True,
                weight_init=ms.Tensor(rng.random((64, 3, 3, 3)), ms.float32),
                bias_init=ms.Tensor(np.zeros(64), ms.float32),
            )

    class Head(nn.Cell):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.dense = Dense(np.array([[10, 2], [10, 1], [-8, 9], [1, 10]]), np.array([0.5, 0.5]))

    class SeedNet(nn.Cell):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.backbone = Backbone()
            self.head = Head()
            for p in self.backbone.get_parameters():
                p.requires_grad = False

        def construct(self, images: Any) -> Any:
            conv = ms.ops.relu(self.backbone.conv1(images))
            pooled = conv.mean(axis=(2, 3))  # N, 64
            feats = pooled.reshape(pooled.shape[0], 4, 16).mean(axis=2)  # N, 4
            return self.head.dense(feats)

    return SeedNet()


def _batch() -> tuple[Any, Any]:
    import mindspore as ms
    import numpy as np

    rng = np.random.default_rng(1)  # the NumPy demo's batch
    images = ms.Tensor((rng.random((8, 3, 8, 8)) * 0.1).astype(np.float32))
    labels = ms.Tensor(np.array([0, 1, 0, 1, 1, 0, 1, 0], np.int32))
    return images, labels


def train_step(model: Any, optimizer: Any) -> float:
    """One step the MindSpore 2.x way: ``value_and_grad`` over the optimizer's parameters, then ``opt(grads)``."""
    import mindspore as ms

    loss_fn = ms.nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")

    def forward(images: Any, labels: Any) -> Any:
        return loss_fn(model(images), labels)

    grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)
    loss, grads = grad_fn(*_batch())
    optimizer(grads)
    return float(loss.asnumpy())


def _make_optimizer(params: list[object], weight_decay: float) -> object:
    from mindspore import nn

    return nn.Momentum(params, learning_rate=LEARNING_RATE, momentum=MOMENTUM, weight_decay=weight_decay)


def kit() -> DemoKit:
    """The demo's MindSpore pieces."""
    return DemoKit(
        framework="mindspore",
        build_model=build_model,
        all_parameters=lambda model: list(model.get_parameters()),  # type: ignore[attr-defined]
        make_optimizer=_make_optimizer,
        optimizer_code=(
            f"opt = nn.Momentum({{params}}, learning_rate={LEARNING_RATE}, momentum={MOMENTUM}, "
            "weight_decay={weight_decay})"
        ),
        train_step=train_step,
    )

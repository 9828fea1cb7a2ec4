"""The walkthrough's model as torch modules, trained with ``torch.optim.SGD``.

The same four parameters as the NumPy demo, with the seed's shapes and values:
``backbone.conv1`` (a 3x3 convolution to 64 channels, frozen) and ``head.dense``
(``x @ W + b`` with W of shape [4, 2], trainable).  The forward pass is the NumPy
demo's: ReLU, global average pooling, channels averaged in groups of 16, softmax
cross-entropy.  ``--buggy`` adds torch's own way to get freezing wrong: the
backbone was frozen after a backward pass, so it still holds gradients, and the
training loop zeroes gradients with ``set_to_none=False``.
"""

from __future__ import annotations

from typing import Any

from paramgate.demo import DemoKit

__all__ = ["build_model", "kit", "train_step"]

LEARNING_RATE = 0.01
MOMENTUM = 0.9


def build_model() -> Any:
    """The walkthrough's backbone and head as an ``nn.Module`` (no torch RNG consumed)."""
    import numpy as np
    import torch
    from torch import nn

    class Dense(nn.Module):
        """``x @ weight + bias`` with weight [in, out], the layout of the walkthrough's head."""

        def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
            super().__init__()
            self.weight = nn.Parameter(weight)
            self.bias = nn.Parameter(bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.weight + self.bias

    class Backbone(nn.Module):
        def __init__(self, conv1: nn.Conv2d) -> None:
            super().__init__()
            self.conv1 = conv1

    class Head(nn.Module):
        def __init__(self, dense: Dense) -> None:
            super().__init__()
            self.dense = dense

    class SeedNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = np.random.default_rng(0)  # the NumPy demo's values
            conv1: nn.Conv2d = nn.utils.skip_init(nn.Conv2d, 3, 64, 3)  # type: ignore[no-untyped-call]
            with torch.no_grad():
                conv1.weight.copy_(torch.from_numpy(rng.random((64, 3, 3, 3))))
                conv1.bias.zero_()  # type: ignore[union-attr]
            self.backbone = Backbone(conv1)
            self.backbone.requires_grad_(False)
            self.head = Head(
                Dense(
                    torch.tensor([[10, 2], [10, 1], [-8, 9], [1, 10]], dtype=torch.float32),
                    torch.tensor([0.5, 0.5]),
                )
            )

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            conv = torch.relu(self.backbone.conv1(images))
            pooled = conv.mean(dim=(2, 3))  # N, 64
            feats = pooled.reshape(len(images), 4, 16).mean(dim=2)  # N, 4
            out: torch.Tensor = self.head.dense(feats)
            return out

    return SeedNet()


def _loss(model: Any) -> Any:
    import numpy as np
    import torch

    rng = np.random.default_rng(1)  # the NumPy demo's batch
    images = torch.from_numpy(rng.random((8, 3, 8, 8)) * 0.1).float()
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0])
    return torch.nn.functional.cross_entropy(model(images), labels)


def train_step(model: object, optimizer: object) -> float:
    """One ``zero_grad(set_to_none=False)``, forward, backward and ``step()``."""
    import torch

    assert isinstance(optimizer, torch.optim.Optimizer)
    optimizer.zero_grad(set_to_none=False)
    loss = _loss(model)
    loss.backward()
    optimizer.step()
    return float(loss.item())


def freeze_after_backward(model: Any) -> None:
    """The backbone trained one backward pass before it was frozen: it keeps those gradients."""
    model.backbone.requires_grad_(True)
    _loss(model).backward()
    model.backbone.requires_grad_(False)


def _make_optimizer(params: list[object], weight_decay: float) -> object:
    import torch

    return torch.optim.SGD(params, lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=weight_decay)  # type: ignore[arg-type]


def kit() -> DemoKit:
    """The demo's torch pieces."""
    return DemoKit(
        framework="torch",
        build_model=build_model,
        all_parameters=lambda model: list(model.parameters()),  # type: ignore[attr-defined]
        make_optimizer=_make_optimizer,
        optimizer_code=(
            f"opt = torch.optim.SGD({{params}}, lr={LEARNING_RATE}, momentum={MOMENTUM}, weight_decay={{weight_decay}})"
        ),
        train_step=train_step,
        buggy_setup=freeze_after_backward,
    )

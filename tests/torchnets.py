"""Real torch models and training loops shared by the torch tests (imports torch)."""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    """A small vision fine-tuning setup: conv + BatchNorm backbone, linear head."""

    def __init__(self, affine: bool = True) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, affine=affine), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def net(seed: int = 0, **kwargs: bool) -> Net:
    torch.manual_seed(seed)
    return Net(**kwargs)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 8, 8, generator=g), torch.tensor([0, 1, 1, 0])


def loss(model: nn.Module) -> torch.Tensor:
    images, labels = batch()
    return nn.functional.cross_entropy(model(images), labels)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3, set_to_none: bool = True) -> None:
    """forward, backward, step, zero_grad: the loop most tutorials write."""
    for _ in range(steps):
        loss(model).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=set_to_none)


def raw(t: torch.Tensor) -> bytes:
    """A tensor's bytes, for tests that compare bits independently of paramgate."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def flip_bit(t: torch.Tensor, flat_byte: int, bit: int) -> None:
    """Flip one bit of a contiguous tensor in place, through a byte view of its memory."""
    with torch.no_grad():
        view = t.detach().view(-1).view(torch.uint8)
        view[flat_byte] ^= 1 << bit

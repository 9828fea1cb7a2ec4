"""Entry point of the PyTorch adapter (``paramgate`` group, name ``torch``)."""

from __future__ import annotations

from paramgate import ParamGate, hookimpl
from paramgate.demo import DemoKit

__all__ = ["paramgate_adapter", "paramgate_demo_kit"]


@hookimpl
def paramgate_adapter() -> ParamGate:
    from paramgate_torch.adapter import TorchAdapter

    return TorchAdapter()


@hookimpl
def paramgate_demo_kit(framework: str) -> DemoKit | None:
    if framework != "torch":
        return None
    from paramgate_torch import demo

    return demo.kit()

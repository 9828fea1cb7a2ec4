"""Entry point of the PyTorch adapter (``paramgate`` group, name ``torch``)."""

from __future__ import annotations

import importlib.util

from paramgate import FactoryError, ParamGate, hookimpl
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
    if importlib.util.find_spec("torch") is None:
        raise FactoryError('--framework torch: torch is not installed; install it with pip install "paramgate[torch]"')
    from paramgate_torch import demo

    return demo.kit()

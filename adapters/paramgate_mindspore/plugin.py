"""Entry point of the MindSpore adapter (``paramgate`` group, name ``mindspore``)."""

from __future__ import annotations

import importlib.util

from paramgate import FactoryError, ParamGate, hookimpl
from paramgate.demo import DemoKit

__all__ = ["paramgate_adapter", "paramgate_demo_kit"]


@hookimpl
def paramgate_adapter() -> ParamGate:
    from paramgate_mindspore.adapter import MindSporeAdapter

    return MindSporeAdapter()


@hookimpl
def paramgate_demo_kit(framework: str) -> DemoKit | None:
    if framework != "mindspore":
        return None
    if importlib.util.find_spec("mindspore") is None:
        raise FactoryError(
            '--framework mindspore: mindspore is not installed; install it with pip install "paramgate[mindspore]" '
            '"numpy<2" (MindSpore 2.x runs on NumPy 1.x only)'
        )
    from paramgate_mindspore import demo

    return demo.kit()

"""Entry point of the NumPy adapter (``paramgate`` group, name ``numpy``)."""

from __future__ import annotations

from paramgate import ParamGate, hookimpl
from paramgate.demo import DemoKit

__all__ = ["paramgate_adapter", "paramgate_demo_kit"]


@hookimpl
def paramgate_adapter() -> ParamGate:
    from paramgate_numpy.adapter import NumpyAdapter

    return NumpyAdapter()


@hookimpl
def paramgate_demo_kit(framework: str) -> DemoKit | None:
    if framework != "numpy":
        return None
    from paramgate_numpy import demo

    return demo.KIT

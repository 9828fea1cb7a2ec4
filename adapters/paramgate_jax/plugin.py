"""Entry point of the JAX adapter (``paramgate`` group, name ``jax``)."""

from __future__ import annotations

import importlib.util

from paramgate import FactoryError, ParamGate, hookimpl
from paramgate.demo import DemoKit

__all__ = ["paramgate_adapter", "paramgate_demo_kit"]


@hookimpl
def paramgate_adapter() -> ParamGate:
    from paramgate_jax.adapter import JaxAdapter

    return JaxAdapter()


@hookimpl
def paramgate_demo_kit(framework: str) -> DemoKit | None:
    if framework != "jax":
        return None
    missing = [name for name in ("jax", "optax", "flax") if importlib.util.find_spec(name) is None]
    if missing:
        raise FactoryError(
            f"--framework jax: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; "
            'install them with pip install "paramgate[jax]"'
        )
    from paramgate_jax import demo

    return demo.kit()

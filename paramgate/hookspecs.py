"""The hooks a paramgate plugin can implement.

A plugin is a module (or object) registered under the ``paramgate`` entry-point
group.  Builtin adapters register exactly like third-party ones::

    [project.entry-points.paramgate]
    mybackend = "paramgate_mybackend.plugin"

and implement hooks with ``from paramgate import hookimpl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from paramgate.demo import DemoKit
    from paramgate.protocol import ParamGate

__all__ = ["hookimpl", "hookspec", "paramgate_adapter", "paramgate_demo_kit"]

hookspec = pluggy.HookspecMarker("paramgate")
hookimpl = pluggy.HookimplMarker("paramgate")


@hookspec
def paramgate_adapter() -> ParamGate | None:
    """Return the adapter this plugin provides, or None.

    Called once per plugin manager; every result is kept.  To pick an adapter for
    a model the core asks each, in hook-call order (last registered first,
    ``tryfirst`` before the rest), whether it ``owns_model``; the first that says
    yes wins.  So a third-party adapter overrides a builtin one for the models it
    claims by registering with ``@hookimpl(tryfirst=True)``.

    :return: an object satisfying :class:`paramgate.ParamGate`.
    """


@hookspec(firstresult=True)
def paramgate_demo_kit(framework: str) -> DemoKit | None:
    """Return the pieces ``paramgate demo --framework FRAMEWORK`` needs, or None.

    Stops at first non-None result.

    :param framework: the name given on the command line ("numpy", "torch"...).
    :return: a :class:`paramgate.demo.DemoKit` building the seed's model in that
        framework, or None when this plugin does not serve ``framework``.
    """

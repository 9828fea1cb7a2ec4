"""The one exception hierarchy of paramgate.

Every error the gate raises on purpose derives from :class:`ParamGateError`, so a
training script can catch the gate's complaints without catching its own bugs.
Messages name the parameter or argument at fault and say what to do about it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paramgate.report import AuditReport, InvarianceReport

__all__ = [
    "AdapterError",
    "AuditFailed",
    "DistributedError",
    "EmptyModelError",
    "FactoryError",
    "FrozenParameterChanged",
    "GuardStateError",
    "InvalidArgumentError",
    "InvalidParameterError",
    "OneShotIteratorError",
    "ParamGateError",
    "PluginLoadError",
    "SnapshotMismatchError",
    "UnsupportedModelError",
    "UnsupportedOptimizerError",
]


class ParamGateError(Exception):
    """Root of every error paramgate raises on purpose."""


class UnsupportedModelError(ParamGateError, TypeError):
    """No installed adapter recognises the object passed as a model."""


class EmptyModelError(ParamGateError, ValueError):
    """The model has no parameters at all, so there is nothing to gate."""


class UnsupportedOptimizerError(ParamGateError, TypeError):
    """The adapter of the model cannot read the object passed as an optimizer."""


class OneShotIteratorError(ParamGateError, TypeError):
    """A one-shot iterator was passed where the gate would have to consume it.

    Reading a ``filter(...)`` object or a generator empties it, and an optimizer
    built from it afterwards silently gets nothing.  The gate refuses to do that
    to your iterator; pass a list (``paramgate.trainable(model)`` returns one).
    """


class InvalidParameterError(ParamGateError, ValueError):
    """A parameter of the model is malformed (no name, no data, duplicate name...)."""


class InvalidArgumentError(ParamGateError, ValueError):
    """An argument of a paramgate call is out of range (``every=0``, ``threads=-1``...)."""


class GuardStateError(ParamGateError, RuntimeError):
    """A guard was used out of order: entered twice, or stepped outside its ``with`` block."""


class AdapterError(ParamGateError):
    """An adapter plugin raised while translating a model or an optimizer."""


class PluginLoadError(ParamGateError):
    """An adapter plugin's entry point could not be imported or registered."""


class SnapshotMismatchError(ParamGateError, ValueError):
    """A snapshot was verified against a model of another framework."""


class DistributedError(ParamGateError):
    """In a distributed run, a rank failed or went silent while the ranks compared their verdicts.

    The message names the rank and, when it failed rather than went silent, its
    error.  Raised on every rank that is still alive, so that none waits forever.
    """


class FactoryError(ParamGateError):
    """``paramgate audit MODULE:FACTORY`` could not import or call the factory."""


class FrozenParameterChanged(ParamGateError, AssertionError):
    """A parameter that was frozen when the snapshot was taken changed its bits.

    It is also an :class:`AssertionError` so that test runners show it as a failed
    check.  :attr:`report` holds the full :class:`~paramgate.InvarianceReport`.
    """

    def __init__(self, report: InvarianceReport) -> None:
        self.report = report
        errors = [f for f in report.findings if f.severity == "error"]
        lines = [f"{len(errors)} frozen parameter(s) changed while they were meant to stay frozen:"]
        lines += [f"  {f.code} {f.name}: {f.message}" for f in errors]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[type[FrozenParameterChanged], tuple[InvarianceReport]]:
        return (type(self), (self.report,))


class AuditFailed(ParamGateError):
    """An audit that a callback or fixture runs before training found errors.

    :attr:`report` holds the full :class:`~paramgate.AuditReport`; the message
    lists each error finding with what to do.
    """

    def __init__(self, report: AuditReport) -> None:
        self.report = report
        errors = [f for f in report.findings if f.severity == "error"]
        lines = [f"the audit before training found {len(errors)} error(s):"]
        lines += [f"  {f.code} {f.name or ''}: {f.message}" for f in errors]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[type[AuditFailed], tuple[AuditReport]]:
        return (type(self), (self.report,))

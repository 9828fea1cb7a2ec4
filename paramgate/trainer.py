"""The part of every trainer callback that knows no trainer: audit at the start, check, verify, raise or log.

A framework's callback (MindSpore's ``Model.train``, Keras's ``fit``, Lightning,
Hugging Face ``Trainer``) subclasses :class:`TrainerGate` and its trainer's own
callback class, and calls :meth:`TrainerGate._begin`, :meth:`TrainerGate._step`,
:meth:`TrainerGate._epoch_end` and :meth:`TrainerGate._release` from the
trainer's hooks.  Everything here goes through the public calls (``audit``,
``snapshot``, ``Snapshot.check`` / ``verify``), so a callback behaves exactly
like the same calls written by hand.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Literal

from paramgate.api import audit, snapshot
from paramgate.errors import AuditFailed, FrozenParameterChanged, InvalidArgumentError, ParamGateError
from paramgate.plugins import ParamGatePluginManager
from paramgate.report import AuditReport, InvarianceReport
from paramgate.snapshot import Snapshot, TensorPrint

__all__ = ["OnError", "TrainerGate"]

OnError = Literal["raise", "log"]
"""What a callback does when the gate finds an error: stop training, or log and go on."""


class TrainerGate:
    """Audit when training starts, check frozen tensors every ``every`` steps, verify at each epoch end.

    A callback subclasses it and its trainer's callback class, and calls
    :meth:`_begin`, :meth:`_step`, :meth:`_epoch_end` and :meth:`_release` from the
    trainer's hooks.  Subclasses may override :meth:`_prepare` (e.g. unwrap an
    optimizer wrapper) and :meth:`_snapshot_optimizer` (which optimizer the snapshot
    names groups after when there are several).
    """

    def __init__(
        self,
        *,
        trainable: object | None = None,
        every: int | None = None,
        on_error: OnError = "raise",
        logger: logging.Logger | None = None,
        plugins: ParamGatePluginManager | None = None,
    ) -> None:
        super().__init__()
        if on_error not in ("raise", "log"):
            raise InvalidArgumentError(
                f"on_error: expected 'raise' (stop training) or 'log' (log and go on), got {on_error!r}"
            )
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise InvalidArgumentError(f"every: expected a positive number of steps or None, got {every!r}")
        if logger is not None and not isinstance(logger, logging.Logger):
            raise InvalidArgumentError(f"logger: expected a logging.Logger or None, got {type(logger).__name__}")
        if plugins is not None and not isinstance(plugins, ParamGatePluginManager):
            raise InvalidArgumentError(
                f"plugins: expected a paramgate.ParamGatePluginManager or None, got {type(plugins).__name__}"
            )
        self.on_error: OnError = on_error
        self.every = every
        self.logger = logger or logging.getLogger("paramgate")
        self._trainable = trainable
        self._plugins = plugins
        self.audit_report: AuditReport | None = None
        """The audit at the start of the latest run (of its first optimizer, when it has several)."""
        self.audit_reports: list[AuditReport] = []
        """One audit per optimizer the trainer uses, in its order (one of the model alone when it has none)."""
        self.reports: list[InvarianceReport] = []
        """One report per epoch of the latest run, each comparing with the start of training."""
        self.last_check: InvarianceReport | None = None
        """The latest check of the frozen tensors between steps (with ``every``)."""
        self.steps = 0
        """Training steps seen in the latest run."""
        self._snapshot: Snapshot | None = None
        self._frozen: tuple[TensorPrint, ...] = ()
        self._watched: object | None = None

    def _begin(self, model: object, optimizers: Sequence[object]) -> None:
        """Audit ``model`` with each optimizer, raise or log what is wrong, then snapshot."""
        self._release()
        self.reports = []
        self.last_check = None
        self.steps = 0
        inner = self._prepare(optimizers)
        reports = self._audit(model, inner)
        self.audit_reports = reports
        self.audit_report = reports[0]
        for i, report in enumerate(reports):
            where = f" (optimizer {i + 1} of {len(reports)}: {report.optimizer})" if len(reports) > 1 else ""
            if any(f.severity != "error" for f in report.findings):
                self.logger.warning("paramgate audit before training%s:\n%s", where, report.render())
            if not report.ok:
                self._fail(AuditFailed(report), where)
        optimizer = self._snapshot_optimizer(inner)
        self._snapshot = snapshot(model, optimizer, trainable=self._trainable, plugins=self._plugins)
        self._frozen = tuple(p for p in self._snapshot.prints if p.role == "frozen")
        self._watched = model

    def _prepare(self, optimizers: Sequence[object]) -> list[object]:
        """The optimizers as the audit should read them (override to unwrap a trainer's wrapper)."""
        return list(optimizers)

    def _snapshot_optimizer(self, optimizers: Sequence[object]) -> object | None:
        """The optimizer the snapshot reads group numbers from (for its messages only)."""
        return optimizers[0] if len(optimizers) == 1 else None

    def _audit(self, model: object, optimizers: Sequence[object]) -> list[AuditReport]:
        if not optimizers:
            return [audit(model, trainable=self._trainable, plugins=self._plugins)]
        reports = [audit(model, o, trainable=self._trainable, plugins=self._plugins) for o in optimizers]
        if len(reports) == 1:
            return reports
        # A parameter another optimizer trains is not missing from the optimizers (PG002 is per optimizer).
        held = {name for r in reports for p in r.params if p.in_optimizer for name in (p.name, *p.aliases)}
        return [
            dataclasses.replace(r, findings=tuple(f for f in r.findings if not (f.code == "PG002" and f.name in held)))
            for r in reports
        ]

    def _step(self) -> None:
        """Count a training step; every ``every`` steps, check that the frozen tensors kept their bits."""
        if self._snapshot is None or self._watched is None:
            return
        self.steps += 1
        if self.every is None or self.steps % self.every or not self._frozen:
            return
        report = self._snapshot.check(self._watched, self._frozen)
        self.last_check = report
        if not report.ok:
            self._fail(FrozenParameterChanged(report), f" after step {self.steps}")

    def _epoch_end(self, epoch: object) -> None:
        """Verify every tensor against the start of training."""
        if self._snapshot is None or self._watched is None:
            return
        report = self._snapshot.verify(self._watched)
        self.reports.append(report)
        if not report.ok:
            self._fail(FrozenParameterChanged(report), f" after epoch {epoch}")
        elif any(f.severity == "warning" for f in report.findings):
            self.logger.warning("paramgate after epoch %s:\n%s", epoch, report.render())

    def _release(self) -> None:
        """Let go of the model (the snapshot holds digests only)."""
        self._watched = self._snapshot = None
        self._frozen = ()

    def _fail(self, error: ParamGateError, when: str) -> None:
        if self.on_error == "raise":
            self._release()
            raise error
        self.logger.error("paramgate%s: %s", when, error)

"""``ParamGateCallback``: the gate inside ``mindspore.train.Model.train``.

``Model.train`` accepts only ``mindspore.train.Callback`` subclasses, so the class
is built the first time it is asked for (``from paramgate_mindspore import
ParamGateCallback``), when mindspore is imported anyway; importing this module
alone imports nothing.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Literal

import paramgate
from paramgate import AuditFailed, FrozenParameterChanged, InvalidArgumentError, ParamGateError
from paramgate.plugins import ParamGatePluginManager

__all__ = ["callback_class"]

OnError = Literal["raise", "log"]


@functools.cache
def callback_class() -> type:
    """The ``ParamGateCallback`` class, a subclass of ``mindspore.train.Callback``."""
    from mindspore.train import Callback

    class ParamGateCallback(Callback):  # type: ignore[misc]
        """Audit before ``Model.train`` starts, and prove the frozen parameters kept their bits after each epoch.

        ::

            from paramgate_mindspore import ParamGateCallback

            model = Model(net, loss_fn=loss, optimizer=opt)
            model.train(3, dataset, callbacks=[ParamGateCallback()])

        At the start of training it audits the network and optimizer ``Model.train``
        runs (or ``network`` / ``optimizer`` when given) and fingerprints every
        parameter; at the end of every epoch it fingerprints them again and compares
        with the start.  ``on_error="raise"`` (the default) stops training with
        :class:`~paramgate.AuditFailed` before the first step when the audit finds an
        error, and with :class:`~paramgate.FrozenParameterChanged` at the end of the
        epoch in which a frozen parameter changed; ``on_error="log"`` logs the report
        on the ``paramgate`` logger instead and lets training go on.  Warnings are
        always logged, never raised.  :attr:`audit_report` and :attr:`reports` (one
        per epoch) keep what was found; the callback keeps no tensor and lets go of
        the network when training ends.
        """

        def __init__(
            self,
            network: object | None = None,
            *,
            optimizer: object | None = None,
            trainable: object | None = None,
            on_error: OnError = "raise",
            logger: logging.Logger | None = None,
            plugins: ParamGatePluginManager | None = None,
        ) -> None:
            super().__init__()
            if on_error not in ("raise", "log"):
                raise InvalidArgumentError(
                    f"on_error: expected 'raise' (stop training) or 'log' (log and go on), got {on_error!r}"
                )
            self._network = network
            self._optimizer = optimizer
            self._trainable = trainable
            self._plugins = plugins
            self.on_error: OnError = on_error
            self.logger = logger or logging.getLogger("paramgate")
            self.audit_report: paramgate.AuditReport | None = None
            self.reports: list[paramgate.InvarianceReport] = []
            self._snapshot: paramgate.Snapshot | None = None
            self._watched: object | None = None

        def on_train_begin(self, run_context: Any) -> None:
            args = run_context.original_args()
            network = self._network if self._network is not None else args.network
            optimizer = self._optimizer if self._optimizer is not None else args.optimizer
            report = paramgate.audit(network, optimizer, trainable=self._trainable, plugins=self._plugins)
            self.audit_report = report
            if not report.ok:
                self._fail(AuditFailed(report), run_context)
            elif report.findings:
                self.logger.warning("paramgate audit before training:\n%s", report.render())
            self._snapshot = paramgate.snapshot(network, optimizer, trainable=self._trainable, plugins=self._plugins)
            self._watched = network

        def on_train_epoch_end(self, run_context: Any) -> None:
            if self._snapshot is None or self._watched is None:
                return
            report = self._snapshot.verify(self._watched)
            self.reports.append(report)
            epoch = run_context.original_args().cur_epoch_num
            if not report.ok:
                self._fail(FrozenParameterChanged(report), run_context, f" after epoch {epoch}")
            elif any(f.severity == "warning" for f in report.findings):
                self.logger.warning("paramgate after epoch %s:\n%s", epoch, report.render())

        def on_train_end(self, run_context: Any) -> None:
            self._watched = self._snapshot = None

        def _fail(self, error: ParamGateError, run_context: Any, when: str = "") -> None:
            if self.on_error == "raise":
                self._watched = self._snapshot = None
                raise error
            self.logger.error("paramgate%s: %s", when, error)

    ParamGateCallback.__module__ = "paramgate_mindspore"
    return ParamGateCallback

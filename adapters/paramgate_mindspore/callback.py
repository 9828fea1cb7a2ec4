"""``ParamGateCallback``: the gate inside ``mindspore.train.Model.train``.

``Model.train`` accepts only ``mindspore.train.Callback`` subclasses, so the class
is built the first time it is asked for (``from paramgate_mindspore import
ParamGateCallback``), when mindspore is imported anyway; importing this module
alone imports nothing.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from paramgate.plugins import ParamGatePluginManager
from paramgate.trainer import OnError, TrainerGate

__all__ = ["callback_class"]


@functools.cache
def callback_class() -> type[TrainerGate]:
    """The ``ParamGateCallback`` class, a subclass of ``mindspore.train.Callback``."""
    from mindspore.train import Callback

    class ParamGateCallback(TrainerGate, Callback):  # type: ignore[misc]
        """Audit before ``Model.train`` starts, and prove the frozen parameters kept their bits after each epoch.

        ::

            from paramgate_mindspore import ParamGateCallback

            model = Model(net, loss_fn=loss, optimizer=opt)
            model.train(3, dataset, callbacks=[ParamGateCallback()])

        At the start of training it audits the network and optimizer ``Model.train``
        runs (or ``network`` / ``optimizer`` when given) and fingerprints every
        parameter; at the end of every epoch it fingerprints them again and compares
        with the start, and with ``every=N`` it checks the frozen ones after every
        N-th step.  ``on_error="raise"`` (the default) stops training with
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
            every: int | None = None,
            on_error: OnError = "raise",
            logger: logging.Logger | None = None,
            plugins: ParamGatePluginManager | None = None,
        ) -> None:
            super().__init__(trainable=trainable, every=every, on_error=on_error, logger=logger, plugins=plugins)
            self._network = network
            self._optimizer = optimizer

        def on_train_begin(self, run_context: Any) -> None:
            args = run_context.original_args()
            network = self._network if self._network is not None else args.network
            optimizer = self._optimizer if self._optimizer is not None else args.optimizer
            self._begin(network, [] if optimizer is None else [optimizer])

        def on_train_step_end(self, run_context: Any) -> None:
            self._step()

        def on_train_epoch_end(self, run_context: Any) -> None:
            self._epoch_end(run_context.original_args().cur_epoch_num)

        def on_train_end(self, run_context: Any) -> None:
            self._release()

    ParamGateCallback.__module__ = "paramgate_mindspore"
    ParamGateCallback.__qualname__ = "ParamGateCallback"
    return ParamGateCallback

"""``ParamGateCallback``: the gate inside ``keras.Model.fit``.

``fit`` accepts ``keras.callbacks.Callback`` instances, so the class is built the
first time it is asked for (``from paramgate_keras import ParamGateCallback``),
when keras is imported anyway; importing this module alone imports nothing.
"""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Any

from paramgate.plugins import ParamGatePluginManager
from paramgate.trainer import OnError, TrainerGate

__all__ = ["callback_class"]


@functools.cache
def callback_class() -> type[TrainerGate]:
    """The ``ParamGateCallback`` class, a subclass of ``keras.callbacks.Callback``."""
    # keras ships no type information: its Callback is Any here.
    base: Any = importlib.import_module("keras").callbacks.Callback

    class ParamGateCallback(TrainerGate, base):  # type: ignore[misc]  # subclassing an untyped class
        """Audit when ``fit`` starts, and prove the frozen variables kept their bits after each epoch.

        ::

            from paramgate_keras import ParamGateCallback

            model.compile(optimizer="adam", loss="mse")
            model.fit(x, y, epochs=3, callbacks=[ParamGateCallback()])

        At ``on_train_begin`` (after ``fit`` has built the model and the optimizer)
        it audits ``self.model`` and its optimizer (or ``optimizer`` when given) and
        fingerprints every weight; at the end of every epoch it fingerprints them
        again and compares with the start, and with ``every=N`` it checks the frozen
        ones after every N-th batch.  ``on_error="raise"`` (the default) stops ``fit``
        with :class:`~paramgate.AuditFailed` before the first step when the audit
        finds an error (a Keras callback's exception ends ``fit``), and with
        :class:`~paramgate.FrozenParameterChanged` at the end of the epoch in which a
        frozen variable changed; ``on_error="log"`` logs the report on the
        ``paramgate`` logger instead and lets training go on.  Warnings are always
        logged, never raised.  :attr:`audit_report` and :attr:`reports` (one per
        epoch) keep what was found; the callback keeps no tensor and lets go of the
        model and its snapshot when training ends.
        """

        def __init__(
            self,
            *,
            optimizer: object | None = None,
            trainable: object | None = None,
            every: int | None = None,
            on_error: OnError = "raise",
            logger: logging.Logger | None = None,
            plugins: ParamGatePluginManager | None = None,
        ) -> None:
            super().__init__(trainable=trainable, every=every, on_error=on_error, logger=logger, plugins=plugins)
            self._optimizer = optimizer

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            model = self.model
            optimizer = self._optimizer if self._optimizer is not None else model.optimizer
            self._begin(model, [] if optimizer is None else [optimizer])

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self._step()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._epoch_end(epoch + 1)

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            self._release()

    ParamGateCallback.__module__ = "paramgate_keras"
    ParamGateCallback.__qualname__ = "ParamGateCallback"
    return ParamGateCallback

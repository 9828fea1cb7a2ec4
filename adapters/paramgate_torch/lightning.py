"""``ParamGateCallback`` for PyTorch Lightning: the gate inside ``Trainer.fit``.

``Trainer`` accepts only ``lightning.pytorch.Callback`` subclasses, so the class
is built the first time it is asked for (``from paramgate_torch.lightning import
ParamGateCallback``), when Lightning is imported anyway; importing this module
alone imports neither Lightning nor torch.

The logic is :class:`paramgate.trainer.TrainerGate`'s, shared with every
trainer callback (through :class:`paramgate_torch.gate.TorchTrainerGate` here).
"""

from __future__ import annotations

import functools
from typing import Any

from paramgate_torch.gate import TorchTrainerGate

__all__ = ["ParamGateCallback", "callback_class"]


ParamGateCallback: Any
"""Built on first use by :func:`callback_class` through the module ``__getattr__``.

Declared for linters; typed Any, as its base class comes from the trainer's library.
"""


@functools.cache
def callback_class() -> type[TorchTrainerGate]:
    """The ``ParamGateCallback`` class, a subclass of ``lightning.pytorch.Callback``."""
    from lightning.pytorch import Callback

    # The hooks take Any: Lightning's Trainer and LightningModule types are not needed to forward them.
    class ParamGateCallback(TorchTrainerGate, Callback):
        """Audit before ``Trainer.fit`` trains, and prove the frozen parameters kept their bits after each epoch.

        ::

            from paramgate_torch.lightning import ParamGateCallback

            trainer = lightning.Trainer(max_epochs=3, callbacks=[ParamGateCallback()])
            trainer.fit(module, loader)

        At ``on_train_start`` (after ``configure_optimizers`` and after Lightning has
        cleared the gradients) it audits the LightningModule with each optimizer in
        ``trainer.optimizers`` and fingerprints every parameter and buffer; at the end
        of every training epoch it fingerprints them again and compares with the
        start, and with ``every=N`` it checks the frozen ones after every N-th training
        batch.  ``on_error="raise"`` (the default) stops training with
        :class:`~paramgate.AuditFailed` before the first step when an audit finds an
        error, and with :class:`~paramgate.FrozenParameterChanged` when a frozen
        parameter changed; ``on_error="log"`` logs on the ``paramgate`` logger instead
        and lets training go on.  Warnings are always logged, never raised.
        ``trainable`` states what is meant to train, as for :func:`paramgate.audit`.
        :attr:`audit_report` (:attr:`audit_reports`, one per optimizer),
        :attr:`reports` (one per epoch) and :attr:`last_check` keep what was found;
        the callback lets go of the module when training ends or fails.
        """

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self._begin(pl_module, list(trainer.optimizers))

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self._step()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self._epoch_end(trainer.current_epoch + 1)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self._release()

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            self._release()

    ParamGateCallback.__module__ = "paramgate_torch.lightning"
    ParamGateCallback.__qualname__ = "ParamGateCallback"  # so that pickle finds it (ddp_spawn pickles callbacks)
    return ParamGateCallback


def __getattr__(name: str) -> Any:
    # The callback subclasses lightning.pytorch.Callback, so it can only exist once Lightning is imported.
    if name == "ParamGateCallback":
        return callback_class()
    raise AttributeError(f"module 'paramgate_torch.lightning' has no attribute {name!r}")

"""``ParamGateCallback`` for Hugging Face ``transformers.Trainer``.

``Trainer`` accepts ``transformers.TrainerCallback`` instances, so the class is
built the first time it is asked for (``from paramgate_torch.hf import
ParamGateCallback``), when transformers is imported anyway; importing this module
alone imports neither transformers nor torch.  The logic is
:class:`paramgate.trainer.TrainerGate`'s, shared with every trainer callback.
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
    """The ``ParamGateCallback`` class, a subclass of ``transformers.TrainerCallback``."""
    from transformers import TrainerCallback

    # The hooks take Any: TrainingArguments, TrainerState and TrainerControl are only passed through.
    class ParamGateCallback(TorchTrainerGate, TrainerCallback):
        """Audit before ``Trainer.train`` trains, and prove the frozen parameters kept their bits after each epoch.

        ::

            from paramgate_torch.hf import ParamGateCallback

            trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[ParamGateCallback()])
            trainer.train()

        At ``on_train_begin`` (after the Trainer has built its optimizer and cleared
        the gradients) it audits the model and the optimizer the Trainer steps (the
        torch optimizer inside accelerate's wrapper) and fingerprints every parameter
        and buffer; at every ``on_epoch_end`` it fingerprints them again and compares
        with the start, and with ``every=N`` it checks the frozen ones after every
        N-th optimizer step.  ``on_error="raise"`` (the default) stops training with
        :class:`~paramgate.AuditFailed` before the first step when the audit finds an
        error, and with :class:`~paramgate.FrozenParameterChanged` when a frozen
        parameter changed; ``on_error="log"`` logs on the ``paramgate`` logger instead
        and lets training go on.  Warnings are always logged, never raised.
        ``trainable`` states what is meant to train, as for :func:`paramgate.audit`.
        :attr:`audit_report`, :attr:`reports` (one per epoch) and :attr:`last_check`
        keep what was found; the callback lets go of the model when training ends or
        the gate stops it.
        """

        def on_train_begin(
            self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None, **kwargs: Any
        ) -> None:
            self._begin(model, [] if optimizer is None else [optimizer])

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._step()

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._epoch_end(f"{state.epoch:g}" if isinstance(state.epoch, int | float) else state.epoch)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._release()

    ParamGateCallback.__module__ = "paramgate_torch.hf"
    ParamGateCallback.__qualname__ = "ParamGateCallback"  # so that pickle finds it
    return ParamGateCallback


def __getattr__(name: str) -> Any:
    # The callback subclasses transformers.TrainerCallback, so it can only exist once transformers is imported.
    if name == "ParamGateCallback":
        return callback_class()
    raise AttributeError(f"module 'paramgate_torch.hf' has no attribute {name!r}")

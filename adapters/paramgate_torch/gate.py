"""The torch trainer callbacks' common gate: :class:`paramgate.trainer.TrainerGate` reading torch optimizers."""

from __future__ import annotations

from collections.abc import Sequence

from paramgate.trainer import TrainerGate

__all__ = ["TorchTrainerGate", "unwrap"]


def unwrap(optimizer: object) -> object:
    """The optimizer inside a wrapper that shares its ``param_groups`` (accelerate's ``AcceleratedOptimizer``).

    The torch adapter's rules depend on the optimizer's class (torch's own optimizers skip a
    parameter without a gradient), so the audit must see the optimizer that steps, not its wrapper.
    """
    for _ in range(8):
        inner = getattr(optimizer, "optimizer", None)
        groups = getattr(optimizer, "param_groups", None)
        if inner is None or inner is optimizer or groups is None or getattr(inner, "param_groups", None) is not groups:
            break
        optimizer = inner
    return optimizer


class TorchTrainerGate(TrainerGate):
    """Unwraps trainer wrappers, and numbers groups across several optimizers in the trainer's order."""

    def _prepare(self, optimizers: Sequence[object]) -> list[object]:
        return [unwrap(o) for o in optimizers]

    def _snapshot_optimizer(self, optimizers: Sequence[object]) -> object | None:
        if len(optimizers) > 1:
            # Group numbers in the snapshot's messages count across the optimizers, in the trainer's order.
            return [g for o in optimizers for g in getattr(o, "param_groups", ())]
        return optimizers[0] if optimizers else None

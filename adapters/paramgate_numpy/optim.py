"""A NumPy ``Momentum`` optimizer with MindSpore's semantics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Momentum"]


def _param_name(p: Any) -> str:
    name = p.get("name") if isinstance(p, dict) else getattr(p, "name", None)
    return str(name or "")


def _data(p: Any) -> Any:
    return p["data"] if isinstance(p, dict) else p.data


class Momentum:
    """Stochastic gradient descent with momentum, the way ``mindspore.nn.Momentum`` does it.

    ``params`` is a list of parameters (:class:`~paramgate_numpy.Parameter` or the
    walkthrough's dicts) or of groups ``{"params": [...], "lr": ..., "weight_decay": ...}``.
    Like MindSpore, it updates every parameter it is given whatever its
    ``requires_grad``; without groups, ``weight_decay`` applies to every parameter
    whose name contains neither "beta" nor "gamma"; with groups, each group's
    ``weight_decay`` (default: the optimizer's) applies to all of its parameters.

    One step: ``g = grad / loss_scale + weight_decay * w``;
    ``accum = momentum * accum + g``; ``w -= lr * accum`` (Nesterov:
    ``w -= lr * (g + momentum * accum)``).  Call it with one gradient per
    parameter, in the order of :attr:`parameters`: ``opt(grads)``.

    Per parameter, in that order: :attr:`decay_flags` (whether weight decay
    applies), :attr:`weight_decays` (the decay it gets) and :attr:`moments` (the
    momentum accumulators).
    """

    def __init__(
        self,
        params: Iterable[Any],
        learning_rate: float,
        momentum: float,
        weight_decay: float = 0.0,
        loss_scale: float = 1.0,
        use_nesterov: bool = False,
    ) -> None:
        import numpy as np

        items = list(params)  # reads a one-shot iterator exactly once, as MindSpore does
        if not items:
            raise ValueError("For 'Momentum', the argument 'parameters' must not be empty.")
        if momentum < 0.0:
            raise ValueError(f"For 'Momentum', the argument 'momentum' must be at least 0.0, but got {momentum}.")
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.loss_scale = float(loss_scale)
        self.use_nesterov = use_nesterov
        self.is_group = isinstance(items[0], dict) and "params" in items[0]
        self.groups: list[dict[str, Any]] = []
        if self.is_group:
            for group in items:
                if not (isinstance(group, dict) and "params" in group):
                    raise TypeError("For 'Momentum', mix of groups and parameters: every element must be a group dict")
                members = list(group["params"])
                lr = float(group.get("lr", learning_rate))
                wd = float(group.get("weight_decay", weight_decay))
                self.groups.append({"params": members, "lr": lr, "weight_decay": wd})
        else:
            self.groups.append({"params": items, "lr": self.learning_rate, "weight_decay": self.weight_decay})
        self.parameters: tuple[Any, ...] = tuple(p for g in self.groups for p in g["params"])
        self._lr = tuple(g["lr"] for g in self.groups for _ in g["params"])
        if self.is_group:
            self.decay_flags = tuple(g["weight_decay"] > 0 for g in self.groups for _ in g["params"])
            self.weight_decays = tuple(g["weight_decay"] for g in self.groups for _ in g["params"])
        else:
            self.decay_flags = tuple(
                "beta" not in _param_name(p) and "gamma" not in _param_name(p) for p in self.parameters
            )
            self.weight_decays = tuple(self.weight_decay if flag else 0.0 for flag in self.decay_flags)
        self.moments: tuple[Any, ...] = tuple(np.zeros_like(_data(p)) for p in self.parameters)

    def __call__(self, gradients: Sequence[Any]) -> None:
        """Apply one step; ``gradients[i]`` belongs to ``parameters[i]``."""
        import numpy as np

        if len(gradients) != len(self.parameters):
            raise ValueError(
                f"For 'Momentum', expected {len(self.parameters)} gradients (one per parameter), got {len(gradients)}."
            )
        for p, g, accum, lr, wd in zip(
            self.parameters, gradients, self.moments, self._lr, self.weight_decays, strict=True
        ):
            w = _data(p)
            grad = np.asarray(g, dtype=w.dtype) / w.dtype.type(self.loss_scale)
            if wd:
                grad = grad + w.dtype.type(wd) * w
            accum *= w.dtype.type(self.momentum)
            accum += grad
            if self.use_nesterov:
                w -= w.dtype.type(lr) * (grad + w.dtype.type(self.momentum) * accum)
            else:
                w -= w.dtype.type(lr) * accum

    def __repr__(self) -> str:
        return (
            f"Momentum({len(self.parameters)} parameters in {len(self.groups)} group(s), "
            f"learning_rate={self.learning_rate}, momentum={self.momentum}, weight_decay={self.weight_decay})"
        )

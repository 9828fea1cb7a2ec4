"""The Keras 3 adapter: a ``keras.Model`` (any ``keras.Layer``) and any Keras optimizer in, neutral records out.

What it reads, and why (measured on Keras 3.15.1 with the torch backend, CPU;
docs/keras.md shows how):

- Tensors are the model's ``weights`` (trainable and non-trainable variables;
  not the seed-generator state ``variables`` adds, which Dropout changes every
  step), named by ``Variable.path`` (``"net/backbone/dense/kernel"``).  Two
  variables can share a path (same-named layers in a subclassed model): the
  later ones are numbered (``"sub/d/kernel#1"``) in ``model.weights`` order.
- A variable is trainable when ``model.trainable_weights`` holds it: that list,
  read again at every step, is what Keras's torch train step hands to the
  optimizer.  ``layer.trainable = False`` removes a layer's variables from it
  (and sets ``requires_grad=False`` on the torch tensors).
- BatchNormalization keeps its statistics (``moving_mean``, ``moving_variance``,
  and the renorm ones) as non-trainable variables: role ``"state"``, kind
  ``"parameter"``.  ``fit`` calls the model with ``training=True``, and a BN
  layer updates its statistics only when ``training and self.trainable``: a
  frozen BN layer runs in inference mode (``updating`` False), a trainable one
  updates them (``updating`` True).
- An optimizer holds the variable list it was built with
  (``optimizer._trainable_variables``).  ``compile()`` does not build it: the
  first ``fit()`` does (before ``on_train_begin``), from
  ``model.trainable_variables`` at that moment, and a built optimizer never
  rebuilds, not even when the model is recompiled with the same instance.  An
  optimizer that is not built yet is reported with the variables it will be
  built from.  When the built list and ``model.trainable_weights`` disagree
  (``trainable`` changed after the first ``fit``), the group says ``stale``:
  a trainable variable the list lacks is PG002 (``fit`` raises ``ValueError:
  Unknown variable``), a frozen one it still holds is PG001.
- What moves a frozen variable still in a built optimizer (torch backend): not
  gradients, weight decay or momentum, since the train step passes only
  ``model.trainable_weights`` to ``optimizer.apply``; but ``use_ema=True`` with
  ``ema_overwrite_frequency`` writes the moving averages into every variable the
  optimizer was built with, frozen ones included.  Other backends are not
  measured here: the adapter assumes, as Keras's ``compile()`` documents, that
  the step keeps updating it until the model is recompiled.

keras is imported only inside methods, and only once it is already in
``sys.modules`` (the model or optimizer passed in proves it is).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from paramgate import Fingerprint, GroupEntry, InvalidParameterError, Member, ParamEntry, StorageSpan
from paramgate.fingerprint import fingerprint_buffer
from paramgate.records import JSONValue, classify

__all__ = ["RECOMPILE_HINT", "BoundOptimizer", "KerasAdapter", "host_view"]

RECOMPILE_HINT = (
    "recompile (model.compile(...)) after changing trainable, with a new optimizer instance (an optimizer "
    "name, or keras.optimizers.SGD(...) etc.): Keras builds an optimizer's variable list once, from "
    "model.trainable_weights at the first fit(), and a built optimizer keeps that list"
)
"""How to bring the optimizer's variable list back in line with ``trainable``."""

_STALE = "trainable changed after this optimizer was built; recompile (model.compile(...)) with a new optimizer"

_BN_STATISTICS = ("moving_mean", "moving_variance", "moving_stddev", "renorm_mean", "renorm_stddev")
"""The variables a BatchNormalization layer updates outside the optimizer (the last three with ``renorm``)."""

_OPTIONS = (
    "nesterov",
    "beta_1",
    "beta_2",
    "epsilon",
    "amsgrad",
    "rho",
    "centered",
    "initial_accumulator_value",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "gradient_accumulation_steps",
    "loss_scale_factor",
)
"""Optimizer attributes shown among a group's options when the optimizer has them (and they are set)."""


def _keras() -> Any:
    """The keras module when Keras 3 is imported, else None (Keras 2 has no variable paths)."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    major = str(getattr(keras, "__version__", "0")).split(".", 1)[0]
    return keras if major.isdigit() and int(major) >= 3 else None


def _backend() -> str:
    return str(_keras().backend.backend())


def _is_variable(obj: object) -> bool:
    keras = _keras()
    return keras is not None and isinstance(obj, keras.Variable)


def _tensor(variable: Any) -> Any:
    """The backend tensor a Keras variable holds: the stored one, never an autocast or stateless-scope copy."""
    raw = getattr(variable, "_value", None)
    return raw if raw is not None else variable.value


def _number(value: object) -> float | None:
    """A Python or backend scalar (a Keras variable too) as a float; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if _is_variable(value):
        value = _tensor(value)
    item = getattr(value, "item", None)
    if not callable(item) or getattr(value, "ndim", None) != 0:
        return None
    result = item()
    if isinstance(result, bool) or not isinstance(result, int | float):
        return None
    if "float32" in str(getattr(value, "dtype", "")):
        import numpy as np

        # Keras keeps learning rates as float32 variables: 0.01 comes back as 0.009999999776482582, and the
        # shortest repr of the float32 gives 0.01 back.
        return float(str(np.float32(result)))
    return float(result)


def _scalar(value: object) -> JSONValue | None:
    if isinstance(value, bool | str) or value is None:
        return value
    return _number(value)


def host_view(tensor: Any) -> Any:
    """A zero-copy ``uint8`` NumPy view of a CPU torch tensor's bytes, or None when that needs a copy.

    ``keras.ops.convert_to_numpy`` is not used: on the torch backend it copies
    (``np.array(tensor)``; measured: a different address).  torch's ``.numpy()``
    of a detached CPU tensor shares its memory.
    """
    torch = sys.modules["torch"]
    if tensor.layout is not torch.strided or not tensor.is_contiguous() or tensor.is_conj() or tensor.is_neg():
        return None
    return tensor.detach().reshape(-1).view(torch.uint8).numpy()


@dataclass(frozen=True, eq=False)
class BoundOptimizer:
    """A Keras optimizer as the adapter reads it together with the model it trains.

    ``groups`` pairs each optimizer that updates variables (the optimizer itself,
    the inner one of a ``LossScaleOptimizer``, or each optimizer of a
    ``MultiOptimizer``) with the variables it holds, or, while it is not built
    yet, the variables it will be built from (``model.trainable_weights``).
    ``stale`` is True when a built optimizer's list differs from
    ``model.trainable_weights`` now.
    """

    optimizer: Any
    groups: tuple[tuple[Any, tuple[Any, ...]], ...]
    built: bool
    stale: bool
    multi: bool


def _optimizer_class(name: str) -> Any:
    """``keras.optimizers.<name>``, or a class nothing is an instance of in a Keras 3 that lacks it."""
    found = getattr(_keras().optimizers, name, None)
    return found if isinstance(found, type) else type(f"No{name}", (), {})


def _inner(optimizer: Any) -> Any:
    return optimizer.inner_optimizer if isinstance(optimizer, _optimizer_class("LossScaleOptimizer")) else optimizer


def _bind(model: object, optimizer: Any) -> BoundOptimizer:
    keras = _keras()
    model_trainable = list(model.trainable_weights) if isinstance(model, keras.Layer) else None
    built = bool(optimizer.built)
    # Not built yet: what the first fit() will build it from.
    held = list(optimizer._trainable_variables) if built else model_trainable or []
    stale = built and model_trainable is not None and {id(v) for v in held} != {id(v) for v in model_trainable}
    inner = _inner(optimizer)
    if not isinstance(inner, _optimizer_class("MultiOptimizer")):
        return BoundOptimizer(optimizer, ((inner, tuple(held)),), built, stale, False)
    optimizers = list(inner.optimizers)
    members: list[list[Any]] = [[] for _ in optimizers]
    routes = inner._var_to_optimizer_idx if built else None
    for v in held:
        if routes is not None:
            index = routes[id(v)]
        else:
            chosen = inner._optimizer_map(v)  # the OptimizerMap lookup build() does (by variable path)
            if chosen not in optimizers:
                optimizers.append(chosen)
                members.append([])
            index = optimizers.index(chosen)
        members[index].append(v)
    groups = tuple((opt, tuple(vs)) for opt, vs in zip(optimizers, members, strict=True))
    return BoundOptimizer(optimizer, groups, built, stale, True)


def _options(opt: Any, bound: BoundOptimizer) -> dict[str, JSONValue]:
    options: dict[str, JSONValue] = {}
    keras = _keras()
    lr = getattr(opt, "_learning_rate", None)
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        options["lr_schedule"] = type(lr).__qualname__
    elif callable(lr):
        options["lr_schedule"] = "callable"
    for key in _OPTIONS:
        value = _scalar(getattr(opt, key, None))
        if value is not None and value is not False:
            options[key] = value
    if getattr(opt, "use_ema", False):
        options["use_ema"] = True
        for key in ("ema_momentum", "ema_overwrite_frequency"):
            value = _scalar(getattr(opt, key, None))
            if value is not None:
                options[key] = value
    if _number(getattr(opt, "weight_decay", None)):
        pattern = getattr(opt, "_exclude_from_weight_decay_pattern", None)
        excluded = getattr(opt, "_exclude_from_weight_decay", None)
        if pattern is not None:
            options["decay_exempt"] = f"names matching {pattern.pattern!r}"
        if excluded:
            options["decay_exempt_variables"] = len(excluded)
    if isinstance(bound.optimizer, _optimizer_class("LossScaleOptimizer")):
        options["loss_scale"] = "dynamic"
    options["built"] = bound.built
    if bound.stale:
        options["stale"] = _STALE + (
            " (with use_ema, fit() also ends in a ValueError from finalize_variable_values)"
            if getattr(opt, "use_ema", False)
            else ""
        )
    return options


class KerasAdapter:
    """Reads Keras 3 models (any ``keras.Layer``) and Keras optimizers."""

    name = "keras"
    distribution = "keras"
    host_devices: frozenset[str] = frozenset({"cpu"})
    """torch device types hashed with ``xxh3-128`` through a zero-copy host view; all others are hashed where
    the tensor lives (``pgmix64x2``).  Empty it to run the device path on CPU tensors (the tests do)."""
    freeze_hint = f"To change what trains, {RECOMPILE_HINT}"
    """How to bring the optimizer back in line, ending PG001's error message."""
    missing_hint = (
        "it was made trainable after the optimizer was built (fit() then raises 'Unknown variable'), or left out of "
        f"the list handed to optimizer.build(): {RECOMPILE_HINT}"
    )
    """Why a trainable variable is missing from a Keras optimizer, for PG002 (read by the core once it supports
    an adapter's hint there, as it does ``freeze_hint`` for PG001)."""

    def owns_model(self, model: object) -> bool:
        keras = _keras()
        return keras is not None and isinstance(model, keras.Layer)

    def owns_optimizer(self, optimizer: object) -> bool:
        keras = _keras()
        if keras is None:
            return False
        if isinstance(optimizer, keras.optimizers.Optimizer):
            return True
        # A list of variables: what one is about to hand to optimizer.build().
        return isinstance(optimizer, list | tuple) and all(isinstance(v, keras.Variable) for v in optimizer)

    def bind_optimizer(self, model: object, optimizer: object) -> object:
        if isinstance(optimizer, list | tuple):
            return optimizer
        return _bind(model, optimizer)

    def parameters(self, model: object) -> Iterator[ParamEntry]:
        keras = _keras()
        assert isinstance(model, keras.Layer)
        trainable = {id(v) for v in model.trainable_weights}
        statistics: dict[int, bool] = {}
        batch_norm = keras.layers.BatchNormalization
        for layer in model._flatten_layers(include_self=True, recursive=True):
            if isinstance(layer, batch_norm):
                # fit() calls with training=True; BN updates its statistics only when `training and self.trainable`.
                for key in _BN_STATISTICS:
                    v = getattr(layer, key, None)
                    if v is not None:
                        statistics[id(v)] = bool(layer.trainable)
        seen: dict[str, int] = {}
        for v in model.weights:
            if not isinstance(v, keras.Variable):
                raise InvalidParameterError(f"model.weights holds a {type(v).__name__}, not a keras.Variable")
            path = str(v.path)
            count = seen.get(path, 0)
            seen[path] = count + 1
            name = f"{path}#{count}" if count else path
            note = (
                f"another variable has the path {path!r} (layers with the same name): numbered in model.weights order"
                if count
                else None
            )
            yield self._entry(name, v, id(v) in trainable, statistics.get(id(v)), note)

    def _entry(self, name: str, v: Any, requires_grad: bool, updating: bool | None, note: str | None) -> ParamEntry:
        shape = tuple(int(d) for d in v.shape)
        role = classify(name, requires_grad, statistic=True if updating is not None else None)
        t = _tensor(v)
        storage = None
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(t, torch.Tensor) and t.layout is torch.strided and t.nbytes:
            start = t.data_ptr()
            storage = StorageSpan(t.get_device(), start, start + t.nbytes)
        size = getattr(t, "nbytes", None)
        return ParamEntry(
            name,
            v,
            shape,
            str(v.dtype),
            math.prod(shape),
            requires_grad,
            role,
            "parameter",
            storage,
            note,
            updating if role == "state" else None,
            int(size) if isinstance(size, int) else None,
        )

    def optimizer_groups(self, optimizer: object) -> Sequence[GroupEntry]:
        if isinstance(optimizer, list | tuple):
            return [GroupEntry(index=0, members=tuple(Member(v, str(v.path)) for v in optimizer))]
        bound = optimizer if isinstance(optimizer, BoundOptimizer) else _bind(None, optimizer)
        return [
            GroupEntry(
                index=i,
                members=tuple(Member(v, str(v.path)) for v in variables),
                lr=_number(getattr(opt, "_learning_rate", None)),
                momentum=_number(getattr(opt, "momentum", None)),
                weight_decay=_number(getattr(opt, "weight_decay", None)),
                options=_options(opt, bound),
            )
            for i, (opt, variables) in enumerate(bound.groups)
        ]

    def host_copy(self, entry: ParamEntry) -> Any:
        """A host copy of the variable's raw bytes, 1-D uint8, on the torch backend (for the pytest fixture)."""
        t = _tensor(entry.obj)
        torch = sys.modules.get("torch")
        if torch is None or not isinstance(t, torch.Tensor):
            return None
        data = t.detach().to("cpu", copy=True).resolve_conj().resolve_neg()
        if data.dtype == torch.bool:
            data = data.view(torch.uint8)  # bytes, not values
        return data.contiguous().reshape(-1).view(torch.uint8).numpy()

    def fingerprint(self, entry: ParamEntry) -> Fingerprint:
        t = _tensor(entry.obj)
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(t, torch.Tensor):
            if t.device.type not in self.host_devices:
                from paramgate_torch.hashing import device_fingerprint

                return device_fingerprint(t)  # hashed where it lives: nothing is copied to the host
            view = host_view(t)
            if view is None:  # a strided or lazily conjugated view: one transient contiguous copy
                view = host_view(t.detach().resolve_conj().resolve_neg().contiguous())
            return fingerprint_buffer(view)
        jax = sys.modules.get("jax")
        if jax is not None and isinstance(t, jax.Array):
            from paramgate_jax.adapter import JaxAdapter

            # The jax adapter's path: a zero-copy host view on CPU (checked by address), pgmix64x2 elsewhere.
            return JaxAdapter().fingerprint(
                ParamEntry(entry.name, t, entry.shape, entry.dtype, entry.numel, entry.requires_grad, entry.role)
            )
        raise InvalidParameterError(
            f"{entry.name!r} holds a {type(t).__module__}.{type(t).__qualname__}: paramgate fingerprints Keras "
            f"variables on the torch and jax backends, and keras runs on {_backend()!r} here (set KERAS_BACKEND)"
        )

    def would_move(self, entry: ParamEntry, group: GroupEntry, optimizer: object) -> str | None:
        if not isinstance(optimizer, BoundOptimizer):
            return None  # a list of variables: fit() hands the optimizer only model.trainable_weights
        backend = _backend()
        if backend != "torch":
            return (
                f"not measured on the {backend} backend: Keras documents (Model.compile) that a trainable change "
                "takes effect only after recompiling, so paramgate assumes the train step still updates it"
            )
        if optimizer.multi:
            return None  # MultiOptimizer.apply refuses a shorter list: fit() raises before changing anything
        opt = optimizer.groups[group.index][0]
        frequency = getattr(opt, "ema_overwrite_frequency", None)
        if getattr(opt, "use_ema", False) and frequency:
            return (
                f"use_ema=True with ema_overwrite_frequency={frequency}: every "
                f"{'step' if frequency == 1 else f'{frequency} steps'} Keras writes the optimizer's moving averages "
                "into every variable the optimizer was built with, this frozen one included (and fit() then ends in "
                "a ValueError from finalize_variable_values)"
            )
        # The torch train step passes only model.trainable_weights to optimizer.apply(): no gradient, weight
        # decay or momentum reaches a variable outside it (measured with SGD(momentum), SGD and AdamW decay).
        return None

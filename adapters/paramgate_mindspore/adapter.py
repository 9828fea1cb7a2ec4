"""The MindSpore adapter: an ``nn.Cell`` and any ``nn.Optimizer`` in, neutral records out.

What it reads, and why:

- Parameters come from every cell's own ``_params`` (what ``parameters_and_names``
  reads), named by ``Parameter.name``, the name MindSpore's optimizers,
  checkpoints and the seed's ``filter(lambda x: x.requires_grad, ...)`` see.  A
  Parameter reachable from two cells is listed again under its second path, so
  the core reports it once, with an alias.
- MindSpore keeps normalization statistics as Parameters with
  ``requires_grad=False`` (``moving_mean``, ``moving_variance``): they get the
  role ``"state"`` and kind ``"parameter"``, so their drift is PG103, never PG101.
  A BatchNorm cell says whether its next forward pass updates them (``updating``).
- A built optimizer no longer keeps its groups: it flattens them into per-parameter
  tuples (``group_lr``, ``group_weight_decay``, ``group_grad_centralization``,
  reordered by ``order_params``).  The groups are rebuilt from those tuples:
  parameters that share a learning-rate object, a weight decay and a
  grad-centralization flag are one group, in order of first appearance.
- What moves a frozen parameter follows MindSpore (measured on 2.10, CPU): in
  PyNative mode the gradient a ``requires_grad=False`` parameter gets is zero, but
  the optimizer still applies weight decay to it (without groups: to every name
  without ``beta`` or ``gamma``), and a non-zero momentum buffer keeps moving it.
  In graph mode (and under ``@ms.jit``) the compiled step computes its real
  gradient, so any frozen parameter handed to the optimizer is trained.

mindspore is imported only inside methods, and only once it is already in
``sys.modules`` (the model or optimizer passed in proves it is).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from paramgate import Fingerprint, GroupEntry, InvalidParameterError, Member, ParamEntry, StorageSpan
from paramgate.fingerprint import fingerprint_buffer
from paramgate.records import JSONValue, classify
from paramgate_mindspore.hashing import device_fingerprint

__all__ = ["MindSporeAdapter", "dtype_name", "float32_value"]

_STATISTICS = frozenset({"moving_mean", "moving_variance"})
"""The Parameters a ``_BatchNorm`` cell updates outside the optimizer."""

_MOMENTUM_STATE = ("moments", "moment1", "moments1", "moment")
"""Per-parameter optimizer state that keeps moving a parameter when its gradient is zero
(Momentum's ``moments``, Adam's ``moment1``, AdamWeightDecay's and Lamb's ``moments1``,
RMSProp's ``moment``)."""

_HYPERPARAMETERS = ("beta1", "beta2", "eps", "use_nesterov", "centered", "decay", "epsilon")
"""Optimizer attributes shown among a group's options when the optimizer has them."""


def _ms() -> Any:
    return sys.modules.get("mindspore")


def _is_parameter(obj: object) -> bool:
    ms = _ms()
    return ms is not None and isinstance(obj, ms.Parameter)


def _is_group(item: object) -> bool:
    if not isinstance(item, Mapping):
        return False
    if "order_params" in item:
        return True
    params = item.get("params")
    return isinstance(params, list | tuple) and all(_is_parameter(p) for p in params)


def dtype_name(dtype: Any) -> str:
    """``mindspore.float32`` -> ``"float32"``: the names NumPy and the reports use."""
    return str(dtype).lower()


def float32_value(value: Any) -> float | None:
    """A float32 scalar (a Parameter, a Tensor, a float) as the float it was written as.

    MindSpore keeps learning rates and decays as float32, so ``0.01`` comes back as
    ``0.009999999776482582``; the shortest repr of the float32 gives ``0.01`` back.
    """
    import numpy as np

    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    ms = _ms()
    if ms is not None and isinstance(value, ms.Tensor) and value.size == 1:
        array = value.asnumpy().reshape(())
        return float(str(array.astype(np.float32)[()])) if array.dtype == np.float32 else float(array)
    return None


def _span(p: Any) -> StorageSpan | None:
    size = p.nbytes
    if not size or p.has_init:
        return None
    start = p.data_ptr()
    return StorageSpan(str(p.device), start, start + size)


class MindSporeAdapter:
    """Reads ``mindspore.nn.Cell`` models and ``mindspore.nn.Optimizer`` optimizers."""

    name = "mindspore"
    distribution = "mindspore"
    host_devices: frozenset[str] = frozenset({"CPU"})
    """Devices hashed with ``xxh3-128`` through a zero-copy host view; all others are hashed where the
    tensor lives (``pgmix64x2``).  Empty it to run the device path on CPU tensors (the tests do)."""

    def owns_model(self, model: object) -> bool:
        ms = _ms()
        if ms is None:
            return False
        if isinstance(model, ms.nn.Cell) and not isinstance(model, ms.nn.Optimizer):
            return True
        # A ParameterTuple or a list of Parameters (net.trainable_params()) is a model too.
        return isinstance(model, list | tuple) and bool(model) and all(isinstance(p, ms.Parameter) for p in model)

    def owns_optimizer(self, optimizer: object) -> bool:
        ms = _ms()
        if ms is None:
            return False
        if isinstance(optimizer, ms.nn.Optimizer):
            return True
        if isinstance(optimizer, list | tuple):
            return all(_is_parameter(item) or _is_group(item) for item in optimizer)
        return False

    def parameters(self, model: object) -> Iterator[ParamEntry]:
        ms = _ms()
        if isinstance(model, list | tuple):
            for p in model:
                yield self._entry(p.name, p, None, None)
            return
        assert isinstance(model, ms.nn.Cell)
        batch_norm = ms.nn.layer.normalization._BatchNorm
        seen: set[int] = set()
        for prefix, cell in model.cells_and_names():
            dot = f"{prefix}." if prefix else ""
            params = cell._params
            if not params:
                continue
            updating = None
            if isinstance(cell, batch_norm):
                # use_batch_statistics None: batch statistics (and updates) in training mode only; True: always.
                use = cell.use_batch_statistics
                updating = bool(use) if use is not None else bool(cell.training)
            for key, p in params.items():
                if p is None:
                    continue
                if not isinstance(p, ms.Parameter):
                    raise InvalidParameterError(
                        f"parameter {dot + key!r} is a {type(p).__name__}, not a mindspore.Parameter; register "
                        "Parameters only"
                    )
                first = id(p) not in seen
                seen.add(id(p))
                statistic = updating is not None and key in _STATISTICS
                # The first time: the Parameter's own name; later: the path it is reached by (an alias).
                name = p.name if first else dot + key
                yield self._entry(name, p, statistic if statistic else None, updating if statistic else None)

    def _entry(self, name: str, p: Any, statistic: bool | None, updating: bool | None) -> ParamEntry:
        ms = _ms()
        if not isinstance(p, ms.Parameter):
            raise InvalidParameterError(f"{name!r} is a {type(p).__name__}, not a mindspore.Parameter")
        requires_grad = bool(p.requires_grad)
        note = None
        if p.has_init:
            note = "not initialized yet (lazy init): call net.init_parameters_data() before taking a snapshot"
        return ParamEntry(
            name,
            p,
            tuple(p.shape),
            dtype_name(p.dtype),
            int(p.size),
            requires_grad,
            classify(name, requires_grad, statistic=statistic),
            "parameter",
            _span(p),
            note,
            updating,
            int(p.nbytes),
        )

    def optimizer_groups(self, optimizer: object) -> Sequence[GroupEntry]:
        ms = _ms()
        if isinstance(optimizer, ms.nn.Optimizer):
            return _built_groups(optimizer)
        assert isinstance(optimizer, list | tuple)
        if optimizer and all(_is_group(item) for item in optimizer):
            groups = [g for g in optimizer if "order_params" not in g]
            return [
                GroupEntry(
                    index=i,
                    members=tuple(Member(p, p.name) for p in g["params"]),
                    lr=float32_value(g.get("lr")),
                    weight_decay=float32_value(g.get("weight_decay")),
                    options=_list_options(g),
                )
                for i, g in enumerate(groups)
            ]
        return [GroupEntry(index=0, members=tuple(Member(p, getattr(p, "name", None)) for p in optimizer))]

    def host_copy(self, entry: ParamEntry) -> Any:
        """A host copy of the parameter's raw bytes, 1-D uint8 (for the pytest fixture's element counts)."""
        p: Any = entry.obj
        if p.has_init:
            return None
        return p.asnumpy().copy().reshape(-1).view("uint8")

    def fingerprint(self, entry: ParamEntry) -> Fingerprint:
        p: Any = entry.obj
        if p.has_init:
            raise InvalidParameterError(
                f"{entry.name!r} is not initialized yet (lazy init) and has no data to fingerprint: call "
                "net.init_parameters_data() (or run one step) before taking a snapshot"
            )
        if str(p.device) in self.host_devices and p.is_contiguous():
            # asnumpy() of a CPU tensor is a view of the tensor's own memory (the tests check the
            # address): hashed in place, nothing copied.  In graph mode it also waits for pending writes.
            return fingerprint_buffer(p.asnumpy().reshape(-1).view("uint8"))
        return device_fingerprint(p)  # hashed where it lives: nothing is copied to the host

    def would_move(self, entry: ParamEntry, group: GroupEntry, optimizer: object) -> str | None:
        ms = _ms()
        decay = group.weight_decay or 0.0
        if not isinstance(optimizer, ms.nn.Optimizer):
            if decay:
                return (
                    f"weight_decay={decay} in group {group.index}: MindSpore hands a requires_grad=False "
                    "parameter a zero gradient and still applies weight decay to it"
                )
            return None
        kind = type(optimizer)
        reasons = []
        if ms.get_context("mode") == ms.GRAPH_MODE:
            # Measured on 2.10: a compiled step (graph mode, or @ms.jit) differentiates every weight it is
            # given, requires_grad or not; only PyNative hands frozen parameters a zero gradient.
            return (
                "in graph mode MindSpore computes the real gradient of every parameter handed to the optimizer "
                "(requires_grad=False is honoured only in PyNative mode), so the optimizer trains it"
            )
        index = _position(optimizer, entry.obj)
        if index is not None and optimizer.decay_flags[index] and (decay or optimizer.dynamic_weight_decay):
            exempt = (
                "" if optimizer.is_group else " (without groups MindSpore decays every name without 'beta' or 'gamma')"
            )
            reasons.append(f"weight_decay={decay if decay else 'dynamic'} in group {group.index} decays it{exempt}")
        if index is not None:
            for key in _MOMENTUM_STATE:
                state = getattr(optimizer, key, None)
                if isinstance(state, ms.ParameterTuple) and len(state) == len(optimizer.parameters):
                    value = state[index]
                    if value.size and bool(value.asnumpy().any()):
                        reasons.append(f"its optimizer state {key!r} is non-zero, so it keeps moving")
        if not kind.__module__.startswith("mindspore.") and not reasons:
            reasons.append(
                f"{kind.__qualname__} is not a MindSpore optimizer: paramgate cannot tell what its step does"
            )
        if not reasons:
            return None
        return "MindSpore hands a requires_grad=False parameter in the optimizer a zero gradient, and " + ", and ".join(
            reasons
        )


def _position(optimizer: Any, obj: object) -> int | None:
    for i, p in enumerate(optimizer.parameters):
        if p is obj:
            return i
    return None


def _lr_value(lr: Any) -> tuple[float | None, str | None]:
    """A learning rate as a float, or (None, schedule name) for a dynamic one."""
    ms = _ms()
    if isinstance(lr, ms.nn.Cell):
        inner = getattr(lr, "learning_rate", None)
        if isinstance(inner, ms.nn.Cell):
            return None, type(inner).__qualname__
        return None, type(lr).__qualname__
    return float32_value(lr), None


def _built_groups(optimizer: Any) -> list[GroupEntry]:
    ms = _ms()
    params = list(optimizer.parameters)
    momentum = float32_value(getattr(optimizer, "momentum", None))
    shared: dict[str, JSONValue] = {}
    for key in _HYPERPARAMETERS:
        value = getattr(optimizer, key, None)
        if isinstance(value, bool):
            shared[key] = value
        else:
            number = float32_value(value)
            if number is not None:
                shared[key] = number
    if optimizer.loss_scale != 1.0:
        shared["loss_scale"] = float(optimizer.loss_scale)
    if not optimizer.is_group:
        lr, schedule = _lr_value(optimizer.learning_rate)
        decay = None if optimizer.dynamic_decay_flags else float32_value(optimizer.weight_decay)
        options = dict(shared)
        if schedule:
            options["lr_schedule"] = schedule
        if optimizer.dynamic_decay_flags:
            options["weight_decay_schedule"] = type(optimizer.weight_decay).__qualname__
        if decay:
            options["decay_exempt"] = "names containing 'beta' or 'gamma'"
        return [
            GroupEntry(
                index=0,
                members=tuple(Member(p, p.name) for p in params),
                lr=lr,
                momentum=momentum,
                weight_decay=decay,
                options=options,
            )
        ]
    # Rebuild the groups from the per-parameter tuples the optimizer keeps.
    lrs, decays, centralize = optimizer.group_lr, optimizer.group_weight_decay, optimizer.group_grad_centralization
    keys: dict[tuple[int, float | None, str | None, bool], list[int]] = {}
    for i in range(len(params)):
        wd = decays[i]
        wd_key = float32_value(wd) if not isinstance(wd, ms.nn.Cell) else None
        group_key = (id(lrs[i]), wd_key, None if wd_key is not None else type(wd).__qualname__, bool(centralize[i]))
        keys.setdefault(group_key, []).append(i)
    groups = []
    for index, ((_, wd_value, wd_schedule, gc), members) in enumerate(keys.items()):
        lr, schedule = _lr_value(lrs[members[0]])
        options = dict(shared)
        options["grad_centralization"] = gc
        if schedule:
            options["lr_schedule"] = schedule
        if wd_schedule:
            options["weight_decay_schedule"] = wd_schedule
        groups.append(
            GroupEntry(
                index=index,
                members=tuple(Member(params[i], params[i].name) for i in members),
                lr=lr,
                momentum=momentum,
                weight_decay=wd_value,
                options=options,
            )
        )
    return groups


def _list_options(group: Mapping[str, Any]) -> dict[str, JSONValue]:
    gc = group.get("grad_centralization")
    return {"grad_centralization": bool(gc)} if gc is not None else {}

"""The NumPy adapter: lists of parameters in, neutral records out."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

from paramgate import (
    Fingerprint,
    GroupEntry,
    InvalidParameterError,
    Member,
    ParamEntry,
    StorageSpan,
)
from paramgate.fingerprint import fingerprint_buffer
from paramgate.records import classify
from paramgate_numpy.optim import Momentum
from paramgate_numpy.parameter import Parameter

__all__ = ["NumpyAdapter"]


def _is_ndarray(obj: object) -> bool:
    # If NumPy isn't imported, obj can't be an ndarray (array-api-compat's trick).
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def _is_param(obj: object) -> bool:
    return isinstance(obj, Parameter) or (isinstance(obj, dict) and "params" not in obj)


def _byte_bounds(a: Any) -> tuple[int, int]:
    import numpy as np

    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # numpy < 2
        byte_bounds = getattr(np, "byte_bounds")  # noqa: B009 - absent from numpy 2 stubs
    low, high = byte_bounds(a)
    return int(low), int(high)


_DTYPE_NAMES: dict[Any, str] = {}


def _dtype_name(dtype: Any) -> str:
    # str(dtype) costs microseconds; a model has a handful of dtypes and many parameters.
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype)
    return name


def _root(a: Any) -> object:
    while getattr(a, "base", None) is not None:
        a = a.base
    return a


class NumpyAdapter:
    """Reads models that are lists (or tuples) of NumPy parameters."""

    name = "numpy"
    distribution = "numpy"

    def owns_model(self, model: object) -> bool:
        if not isinstance(model, list | tuple):
            return False
        # A parameter dict has a "name" or "data" key; a list of other dicts (a JAX model's layers) is not ours.
        return all(
            isinstance(p, Parameter) or (isinstance(p, dict) and "params" not in p and ("name" in p or "data" in p))
            for p in model
        )

    def owns_optimizer(self, optimizer: object) -> bool:
        if isinstance(optimizer, Momentum):
            return True
        if not isinstance(optimizer, list | tuple):
            return False
        return all(
            _is_param(item) or (isinstance(item, dict) and isinstance(item.get("params"), list | tuple))
            for item in optimizer
        )

    def parameters(self, model: object) -> Iterator[ParamEntry]:
        assert isinstance(model, list | tuple)
        for index, p in enumerate(model):
            name, data, requires_grad, statistic = self._fields(p, index)
            yield ParamEntry(
                name=name,
                obj=p,
                shape=data.shape,  # a tuple of Python ints already
                dtype=_dtype_name(data.dtype),
                numel=int(data.size),
                requires_grad=requires_grad,
                role=classify(name, requires_grad, statistic=statistic),
                storage=self._span(data),
                nbytes=int(data.nbytes),
            )

    @staticmethod
    def _fields(p: object, index: int) -> tuple[str, Any, bool, bool | None]:
        if isinstance(p, Parameter):
            name, data, flag, statistic = p.name, p.data, p.requires_grad, p.statistic
        else:
            assert isinstance(p, dict)
            if "data" not in p:
                raise InvalidParameterError(
                    f"parameter #{index} ({p.get('name', 'unnamed')!r}) has no 'data': give each parameter dict "
                    "the keys 'name', 'data' (a NumPy array) and 'requires_grad'"
                )
            name, data, flag, statistic = p.get("name"), p["data"], p.get("requires_grad", True), p.get("statistic")
        label = repr(name) if name else f"#{index}"
        if not isinstance(name, str) or not name:
            raise InvalidParameterError(
                f"parameter #{index} has no name (got {name!r}): give it a unique, non-empty string name, "
                "as in {'name': 'backbone.conv1.weight', 'data': ..., 'requires_grad': False}"
            )
        if not _is_ndarray(data):
            raise InvalidParameterError(
                f"parameter {label}: 'data' is a {type(data).__name__}, not a NumPy array; wrap it in np.asarray(...)"
            )
        if not isinstance(flag, bool):
            raise InvalidParameterError(
                f"parameter {label}: requires_grad is {flag!r} ({type(flag).__name__}); use True or False"
            )
        return name, data, flag, statistic

    def _span(self, data: Any) -> StorageSpan | None:
        if data.size == 0:
            return None
        low, high = _byte_bounds(data)
        return StorageSpan(owner=id(_root(data)), start=low, stop=high)

    def optimizer_groups(self, optimizer: object) -> Sequence[GroupEntry]:
        if isinstance(optimizer, Momentum):
            return [
                GroupEntry(
                    index=i,
                    members=tuple(Member(p, _label(p)) for p in g["params"]),
                    lr=g["lr"],
                    momentum=optimizer.momentum,
                    weight_decay=g["weight_decay"],
                    options={"use_nesterov": optimizer.use_nesterov, "loss_scale": optimizer.loss_scale},
                )
                for i, g in enumerate(optimizer.groups)
            ]
        assert isinstance(optimizer, list | tuple)
        return _groups_from_list(optimizer)

    def host_copy(self, entry: ParamEntry) -> Any:
        """A copy of the tensor's raw bytes as a 1-D uint8 array (the pytest fixture counts differing elements)."""
        import numpy as np

        _, data, _, _ = self._fields(entry.obj, 0)
        return np.array(data, copy=True, order="C").reshape(-1).view(np.uint8)

    def fingerprint(self, entry: ParamEntry) -> Fingerprint:
        import numpy as np

        _, data, _, _ = self._fields(entry.obj, 0)
        if data.dtype.hasobject:
            raise InvalidParameterError(
                f"parameter {entry.name!r} has dtype {data.dtype}, which holds Python objects, not raw bytes; "
                "store numbers in it"
            )
        # ascontiguousarray copies only a non-contiguous view (once, transiently).
        flat = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        return fingerprint_buffer(flat.data)

    def would_move(self, entry: ParamEntry, group: GroupEntry, optimizer: object) -> str | None:
        if not isinstance(optimizer, Momentum):
            return None  # a list of parameters has no settings yet: nothing moves it so far
        slot = next(i for i, p in enumerate(optimizer.parameters) if p is entry.obj)
        reasons = []
        if optimizer.decay_flags[slot] and optimizer.weight_decays[slot]:
            reasons.append(
                f"weight_decay={optimizer.weight_decays[slot]} in group {group.index} pulls it toward zero every "
                "step, even with the zero gradient a frozen parameter gets"
            )
        if optimizer.moments[slot].any():
            reasons.append("its momentum buffer is non-zero, so it keeps moving with a zero gradient")
        return "; ".join(reasons) or None


def _label(p: object) -> str | None:
    name = p.get("name") if isinstance(p, dict) else getattr(p, "name", None)
    return name if isinstance(name, str) else None


def _groups_from_list(items: Sequence[Any]) -> list[GroupEntry]:
    """Groups of a plain list: either parameters (one group) or ``{"params": ...}`` dicts."""
    if items and all(isinstance(i, dict) and "params" in i for i in items):
        return [
            GroupEntry(
                index=i,
                members=tuple(Member(p, _label(p)) for p in g["params"]),
                lr=g.get("lr"),
                weight_decay=g.get("weight_decay"),
            )
            for i, g in enumerate(items)
        ]
    return [GroupEntry(index=0, members=tuple(Member(p, _label(p)) for p in items))]

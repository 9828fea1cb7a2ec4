"""The PyTorch adapter: an ``nn.Module`` and any optimizer in, neutral records out.

What it reads, and why:

- Parameters come from ``named_parameters(remove_duplicate=False)`` (module by
  module, each module's buffers after its parameters, as in ``state_dict``), so a
  Parameter reachable under two names is seen under both and the core merges it.
- Buffers are module state, not weights (``register_buffer``'s own definition):
  they get the role ``"state"``, so their drift is reported as statistics
  (PG103), never as a frozen weight that moved.  The running statistics of a
  normalization layer carry ``updating``: whether the next forward pass in the
  layer's current mode will change them.
- Optimizer membership is read from ``param_groups`` (and ``param_names`` when the
  optimizer was built from ``named_parameters()``), optimizer state from
  ``state``, so any optimizer with torch's layout audits, builtin or not.
  Identity is by object (and storage, for tied weights), never by value.
- What moves a frozen parameter follows torch: optimizers skip a parameter whose
  ``.grad`` is None, whatever ``requires_grad`` says, and step one that holds a
  gradient, where weight decay and momentum/Adam state move it even when the
  gradient is zero.

- Under torch.distributed: a DTensor (FSDP2) reports its global shape and is
  fingerprinted by its local shard; the parameters of a ``DistributedDataParallel``
  model are replicas, compared across ranks; a DeepSpeed ZeRO-3 placeholder is
  counted by ``ds_numel`` and fingerprinted by ``ds_tensor``.  :meth:`TorchAdapter.world`
  gives the core the process group (see :mod:`paramgate_torch.distributed`).

torch is imported only inside methods, and only once it is already in
``sys.modules`` (the model or optimizer passed in proves it is).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from paramgate import Fingerprint, GroupEntry, InvalidParameterError, Member, ParamEntry, StorageSpan
from paramgate.fingerprint import fingerprint_buffer
from paramgate.records import JSONValue, Kind, Placement, Role
from paramgate_torch.distributed import TorchWorld, world
from paramgate_torch.hashing import device_fingerprint

__all__ = ["TorchAdapter"]

_STATISTICS = frozenset({"running_mean", "running_var", "num_batches_tracked"})
"""The buffers a ``_NormBase`` layer (BatchNorm, InstanceNorm, SyncBatchNorm) updates in train mode."""

_GROUP_FIELDS = frozenset({"params", "param_names", "lr", "momentum", "weight_decay"})
_IMPLEMENTATION_KEYS = frozenset({"foreach", "fused", "differentiable", "capturable"})
"""Group keys that choose a kernel, not what the step computes: left out of reports."""

_MOMENTUM_STATE = ("momentum_buffer", "exp_avg", "exp_inf", "ax")
"""Optimizer state that keeps moving a parameter when its gradient is zero."""


def _torch() -> Any:
    return sys.modules.get("torch")


def _is_tensor(obj: object) -> bool:
    torch = _torch()
    return torch is not None and isinstance(obj, torch.Tensor)


def _member(item: object) -> bool:
    """A tensor, or a ``(name, tensor)`` pair as ``named_parameters()`` yields."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return _is_tensor(item[1])
    return _is_tensor(item)


def _is_group(item: object) -> bool:
    return (
        isinstance(item, Mapping)
        and isinstance(item.get("params"), list | tuple)
        and all(_member(p) for p in item["params"])
    )


def _is_dtensor(t: object) -> bool:
    """A DTensor (FSDP2, tensor parallel); looked up in sys.modules like torch itself."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def _local(t: Any) -> Any:
    """This rank's part of a DTensor (reading it needs no collective); any other object as it is."""
    return t.to_local() if _is_dtensor(t) else t


def _local_zero(t: Any) -> Any:
    """A ZeRO-3 parameter's partition on this rank, or None."""
    local = getattr(t, "ds_tensor", None)
    torch = _torch()
    return local if isinstance(local, torch.Tensor) else None


def _is_ddp(model: object) -> bool:
    parallel = sys.modules.get("torch.nn.parallel")
    return parallel is not None and isinstance(model, parallel.DistributedDataParallel)


def _is_uninitialized(t: Any) -> bool:
    torch = _torch()
    return isinstance(t, torch.nn.parameter.UninitializedTensorMixin)


def dtype_name(dtype: Any) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``: the names NumPy and the reports use (cached per dtype)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


def _scalar(value: object) -> JSONValue:
    """A group setting as JSON: numbers stay numbers, a one-element tensor (tensor lr) a float."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if _is_tensor(value) and value.numel() == 1:  # type: ignore[attr-defined]
        return float(value.item())  # type: ignore[attr-defined]
    if isinstance(value, tuple) and all(isinstance(v, bool | int | float | str) for v in value):
        return tuple(value)
    return repr(value)


def _number(value: object) -> float | None:
    converted = _scalar(value)
    if isinstance(converted, bool) or not isinstance(converted, int | float):
        return None
    return float(converted)


def _span(t: Any) -> StorageSpan | None:
    """The address range of the bytes this tensor's elements occupy (all of them, strides included).

    Addresses are absolute, so spans of different storages on one device never
    overlap; the owner is the device.
    """
    size = t.nbytes
    if not size:
        return None
    try:
        start = t.data_ptr()
    except (RuntimeError, NotImplementedError, TypeError):
        return None  # tensor subclasses without plain storage (e.g. DTensor)
    owner = t.get_device()
    if t.is_contiguous():
        return StorageSpan(owner, start, start + size)
    low = high = 0
    for n, stride in zip(t.shape, t.stride(), strict=True):
        if stride >= 0:
            high += (n - 1) * stride
        else:
            low += (n - 1) * stride
    itemsize = t.element_size()
    return StorageSpan(owner, start + low * itemsize, start + (high + 1) * itemsize)


_DTYPE_NAMES: dict[Any, str] = {}


class TorchAdapter:
    """Reads ``torch.nn.Module`` models and optimizers with torch's ``param_groups`` layout."""

    name = "torch"
    distribution = "torch"
    host_devices: frozenset[str] = frozenset({"cpu"})
    """Device types hashed with ``xxh3-128`` through a zero-copy host view; all others are hashed where
    they live (``pgmix64x2``).  Empty it to run the device path on CPU tensors (the tests do)."""

    def owns_model(self, model: object) -> bool:
        torch = _torch()
        return torch is not None and isinstance(model, torch.nn.Module)

    def owns_optimizer(self, optimizer: object) -> bool:
        torch = _torch()
        if torch is None:
            return False
        if isinstance(optimizer, torch.optim.Optimizer):
            return True
        if isinstance(optimizer, list | tuple):
            return all(_member(item) or _is_group(item) for item in optimizer)
        groups = getattr(optimizer, "param_groups", None)
        return isinstance(groups, list) and all(_is_group(g) for g in groups)

    def parameters(self, model: object) -> Iterator[ParamEntry]:
        torch = _torch()
        assert isinstance(model, torch.nn.Module)
        norm_base = torch.nn.modules.batchnorm._NormBase
        plain = (torch.Tensor, torch.nn.Parameter)
        strided = torch.strided
        names = _DTYPE_NAMES  # dtype_name's cache, read inline on the fast path
        entry = self._entry
        # Each module's own _parameters and _buffers dicts, as named_parameters(remove_duplicate=False)
        # and named_buffers read them, without their per-member generator overhead; plain dense tensors
        # take a fast path (a 10,000-tensor model audits in a few times a bare named_parameters() loop).
        # DDP keeps one identical replica per rank (it broadcasts parameters and buffers from rank 0):
        # their digests are compared across ranks (PG107).
        replicated: Placement | None = "replicated" if _is_ddp(model) else None
        for prefix, module in model.named_modules(remove_duplicate=False):
            dot = f"{prefix}." if prefix else ""
            for name, p in module._parameters.items():
                if p is None:
                    continue
                if type(p) in plain and p.layout is strided and not p.is_meta and p.is_contiguous():
                    size = p.nbytes
                    if size or not hasattr(p, "ds_numel"):
                        requires_grad = p.requires_grad
                        start = p.data_ptr()
                        yield ParamEntry(
                            dot + name,
                            p,
                            tuple(p.shape),
                            names.get(p.dtype) or dtype_name(p.dtype),
                            p.numel(),
                            requires_grad,
                            "trainable" if requires_grad else "frozen",
                            "parameter",
                            StorageSpan(p.get_device(), start, start + size) if size else None,
                            None,
                            None,
                            size,
                            replicated,
                        )
                        continue
                yield entry(dot + name, p, "parameter", None, replicated)
            if module._buffers:
                norm = isinstance(module, norm_base)
                for name, b in module._buffers.items():
                    if b is not None:
                        updating = bool(module.training and module.track_running_stats) if norm else None
                        yield entry(dot + name, b, "buffer", updating if name in _STATISTICS else None, replicated)

    def _entry(
        self, name: str, t: Any, kind: Kind, updating: bool | None, placement: Placement | None = None
    ) -> ParamEntry:
        torch = _torch()
        if not isinstance(t, torch.Tensor):
            raise InvalidParameterError(
                f"{kind} {name!r} is a {type(t).__name__}, not a torch.Tensor; register tensors only"
            )
        requires_grad = t.requires_grad
        if kind == "parameter":
            role: Role = "trainable" if requires_grad else "frozen"
        else:
            role = "state"
        dtype = dtype_name(t.dtype)
        if _is_dtensor(t):
            # FSDP2 / tensor parallel: shape and numel are global (each rank reports the same, nothing counted
            # twice); the bytes here are this rank's shard.
            local = t.to_local()
            sharded = any(placement.is_shard() for placement in t.placements)
            return ParamEntry(
                name,
                t,
                tuple(t.shape),
                dtype,
                t.numel(),
                requires_grad,
                role,
                kind,
                None,
                None,
                updating,
                local.nbytes,
                "sharded" if sharded else "replicated",
            )
        if hasattr(t, "ds_numel") and not t.numel():
            # DeepSpeed ZeRO-3: the parameter is an empty placeholder; ds_shape/ds_numel are the real size
            # and ds_tensor this rank's partition.
            return ParamEntry(
                name,
                t,
                tuple(t.ds_shape),
                dtype,
                int(t.ds_numel),
                requires_grad,
                role,
                kind,
                note="ZeRO-3 partitioned: counted by ds_numel, fingerprinted by this rank's ds_tensor",
                updating=updating,
                nbytes=_local_zero(t).nbytes if _local_zero(t) is not None else None,
                placement="sharded",
            )
        if _is_uninitialized(t):
            return ParamEntry(
                name,
                t,
                (),
                dtype,
                0,
                requires_grad,
                role,
                kind,
                note="uninitialized (lazy module): shape and size are known after the first forward pass",
                nbytes=0,
            )
        meta = t.is_meta
        dense = t.layout == torch.strided
        return ParamEntry(
            name,
            t,
            tuple(t.shape),
            dtype,
            t.numel(),
            requires_grad,
            role,
            kind,
            None if meta or not dense else _span(t),
            "on the meta device: no data until the model is materialized" if meta else None,
            updating,
            t.nbytes if dense else None,
            placement,
        )

    def optimizer_groups(self, optimizer: object) -> Sequence[GroupEntry]:
        if isinstance(optimizer, list | tuple):
            if optimizer and all(_is_group(item) for item in optimizer):
                groups: Sequence[Mapping[str, Any]] = optimizer
            else:
                groups = [{"params": list(optimizer)}]
        else:
            groups = getattr(optimizer, "param_groups")  # noqa: B009 - checked by owns_optimizer
        return [_group(i, g) for i, g in enumerate(groups)]

    def world(self, model: object) -> TorchWorld | None:
        return world()

    def host_copy(self, entry: ParamEntry) -> Any:
        """A host copy of this rank's raw bytes of the tensor, 1-D uint8 (for the pytest fixture's element counts)."""
        torch = _torch()
        t: Any = entry.obj
        if _is_dtensor(t):
            t = t.to_local()
        elif entry.placement == "sharded" and hasattr(t, "ds_numel"):
            t = _local_zero(t)
        if t is None or t.layout is not torch.strided or t.is_quantized or t.device.type == "meta":
            return None
        data = t.detach().to("cpu", copy=True).resolve_conj().resolve_neg()
        if data.dtype == torch.bool:
            data = data.view(torch.uint8)  # bytes, not values (see fingerprint)
        return data.contiguous().reshape(-1).view(torch.uint8).numpy()

    def fingerprint(self, entry: ParamEntry) -> Fingerprint:
        torch = _torch()
        t = entry.obj
        assert isinstance(t, torch.Tensor)
        if _is_dtensor(t):
            t = t.to_local()  # this rank's shard (or replica), hashed where it lives: no collective
        elif entry.placement == "sharded" and hasattr(t, "ds_numel"):
            t = _local_zero(t)
            if t is None:
                raise InvalidParameterError(
                    f"{entry.name!r} is a ZeRO-3 placeholder without ds_tensor (this rank's partition): take the "
                    "snapshot after DeepSpeed has partitioned the model"
                )
        if (
            type(t) in (torch.Tensor, torch.nn.Parameter)
            and t.is_cpu
            and "cpu" in self.host_devices
            and t.layout is torch.strided
            and t.is_contiguous()
            and not (t.is_conj() or t.is_neg() or t.is_quantized)
        ):
            # The common case, kept short: a plain dense CPU tensor, hashed through a zero-copy byte view.
            return fingerprint_buffer(t.detach().view(-1).view(torch.uint8).numpy())
        if _is_uninitialized(t):
            raise InvalidParameterError(
                f"{entry.name!r} is an uninitialized lazy parameter and has no data to fingerprint yet: run one "
                "forward pass (e.g. model(example_input)) to materialize the lazy layers before taking a snapshot"
            )
        if t.device.type == "meta":
            raise InvalidParameterError(
                f"{entry.name!r} is on the meta device and has no data to fingerprint: materialize the model "
                "(e.g. model.to_empty(device=...) and load its weights) before taking a snapshot"
            )
        if t.layout != torch.strided or t.is_quantized:
            raise InvalidParameterError(
                f"{entry.name!r} has layout {t.layout}{' (quantized)' if t.is_quantized else ''}; paramgate "
                "fingerprints dense tensors only: convert it with .to_dense() / .dequantize() before taking a snapshot"
            )
        if t.device.type not in self.host_devices:
            return device_fingerprint(t)  # hashed where it lives: nothing is copied to the host
        data = t.detach()
        if data.is_conj() or data.is_neg():
            data = data.resolve_conj().resolve_neg()
        if data.dtype == torch.bool:
            data = data.view(torch.uint8)  # torch copies bools as values (any non-zero byte becomes 1): copy bytes
        # contiguous() copies only a non-contiguous view (once, transiently).
        raw = data.contiguous().reshape(-1).view(torch.uint8)
        return fingerprint_buffer(raw.numpy())

    def would_move(self, entry: ParamEntry, group: GroupEntry, optimizer: object) -> str | None:
        t: Any = entry.obj
        if t.requires_grad:
            # Frozen by trainable=, not by its flag: the next backward pass gives it a gradient.
            return (
                "it is meant to be frozen (trainable=) but still has requires_grad=True, so the next backward "
                "pass gives it a gradient and the optimizer steps it: call .requires_grad_(False) on it"
            )
        grad = t.grad
        built = not isinstance(optimizer, list | tuple)
        kind = type(optimizer)
        builtin = kind.__module__.startswith("torch.")
        decay = group.weight_decay or 0.0
        if grad is None:
            if built and not builtin and decay:
                return (
                    f"weight_decay={decay} in group {group.index}, and {kind.__qualname__} is not a torch "
                    "optimizer: some apply weight decay even to parameters without a gradient "
                    "(KellerJordan/Muon#54)"
                )
            return None  # torch optimizers skip a parameter whose .grad is None
        held_grad = (
            "it holds a gradient (left from a backward pass before it was frozen, or kept as zeros by "
            "zero_grad(set_to_none=False)), and torch optimizers step every parameter whose .grad is set, "
            "whatever requires_grad says"
        )
        reasons = []
        grad = _local(grad)
        if grad.numel() and bool(grad.ne(0).any()):
            reasons.append("the gradient is non-zero")
        if built:
            if decay:
                reasons.append(f"weight_decay={decay} in group {group.index} changes it even with a zero gradient")
            state = getattr(optimizer, "state", {})
            held = state.get(t) if isinstance(state, Mapping) else None  # .get: never add a defaultdict entry
            for key in _MOMENTUM_STATE:
                value = _local(held.get(key)) if isinstance(held, Mapping) else None
                if isinstance(value, _torch().Tensor) and value.numel() and bool(value.ne(0).any()):
                    reasons.append(f"its optimizer state {key!r} is non-zero, so it keeps moving with a zero gradient")
            lambd = _number(group.options.get("lambd"))
            if lambd:
                reasons.append(f"lambd={lambd} (ASGD) shrinks it every step")
            if not builtin and not reasons:
                reasons.append(
                    f"{kind.__qualname__} is not a torch optimizer: paramgate cannot tell what its step does"
                )
        if not reasons:
            return None
        return f"{held_grad}: {', and '.join(reasons)} (set its .grad to None)"


def _group(index: int, group: Mapping[str, Any]) -> GroupEntry:
    names = group.get("param_names")
    members = []
    for slot, item in enumerate(group["params"]):
        if isinstance(item, tuple):
            label, tensor = item
        else:
            tensor = item
            label = names[slot] if isinstance(names, list | tuple) and slot < len(names) else None
        members.append(Member(tensor, label))
    options = {
        key: _scalar(value)
        for key, value in group.items()
        if key not in _GROUP_FIELDS and key not in _IMPLEMENTATION_KEYS and value is not None
    }
    return GroupEntry(
        index=index,
        members=tuple(members),
        lr=_number(group.get("lr")),
        momentum=_number(group.get("momentum")),
        weight_decay=_number(group.get("weight_decay")),
        options=options,
    )

"""The audit's checks, written once against the neutral records.

Adapters only translate; every rule about what is wrong lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paramgate.distributed import World
from paramgate.errors import (
    AdapterError,
    EmptyModelError,
    InvalidArgumentError,
    InvalidParameterError,
    ParamGateError,
)
from paramgate.findings import Finding
from paramgate.protocol import BindsOptimizer, HasWorld, ParamGate, StatesIntent
from paramgate.records import GroupEntry, GroupRecord, Intent, ParamEntry, ParamRecord, StorageSpan
from paramgate.report import AuditReport, Totals

__all__ = ["Resolved", "Tensor", "build_audit", "call_adapter", "collect", "place", "resolve", "world_of"]

_EMPTY_HINT = (
    "An optimizer built from a filter() or generator that was already read (for logging, say) gets "
    "nothing: build the list once with paramgate.trainable(model) and pass that list."
)
_EMPTY_HINT_ZH = (
    "用已经被读过一遍的 filter() 或生成器构造优化器，只会得到空列表：请用 paramgate.trainable(model) 得到列表再传入。"
)


@dataclass(eq=False, slots=True)
class Tensor:
    """One distinct tensor of a model (an object, whatever its names) during one call."""

    entry: ParamEntry
    aliases: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.entry.name


@dataclass
class _Placement:
    groups: list[int] = field(default_factory=list)
    first: GroupEntry | None = None


def call_adapter(adapter: ParamGate, what: str, fn: Callable[..., object], *args: object) -> object:
    """Call into an adapter; anything but a ParamGateError becomes an AdapterError naming it."""
    try:
        return fn(*args)
    except ParamGateError:
        raise
    except Exception as exc:
        raise AdapterError(
            f"the {adapter.name} adapter raised in {what}(): {type(exc).__name__}: {exc}. "
            f"This is a bug in the adapter ({type(adapter).__module__}.{type(adapter).__qualname__}) or an object "
            "it does not expect; please report it to the plugin's authors (`paramgate plugins` lists which "
            "plugin provides it)."
        ) from exc


Stated = Callable[[str], "bool | None"]
"""The intended flag of a tensor by name, None to keep the adapter's flag."""


@dataclass(frozen=True)
class Resolved:
    """The optimizer as the adapter reads it, and the stated or inferred intent, for one call."""

    optimizer: object | None
    stated: Stated | None = None
    names: frozenset[str] | None = None
    """Names ``trainable=`` listed, checked against the model so that a typo is an error."""
    note: str | None = None


def resolve(adapter: ParamGate, model: object, optimizer: object | None, trainable: object | None) -> Resolved:
    """Bind the optimizer to the model (adapters that need it) and read ``trainable=``."""
    if optimizer is not None and isinstance(adapter, BindsOptimizer):
        optimizer = call_adapter(adapter, "bind_optimizer", adapter.bind_optimizer, model, optimizer)
    intent = None
    if isinstance(adapter, StatesIntent):
        intent = call_adapter(adapter, "intent", adapter.intent, model, optimizer, trainable)
        if intent is not None and not isinstance(intent, Intent):
            raise AdapterError(f"the {adapter.name} adapter's intent() returned {type(intent).__name__}, not an Intent")
    if isinstance(intent, Intent):
        return Resolved(optimizer, intent.trainable.get, None, intent.note)
    if trainable is None:
        return Resolved(optimizer)
    if isinstance(trainable, Mapping):
        flags = dict(trainable)
        if not all(isinstance(k, str) and isinstance(v, bool) for k, v in flags.items()):
            raise InvalidArgumentError(
                "trainable: a mapping must map parameter names (str) to True or False, e.g. "
                '{"head.weight": True, "backbone.conv1.weight": False}'
            )
        return Resolved(optimizer, flags.get, frozenset(flags))
    if callable(trainable):
        predicate = trainable

        def stated(name: str) -> bool:
            flag = predicate(name)
            if not isinstance(flag, bool):
                raise InvalidArgumentError(
                    f"trainable: the predicate returned {type(flag).__name__} for {name!r}; it must return "
                    "True (train it) or False (keep it frozen)"
                )
            return flag

        return Resolved(optimizer, stated)
    if isinstance(trainable, Collection) and not isinstance(trainable, str | bytes):
        names = frozenset(trainable)
        if not all(isinstance(n, str) for n in names):
            raise InvalidArgumentError(
                "trainable: a collection must hold the names of the parameters to train (str); to pass "
                "tensors, pass paramgate.trainable(model) as the optimizer instead"
            )
        return Resolved(optimizer, names.__contains__, names)
    raise InvalidArgumentError(
        f"trainable: expected a name -> bool callable, a mapping of names to flags or a collection of the "
        f"names to train, got {type(trainable).__name__}"
        + ("" if isinstance(adapter, StatesIntent) else f" (the {adapter.name} adapter reads no other form)")
    )


def _apply(stated: Stated, names: frozenset[str] | None, tensors: Sequence[Tensor]) -> None:
    """Set each tensor's flag (and role) to the intended one; buffers stay state."""
    if names is not None:
        known = {n for t in tensors for n in (t.name, *t.aliases)}
        unknown = sorted(names - known)
        if unknown:
            raise InvalidArgumentError(
                f"trainable names {', '.join(map(repr, unknown[:5]))}, which the model does not have; use the "
                "names paramgate.audit(model) reports"
            )
    for t in tensors:
        entry = t.entry
        if entry.kind != "parameter":
            continue
        flag = stated(t.name)
        for alias in t.aliases:
            if flag is None:
                flag = stated(alias)
        if flag is None:
            continue
        entry.requires_grad = flag
        if flag:
            entry.role = "trainable"
        elif entry.role == "trainable":
            entry.role = "frozen"


def collect(adapter: ParamGate, model: object, resolved: Resolved | None = None) -> tuple[list[Tensor], list[str]]:
    """The model's distinct tensors in model order, and names used by two different tensors.

    With ``resolved`` carrying an intent, each tensor's flag and role follow it.
    """
    # Materialise inside call_adapter so that errors raised lazily by a generator are wrapped too.
    raw = call_adapter(adapter, "parameters", lambda: list(adapter.parameters(model)))
    assert isinstance(raw, list)
    by_obj: dict[int, Tensor] = {}
    names: set[str] = set()
    tensors: list[Tensor] = []
    duplicates: list[str] = []
    for position, entry in enumerate(raw):
        if type(entry) is not ParamEntry and not isinstance(entry, ParamEntry):
            raise AdapterError(
                f"the {adapter.name} adapter yielded {type(entry).__name__}, not a ParamEntry; this is a bug in the "
                "adapter: please report it to its authors"
            )
        name = entry.name
        if not name or not isinstance(name, str):
            raise InvalidParameterError(
                f"parameter #{position} (shape {list(entry.shape)}) has no name: give every parameter a "
                "unique name so reports and snapshots can refer to it"
            )
        key = id(entry.obj)
        known = by_obj.get(key)
        if known is not None:
            if name != known.entry.name and name not in known.aliases:
                known.aliases.append(name)
            continue
        if name in names and name not in duplicates:
            duplicates.append(name)
        names.add(name)
        by_obj[key] = tensor = Tensor(entry)
        tensors.append(tensor)
    if not tensors:
        raise EmptyModelError(
            "model has no parameters: check that you passed the model itself (not an already-read "
            "generator or an empty container) and that its layers are built"
        )
    if resolved is not None and resolved.stated is not None:
        _apply(resolved.stated, resolved.names, tensors)
    return tensors, duplicates


def place(
    adapter: ParamGate, optimizer: object, tensors: Sequence[Tensor]
) -> tuple[list[GroupEntry], dict[int, _Placement], list[tuple[int, str]]]:
    """Where each tensor sits in the optimizer, keyed by ``id(obj)``, and what is foreign."""
    read = call_adapter(adapter, "optimizer_groups", adapter.optimizer_groups, optimizer)
    if not isinstance(read, Sequence) or not all(isinstance(g, GroupEntry) for g in read):
        raise AdapterError(
            f"the {adapter.name} adapter's optimizer_groups() returned {type(read).__name__}, not a sequence of "
            "GroupEntry; this is a bug in the adapter: please report it to its authors"
        )
    groups = list(read)
    known = {id(t.entry.obj): t for t in tensors}
    placements: dict[int, _Placement] = {}
    foreign: list[tuple[int, str]] = []
    for group in groups:
        for slot, member in enumerate(group.members):
            key = id(member.obj)
            if key not in known:
                foreign.append((group.index, member.label or f"group {group.index} slot {slot}"))
                continue
            placement = placements.setdefault(key, _Placement())
            placement.groups.append(group.index)
            if placement.first is None:
                placement.first = group
    return groups, placements, foreign


def _storage_conflicts(tensors: Sequence[Tensor]) -> list[list[Tensor]]:
    """Clusters of distinct tensors whose bytes overlap and whose flags disagree.

    Sorted by start, a span overlaps the cluster before it when it starts below
    the furthest stop so far; NumPy finds those few places, Python walks them.
    """
    import numpy as np

    by_owner: dict[object, list[int]] = {}
    for position, t in enumerate(tensors):
        span = t.entry.storage
        if span is not None and span.stop > span.start:
            by_owner.setdefault(span.owner, []).append(position)
    conflicts = []
    for positions in by_owner.values():
        if len(positions) < 2:
            continue
        spans = [span for p in positions if (span := tensors[p].entry.storage) is not None]
        kind: Any = object if _wide(spans) else np.int64
        starts = np.array([s.start for s in spans], dtype=kind)
        stops = np.array([s.stop for s in spans], dtype=kind)
        order = np.argsort(starts, kind="stable")
        starts, stops = starts[order], stops[order]
        reach = np.maximum.accumulate(stops)
        joins = np.flatnonzero(starts[1:] < reach[:-1]) + 1  # sorted slot k overlaps slots before it
        if not len(joins):
            continue
        clusters: list[list[int]] = []
        previous = -2
        for k in joins.tolist():
            if k != previous + 1:
                clusters.append([k - 1])
            clusters[-1].append(k)
            previous = k
        for slots in clusters:
            members = [tensors[positions[order[k]]] for k in slots]
            if len({m.entry.requires_grad for m in members}) > 1:
                conflicts.append(members)
    return conflicts


def _wide(spans: Sequence[StorageSpan]) -> bool:
    # Offsets past int64 (not seen in practice) fall back to Python ints.
    return any(s.stop >= 1 << 63 or s.start < -(1 << 63) for s in spans)


def _names(t: Tensor) -> str:
    return " = ".join([t.name, *t.aliases])


def world_of(adapter: ParamGate, model: object) -> World | None:
    """The distributed run ``model`` is part of, when its adapter knows one and it has more than one rank."""
    if not isinstance(adapter, HasWorld):
        return None
    world = call_adapter(adapter, "world", adapter.world, model)
    if world is not None and not isinstance(world, World):
        raise AdapterError(f"the {adapter.name} adapter's world() returned {type(world).__name__}, not a World")
    return world if world is not None and world.size > 1 else None


def build_audit(adapter: ParamGate, model: object, optimizer: object | None, trainable: object = None) -> AuditReport:
    """Run every audit check on ``model`` (and ``optimizer``) and build the report."""
    user_optimizer = optimizer
    resolved = resolve(adapter, model, optimizer, trainable)
    optimizer = resolved.optimizer
    tensors, duplicates = collect(adapter, model, resolved)
    world = world_of(adapter, model)
    findings: list[Finding] = []
    if resolved.note:
        findings.append(Finding("PG010", "info", None, resolved.note))
    groups: list[GroupEntry] | None = None
    placements: dict[int, _Placement] = {}

    for name in duplicates:
        findings.append(
            Finding(
                "PG008",
                "error",
                name,
                f"two different tensors are both called {name!r}; reports and snapshots match tensors "
                "by name, so rename one of them",
                f"两个不同的张量都叫 {name!r}；报告和快照按名称对应张量，请给其中一个改名",
            )
        )

    if optimizer is not None:
        groups, placements, foreign = place(adapter, optimizer, tensors)
        findings += _optimizer_findings(adapter, optimizer, tensors, groups, placements, foreign)

    for cluster in _storage_conflicts(tensors):
        flags = ", ".join(f"{t.name} requires_grad={t.entry.requires_grad}" for t in cluster)
        findings.append(
            Finding(
                "PG005",
                "error",
                cluster[0].name,
                f"these tensors share storage but disagree on whether to train: {flags}. Training one moves "
                "the other (tied weights): freeze or unfreeze them together, or untie them with a copy",
                f"这些张量共享存储但训练标记不一致：{flags}。训练其中一个会改动另一个（权重绑定）：请一起冻结或解冻，或复制以解除绑定",
            )
        )

    if not any(t.entry.requires_grad and t.entry.kind == "parameter" for t in tensors):
        findings.append(
            Finding(
                "PG006",
                "error",
                None,
                "no parameter of the model requires grad, so training cannot change anything: unfreeze "
                "the layers you mean to train (e.g. the head) before building the optimizer",
                "模型中没有任何参数需要梯度，训练不会改变任何东西：请在构造优化器之前解冻要训练的层（例如分类头）",
            )
        )

    findings += _train_mode_findings(tensors)

    records = tuple(_record(t, placements.get(id(t.entry.obj))) for t in tensors)
    if len(findings) > 1:
        order = {t.name: i for i, t in enumerate(tensors)}
        findings.sort(key=lambda f: (f.code, order.get(f.name or "", -1)))
    return AuditReport(
        framework=adapter.name,
        params=records,
        groups=None if groups is None else _group_records(groups, tensors),
        optimizer=None if user_optimizer is None else _type_name(user_optimizer),
        findings=tuple(findings),
        totals=_totals(records),
        rank=None if world is None else world.rank,
        world_size=1 if world is None else world.size,
    )


def _scope(name: str) -> str:
    """The enclosing scope of a dotted or slashed name, in the name's own spelling ("" at the top)."""
    cut = max(name.rfind("."), name.rfind("/"))
    return name[:cut] if cut > 0 else ""


def _leaf(name: str) -> str:
    return name[max(name.rfind("."), name.rfind("/")) + 1 :]


def _train_mode_findings(tensors: Sequence[Tensor]) -> list[Finding]:
    """PG009: statistics that the next training step updates, in a layer whose weights are frozen.

    A layer is the statistics' name scope; a layer without weights of its own
    (``affine=False``) takes its flags from the nearest enclosing scope that has some.
    """
    layers: dict[str, list[str]] = {}
    for t in tensors:
        if t.entry.updating and t.entry.role == "state":
            layers.setdefault(_scope(t.name), []).append(_leaf(t.name))
    if not layers:
        return []
    flags: dict[str, list[bool]] = {}
    for t in tensors:
        if t.entry.kind == "parameter" and t.entry.role != "state":
            for name in (t.name, *t.aliases):
                scope = _scope(name)
                while True:
                    flags.setdefault(scope, []).append(t.entry.requires_grad)
                    if not scope:
                        break
                    scope = _scope(scope)
    findings = []
    for layer, stats in layers.items():
        scope = layer
        while scope not in flags and scope:
            scope = _scope(scope)
        owners = flags.get(scope)
        if not owners or any(owners):
            continue
        where = layer or "the model"
        findings.append(
            Finding(
                "PG009",
                "warning",
                layer or None,
                f"normalization layer {where} is frozen but in train mode, so the next forward pass updates its "
                f"statistics ({', '.join(stats)}) although no optimizer touches them. If they should stay "
                "fixed, switch the frozen part to inference mode after every switch to training "
                "(torch: backbone.eval() after model.train(); MindSpore: backbone.set_train(False))",
                f"归一化层 {where} 已冻结却处于训练模式，下一次前向计算会更新它的统计量（{', '.join(stats)}），"
                "尽管没有优化器改动它们。若要固定，请在每次切换到训练模式后把冻结部分切回推理模式"
                "（torch：model.train() 之后调用 backbone.eval()；MindSpore：backbone.set_train(False)）",
            )
        )
    return findings


def _record(t: Tensor, placement: _Placement | None) -> ParamRecord:
    e = t.entry
    return ParamRecord(
        e.name,
        e.shape,
        e.dtype,
        e.numel,
        e.requires_grad,
        e.role,
        e.kind,
        placement is not None,
        placement.groups[0] if placement is not None else None,
        tuple(t.aliases) if t.aliases else (),
        e.note,
    )


def _type_name(obj: object) -> str:
    # Exact types: an optax GradientTransformation is a NamedTuple, not a list of parameters.
    if type(obj) in (list, tuple):
        return f"{type(obj).__name__} of parameters"
    return type(obj).__qualname__


def _group_records(groups: Sequence[GroupEntry], tensors: Sequence[Tensor]) -> tuple[GroupRecord, ...]:
    names = {id(t.entry.obj): t.name for t in tensors}
    return tuple(
        GroupRecord(
            index=group.index,
            params=tuple(names.get(id(m.obj), f"<not in model: {m.label or '?'}>") for m in group.members),
            lr=group.lr,
            momentum=group.momentum,
            weight_decay=group.weight_decay,
            options=dict(group.options),
        )
        for group in groups
    )


def _totals(records: Sequence[ParamRecord]) -> Totals:
    by_role = {"trainable": 0, "frozen": 0, "state": 0}
    parameters = 0
    for r in records:
        by_role[r.role] += r.numel
        if r.kind == "parameter":
            parameters += r.numel
    return Totals(
        trainable=by_role["trainable"], frozen=by_role["frozen"], state=by_role["state"], parameters=parameters
    )


def _optimizer_findings(
    adapter: ParamGate,
    optimizer: object,
    tensors: Sequence[Tensor],
    groups: Sequence[GroupEntry],
    placements: dict[int, _Placement],
    foreign: Sequence[tuple[int, str]],
) -> list[Finding]:
    findings: list[Finding] = []
    if not any(g.members for g in groups):
        findings.append(
            Finding(
                "PG003",
                "error",
                "optimizer",
                f"the optimizer holds no parameters at all. {_EMPTY_HINT}",
                f"优化器里一个参数也没有。{_EMPTY_HINT_ZH}",
            )
        )
    else:
        for g in groups:
            if not g.members:
                # Only a warning: the other groups hold parameters, and any trainable one left out of every
                # group is PG002 on its own (transformers' default AdamW keeps an empty no-decay group).
                findings.append(
                    Finding(
                        "PG003",
                        "warning",
                        f"group {g.index}",
                        f"optimizer group {g.index} has no parameters: harmless if meant (an empty no-decay "
                        f"group), but if you built it from a filter() or generator, it was empty. {_EMPTY_HINT}",
                        f"优化器第 {g.index} 组没有参数：若是有意为之（例如空的不衰减组）则无害。{_EMPTY_HINT_ZH}",
                    )
                )

    for group_index, label in foreign:
        findings.append(
            Finding(
                "PG007",
                "error",
                label,
                f"optimizer group {group_index} holds {label}, which is not a tensor of this model: the "
                "optimizer was probably built from another model (or a copy of it); build it from this "
                "model's parameters",
                f"优化器第 {group_index} 组持有 {label}，它不是这个模型的张量："
                "优化器可能是用另一个模型（或其副本）构造的",
            )
        )

    for t in tensors:
        placement = placements.get(id(t.entry.obj))
        if placement is not None and len(placement.groups) > 1:
            where = ", ".join(str(i) for i in placement.groups)
            findings.append(
                Finding(
                    "PG004",
                    "error",
                    t.name,
                    f"{_names(t)} is in the optimizer {len(placement.groups)} times (groups {where}); it would "
                    "be updated more than once per step: list each parameter in exactly one group",
                    f"{_names(t)} 在优化器中出现了 {len(placement.groups)} 次（组 {where}）：每个参数只能放在一个组里",
                )
            )
        if placement is None:
            if t.entry.requires_grad and t.entry.kind == "parameter":
                findings.append(
                    Finding(
                        "PG002",
                        "error",
                        t.name,
                        f"{_names(t)} requires grad but is in no optimizer group, so it will never be "
                        "trained: "
                        + getattr(
                            adapter,
                            "missing_hint",
                            "it was probably added or replaced after the optimizer was built; build the "
                            "optimizer last, from paramgate.trainable(model)",
                        ),
                        f"{_names(t)} 需要梯度却不在任何优化器参数组中，永远不会被训练："
                        "它可能是在构造优化器之后才添加或替换的",
                    )
                )
            continue
        if t.entry.requires_grad:
            continue
        assert placement.first is not None
        reason = call_adapter(adapter, "would_move", adapter.would_move, t.entry, placement.first, optimizer)
        what = "statistics tensor" if t.entry.role == "state" else "frozen parameter"
        what_zh = "统计量" if t.entry.role == "state" else "冻结参数"
        if reason:
            findings.append(
                Finding(
                    "PG001",
                    "error",
                    t.name,
                    f"{what} {_names(t)} is in optimizer group {placement.first.index}, which moves it: "
                    f"{reason}. "
                    + getattr(
                        adapter,
                        "freeze_hint",
                        "Build the optimizer from paramgate.trainable(model) (or filter(lambda p: p.requires_grad, "
                        "...)) so it never sees frozen parameters",
                    ),
                    f"{what_zh} {_names(t)} 在优化器第 {placement.first.index} 组中，优化器会改动它：{reason}。"
                    "请用 paramgate.trainable(model) 构造优化器，使其看不到冻结参数",
                )
            )
        else:
            findings.append(
                Finding(
                    "PG001",
                    "warning",
                    t.name,
                    f"{what} {_names(t)} is in optimizer group {placement.first.index}; it would not move as "
                    "things stand, but a gradient, weight decay or momentum added later would move it: leave "
                    "it out of the optimizer",
                    f"{what_zh} {_names(t)} 在优化器第 {placement.first.index} 组中；目前不会被改动，"
                    "但以后一旦有梯度、权重衰减或动量就会被改动：请不要把它交给优化器",
                )
            )
    return findings

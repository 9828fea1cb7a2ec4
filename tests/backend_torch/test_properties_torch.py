"""Property-based tests on the torch backend: random module trees, random optimizers, random bit flips.

Module trees are built bottom-up from random specs: parameters and buffers of
random dtypes and shapes (0-d and zero-size included), the same Parameter
registered in two modules, the same submodule attached twice.  The ground truth
(every name of every tensor, its role, its optimizer group) comes from those
specs, never from paramgate.

``PARAMGATE_HYPOTHESIS_PROFILE=campaign`` runs 10,000 examples per property (see
docs/reliability.md); the default ``ci`` profile runs a small fixed set.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from _helpers import expected_placement, hypothesis_profile
from hypothesis import event, given, settings
from hypothesis import strategies as st
from torch import nn
from torchnets import flip_bit, raw

import paramgate

PROFILE_NAME, PROFILE = hypothesis_profile()
# torch builds modules and optimizers: an example costs a few NumPy ones, so CI runs fewer.
TORCH_PROFILE = settings(PROFILE, max_examples=60) if PROFILE_NAME == "ci" else PROFILE

_NAMES = ["float16", "float32", "float64", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int8", "uint8", "int64"]
DTYPES = [getattr(torch, n) for n in _NAMES if hasattr(torch, n)] + [torch.bool, torch.complex64]
GRAD_DTYPES = {d for d in DTYPES if d.is_floating_point or d.is_complex}  # only these may require grad
STEP_DTYPES = {torch.float32, torch.float64}  # what the no-change property trains with SGD
SHAPES = st.lists(st.integers(0, 3), max_size=3).map(tuple)


@dataclass(eq=False)
class TSpec:
    """One distinct tensor as generated: its role, kind and the memory under it."""

    tensor: torch.Tensor
    role: str
    kind: str
    base: torch.Tensor
    names: list[str] = field(default_factory=list)

    @property
    def requires_grad(self) -> bool:
        return self.role == "trainable"


@dataclass(eq=False)
class Tree:
    root: nn.Module
    specs: list[TSpec]
    """Every distinct tensor reachable from the root (its names filled in by the walk)."""

    def by_name(self) -> dict[str, TSpec]:
        return {name: s for s in self.specs for name in s.names}


@st.composite
def tensors(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Arbitrary bit patterns of a random dtype and shape, contiguous or transposed."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(SHAPES)
    transposed = len(shape) >= 2 and draw(st.booleans())
    nbytes = math.prod(shape) * dtype.itemsize
    raw_bytes = bytearray(draw(st.binary(min_size=nbytes, max_size=nbytes)))
    base = torch.frombuffer(raw_bytes, dtype=torch.uint8).clone() if nbytes else torch.zeros(0, dtype=torch.uint8)
    if dtype == torch.bool:
        base &= 1
    base = base.view(dtype).reshape(shape[::-1] if transposed else shape)
    return (base.permute(*reversed(range(base.dim()))) if transposed else base), base


@st.composite
def trees(draw: st.DrawFn, *, ties: bool = True, target: bool = False) -> Tree:
    """1 to 4 modules built bottom-up; each may reuse an earlier Parameter or attach an earlier module."""
    modules: list[nn.Module] = []
    members: list[list[tuple[str, TSpec]]] = []  # per module: (attribute, tensor) in registration order
    children: list[list[tuple[str, int]]] = []
    made: list[TSpec] = []
    for _ in range(draw(st.integers(1, 4))):
        module, own = nn.Module(), []
        for j in range(draw(st.integers(0, 3))):
            params = [s for s in made if s.kind == "parameter"]
            choice = draw(st.sampled_from(["parameter", "parameter", "buffer", "alias", "storage"]))
            if choice in ("alias", "storage") and not (ties and params):
                choice = "parameter"
            if choice == "alias":  # the same Parameter object under a second name
                spec = draw(st.sampled_from(params))
                module.register_parameter(f"p{j}", spec.tensor)  # type: ignore[arg-type]
            elif choice == "buffer":
                data, base = draw(tensors())
                spec = TSpec(data, "state", "buffer", base)
                module.register_buffer(f"b{j}", data, persistent=draw(st.booleans()))
                made.append(spec)
            else:
                if choice == "storage":  # another Parameter over the same bytes (tied weights)
                    other = draw(st.sampled_from(params))
                    data, base = other.tensor.detach(), other.base
                else:
                    data, base = draw(tensors())
                grad = data.dtype in GRAD_DTYPES and draw(st.booleans())
                spec = TSpec(
                    nn.Parameter(data, requires_grad=grad), "trainable" if grad else "frozen", "parameter", base
                )
                module.register_parameter(f"p{j}", spec.tensor)  # type: ignore[arg-type]
                made.append(spec)
            own.append((f"p{j}" if spec.kind == "parameter" else f"b{j}", spec))
        kids = []
        if modules:
            for k in draw(st.lists(st.integers(0, len(modules) - 1), max_size=3)):  # repeats: one module, two names
                name = f"c{len(kids)}"
                module.add_module(name, modules[k])
                kids.append((name, k))
        modules.append(module)
        members.append(own)
        children.append(kids)
    root = len(modules) - 1
    if target and not any(
        s.role != "trainable" and s.tensor.nbytes and _reachable(s, root, members, children) for s in made
    ):
        data, base = draw(tensors())
        while not data.nbytes:
            data, base = draw(tensors())
        frozen = draw(st.booleans())
        spec = TSpec(nn.Parameter(data, requires_grad=False) if frozen else data, "frozen" if frozen else "state",
                     "parameter" if frozen else "buffer", base)  # fmt: skip
        if frozen:
            modules[root].register_parameter("target", spec.tensor)  # type: ignore[arg-type]
        else:
            modules[root].register_buffer("target", spec.tensor)
        members[root].append(("target", spec))
        made.append(spec)
    # Every name of every tensor: each path from the root, a module attached twice giving two.
    seen: dict[int, TSpec] = {}

    def walk(index: int, prefix: str) -> None:
        for attr, spec in members[index]:
            spec.names.append(prefix + attr)
            seen.setdefault(id(spec.tensor), spec)
        for attr, k in children[index]:
            walk(k, f"{prefix}{attr}.")

    for s in made:
        s.names.clear()
    walk(root, "")
    # An aliased Parameter has one spec; its names were appended to that spec by each registration.
    return Tree(modules[root], list(seen.values()))


def _reachable(spec: TSpec, root: int, members: list[Any], children: list[Any]) -> bool:
    stack = [root]
    while stack:
        index = stack.pop()
        if any(s is spec for _, s in members[index]):
            return True
        stack += [k for _, k in children[index]]
    return False


@dataclass
class TOptim:
    optimizer: Any
    groups: list[list[torch.Tensor]]
    foreign: list[str]
    """The names the audit gives the foreign tensors (their labels, or "group G slot S")."""


@st.composite
def optimizers(draw: st.DrawFn, tree: Tree) -> TOptim | None:
    kind = draw(st.sampled_from(["none", "list", "tuple", "named", "groups", "sgd", "adamw", "sgd-groups"]))
    if kind == "none":
        return None
    real = kind in ("sgd", "adamw", "sgd-groups")
    pool = [s.tensor for s in tree.specs]
    chosen = draw(st.lists(st.integers(0, len(pool) - 1), max_size=2 * len(pool), unique=real))
    members = [pool[i] for i in chosen]
    foreign = [nn.Parameter(torch.ones(2)) for _ in range(draw(st.integers(0, 2)))]
    members = draw(st.permutations(members + foreign)) if members or foreign else []
    if real and not members:
        members = [pool[0]]  # torch refuses an empty parameter list
    count = draw(st.integers(1, 3)) if kind in ("groups", "sgd-groups") else 1
    where = [draw(st.integers(0, count - 1)) for _ in members]
    groups = [[m for m, g in zip(members, where, strict=True) if g == k] for k in range(count)]
    labels = {id(f): f"foreign.{n}" for n, f in enumerate(foreign)}
    names = {id(s.tensor): s.names[0] for s in tree.specs}
    if kind == "named":
        optimizer: Any = [(names.get(id(m)) or labels[id(m)], m) for m in members]
    elif kind in ("groups", "sgd-groups"):
        optimizer = [{"params": g, "lr": 0.1} for g in groups]
    else:
        optimizer = tuple(members) if kind == "tuple" else list(members)
    if kind.startswith("sgd"):
        optimizer = torch.optim.SGD(optimizer, lr=0.1, momentum=0.9, weight_decay=0.01)
    elif kind == "adamw":
        optimizer = torch.optim.AdamW(optimizer, lr=0.01)
    shown = [
        labels[id(m)] if kind == "named" else f"group {g} slot {slot}"
        for g, group in enumerate(groups)
        for slot, m in enumerate(group)
        if id(m) in labels
    ]
    return TOptim(optimizer, groups, shown)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def expected_audit(tree: Tree, opt: TOptim | None) -> dict[str, Any]:
    findings: list[tuple[str, frozenset[str] | str | None, str]] = []
    first_group: dict[int, int] = {}
    slots: dict[int, int] = {}
    if opt is not None:
        findings, first_group, slots = expected_placement(opt.groups, list(opt.foreign))
        for s in tree.specs:
            key = frozenset(s.names)
            if slots.get(id(s.tensor), 0) > 1:
                findings.append(("PG004", key, "error"))
            if id(s.tensor) not in first_group:
                if s.requires_grad and s.kind == "parameter":
                    findings.append(("PG002", key, "error"))
            elif not s.requires_grad:
                # No backward pass has run: no .grad, and torch optimizers skip a tensor without one.
                findings.append(("PG001", key, "warning"))
    by_bytes: dict[int, list[TSpec]] = {}
    for s in tree.specs:
        if s.tensor.nbytes:
            by_bytes.setdefault(s.tensor.data_ptr(), []).append(s)
    for tied in by_bytes.values():
        if len({s.requires_grad for s in tied}) > 1:
            findings.append(("PG005", "tied", "error"))
    if not any(s.requires_grad and s.kind == "parameter" for s in tree.specs):
        findings.append(("PG006", None, "error"))
    records = {
        frozenset(s.names): (s.role, s.kind, id(s.tensor) in first_group, first_group.get(id(s.tensor)),
                             tuple(s.tensor.shape), _dtype(s.tensor), s.tensor.numel())
        for s in tree.specs
    }  # fmt: skip
    return {"records": records, "findings": Counter(findings)}


@TORCH_PROFILE
@given(data=st.data())
def test_audit_matches_the_ground_truth(data: st.DataObject) -> None:
    tree = data.draw(trees(), label="tree")
    if not tree.specs:
        with pytest.raises(paramgate.EmptyModelError):
            paramgate.audit(tree.root)
        return
    opt = data.draw(optimizers(tree), label="optimizer")
    want = expected_audit(tree, opt)
    report = paramgate.audit(tree.root, None if opt is None else opt.optimizer)
    # What was generated, for --hypothesis-show-statistics (docs/reliability.md quotes a campaign's).
    event(f"optimizer: {'none' if opt is None else type(opt.optimizer).__name__}")
    event(f"a tensor with two or more names: {any(r.aliases for r in report.params)}")
    for code in sorted(set(report.codes())):
        event(f"finding {code}")
    names = {name: frozenset(s.names) for s in tree.specs for name in s.names}
    got = {
        frozenset([r.name, *r.aliases]): (r.role, r.kind, r.in_optimizer, r.group, r.shape, r.dtype, r.numel)
        for r in report.params
    }
    assert got == want["records"]
    assert len(report.params) == len(tree.specs)  # each tensor once, whatever its names
    tied = {f.name for f in report.findings if f.code == "PG005"}
    found = Counter(
        (f.code, "tied" if f.code == "PG005" else names.get(f.name, f.name), f.severity)  # type: ignore[arg-type]
        for f in report.findings
    )
    assert found == want["findings"]
    assert all(name in names for name in tied)
    expected = [s.tensor for s in tree.specs if s.requires_grad and s.kind == "parameter"]
    assert {id(p) for p in paramgate.trainable(tree.root)} == {id(t) for t in expected}


MODES = ["verify", "guard-exit", "guard-every", "guard-rolling"]


@TORCH_PROFILE
@given(data=st.data())
def test_a_single_bit_flip_is_pg101_on_exactly_that_parameter(data: st.DataObject) -> None:
    tree = data.draw(trees(ties=False, target=True), label="tree")
    targets = [s for s in tree.specs if s.role != "trainable" and s.tensor.nbytes]
    target = data.draw(st.sampled_from(targets), label="target")
    byte = data.draw(st.integers(0, target.tensor.nbytes - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    mode = data.draw(st.sampled_from(MODES), label="mode")
    # Frozen parameters are PG101 (an error); buffers are statistics, PG103 (a warning), never PG101.
    code = "PG101" if target.role == "frozen" else "PG103"
    layout = " transposed" if target.tensor.dim() > 1 and not target.tensor.is_contiguous() else ""
    event(f"target: {target.role} {_dtype(target.tensor)}{layout}")
    event(f"mode: {mode}")
    names = {name: frozenset(s.names) for s in tree.specs for name in s.names}
    untrained = Counter(("PG102", frozenset(s.names)) for s in tree.specs if s.requires_grad)
    if mode == "verify":
        snap = paramgate.snapshot(tree.root)
        flip_bit(target.base, byte, bit)
        report = snap.verify(tree.root)
        got = Counter((f.code, names[f.name]) for f in report.findings)  # type: ignore[index]
        assert got == untrained + Counter([(code, frozenset(target.names))])
        assert report.ok == (code == "PG103")
        return
    kwargs = {"guard-exit": {}, "guard-every": {"every": 1}, "guard-rolling": {"rolling": 3}}[mode]
    gate = paramgate.guard(tree.root, **kwargs)

    def train() -> None:
        with gate:
            flip_bit(target.base, byte, bit)
            for _ in range(3 if kwargs else 0):
                gate.step()

    if code == "PG103":
        train()
        assert gate.report is not None and [names[n] for n in gate.report.statistics_changed] == [
            frozenset(target.names)
        ]
        return
    with pytest.raises(paramgate.FrozenParameterChanged) as info:
        train()
    assert [names[n] for n in info.value.report.changed] == [frozenset(target.names)]
    assert [f.code for f in info.value.report.findings if f.severity == "error"] == ["PG101"]


@TORCH_PROFILE
@given(data=st.data())
def test_a_run_that_changes_nothing_frozen_never_reports_pg101(data: st.DataObject) -> None:
    tree = data.draw(trees(ties=False), label="tree")
    if not tree.specs:
        return
    train = [s.tensor for s in tree.specs if s.requires_grad and s.tensor.dtype in STEP_DTYPES]
    stats = [s for s in tree.specs if s.role == "state" and s.tensor.dtype in STEP_DTYPES]
    steps = data.draw(st.integers(0, 3), label="steps")
    drift = data.draw(st.lists(st.booleans(), min_size=len(stats), max_size=len(stats)), label="drift")
    torch.manual_seed(data.draw(st.integers(0, 2**31 - 1), label="seed"))
    before = {id(s.tensor): raw(s.tensor) for s in tree.specs}
    optimizer = torch.optim.SGD(train, lr=0.1, momentum=0.9, weight_decay=0.01) if train else None
    snap = paramgate.snapshot(tree.root, optimizer)
    with paramgate.guard(tree.root, optimizer, every=1) as gate:
        for _ in range(steps):
            for p in train:
                p.grad = torch.randn_like(p)
            if optimizer is not None:
                optimizer.step()
            with torch.no_grad():
                for s, moves in zip(stats, drift, strict=True):
                    if moves:
                        s.tensor.add_(1)  # running statistics update outside the optimizer
            assert gate.step().ok  # type: ignore[union-attr]
    report = snap.verify(tree.root)
    assert gate.report is not None and gate.report.findings == report.findings
    assert "PG101" not in report.codes() and report.ok
    names = {name: s for s in tree.specs for name in s.names}
    moved = {id(s.tensor) for s in tree.specs if raw(s.tensor) != before[id(s.tensor)]}
    assert sorted(id(names[f.name].tensor) for f in report.findings if f.code == "PG102") == sorted(  # type: ignore[index]
        id(s.tensor) for s in tree.specs if s.requires_grad and id(s.tensor) not in moved
    )
    assert sorted(id(names[n].tensor) for n in report.statistics_changed) == sorted(
        id(s.tensor) for s in tree.specs if s.role == "state" and id(s.tensor) in moved
    )
    assert set(report.codes()) <= {"PG102", "PG103"}

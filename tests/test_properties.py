"""Property-based tests on the NumPy backend: random models, random optimizers, random bit flips.

The ground truth is computed here, from what the strategies generated (the roles
they chose, the objects they placed in each group), never by asking paramgate.

CI runs the ``ci`` profile (a fixed, derandomized set of examples per property).
A long campaign: ``PARAMGATE_HYPOTHESIS_PROFILE=campaign`` (10,000 examples per
property; see docs/reliability.md for the command and the last campaign's figures).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from _helpers import expected_placement, flip_bit, hypothesis_profile
from hypothesis import event, given
from hypothesis import strategies as st

import paramgate
from paramgate_numpy import Momentum, Parameter

PROFILE_NAME, PROFILE = hypothesis_profile()

DTYPES = ["float16", "float32", "float64", "int8", "uint8", "int64", "bool", "complex64", "complex128"]
TRAINS = {"float16", "float32", "float64", "complex64", "complex128"}  # what Momentum can step in place
PATH = ["backbone", "head", "layer1", "blocks", "0", "conv", "bn", "attn"]
LEAVES = ["weight", "bias", "w", "gamma", "beta", "embed", "scale"]
STATS = ["running_mean", "running_var", "moving_mean", "moving_variance", "num_batches_tracked"]
SHAPES = st.lists(st.integers(0, 3), max_size=3).map(tuple)  # () and zero-size shapes included


@dataclass(eq=False)
class Spec:
    """One distinct parameter as generated, with its intended role: the ground truth."""

    obj: Any
    name: str
    role: str
    data: np.ndarray
    base: np.ndarray
    """The contiguous memory under ``data`` (``data`` itself, or what it transposes)."""

    @property
    def requires_grad(self) -> bool:
        return self.role == "trainable"

    def raw(self) -> bytes:
        return np.ascontiguousarray(self.data).tobytes()


@dataclass(eq=False)
class Model:
    items: list[Any]
    """The model as passed to paramgate: distinct objects, some listed twice."""
    specs: list[Spec]
    """Distinct objects in order of first appearance."""
    clashes: set[str] = field(default_factory=set)


@st.composite
def arrays(draw: st.DrawFn, dtype: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Arbitrary bit patterns (NaN payloads, -0.0, inf, subnormals), contiguous or transposed."""
    dt = np.dtype(dtype or draw(st.sampled_from(DTYPES)))
    shape = draw(SHAPES)
    transposed = len(shape) >= 2 and draw(st.booleans())
    nbytes = math.prod(shape) * dt.itemsize
    base = np.frombuffer(draw(st.binary(min_size=nbytes, max_size=nbytes)), np.uint8).copy()
    if dt == np.bool_:
        base &= 1  # a NumPy bool holds 0 or 1
    base = base.view(dt).reshape(shape[::-1] if transposed else shape)
    return (base.T if transposed else base), base


@st.composite
def specs(draw: st.DrawFn, index: int, role: str | None = None, shared: Spec | None = None) -> Spec:
    role = role or draw(st.sampled_from(["trainable", "frozen", "state"]))
    statistic: bool | None
    if role == "trainable":
        leaf, statistic = draw(st.sampled_from(LEAVES + STATS)), draw(st.sampled_from([None, True, False]))
    elif role == "frozen":  # not a statistic by name, or one by name explicitly marked as not one
        leaf, statistic = draw(st.one_of(st.tuples(st.sampled_from(LEAVES), st.sampled_from([None, False])),
                                         st.tuples(st.sampled_from(STATS), st.just(False))))  # fmt: skip
    else:
        leaf, statistic = draw(st.one_of(st.tuples(st.sampled_from(STATS), st.sampled_from([None, True])),
                                         st.tuples(st.sampled_from(LEAVES), st.just(True))))  # fmt: skip
    path = draw(st.lists(st.sampled_from(PATH), max_size=3))  # depth: 2 to 5 components
    sep = draw(st.sampled_from([".", "/"]))
    name = sep.join([*path, f"m{index}", leaf])
    data, base = (shared.data, shared.base) if shared is not None else draw(arrays())
    flag = role == "trainable"
    if draw(st.booleans()):
        obj: Any = Parameter(data, name, requires_grad=flag, statistic=statistic)
    else:
        obj = {"name": name, "data": data}
        if not flag or draw(st.booleans()):  # requires_grad defaults to True
            obj["requires_grad"] = flag
        if statistic is not None:
            obj["statistic"] = statistic
    return Spec(obj, name, role, data, base)


def _rename(spec: Spec, name: str) -> None:
    # The new name may read as a statistic or not: pin the role with the explicit flag.
    statistic = None if spec.role == "trainable" else spec.role == "state"
    spec.name = name
    if isinstance(spec.obj, dict):
        spec.obj["name"] = name
        spec.obj["statistic"] = statistic
    else:
        spec.obj.name = name
        spec.obj.statistic = statistic


@st.composite
def models(draw: st.DrawFn, *, clashes: bool = True, ties: bool = True, target: bool = False) -> Model:
    """1 to 7 distinct parameters, some listed twice (ties), some sharing bytes or names."""
    count = draw(st.integers(1, 7))
    result: list[Spec] = []
    for i in range(count):
        shared = None
        if ties and result and draw(st.integers(0, 5)) == 0:
            shared = draw(st.sampled_from(result))  # another parameter over the same bytes
        result.append(draw(specs(i, shared=shared)))
    if target and not any(s.role != "trainable" and s.data.nbytes for s in result):
        # The flip properties need a frozen (or statistics) tensor with at least one bit.
        spec = draw(specs(count, role=draw(st.sampled_from(["frozen", "state"]))))
        while not spec.data.nbytes:
            spec = draw(specs(count, role=spec.role))
        result.insert(draw(st.integers(0, len(result))), spec)
    clashed: set[str] = set()
    if clashes and len(result) > 1 and draw(st.integers(0, 3)) == 0:
        i, j = sorted(draw(st.lists(st.integers(0, len(result) - 1), min_size=2, max_size=2, unique=True)))
        _rename(result[j], result[i].name)
        clashed.add(result[i].name)
    items = [s.obj for s in result]
    for _ in range(draw(st.integers(0, 2))):  # the same object listed again, after its first place
        j = draw(st.integers(0, len(result) - 1))
        first = next(k for k, item in enumerate(items) if item is result[j].obj)
        items.insert(draw(st.integers(first + 1, len(items))), result[j].obj)
    return Model(items, result, clashed)


@dataclass
class Optim:
    kind: str
    optimizer: Any
    groups: list[list[Any]]
    """Members of each group, in order (foreign objects included)."""
    decays: list[bool]
    """Per flattened slot: whether weight decay applies (Momentum only)."""
    foreign: list[Parameter]
    """Parameters of another model, placed in the optimizer."""


@st.composite
def optimizers(draw: st.DrawFn, model: Model) -> Optim | None:
    kind = draw(st.sampled_from(["none", "list", "tuple", "groups", "momentum", "momentum-groups"]))
    if kind == "none":
        return None
    objs = [s.obj for s in model.specs]
    members = [objs[i] for i in draw(st.lists(st.integers(0, len(objs) - 1), max_size=2 * len(objs)))]
    foreign = [Parameter(np.ones(2), f"foreign.{j}") for j in range(draw(st.integers(0, 2)))]
    members += foreign
    members = draw(st.permutations(members)) if members else members
    if kind.startswith("momentum") and not members:
        members = [objs[0]]  # Momentum refuses an empty list (as MindSpore does)
    if kind in ("groups", "momentum-groups"):
        count = draw(st.integers(1, 3))
        where = [draw(st.integers(0, count - 1)) for _ in members]
        groups = [[m for m, g in zip(members, where, strict=True) if g == k] for k in range(count)]
        decays = [draw(st.sampled_from([0.0, 0.01])) for _ in range(count)]
        dicts = [{"params": g, "lr": 0.1, "weight_decay": d} for g, d in zip(groups, decays, strict=True)]
        slot_decays = [d > 0 for g, d in zip(groups, decays, strict=True) for _ in g]
        optimizer: Any = Momentum(dicts, learning_rate=0.1, momentum=0.9) if kind == "momentum-groups" else dicts
    else:
        groups = [members]
        decay = draw(st.sampled_from([0.0, 0.01]))
        slot_decays = [decay > 0 and not ({"beta", "gamma"} & _words(m)) for m in members]
        optimizer = (
            Momentum(members, learning_rate=0.1, momentum=0.9, weight_decay=decay)
            if kind == "momentum"
            else (tuple(members) if kind == "tuple" else list(members))
        )
    return Optim(kind, optimizer, groups, slot_decays, foreign)


def _words(obj: Any) -> set[str]:
    # MindSpore's rule, as Momentum documents it: no decay when the name contains "beta" or "gamma".
    name = obj["name"] if isinstance(obj, dict) else obj.name
    return {w for w in ("beta", "gamma") if w in name}


def expected_audit(model: Model, opt: Optim | None) -> dict[str, Any]:
    """Everything the audit must say, computed from the generated set-up alone."""
    specs_ = model.specs
    findings: list[tuple[str, str | None, str]] = []
    first_group: dict[int, int] = {}
    slots: dict[int, int] = {}
    if opt is not None:
        findings, first_group, slots = expected_placement(opt.groups, [f.name for f in opt.foreign])
        flat = [m for members in opt.groups for m in members]
        for s in specs_:
            if slots.get(id(s.obj), 0) > 1:
                findings.append(("PG004", s.name, "error"))
            if id(s.obj) not in first_group:
                if s.requires_grad:
                    findings.append(("PG002", s.name, "error"))
            elif not s.requires_grad:
                first = next(k for k, m in enumerate(flat) if m is s.obj)
                moves = opt.kind.startswith("momentum") and opt.decays[first]
                findings.append(("PG001", s.name, "error" if moves else "warning"))
    # Tied storage (the same array under two parameters) with disagreeing flags.
    by_bytes: dict[int, list[Spec]] = {}
    for s in specs_:
        if s.data.size:
            by_bytes.setdefault(id(s.data), []).append(s)
    for tied in by_bytes.values():
        if len({s.requires_grad for s in tied}) > 1:
            findings.append(("PG005", tied[0].name, "error"))
    if not any(s.requires_grad for s in specs_):
        findings.append(("PG006", None, "error"))
    findings += [("PG008", name, "error") for name in model.clashes]
    records = [
        (s.name, s.role, s.requires_grad, id(s.obj) in first_group, first_group.get(id(s.obj)), s.data.shape,
         str(s.data.dtype), s.data.size)
        for s in specs_
    ]  # fmt: skip
    totals = {role: sum(s.data.size for s in specs_ if s.role == role) for role in ("trainable", "frozen", "state")}
    return {"records": records, "findings": Counter(findings), "totals": totals}


@PROFILE
@given(data=st.data())
def test_audit_matches_the_ground_truth(data: st.DataObject) -> None:
    model = data.draw(models(), label="model")
    opt = data.draw(optimizers(model), label="optimizer")
    want = expected_audit(model, opt)
    report = paramgate.audit(model.items, None if opt is None else opt.optimizer)
    # What was generated, for --hypothesis-show-statistics (docs/reliability.md quotes a campaign's).
    event(f"optimizer: {'none' if opt is None else opt.kind}")
    event(f"object listed twice: {len(model.items) > len(model.specs)}")
    for code in sorted(set(report.codes())):
        event(f"finding {code}")
    got = [(r.name, r.role, r.trainable, r.in_optimizer, r.group, r.shape, r.dtype, r.numel) for r in report.params]
    assert got == want["records"]
    assert Counter((f.code, f.name, f.severity) for f in report.findings) == want["findings"]
    totals = report.totals
    assert (totals.trainable, totals.frozen, totals.state) == tuple(want["totals"].values())
    assert report.ok == all(severity != "error" for _, _, severity in want["findings"])
    # trainable(): the same objects, each once, in model order.
    expected = [s.obj for s in model.specs if s.requires_grad]
    got_objs = paramgate.trainable(model.items)
    assert len(got_objs) == len(expected) and all(a is b for a, b in zip(got_objs, expected, strict=True))
    if opt is not None:
        names = {id(s.obj): s.name for s in model.specs}
        names.update({id(f): f"<not in model: {f.name}>" for f in opt.foreign})
        shown = [[names[id(m)] for m in g] for g in opt.groups]
        assert [list(g.params) for g in report.groups] == shown  # type: ignore[union-attr]
    # A snapshot refuses two tensors with one name; otherwise it prints every distinct tensor once.
    if model.clashes:
        with pytest.raises(paramgate.InvalidParameterError, match="rename one of them"):
            paramgate.snapshot(model.items)
    else:
        assert [p.name for p in paramgate.snapshot(model.items).prints] == [s.name for s in model.specs]


MODES = ["verify", "guard-exit", "guard-every", "guard-rolling"]


@PROFILE
@given(data=st.data())
def test_a_single_bit_flip_is_pg101_on_exactly_that_parameter(data: st.DataObject) -> None:
    model = data.draw(models(clashes=False, ties=False, target=True), label="model")
    targets = [s for s in model.specs if s.role != "trainable" and s.data.nbytes]
    target = data.draw(st.sampled_from(targets), label="target")
    byte = data.draw(st.integers(0, target.data.nbytes - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    mode = data.draw(st.sampled_from(MODES), label="mode")
    trainable = Counter(("PG102", s.name) for s in model.specs if s.requires_grad)  # nothing trained
    # A frozen tensor is PG101 (an error); statistics are PG103 (a warning), never PG101.
    code = "PG101" if target.role == "frozen" else "PG103"
    event(f"target: {target.role} {target.data.dtype}{'' if target.base is target.data else ' transposed'}")
    event(f"mode: {mode}")
    if mode == "verify":
        snap = paramgate.snapshot(model.items)
        flip_bit(target.base, byte, bit)
        report = snap.verify(model.items)
        assert Counter((f.code, f.name) for f in report.findings) == trainable + Counter([(code, target.name)])
        assert report.changed == ([target.name] if code == "PG101" else [])
        assert report.ok == (code == "PG103")
        return
    kwargs = {"guard-exit": {}, "guard-every": {"every": 1}, "guard-rolling": {"rolling": 3}}[mode]
    gate = paramgate.guard(model.items, **kwargs)

    def train() -> None:
        with gate:
            flip_bit(target.base, byte, bit)
            for _ in range(3 if kwargs else 0):  # rolling=3: every frozen tensor within 3 steps
                gate.step()

    if code == "PG103":
        train()
        assert gate.report is not None and gate.report.statistics_changed == [target.name]
        return
    with pytest.raises(paramgate.FrozenParameterChanged) as info:
        train()
    assert info.value.report.changed == [target.name]
    assert [f.code for f in info.value.report.findings if f.severity == "error"] == ["PG101"]
    assert (gate.report is None) == bool(kwargs)  # with steps, a step caught it before the exit check


@PROFILE
@given(data=st.data())
def test_a_run_that_changes_nothing_frozen_never_reports_pg101(data: st.DataObject) -> None:
    model = data.draw(models(clashes=False, ties=False), label="model")
    train = [s for s in model.specs if s.requires_grad and str(s.data.dtype) in TRAINS]
    stats = [s for s in model.specs if s.role == "state" and s.data.dtype.kind in "fc"]
    steps = data.draw(st.integers(0, 3), label="steps")
    drift = data.draw(st.lists(st.booleans(), min_size=len(stats), max_size=len(stats)), label="drift")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    before = {s.name: s.raw() for s in model.specs}
    opt = Momentum([s.obj for s in train], learning_rate=0.1, momentum=0.9, weight_decay=0.01) if train else None
    snap = paramgate.snapshot(model.items, opt)
    with np.errstate(all="ignore"), paramgate.guard(model.items, opt, every=1) as gate:
        for _ in range(steps):
            if opt is not None:
                opt([np.asarray(rng.standard_normal(s.data.shape)).astype(s.data.dtype) for s in train])
            for s, moves in zip(stats, drift, strict=True):
                if moves:
                    s.data += 1  # running statistics update outside the optimizer
            assert gate.step().ok
    report = snap.verify(model.items)
    assert gate.report is not None and gate.report.findings == report.findings
    assert "PG101" not in report.codes() and report.ok
    same = {s.name for s in model.specs if s.raw() == before[s.name]}
    # Exactly the trainable tensors whose bytes did not move are PG102, exactly the statistics that moved PG103.
    assert sorted(f.name for f in report.findings if f.code == "PG102") == sorted(
        s.name for s in model.specs if s.requires_grad and s.name in same
    )
    assert report.statistics_changed == [s.name for s in model.specs if s.role == "state" and s.name not in same]
    assert set(report.codes()) <= {"PG102", "PG103"}

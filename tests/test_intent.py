"""``trainable=``: the intent stated by the user, or inferred by an adapter (PG010), and bound optimizers."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import AdapterPlugin, flip_bit

import paramgate
from paramgate_numpy import Momentum, Parameter
from paramgate_numpy.adapter import NumpyAdapter


def _model() -> list[Parameter]:
    # Every flag True, as a framework without requires_grad (JAX) would report it.
    return [
        Parameter(np.ones((2, 2), np.float32), "backbone.w"),
        Parameter(np.zeros(2, np.float32), "backbone.b"),
        Parameter(np.ones(2, np.float32), "head.w"),
    ]


@pytest.mark.parametrize(
    "stated",
    [
        lambda name: name.startswith("head."),
        {"backbone.w": False, "backbone.b": False, "head.w": True},
        {"head.w"},
        ["head.w"],
    ],
    ids=["callable", "mapping", "set", "list"],
)
def test_stated_trainable_overrides_the_flags(stated):
    model = _model()
    report = paramgate.audit(model, Momentum([model[2]], 0.1, 0.9), trainable=stated)
    assert report.ok, report.render()
    assert {r.name: r.role for r in report.params} == {
        "backbone.w": "frozen",
        "backbone.b": "frozen",
        "head.w": "trainable",
    }
    assert [p.requires_grad for p in model] == [True, True, True]  # the user's flags are not touched


def test_a_partial_mapping_keeps_the_other_flags():
    model = _model()
    model[1].requires_grad = False
    report = paramgate.audit(model, trainable={"backbone.w": False})
    assert [r.trainable for r in report.params] == [False, False, True]


def test_stated_intent_is_checked_against_the_optimizer():
    model = _model()
    report = paramgate.audit(model, Momentum(model, 0.1, 0.9, weight_decay=0.01), trainable={"head.w"})
    assert [(f.code, f.name) for f in report.findings if f.severity == "error"] == [
        ("PG001", "backbone.w"),
        ("PG001", "backbone.b"),
    ]


@pytest.mark.parametrize(
    ("stated", "message"),
    [
        ({"head.weight"}, "trainable names 'head.weight', which the model does not have"),
        ({"head.w": 1}, "must map parameter names"),
        (["head.w", 3], "must hold the names"),
        (lambda name: "yes", "predicate returned str for 'backbone.w'"),
        ("head.w", "got str"),
        (3, "got int"),
    ],
    ids=["unknown-name", "mapping-not-bool", "collection-not-str", "predicate-not-bool", "a-string", "an-int"],
)
def test_bad_trainable_names_the_argument(stated, message):
    with pytest.raises(paramgate.InvalidArgumentError, match="trainable") as info:
        paramgate.audit(_model(), trainable=stated)
    assert message in str(info.value)


def test_snapshot_keeps_the_stated_intent_when_verifying():
    model = _model()
    snap = paramgate.snapshot(model, trainable={"head.w"})
    assert {p.name: p.role for p in snap.prints}["backbone.w"] == "frozen"
    model[2].data += 1
    flip_bit(model[0].data, 0, 3)
    report = snap.verify(model)
    assert [(f.code, f.name) for f in report.findings] == [("PG101", "backbone.w")]


def test_guard_with_trainable_raises_on_a_frozen_change():
    model = _model()
    with paramgate.guard(model, trainable=lambda name: name == "head.w", every=1) as gate:
        model[2].data[0] = 5.0  # trained
        gate.step()
        model[1].data[0] = 5.0  # frozen by intent, though its flag says requires_grad
        with pytest.raises(paramgate.FrozenParameterChanged, match=r"PG101 backbone\.b"):
            gate.step()
        model[1].data[0] = 0.0


class _IntentAdapter(NumpyAdapter):
    """A third-party adapter whose optimizer only knows its parameters together with the model."""

    name = "intent-numpy"
    bound: list[tuple[object, object]]

    def __init__(self) -> None:
        self.bound = []

    def bind_optimizer(self, model, optimizer):
        self.bound.append((model, optimizer))
        # The "transformation" is a set of names; binding turns it into the parameters it moves.
        return Momentum([p for p in model if p.name in optimizer.names], 0.1, 0.9)

    def owns_optimizer(self, optimizer):
        return isinstance(optimizer, _Transformation) or super().owns_optimizer(optimizer)

    def intent(self, model, optimizer, trainable):
        if trainable is not None or optimizer is None:
            return None
        moved = {id(p) for g in self.optimizer_groups(optimizer) for p in (m.obj for m in g.members)}
        return paramgate.Intent(
            {p.name: id(p) in moved for p in model},
            note="no trainable= given: the parameters the optimizer moves are taken as the trainable ones",
        )


class _Transformation:
    def __init__(self, *names: str) -> None:
        self.names = names


@pytest.fixture
def intent_plugins():
    pm = paramgate.ParamGatePluginManager()
    adapter = _IntentAdapter()
    pm.register(AdapterPlugin(lambda: adapter), name="intent-numpy")
    pm.adapter = adapter
    return pm


def test_an_adapter_infers_the_intent_from_a_bound_optimizer_and_says_so(intent_plugins):
    model = _model()
    tx = _Transformation("head.w")
    report = paramgate.audit(model, tx, plugins=intent_plugins)
    assert intent_plugins.adapter.bound == [(model, tx)]
    assert report.ok
    assert report.optimizer == "_Transformation"
    assert [(f.code, f.severity) for f in report.findings] == [("PG010", "info")]
    assert "no trainable= given" in report.findings[0].message
    assert {r.name: (r.role, r.in_optimizer) for r in report.params} == {
        "backbone.w": ("frozen", False),
        "backbone.b": ("frozen", False),
        "head.w": ("trainable", True),
    }
    assert "PG010" in report.render()


def test_a_stated_intent_wins_over_the_inferred_one(intent_plugins):
    model = _model()
    report = paramgate.audit(
        model, _Transformation("head.w", "backbone.b"), trainable={"head.w"}, plugins=intent_plugins
    )
    assert "PG010" not in report.codes()
    assert [(f.code, f.name) for f in report.findings] == [("PG001", "backbone.b")]


def test_a_snapshot_through_a_bound_optimizer_verifies_with_the_inferred_roles(intent_plugins):
    model = _model()
    snap = paramgate.snapshot(model, _Transformation("head.w"), plugins=intent_plugins)
    assert [(p.name, p.role, p.group) for p in snap.prints] == [
        ("backbone.w", "frozen", None),
        ("backbone.b", "frozen", None),
        ("head.w", "trainable", 0),
    ]
    flip_bit(model[1].data, 7, 7)  # -0.0 from +0.0: one sign bit
    model[2].data -= 1
    assert snap.verify(model).changed == ["backbone.b"]


def test_an_intent_that_is_not_an_intent_is_the_adapters_fault(intent_plugins):
    intent_plugins.adapter.intent = lambda model, optimizer, trainable: {"head.w": True}
    with pytest.raises(paramgate.AdapterError, match="intent-numpy adapter's intent"):
        paramgate.audit(_model(), plugins=intent_plugins)

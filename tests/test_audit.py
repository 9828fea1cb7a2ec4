"""Audit findings on the NumPy backend, one scenario per field-notes failure mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

import paramgate
from paramgate_numpy import Momentum, Parameter
from paramgate_numpy.demo import train_step


def _by_code(report: paramgate.AuditReport, code: str) -> list[paramgate.Finding]:
    return [f for f in report.findings if f.code == code]


def test_seed_filter_audits_clean(seed_model):
    params = paramgate.trainable(seed_model)
    assert [p["name"] for p in params] == ["head.dense.weight", "head.dense.bias"]
    assert params[0] is seed_model[2] and params[1] is seed_model[3]  # the user's own objects
    # The same objects the seed's filter() picks.
    assert params == list(filter(lambda x: x["requires_grad"], seed_model))
    opt = Momentum(params, learning_rate=0.01, momentum=0.9)
    report = paramgate.audit(seed_model, opt)
    assert report.ok and report.findings == ()
    roles = {r.name: (r.role, r.in_optimizer, r.group) for r in report.params}
    assert roles == {
        "backbone.conv1.weight": ("frozen", False, None),
        "backbone.conv1.bias": ("frozen", False, None),
        "head.dense.weight": ("trainable", True, 0),
        "head.dense.bias": ("trainable", True, 0),
    }
    t = report.totals
    assert (t.trainable, t.frozen, t.state, t.all) == (10, 1792, 0, 1802)
    assert t.trainable_pct == pytest.approx(100 * 10 / 1802)
    assert report.peft_line() == "trainable params: 10 || all params: 1,802 || trainable%: 0.5549"


def test_trainable_returns_a_list_that_survives_reading(seed_model):
    params = paramgate.trainable(seed_model)
    assert isinstance(params, list)
    print([p["name"] for p in params])  # reading it for logging...
    opt = Momentum(params, learning_rate=0.01, momentum=0.9)  # ...leaves it whole
    assert len(opt.parameters) == 2


def test_weight_decay_on_frozen_is_pg001_error(seed_model):
    opt = Momentum(seed_model, learning_rate=0.01, momentum=0.9, weight_decay=0.01)
    report = paramgate.audit(seed_model, opt)
    assert not report.ok
    pg001 = _by_code(report, "PG001")
    assert [f.name for f in pg001] == ["backbone.conv1.weight", "backbone.conv1.bias"]
    assert all(f.severity == "error" and "weight_decay=0.01" in f.message for f in pg001)


def test_frozen_in_optimizer_without_decay_is_a_warning(seed_model):
    opt = Momentum(seed_model, learning_rate=0.01, momentum=0.9)
    report = paramgate.audit(seed_model, opt)
    assert report.ok
    assert {(f.code, f.severity) for f in report.findings} == {("PG001", "warning")}


def test_momentum_state_makes_a_frozen_parameter_move(seed_model):
    # A frozen parameter with accumulated momentum keeps moving on zero gradients.
    opt = Momentum(seed_model, learning_rate=0.01, momentum=0.9)
    opt([np.ones_like(p["data"]) for p in seed_model])  # a step taken before it was frozen
    report = paramgate.audit(seed_model, opt)
    errors = {f.name: f.message for f in report.findings if f.severity == "error"}
    assert set(errors) == {"backbone.conv1.weight", "backbone.conv1.bias"}
    assert "momentum buffer is non-zero" in errors["backbone.conv1.weight"]
    snap = paramgate.snapshot(seed_model, opt)
    train_step(seed_model, opt)
    assert snap.verify(seed_model).changed == ["backbone.conv1.weight", "backbone.conv1.bias"]


def test_mindspore_decay_filter_spares_beta_and_gamma():
    gamma = Parameter(np.ones(3, np.float32), "bn.gamma", requires_grad=False)
    beta = Parameter(np.zeros(3, np.float32), "bn.beta", requires_grad=False)
    w = Parameter(np.ones(3, np.float32), "head.weight")
    model = [gamma, beta, w]
    report = paramgate.audit(model, Momentum(model, learning_rate=0.1, momentum=0.9, weight_decay=0.1))
    assert {(f.code, f.name, f.severity) for f in report.findings} == {
        ("PG001", "bn.gamma", "warning"),
        ("PG001", "bn.beta", "warning"),
    }
    # With groups, a group's weight decay applies to every member, beta and gamma included.
    grouped = Momentum([{"params": [gamma, beta], "weight_decay": 0.1}, {"params": [w]}], 0.1, 0.9)
    report = paramgate.audit(model, grouped)
    assert {(f.name, f.severity) for f in _by_code(report, "PG001")} == {
        ("bn.gamma", "error"),
        ("bn.beta", "error"),
    }


def test_head_missing_from_optimizer_is_pg002(seed_model):
    opt = Momentum(paramgate.trainable(seed_model), learning_rate=0.01, momentum=0.9)
    new_head = {"name": "head.out.weight", "data": np.zeros((2, 2), np.float32), "requires_grad": True}
    seed_model.append(new_head)  # added after the optimizer was built
    report = paramgate.audit(seed_model, opt)
    assert [(f.code, f.name, f.severity) for f in report.findings] == [("PG002", "head.out.weight", "error")]
    assert "after the optimizer was built" in report.findings[0].message


def test_exhausted_filter_is_refused_or_pg003(seed_model):
    params = filter(lambda x: x["requires_grad"], seed_model)
    with pytest.raises(paramgate.OneShotIteratorError, match="one-shot iterator") as info:
        paramgate.audit(seed_model, params)
    assert "paramgate.trainable(model)" in str(info.value)
    assert [p["name"] for p in params] == ["head.dense.weight", "head.dense.bias"]  # not consumed by the gate
    # The exhausted iterator materialised into the list an optimizer would get: PG003.
    report = paramgate.audit(seed_model, list(params))
    assert _by_code(report, "PG003")[0].severity == "error"
    assert "already read" in _by_code(report, "PG003")[0].message
    # MindSpore-style Momentum refuses the empty list itself, as MindSpore does.
    with pytest.raises(ValueError, match="must not be empty"):
        Momentum(params, learning_rate=0.01, momentum=0.9)


def test_empty_group_is_pg003(seed_model):
    groups = [{"params": paramgate.trainable(seed_model)}, {"params": [], "lr": 0.1}]
    report = paramgate.audit(seed_model, groups)
    assert [(f.code, f.name, f.severity) for f in report.findings] == [("PG003", "group 1", "warning")]
    assert report.ok  # an empty group leaves nothing out; a parameter left out of every group is PG002


def test_duplicate_in_optimizer_is_pg004(seed_model):
    head_w = seed_model[2]
    report = paramgate.audit(seed_model, [{"params": [head_w, seed_model[3]]}, {"params": [head_w]}])
    assert [(f.code, f.name) for f in report.findings] == [("PG004", "head.dense.weight")]
    assert "groups 0, 1" in report.findings[0].message


def test_tied_storage_with_different_flags_is_pg005():
    shared = np.arange(6, dtype=np.float32).reshape(2, 3)
    embedding = Parameter(shared, "transformer.wte.weight", requires_grad=False)
    lm_head = Parameter(shared, "lm_head.weight", requires_grad=True)  # built by sharing the data
    report = paramgate.audit([embedding, lm_head])
    pg005 = _by_code(report, "PG005")
    assert len(pg005) == 1 and pg005[0].severity == "error"
    assert "transformer.wte.weight" in pg005[0].message and "lm_head.weight" in pg005[0].message


def test_overlapping_views_are_tied_but_disjoint_slices_are_not():
    flat = np.zeros(10, np.float32)
    a = Parameter(flat[:5], "a", requires_grad=False)
    b = Parameter(flat[5:], "b", requires_grad=True)
    assert _by_code(paramgate.audit([a, b]), "PG005") == []
    c = Parameter(flat[4:6], "c", requires_grad=True)
    assert len(_by_code(paramgate.audit([a, b, c]), "PG005")) == 1


def test_same_object_under_two_names_counts_once():
    w = Parameter(np.ones((4, 4), np.float32), "encoder.embed.weight")
    model = [w, Parameter(np.ones(4, np.float32), "decoder.bias"), w]
    report = paramgate.audit(model)
    assert [r.name for r in report.params] == ["encoder.embed.weight", "decoder.bias"]
    assert report.params[0].aliases == ()
    assert report.totals.trainable == 20
    assert paramgate.trainable(model) == [w, model[1]]


def test_nothing_trainable_is_pg006(seed_model):
    for p in seed_model:
        p["requires_grad"] = False
    report = paramgate.audit(seed_model)
    assert [(f.code, f.severity) for f in report.findings] == [("PG006", "error")]
    assert paramgate.trainable(seed_model) == []


def test_optimizer_from_another_model_is_pg007(seed_model):
    from paramgate_numpy.demo import build_model

    other = build_model()
    opt = Momentum(paramgate.trainable(other), learning_rate=0.01, momentum=0.9)
    report = paramgate.audit(seed_model, opt)
    codes = report.codes()
    assert codes.count("PG007") == 2 and codes.count("PG002") == 2
    assert any("head.dense.weight" in f.message and "another model" in f.message for f in report.findings)


def test_duplicate_names_is_pg008():
    model = [Parameter(np.zeros(2), "w"), Parameter(np.ones(2), "w")]
    report = paramgate.audit(model)
    assert [(f.code, f.name) for f in report.findings] == [("PG008", "w")]
    with pytest.raises(paramgate.InvalidParameterError, match="both called 'w'"):
        paramgate.snapshot(model)


def test_statistics_are_state_not_frozen():
    model = [
        Parameter(np.ones(4, np.float32), "backbone.bn.gamma", requires_grad=False),
        Parameter(np.zeros(4, np.float32), "backbone.bn.moving_mean", requires_grad=False),
        Parameter(np.ones(4, np.float32), "backbone.bn.moving_variance", requires_grad=False),
        Parameter(np.ones(3, np.float32), "custom.stat", requires_grad=False, statistic=True),
        Parameter(np.ones(2, np.float32), "head.w"),
    ]
    report = paramgate.audit(model)
    assert [r.role for r in report.params] == ["frozen", "state", "state", "state", "trainable"]
    assert (report.totals.frozen, report.totals.state, report.totals.trainable) == (4, 11, 2)


def test_groups_show_their_hyperparameters(seed_model):
    w, b = seed_model[2], seed_model[3]
    opt = Momentum([{"params": [w], "lr": 0.1, "weight_decay": 0.01}, {"params": [b], "lr": 0.5}], 0.01, 0.9)
    report = paramgate.audit(seed_model, opt)
    assert [(g.index, g.params, g.lr, g.weight_decay, g.momentum) for g in report.groups] == [
        (0, ("head.dense.weight",), 0.1, 0.01, 0.9),
        (1, ("head.dense.bias",), 0.5, 0.0, 0.9),
    ]
    text = report.render()
    assert "group 0: lr=0.1 momentum=0.9 weight_decay=0.01" in text
    assert "group 1: lr=0.5 momentum=0.9 weight_decay=0.0" in text


def test_report_json_is_stable_and_serialisable(seed_model):
    report = paramgate.audit(seed_model, paramgate.trainable(seed_model))
    data = json.loads(report.to_json())
    assert data["schema"] == "paramgate.audit" and data["schema_version"] == 1
    assert list(data) == [
        "schema",
        "schema_version",
        "framework",
        "ok",
        "totals",
        "params",
        "optimizer",
        "findings",
        "world",
    ]
    assert data["world"] is None  # a single process; {"rank": r, "size": n} under torch.distributed
    assert list(data["params"][0]) == [
        "name", "aliases", "shape", "dtype", "numel", "trainable", "role", "kind", "in_optimizer", "group", "note",
    ]  # fmt: skip
    assert data["totals"] == {"trainable": 10, "frozen": 1792, "state": 0, "all": 1802, "trainable_pct": 0.554939}
    assert data["optimizer"]["groups"][0]["params"] == ["head.dense.weight", "head.dense.bias"]
    assert paramgate.audit(seed_model).to_dict()["optimizer"] is None


def test_render_text_markdown_and_chinese(seed_model):
    opt = Momentum(seed_model, learning_rate=0.01, momentum=0.9, weight_decay=0.01)
    report = paramgate.audit(seed_model, opt)
    text = str(report)
    assert "ERROR PG001 backbone.conv1.weight" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("parameter"))
    # Columns line up: every row puts its shape where the header's "shape" starts.
    col = lines[header].index("shape")
    assert all(lines[i][col - 2 : col] == "  " for i in range(header + 2, header + 6))
    zh = report.render("zh")
    assert "冻结参数被交给了优化器" in zh and "可训练" in zh and "组 0" in zh
    md = report.render_markdown()
    assert md.startswith("### paramgate audit (numpy): ❌ errors found")
    assert "| error | PG001 | `backbone.conv1.weight` |" in md


def test_long_names_keep_columns_aligned():
    long = "encoder.layers.23.self_attention.query_key_value.lora_A.default.weight"
    model = [Parameter(np.zeros((8, 2), np.float32), long), Parameter(np.zeros(2, np.float32), "b")]
    lines = paramgate.audit(model).render().splitlines()
    col = lines[1].index("shape")
    assert lines[3][col:].startswith("[8, 2]") and lines[4][col:].startswith("[2]")


def test_pg009_warns_about_statistics_a_frozen_layer_will_update():
    import dataclasses

    from _helpers import AdapterPlugin

    from paramgate_numpy.adapter import NumpyAdapter

    class InTrainMode(NumpyAdapter):
        """Every statistics tensor is updated by the next step, as in a framework's train mode."""

        def parameters(self, model):
            for entry in super().parameters(model):
                yield dataclasses.replace(entry, updating=True) if entry.role == "state" else entry

    pm = paramgate.ParamGatePluginManager()
    pm.register(AdapterPlugin(InTrainMode), name="train-mode")

    def model(gamma_trains: bool, with_gamma: bool = True) -> list[Parameter]:
        params = [
            Parameter(np.ones(2), "backbone.conv.weight", requires_grad=False),
            Parameter(np.zeros(2), "backbone.bn.moving_mean", requires_grad=False),
            Parameter(np.ones(2), "backbone.bn.moving_variance", requires_grad=False),
            Parameter(np.ones(2), "head.weight"),
        ]
        if with_gamma:
            params.insert(1, Parameter(np.ones(2), "backbone.bn.gamma", requires_grad=gamma_trains))
        return params

    report = paramgate.audit(model(gamma_trains=False), plugins=pm)
    assert report.ok and report.codes() == ["PG009"]
    assert report.findings[0].name == "backbone.bn"
    assert "(moving_mean, moving_variance)" in report.findings[0].message
    assert paramgate.audit(model(gamma_trains=True), plugins=pm).codes() == []
    # A layer without weights of its own takes its flags from the enclosing scope.
    assert paramgate.audit(model(False, with_gamma=False), plugins=pm).codes() == ["PG009"]
    # The builtin adapter cannot tell (updating=None): no warning.
    assert paramgate.audit(model(gamma_trains=False)).codes() == []

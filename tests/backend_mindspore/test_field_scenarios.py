"""The field notes' MindSpore scenarios on real MindSpore (CPU): PyNative and graph mode, real optimizer steps."""

from __future__ import annotations

import io
import logging

import mindspore as ms
import numpy as np
import pytest
from _helpers import demo_json, framework_neutral
from mindspore import nn
from mindspore.train import Model
from msnets import Net, dataset, frozen_net, raw, train, train_cell

import paramgate
from paramgate.demo import run_demo
from paramgate_mindspore import ParamGateCallback


@pytest.fixture(params=["pynative", "graph"])
def mode(request):
    """Each scenario in both execution modes; the context is put back afterwards."""
    before = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE if request.param == "pynative" else ms.GRAPH_MODE)
    yield request.param
    ms.set_context(mode=before)


def _step(mode, net, opt, steps=3, *, backbone_eval=False):
    # PyNative: value_and_grad + opt(grads); graph mode: the TrainOneStepCell it compiles.
    if mode == "pynative":
        train(net, opt, steps, backbone_eval=backbone_eval)
    else:
        train_cell(net, opt, steps, backbone_eval=backbone_eval)


def _errors(report):
    return [(f.code, f.name) for f in report.findings if f.severity == "error"]


def test_the_seed_line_verbatim_audits_clean_and_the_backbone_stays_frozen(mode):
    head_net = frozen_net()
    head_net.set_train(True)
    head_net.backbone.set_train(False)  # a frozen backbone's BatchNorm uses its moving statistics
    opt = nn.Momentum(filter(lambda x: x.requires_grad, head_net.get_parameters()), learning_rate=0.01, momentum=0.9)
    report = paramgate.audit(head_net, opt)
    assert report.ok and report.findings == (), report.render()
    assert report.framework == "mindspore"
    roles = {r.name: (r.role, r.in_optimizer) for r in report.params}
    assert roles == {
        "backbone.0.weight": ("frozen", False),
        "backbone.0.bias": ("frozen", False),
        "backbone.1.moving_mean": ("state", False),
        "backbone.1.moving_variance": ("state", False),
        "backbone.1.gamma": ("frozen", False),
        "backbone.1.beta": ("frozen", False),
        "head.weight": ("trainable", True),
        "head.bias": ("trainable", True),
    }
    assert paramgate.trainable(head_net) == list(filter(lambda x: x.requires_grad, head_net.get_parameters()))
    before = raw(head_net.head.weight)
    with paramgate.guard(head_net, opt) as gate:
        _step(mode, head_net, opt, backbone_eval=True)
    assert gate.report is not None and gate.report.ok and gate.report.findings == ()
    assert raw(head_net.head.weight) != before  # it really trained


def test_every_parameter_with_weight_decay_is_pg001_and_the_guard_names_the_backbone(mode):
    net = frozen_net()
    opt = nn.Momentum(net.get_parameters(), learning_rate=0.01, momentum=0.9, weight_decay=0.01)
    report = paramgate.audit(net, opt)
    errors = _errors(report)
    decayed = [
        ("PG001", "backbone.0.weight"),
        ("PG001", "backbone.0.bias"),
        ("PG001", "backbone.1.moving_mean"),
        ("PG001", "backbone.1.moving_variance"),
    ]
    if mode == "pynative":
        # Decayed (no 'beta'/'gamma' in the name) even though their gradient is zero: conv weight and bias, and
        # the statistics; gamma and beta are exempt by name and get a zero gradient, so they are only warnings.
        assert errors == decayed
        message = next(f.message for f in report.findings if f.name == "backbone.0.weight")
        assert "zero gradient" in message and "weight_decay=0.01" in message and "'beta' or 'gamma'" in message
        warned = [(f.code, f.name) for f in report.findings if f.severity == "warning"]
        assert warned == [("PG001", "backbone.1.gamma"), ("PG001", "backbone.1.beta")]
    else:
        # A compiled step differentiates every weight it is handed: gamma and beta are trained too.
        assert sorted(errors) == sorted([*decayed, ("PG001", "backbone.1.gamma"), ("PG001", "backbone.1.beta")])
        assert "graph mode" in next(f.message for f in report.findings if f.name == "backbone.1.gamma")
    with pytest.raises(paramgate.FrozenParameterChanged) as info, paramgate.guard(net, opt):
        _step(mode, net, opt, backbone_eval=True)
    changed = info.value.report.changed
    assert "backbone.0.weight" in changed
    assert ("backbone.1.gamma" in changed) == (mode == "graph")
    assert "PG101 backbone.0.weight" in str(info.value)


def test_batchnorm_statistics_are_state_and_their_drift_is_pg103_never_pg101(mode):
    net = frozen_net()
    net.set_train(True)  # the backbone's BatchNorm in train mode: it updates its moving statistics
    opt = nn.Momentum(paramgate.trainable(net), learning_rate=0.01, momentum=0.9)
    report = paramgate.audit(net, opt)
    assert report.ok
    stats = [r for r in report.params if r.name.endswith(("moving_mean", "moving_variance"))]
    assert {(r.role, r.kind, r.trainable) for r in stats} == {("state", "parameter", False)}
    assert [(f.code, f.severity, f.name) for f in report.findings] == [("PG009", "warning", "backbone.1")]
    snap = paramgate.snapshot(net, opt)
    _step(mode, net, opt)
    verdict = snap.verify(net)
    assert verdict.ok
    assert sorted(f.name for f in verdict.findings if f.code == "PG103") == [
        "backbone.1.moving_mean",
        "backbone.1.moving_variance",
    ]
    assert "PG101" not in [f.code for f in verdict.findings]


def test_eval_mode_backbone_has_no_pg009():
    net = frozen_net()
    net.set_train(True)
    net.backbone.set_train(False)
    assert "PG009" not in paramgate.audit(net).codes()


def test_groups_are_shown_with_their_settings_and_a_left_out_parameter_is_pg002():
    net = Net()
    conv = [net.backbone[0].weight, net.backbone[0].bias]
    head = [net.head.weight]  # head.bias left out of every group
    groups = [
        {"params": conv, "lr": 0.05, "weight_decay": 0.01, "grad_centralization": True},
        {"params": head, "lr": 0.01},
        {"order_params": head + conv},
    ]
    opt = nn.Momentum(groups, learning_rate=0.1, momentum=0.9)
    report = paramgate.audit(net, opt)
    assert opt.is_group_params_ordered and opt.parameters[0].name == "head.weight"
    shown = [(g.params, g.lr, g.weight_decay, g.options["grad_centralization"]) for g in report.groups]
    assert shown == [
        (("head.weight",), 0.01, 0.0, False),
        (("backbone.0.weight", "backbone.0.bias"), 0.05, 0.01, True),
    ]
    assert [g.momentum for g in report.groups] == [0.9, 0.9]
    pg002 = [f.name for f in report.findings if f.code == "PG002"]
    assert "head.bias" in pg002
    # The same groups as a list, before MindSpore builds the optimizer, read the same way.
    listed = paramgate.audit(net, groups)
    assert [(g.params, g.lr, g.weight_decay) for g in listed.groups] == [
        (("backbone.0.weight", "backbone.0.bias"), 0.05, 0.01),
        (("head.weight",), 0.01, None),
    ]
    assert "head.bias" in [f.name for f in listed.findings if f.code == "PG002"]
    rendered = report.render()
    assert "lr=0.05" in rendered and "weight_decay=0.01" in rendered


def test_a_frozen_parameter_in_a_decaying_group_is_pg001_error():
    net = frozen_net()
    opt = nn.Momentum(
        [{"params": [net.backbone[1].gamma], "weight_decay": 0.01}, {"params": paramgate.trainable(net)}],
        learning_rate=0.1,
        momentum=0.9,
    )
    report = paramgate.audit(net, opt)
    # With groups, MindSpore decays every parameter of a group with weight_decay > 0, gamma included.
    assert ("PG001", "backbone.1.gamma") in _errors(report)


def test_the_exhausted_filter_is_explained_instead_of_mindsspores_bare_error():
    net = frozen_net()
    params = filter(lambda x: x.requires_grad, net.get_parameters())
    print([p.name for p in params])  # read once for logging...
    with pytest.raises(ValueError, match="must not be empty"):  # ...and MindSpore's own message says only this
        nn.Momentum(params, learning_rate=0.01, momentum=0.9)
    fresh = filter(lambda x: x.requires_grad, net.get_parameters())
    with pytest.raises(paramgate.OneShotIteratorError, match="exhausted filter") as info:
        paramgate.audit(net, fresh)
    assert "paramgate.trainable(model)" in str(info.value)
    assert next(fresh).name == "head.weight"  # the gate read nothing from it
    report = paramgate.audit(net, [])
    assert ("PG003", "optimizer") in _errors(report)
    assert "already read" in next(f.message for f in report.findings if f.code == "PG003")


def test_a_shared_parameter_is_one_tensor_with_an_alias():
    class Tied(nn.Cell):
        def __init__(self):
            super().__init__()
            self.a = nn.Dense(2, 2)
            self.b = nn.Dense(2, 2)
            self.b.weight = self.a.weight

        def construct(self, x):
            return self.b(self.a(x))

    net = Tied()
    report = paramgate.audit(net, nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9))
    assert report.ok
    weight = next(r for r in report.params if r.name == "a.weight")
    assert weight.aliases == ("b.weight",)
    assert report.totals.all == 4 + 2 + 2


def test_a_list_of_parameters_is_a_model_too():
    net = frozen_net()
    report = paramgate.audit(net.trainable_params(), paramgate.trainable(net))
    assert report.ok and [r.name for r in report.params] == ["head.weight", "head.bias"]


def test_audit_and_snapshot_change_nothing():
    net = frozen_net()
    net.set_train(True)
    opt = nn.Momentum(net.get_parameters(), learning_rate=0.01, momentum=0.9, weight_decay=0.01)
    flags = [(p.name, p.requires_grad) for p in net.get_parameters()]
    data = [raw(p) for p in net.get_parameters()]
    moments = [raw(m) for m in opt.moments]
    modes = [c.training for _, c in net.cells_and_names()]
    paramgate.audit(net, opt)
    paramgate.snapshot(net, opt).verify(net)
    assert flags == [(p.name, p.requires_grad) for p in net.get_parameters()]
    assert data == [raw(p) for p in net.get_parameters()]
    assert moments == [raw(m) for m in opt.moments]
    assert modes == [c.training for _, c in net.cells_and_names()]


def test_a_frozen_parameter_with_momentum_state_is_an_error():
    net = Net()
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.1, momentum=0.9)
    train(net, opt, 1)  # the head trained once: its momentum buffer is non-zero
    net.head.weight.requires_grad = False  # frozen afterwards, still in the optimizer
    report = paramgate.audit(net, opt)
    message = next(f.message for f in report.findings if f.name == "head.weight")
    assert ("PG001", "head.weight") in _errors(report) and "'moments' is non-zero" in message
    with pytest.raises(paramgate.FrozenParameterChanged, match=r"PG101 head\.weight"), paramgate.guard(net, opt):
        train(net, opt, 1)


def test_callback_audits_and_verifies_each_epoch_of_model_train(mode):
    net = frozen_net()
    opt = nn.Momentum(paramgate.trainable(net), learning_rate=0.01, momentum=0.9)
    callback = ParamGateCallback()
    assert isinstance(callback, ms.train.Callback)
    Model(net, loss_fn=nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), optimizer=opt).train(
        2, dataset(), callbacks=[callback], dataset_sink_mode=False
    )
    assert callback.audit_report is not None and callback.audit_report.ok
    assert len(callback.reports) == 2 and all(r.ok for r in callback.reports)
    # Model.train puts the backbone's BatchNorm in train mode: its statistics drift, reported as state.
    assert {f.code for r in callback.reports for f in r.findings} <= {"PG103"}
    assert callback._watched is None and callback._snapshot is None  # lets go of the network


def test_callback_raises_before_the_first_step_when_the_audit_fails(mode):
    net = frozen_net()
    opt = nn.Momentum(net.get_parameters(), learning_rate=0.01, momentum=0.9, weight_decay=0.01)
    before = raw(net.backbone[0].weight)
    model = Model(net, loss_fn=nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), optimizer=opt)
    with pytest.raises(paramgate.AuditFailed, match=r"PG001 backbone\.0\.weight"):
        model.train(1, dataset(), callbacks=[ParamGateCallback()], dataset_sink_mode=False)
    assert raw(net.backbone[0].weight) == before  # stopped before any step


def test_callback_in_log_mode_logs_the_audit_and_the_change_and_goes_on(caplog):
    net = frozen_net()
    opt = nn.Momentum(net.get_parameters(), learning_rate=0.01, momentum=0.9, weight_decay=0.01)
    callback = ParamGateCallback(on_error="log")
    model = Model(net, loss_fn=nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), optimizer=opt)
    with caplog.at_level(logging.WARNING, logger="paramgate"):
        model.train(2, dataset(), callbacks=[callback], dataset_sink_mode=False)
    assert len(callback.reports) == 2 and not callback.reports[0].ok
    assert "backbone.0.weight" in callback.reports[0].changed
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3
    assert "the audit before training found" in errors[0]
    assert errors[1].startswith("paramgate after epoch 1: ") and "PG101 backbone.0.weight" in errors[1]


def test_callback_rejects_a_bad_on_error():
    with pytest.raises(paramgate.InvalidArgumentError, match="on_error"):
        ParamGateCallback(on_error="ignore")


def test_mindspore_demo_audit_equals_the_numpy_demo_audit():
    code_np, numpy_run = demo_json("numpy")
    code_ms, ms_run = demo_json("mindspore")
    assert code_np == code_ms == 0
    assert ms_run["audit"]["framework"] == "mindspore"
    assert {p["dtype"] for p in ms_run["audit"]["params"]} == {"float32"}
    assert framework_neutral(ms_run["audit"]) == framework_neutral(numpy_run["audit"])
    assert ms_run["invariance"] == {**numpy_run["invariance"], "framework": "mindspore"}


def test_mindspore_demo_buggy_is_caught_before_and_after():
    code, run = demo_json("mindspore", buggy=True)
    assert code == 1
    assert [(f["code"], f["severity"], f["name"]) for f in run["audit"]["findings"]] == [
        ("PG001", "error", "backbone.conv1.weight"),
        ("PG001", "error", "backbone.conv1.bias"),
    ]
    assert [f["name"] for f in run["invariance"]["findings"] if f["code"] == "PG101"] == ["backbone.conv1.weight"]


def test_mindspore_demo_replays_the_walkthrough_in_chinese():
    pm = paramgate.get_plugin_manager()
    out = io.StringIO()
    assert run_demo(pm.hook.paramgate_demo_kit(framework="mindspore"), out, plugins=pm, lang="zh") == 0
    text = out.getvalue()
    assert "paramgate 演示（mindspore）" in text and "nn.Momentum([head.dense.weight, head.dense.bias]" in text


def test_adapter_is_chosen_for_cells_only():
    pm = paramgate.get_plugin_manager()
    assert pm.adapter_for_model(Net()).name == "mindspore"
    with pytest.raises(paramgate.UnsupportedModelError, match="mindspore adapter is installed"):
        paramgate.audit(ms.Tensor(np.zeros(2, np.float32)))


def test_schedules_and_adam_hyperparameters_are_reported():
    net = frozen_net()
    schedule = nn.ExponentialDecayLR(0.1, 0.9, 4)
    report = paramgate.audit(net, nn.Momentum(paramgate.trainable(net), learning_rate=schedule, momentum=0.9))
    (group,) = report.groups
    assert group.lr is None and group.options["lr_schedule"] == "ExponentialDecayLR"
    adam = nn.Adam(net.get_parameters(), learning_rate=1e-3, beta1=0.8, weight_decay=0.0)
    report = paramgate.audit(net, adam)
    (group,) = report.groups
    assert (group.lr, group.options["beta1"], group.options["beta2"]) == (0.001, 0.8, 0.999)
    # Zero gradient, no decay, empty moments: Adam leaves the frozen backbone where it is (a warning only).
    assert {f.severity for f in report.findings if f.code == "PG001"} == {"warning"}
    net.backbone[0].weight.requires_grad = True
    train(net, adam, 1)
    net.backbone[0].weight.requires_grad = False
    report = paramgate.audit(net, adam)
    message = next(f.message for f in report.findings if f.name == "backbone.0.weight")
    assert "'moment1' is non-zero" in message

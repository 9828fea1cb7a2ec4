"""The torch adapter beyond the field scenarios: what it reads, what it leaves alone."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import weakref

import pytest
import torch
from _helpers import demo_json, framework_neutral
from torch import nn
from torchnets import loss, net, train

import paramgate


def peft_counts(model: nn.Module) -> tuple[int, int]:
    """PEFT's get_nb_trainable_parameters for plain torch parameters, written out."""
    trainable = every = 0
    for _, param in model.named_parameters():
        every += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return trainable, every


def test_peft_line_counts_what_peft_counts():
    model = net()
    model.backbone.requires_grad_(False)
    model.tied = nn.Linear(8, 8)
    model.alias = model.tied  # a module under two names: PEFT counts it once, so does the gate
    trainable, every = peft_counts(model)
    line = paramgate.audit(model).peft_line()
    assert line == (
        f"trainable params: {trainable:,d} || all params: {every:,d} || trainable%: {100 * trainable / every:.4f}"
    )


def test_state_dict_order_names_and_roles():
    model = net()
    model.backbone.requires_grad_(False)
    report = paramgate.audit(model)
    assert [r.name for r in report.params] == list(model.state_dict())
    assert {r.name: (r.role, r.kind) for r in report.params if r.name.startswith("backbone.1")} == {
        "backbone.1.weight": ("frozen", "parameter"),
        "backbone.1.bias": ("frozen", "parameter"),
        "backbone.1.running_mean": ("state", "buffer"),
        "backbone.1.running_var": ("state", "buffer"),
        "backbone.1.num_batches_tracked": ("state", "buffer"),
    }
    assert report.totals.state == 8 + 8 + 1
    assert {r.dtype for r in report.params} == {"float32", "int64"}


def test_lazy_module_parameters_are_reported_not_crashed_on():
    model = nn.Sequential(nn.Linear(4, 8), nn.LazyLinear(2))
    model[0].requires_grad_(False)
    report = paramgate.audit(model, torch.optim.SGD(paramgate.trainable(model), lr=0.1))
    lazy = {r.name: r for r in report.params}["1.weight"]
    assert lazy.numel == 0 and lazy.shape == () and lazy.note is not None and "uninitialized" in lazy.note
    assert report.ok
    with pytest.raises(paramgate.InvalidParameterError, match=r"'1\.weight' is an uninitialized lazy parameter"):
        paramgate.snapshot(model)  # no bits to fingerprint yet: said, not guessed
    model(torch.zeros(3, 4))  # materializes the lazy layer: same Parameter object, now [2, 8]
    assert paramgate.snapshot(model).verify(model).ok
    assert paramgate.audit(model).totals.trainable == 2 * 8 + 2


def test_meta_parameters_audit_but_refuse_a_snapshot():
    with torch.device("meta"):
        model = nn.Linear(4, 2)
    report = paramgate.audit(model)
    assert report.params[0].note is not None and "meta device" in report.params[0].note
    with pytest.raises(paramgate.InvalidParameterError, match="'weight' is on the meta device"):
        paramgate.snapshot(model)


def test_optimizer_forms_the_adapter_reads():
    model = net()
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": paramgate.trainable(model), "lr": 0.1}]

    class Wrapper:  # e.g. an accelerator's optimizer wrapper: torch's layout, not a torch class
        def __init__(self, inner: torch.optim.Optimizer) -> None:
            self.param_groups = inner.param_groups
            self.state = inner.state

    for optimizer in (named, groups, tuple(paramgate.trainable(model)), Wrapper(torch.optim.SGD(named, lr=0.1))):
        report = paramgate.audit(model, optimizer)
        assert report.codes() == [], (optimizer, report.codes())
    assert paramgate.audit(model, groups).groups[0].lr == 0.1  # type: ignore[index]


def test_tensor_lr_is_reported_as_a_number():
    model = net()
    optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    assert paramgate.audit(model, optimizer).groups[0].lr == pytest.approx(0.01)  # type: ignore[index]


def test_the_gate_changes_nothing_and_keeps_nothing_alive():
    model = net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(model, optimizer, steps=1, set_to_none=False)
    model.backbone.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    grads = {n: p.grad for n, p in model.named_parameters()}
    versions = {n: t._version for n, t in model.state_dict(keep_vars=True).items()}
    state_keys = list(optimizer.state)
    rng = torch.get_rng_state()

    report = paramgate.audit(model, optimizer)
    snap = paramgate.snapshot(model, optimizer)
    result = snap.verify(model)
    paramgate.trainable(model)

    assert not report.ok and result.ok
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert all(p.grad is grads[n] for n, p in model.named_parameters())
    assert {n: t._version for n, t in model.state_dict(keep_vars=True).items()} == versions  # no in-place writes
    assert list(optimizer.state) == state_keys  # no defaultdict entries added
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training

    ref = weakref.ref(model)
    del model, optimizer
    gc.collect()
    assert ref() is None, "a report or snapshot kept the model alive"
    assert report.params and snap.prints and result.checked


def test_a_tensor_passed_as_the_model_names_the_adapter():
    with pytest.raises(paramgate.UnsupportedModelError, match="torch adapter is installed but takes the model"):
        paramgate.audit(torch.zeros(3))


def test_a_numpy_optimizer_for_a_torch_model_is_refused():
    from paramgate_numpy import Momentum, Parameter

    numpy_opt = Momentum([Parameter(torch.zeros(2).numpy(), "w")], 0.1, 0.9)
    with pytest.raises(paramgate.UnsupportedOptimizerError, match="it belongs to numpy, not to torch"):
        paramgate.audit(net(), numpy_opt)


def test_sparse_parameters_get_a_clear_error_on_snapshot():
    model = nn.Module()
    model.w = nn.Parameter(torch.eye(3).to_sparse(), requires_grad=False)
    with pytest.raises(paramgate.InvalidParameterError, match=r"'w' has layout torch.sparse_coo"):
        paramgate.snapshot(model)


def test_torch_demo_audit_equals_the_numpy_demo_audit():
    code_np, numpy_run = demo_json("numpy")
    code_pt, torch_run = demo_json("torch")
    assert code_np == code_pt == 0
    assert torch_run["audit"]["framework"] == "torch"
    assert {p["dtype"] for p in torch_run["audit"]["params"]} == {"float32"}
    assert framework_neutral(torch_run["audit"]) == framework_neutral(numpy_run["audit"])
    assert torch_run["invariance"]["findings"] == numpy_run["invariance"]["findings"] == []


def test_torch_demo_buggy_shows_stale_gradients_caught_before_and_after():
    code, run = demo_json("torch", buggy=True)
    assert code == 1
    assert [(f["code"], f["severity"]) for f in run["audit"]["findings"]] == [("PG001", "error")] * 2
    assert [f["name"] for f in run["invariance"]["findings"] if f["code"] == "PG101"] == ["backbone.conv1.weight"]


def test_cli_audits_a_torch_factory_file(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def build():
                model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
                model(torch.ones(1, 4)).sum().backward()   # a warm-up step...
                model[0].requires_grad_(False)            # ...then the freeze
                return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, "-m", "paramgate", "audit", f"{script}:build", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["framework"] == "torch"
    assert [(f["code"], f["name"]) for f in report["findings"]] == [("PG001", "0.weight"), ("PG001", "0.bias")]


def test_stale_gradient_in_a_list_about_to_become_an_optimizer():
    model = net()
    loss(model).backward()
    model.backbone.requires_grad_(False)
    report = paramgate.audit(model, list(model.parameters()))
    assert {f.name for f in report.findings if f.code == "PG001" and f.severity == "error"} == {
        "backbone.0.weight",
        "backbone.0.bias",
        "backbone.1.weight",
        "backbone.1.bias",
    }


def test_a_parameter_frozen_by_trainable_but_still_requiring_grad_is_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    report = paramgate.audit(model, torch.optim.SGD(model.parameters(), lr=0.1), trainable=lambda n: n.startswith("1."))
    errors = {f.name: f.message for f in report.findings if f.code == "PG001" and f.severity == "error"}
    assert set(errors) == {"0.weight", "0.bias"}
    assert "still has requires_grad=True" in errors["0.weight"] and ".requires_grad_(False)" in errors["0.weight"]
    assert all(p.requires_grad for p in model.parameters())  # the gate flipped nothing

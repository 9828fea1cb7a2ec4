"""The field's freezing mistakes, on real torch models with real optimizer steps.

Numbers refer to the scenarios of the torch adapter's issue and ../shared/FIELD-NOTES.md.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchnets import flip_bit, loss, net, raw, train

import paramgate

BACKBONE_WEIGHTS = {"backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias"}
BN_STATS = {"backbone.1.running_mean", "backbone.1.running_var", "backbone.1.num_batches_tracked"}


def errors(report, code):
    return {f.name for f in report.findings if f.code == code and f.severity == "error"}


def warnings(report, code):
    return {f.name for f in report.findings if f.code == code and f.severity == "warning"}


OPTIMIZERS = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-2),
}


# 1. Frozen after a backward pass: stale gradients make every torch optimizer step them.
@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
@pytest.mark.parametrize("set_to_none", [True, False], ids=["zero_grad", "zero_grad_set_to_none_False"])
def test_backbone_frozen_after_backward_is_caught_before_and_after(make, set_to_none):
    model = net()
    loss(model).backward()  # e.g. a warm-up step before the backbone was frozen
    model.backbone.requires_grad_(False)
    optimizer = make(model.parameters())

    report = paramgate.audit(model, optimizer)
    assert errors(report, "PG001") == BACKBONE_WEIGHTS
    message = next(f.message for f in report.findings if f.name == "backbone.0.weight")
    assert "holds a gradient" in message and "the gradient is non-zero" in message

    with pytest.raises(paramgate.FrozenParameterChanged) as info, paramgate.guard(model, optimizer):
        train(model, optimizer, set_to_none=set_to_none)
    assert set(info.value.report.changed) == BACKBONE_WEIGHTS
    assert set(info.value.report.statistics_changed) == BN_STATS  # train mode: statistics, never PG101


def test_zero_gradients_kept_by_zero_grad_still_move_under_weight_decay():
    model = net()
    loss(model).backward()
    model.backbone.requires_grad_(False)
    model.zero_grad(set_to_none=False)  # the gradients are zeros now, but not None
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=1e-2)
    report = paramgate.audit(model, optimizer)
    assert errors(report, "PG001") == BACKBONE_WEIGHTS
    model.backbone.eval()
    with pytest.raises(paramgate.FrozenParameterChanged) as info, paramgate.guard(model, optimizer):
        train(model, optimizer, set_to_none=False)
    # BatchNorm's bias starts at zeros, which decay cannot shrink: the bits say it did not move.
    assert set(info.value.report.changed) == BACKBONE_WEIGHTS - {"backbone.1.bias"}


def test_adam_state_from_before_the_freeze_keeps_moving_a_zero_gradient():
    model = net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train(model, optimizer, steps=2)
    model.backbone.requires_grad_(False)
    for p in model.backbone.parameters():
        p.grad = torch.zeros_like(p)
    message = next(f.message for f in paramgate.audit(model, optimizer).findings if f.name == "backbone.0.weight")
    assert "'exp_avg' is non-zero" in message


# 2. In the optimizer, but the gradient is None: torch skips them; no false alarm.
def test_frozen_parameters_without_gradient_are_only_a_warning_and_stay_put():
    model = net()
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)

    report = paramgate.audit(model, optimizer)
    assert report.ok
    assert warnings(report, "PG001") == BACKBONE_WEIGHTS
    before = {n: raw(p) for n, p in model.named_parameters()}
    with paramgate.guard(model, optimizer) as g:
        train(model, optimizer)
    assert g.report is not None and g.report.ok and g.report.findings == ()
    assert all(raw(p) == before[n] for n, p in model.backbone.named_parameters(prefix="backbone"))
    assert raw(model.head.weight) != before["head.weight"]


def test_third_party_optimizer_that_decays_without_gradient_is_an_error_and_is_caught():
    class DecayEverything(torch.optim.Optimizer):
        """Like Muon before KellerJordan/Muon#54: decoupled decay for every parameter, gradient or not."""

        def __init__(self, params, lr=0.1, weight_decay=0.1):
            super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                for p in group["params"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    if p.grad is not None:
                        p.add_(p.grad, alpha=-group["lr"])

    model = net()
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    optimizer = DecayEverything(model.parameters())
    report = paramgate.audit(model, optimizer)
    assert errors(report, "PG001") == BACKBONE_WEIGHTS
    assert "DecayEverything is not a torch optimizer" in report.findings[0].message
    with pytest.raises(paramgate.FrozenParameterChanged) as info, paramgate.guard(model, optimizer):
        train(model, optimizer)
    assert set(info.value.report.changed) == BACKBONE_WEIGHTS - {"backbone.1.bias"}  # zeros stay zeros


# 3. BatchNorm in a frozen backbone left in train mode.
def test_batchnorm_statistics_drift_is_pg103_never_pg101_and_the_audit_warns_first():
    model = net()
    model.backbone.requires_grad_(False)
    optimizer = torch.optim.SGD(paramgate.trainable(model), lr=0.1)

    report = paramgate.audit(model, optimizer)
    assert report.ok
    assert report.codes() == ["PG009"]
    assert report.findings[0].name == "backbone.1"
    assert {r.name: r.role for r in report.params if r.kind == "buffer"} == dict.fromkeys(BN_STATS, "state")

    with paramgate.guard(model, optimizer) as g:
        train(model, optimizer)
    assert g.report is not None
    assert set(g.report.statistics_changed) == BN_STATS
    assert "PG101" not in g.report.codes()

    model.train()
    model.backbone.eval()  # the fix the warning gives
    assert paramgate.audit(model, optimizer).codes() == []
    with paramgate.guard(model, optimizer) as g:
        train(model, optimizer)
    assert g.report is not None and g.report.findings == ()


def test_batchnorm_without_affine_weights_takes_the_enclosing_layers_flags():
    model = net(affine=False)
    model.backbone.requires_grad_(False)
    assert [f.name for f in paramgate.audit(model).findings] == ["backbone.1"]
    model.backbone.requires_grad_(True)
    assert paramgate.audit(model).codes() == []


def test_trainable_batchnorm_in_train_mode_is_not_flagged():
    model = net()
    model.backbone[0].requires_grad_(False)  # only the conv is frozen
    assert paramgate.audit(model, paramgate.trainable(model)).codes() == []


# 4. A head replaced after the optimizer was built.
def test_head_replaced_after_the_optimizer_is_missing_from_it():
    model = net()
    model.backbone.requires_grad_(False)
    optimizer = torch.optim.SGD(paramgate.trainable(model), lr=0.1)
    model.head = nn.Linear(8, 5)
    report = paramgate.audit(model, optimizer)
    assert errors(report, "PG002") == {"head.weight", "head.bias"}
    assert len(errors(report, "PG007")) == 2  # the old head's tensors, no longer in the model


def test_optimizer_built_from_named_parameters_reports_names_for_foreign_tensors():
    model, other = net(), net()
    optimizer = torch.optim.SGD(other.named_parameters(), lr=0.1)
    report = paramgate.audit(model, optimizer)
    assert "head.weight" in errors(report, "PG007")
    assert report.groups is not None and report.groups[0].params[0] == "<not in model: backbone.0.weight>"


# 5. The exhausted filter iterator.
def test_trainable_prevents_the_empty_parameter_list_of_a_consumed_filter():
    model = net()
    model.backbone.requires_grad_(False)

    params = filter(lambda p: p.requires_grad, model.parameters())
    logged = [tuple(p.shape) for p in params]  # logging what will be trained...
    assert logged == [(2, 8), (2,)]
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        torch.optim.SGD(params, lr=0.1)  # ...left nothing for the optimizer
    with pytest.raises(paramgate.OneShotIteratorError, match=r"paramgate\.trainable"):
        paramgate.audit(model, filter(lambda p: p.requires_grad, model.parameters()))

    params = paramgate.trainable(model)
    assert [tuple(p.shape) for p in params] == [(2, 8), (2,)]
    optimizer = torch.optim.SGD(params, lr=0.1)
    assert paramgate.audit(model, optimizer).codes() == ["PG009"]


def test_an_empty_group_is_pg003():
    model = net()
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    optimizer = torch.optim.SGD([{"params": paramgate.trainable(model)}, {"params": []}], lr=0.1)
    report = paramgate.audit(model, optimizer)
    assert report.codes() == ["PG003"] and report.findings[0].name == "group 1"


# 6. Tied weights.
class TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.lm_head = nn.Linear(4, 10, bias=False)


def test_storage_shared_through_data_with_different_flags_is_pg005():
    model = TiedLM()
    model.lm_head.weight.data = model.embed.weight.data  # two Parameters, one storage
    model.embed.weight.requires_grad_(False)
    report = paramgate.audit(model)
    assert errors(report, "PG005") == {"embed.weight"}
    assert "lm_head.weight requires_grad=True" in report.findings[0].message
    model.embed.weight.requires_grad_(True)
    assert paramgate.audit(model).codes() == []


def test_views_of_one_buffer_that_do_not_overlap_are_not_tied():
    model = TiedLM()
    flat = torch.zeros(80)
    model.embed.weight = nn.Parameter(flat[:40].view(10, 4), requires_grad=False)
    model.lm_head.weight = nn.Parameter(flat[40:].view(10, 4))
    assert "PG005" not in paramgate.audit(model).codes()


def test_one_parameter_under_two_names_is_one_tensor_counted_once():
    model = TiedLM()
    model.lm_head.weight = model.embed.weight  # GPT-2 style tying
    report = paramgate.audit(model, torch.optim.SGD(model.parameters(), lr=0.1))
    assert [(r.name, r.aliases) for r in report.params] == [("embed.weight", ("lm_head.weight",))]
    assert report.totals.trainable == 40 and report.codes() == []
    assert "embed.weight (= lm_head.weight)" in report.render()


# 7. Exactness: bits, not values.
def test_nan_and_negative_zero_frozen_parameters_are_no_false_alarm():
    model = net()
    with torch.no_grad():
        model.backbone[0].weight.fill_(float("nan"))
        model.backbone[0].bias.fill_(-0.0)
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    optimizer = torch.optim.SGD(paramgate.trainable(model), lr=0.1)
    with paramgate.guard(model, optimizer) as g:
        optimizer.zero_grad()
        model.head(torch.randn(4, 8)).sum().backward()
        optimizer.step()
    assert g.report is not None and g.report.findings == ()


class Mixed(nn.Module):
    DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int8, torch.bool, torch.complex64)

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        for dtype in self.DTYPES:
            data = torch.randint(0, 2, (3, 5), generator=g) if dtype == torch.bool else torch.randn(3, 5, generator=g)
            setattr(self, "w_" + str(dtype).removeprefix("torch."), nn.Parameter(data.to(dtype), requires_grad=False))
        self.w_float8_e4m3fn = nn.Parameter(torch.randn(3, 5, generator=g).to(torch.float8_e4m3fn), requires_grad=False)
        self.transposed = nn.Parameter(torch.randn(5, 3, generator=g).t(), requires_grad=False)  # not contiguous
        self.head = nn.Linear(5, 1)


@pytest.mark.parametrize("name", [*("w_" + str(d).removeprefix("torch.") for d in Mixed.DTYPES), "w_float8_e4m3fn"])
@pytest.mark.parametrize(("flat_byte", "bit"), [(0, 0), (-1, 7), (7, 3)])
def test_a_single_flipped_bit_in_any_dtype_is_caught(name, flat_byte, bit):
    model = Mixed()
    snap = paramgate.snapshot(model)
    param = getattr(model, name)
    flip_bit(param, flat_byte % (param.numel() * param.element_size()), bit)
    result = snap.verify(model)
    assert result.changed == [name] and result.codes() == ["PG101", "PG102", "PG102"]


@pytest.mark.parametrize(("flat_byte", "bit"), [(0, 0), (59, 7), (22, 3)])
def test_a_flipped_bit_in_a_non_contiguous_parameter_is_caught(flat_byte, bit):
    model = Mixed()
    assert not model.transposed.is_contiguous()
    snap = paramgate.snapshot(model)
    flip_bit(model.transposed.t(), flat_byte, bit)  # .t() is the contiguous memory underneath
    assert snap.verify(model).changed == ["transposed"]


# 8. Groups with their own hyperparameters.
def test_groups_are_shown_with_their_hyperparameters():
    model = net()
    optimizer = torch.optim.AdamW(
        [
            {"params": model.backbone.parameters(), "lr": 1e-4, "weight_decay": 0.0},
            {"params": model.head.parameters(), "lr": 1e-2},
        ],
        weight_decay=0.05,
    )
    report = paramgate.audit(model, optimizer)
    assert report.codes() == []
    text = report.render()
    assert (
        "group 0: lr=0.0001 weight_decay=0.0 betas=(0.9, 0.999) eps=1e-08 amsgrad=False "
        "maximize=False decoupled_weight_decay=True -> backbone.0.weight, backbone.0.bias, backbone.1.weight, "
        "backbone.1.bias" in text
    )
    assert "group 1: lr=0.01 weight_decay=0.05" in text
    groups = report.to_dict()["optimizer"]["groups"]  # type: ignore[index]
    assert groups[0]["options"]["betas"] == [0.9, 0.999]
    assert [r.group for r in report.params if r.kind == "parameter"] == [0, 0, 0, 0, 1, 1]

"""``paramgate_torch.lightning.ParamGateCallback`` inside a real ``lightning.Trainer.fit`` on CPU."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.trainer.states import TrainerStatus
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchnets import raw

import paramgate
from paramgate_torch.lightning import ParamGateCallback

pytestmark = [
    # Lightning 2.6.6 calls torch's deprecated pytree LeafSpec (a FutureWarning on torch 2.13).
    pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"),
    # Lightning suggests DataLoader workers on machines with more than two cores.
    pytest.mark.filterwarnings(
        "ignore:The 'train_dataloader' does not have many workers"
        ":lightning.fabric.utilities.warnings.PossibleUserWarning"
    ),
]

VOCAB = 10


class DecayAll(torch.optim.Optimizer):
    """SGD with decoupled weight decay on every parameter of its groups, gradient or not (as KellerJordan/Muon#54)."""

    def __init__(self, params, lr: float, weight_decay: float) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                p.mul_(1 - group["lr"] * group["weight_decay"])
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])
        return loss


class Backbone(nn.Module):
    def __init__(self, max_norm: float | None = None) -> None:
        super().__init__()
        # max_norm: nn.Embedding renormalizes the rows it looks up, in place, in every forward pass.
        self.embed = nn.Embedding(VOCAB, 8, max_norm=max_norm)
        self.norm = nn.BatchNorm1d(8)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.embed(tokens).mean(1)))


class FineTune(pl.LightningModule):
    """A frozen backbone (embedding + BatchNorm) and a trainable head."""

    def __init__(self, optimizer: str = "trainable", max_norm: float | None = None, eval_backbone: bool = False):
        super().__init__()
        self.backbone = Backbone(max_norm)
        self.head = nn.Linear(8, 2)
        self.backbone.requires_grad_(False)
        if eval_backbone:
            self.backbone.eval()
        self.optimizer_kind = optimizer

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(tokens))

    def training_step(self, batch, batch_idx):
        tokens, labels = batch
        return F.cross_entropy(self(tokens), labels)

    def configure_optimizers(self):
        if self.optimizer_kind == "trainable":
            return torch.optim.AdamW(paramgate.trainable(self), lr=0.1)
        if self.optimizer_kind == "adamw_all":
            return torch.optim.AdamW(self.parameters(), lr=0.1, weight_decay=0.1)
        return DecayAll(self.parameters(), lr=0.1, weight_decay=0.1)


class TwoOptimizers(FineTune):
    """Manual optimization with two optimizers: SGD for the head, AdamW for a neck."""

    def __init__(self, leave_out_bias: bool = False) -> None:
        super().__init__(eval_backbone=False)
        self.neck = nn.Linear(8, 8)
        self.leave_out_bias = leave_out_bias
        self.automatic_optimization = False

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.backbone(tokens)))

    def training_step(self, batch, batch_idx):
        head_opt, neck_opt = self.optimizers()
        tokens, labels = batch
        head_opt.zero_grad()
        neck_opt.zero_grad()
        self.manual_backward(F.cross_entropy(self(tokens), labels))
        head_opt.step()
        neck_opt.step()

    def configure_optimizers(self):
        neck = [self.neck.weight] if self.leave_out_bias else list(self.neck.parameters())
        return [torch.optim.SGD(self.head.parameters(), lr=0.1), torch.optim.AdamW(neck, lr=0.01)]


def build(cls=FineTune, **kwargs) -> FineTune:
    torch.manual_seed(0)
    return cls(**kwargs)


def trainer_for(*callbacks: pl.Callback, epochs: int = 2) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        limit_train_batches=3,
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
    )


def run(trainer: pl.Trainer, module: pl.LightningModule) -> None:
    generator = torch.Generator().manual_seed(1)
    data = TensorDataset(torch.randint(0, VOCAB, (24, 5), generator=generator), torch.randint(0, 2, (24,)))
    torch.manual_seed(2)  # the loader's shuffling
    trainer.fit(module, DataLoader(data, batch_size=4, shuffle=True))


def fit(module: pl.LightningModule, *callbacks: pl.Callback) -> pl.Trainer:
    trainer = trainer_for(*callbacks)
    run(trainer, module)
    return trainer


def state(module: nn.Module) -> dict[str, bytes]:
    return {name: raw(t) for name, t in module.state_dict().items()}


def messages(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "paramgate" and r.levelno == level]


def test_a_clean_run_is_audited_at_the_start_and_verified_after_every_epoch(caplog):
    module = build()
    callback = ParamGateCallback()
    assert isinstance(callback, pl.Callback)
    assert type(callback).__module__ == "paramgate_torch.lightning"
    with caplog.at_level(logging.WARNING, logger="paramgate"):
        trainer = fit(module, callback)
    assert trainer.global_step == 6 and callback.steps == 6
    report = callback.audit_report
    assert report is not None and report.ok and report.optimizer == "AdamW"
    assert callback.audit_reports == [report]
    # Lightning 2.6 leaves modules in the mode they are in (a new module trains): the frozen
    # BatchNorm updates its statistics, a warning before (PG009) and after (PG103), never an error.
    assert [(f.code, f.name) for f in report.findings] == [("PG009", "backbone.norm")]
    assert len(callback.reports) == 2 and all(r.ok for r in callback.reports)
    assert [sorted({f.code for f in r.findings}) for r in callback.reports] == [["PG103"], ["PG103"]]
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 3
    assert warnings[0].startswith("paramgate audit before training:") and "PG009 backbone.norm" in warnings[0]
    assert warnings[1].startswith("paramgate after epoch 1:") and "PG103 backbone.norm.running_mean" in warnings[1]
    assert warnings[2].startswith("paramgate after epoch 2:")
    assert callback._watched is None and callback._snapshot is None  # lets go of the module


@pytest.mark.filterwarnings(
    # Lightning warns that the (frozen, on purpose) backbone is in eval mode at the start of training.
    "ignore:Found .* module\\(s\\) in eval mode:lightning.fabric.utilities.warnings.PossibleUserWarning"
)
def test_a_backbone_kept_in_eval_mode_audits_and_verifies_clean():
    module = build(eval_backbone=True)
    callback = ParamGateCallback()
    fit(module, callback)
    assert callback.audit_report is not None and callback.audit_report.findings == ()
    assert len(callback.reports) == 2 and all(r.findings == () for r in callback.reports)
    assert not module.backbone.norm.training  # Lightning did not switch it back to training


def test_adamw_over_every_parameter_is_a_warning_because_lightning_clears_stale_gradients():
    module = build(optimizer="adamw_all")
    module.backbone.requires_grad_(True)
    module(torch.randint(0, VOCAB, (4, 5))).sum().backward()  # a sanity check before freezing leaves gradients
    module.backbone.requires_grad_(False)
    stale = paramgate.audit(module, torch.optim.AdamW(module.parameters(), weight_decay=0.1))
    assert ("PG001", "error") in {(f.code, f.severity) for f in stale.findings}  # outside Lightning: an error
    frozen = {name: raw(p) for name, p in module.backbone.named_parameters()}
    callback = ParamGateCallback()
    fit(module, callback)
    # Trainer.fit zeroes the gradients (set to None) before on_train_start, and torch's AdamW skips
    # a parameter without one: the frozen weights are in the optimizer but do not move.
    report = callback.audit_report
    assert report is not None and report.ok
    assert [(f.code, f.severity, f.name) for f in report.findings if f.code == "PG001"] == [
        ("PG001", "warning", "backbone.embed.weight"),
        ("PG001", "warning", "backbone.norm.weight"),
        ("PG001", "warning", "backbone.norm.bias"),
    ]
    assert all(r.ok for r in callback.reports) and len(callback.reports) == 2
    assert {name: raw(p) for name, p in module.backbone.named_parameters()} == frozen


def test_an_optimizer_that_decays_frozen_weights_stops_fit_before_the_first_step():
    module = build(optimizer="decay_all")
    before = state(module)
    callback = ParamGateCallback()
    with pytest.raises(paramgate.AuditFailed, match=r"PG001 backbone\.embed\.weight") as caught:
        fit(module, callback)
    assert caught.value.report is callback.audit_report
    assert {f.name for f in caught.value.report.findings if f.severity == "error"} == {
        "backbone.embed.weight",
        "backbone.norm.weight",
        "backbone.norm.bias",
    }
    assert state(module) == before  # not one step was taken
    assert callback.steps == 0 and callback.reports == []
    assert callback._watched is None and callback._snapshot is None


def test_log_mode_logs_the_audit_and_the_change_and_trains_on(caplog):
    module = build(optimizer="decay_all")
    callback = ParamGateCallback(on_error="log")
    with caplog.at_level(logging.WARNING, logger="paramgate"):
        trainer = fit(module, callback)
    assert trainer.global_step == 6
    assert callback.audit_report is not None and not callback.audit_report.ok
    # The audit was right: the decay moved the frozen weights (all but the zero bias, which it keeps at zero).
    assert len(callback.reports) == 2 and not any(r.ok for r in callback.reports)
    assert callback.reports[0].changed == ["backbone.embed.weight", "backbone.norm.weight"]
    errors = messages(caplog, logging.ERROR)
    assert len(errors) == 3
    assert errors[0].startswith("paramgate: the audit before training found 3 error(s)")
    assert errors[1].startswith("paramgate after epoch 1: ") and "PG101 backbone.embed.weight" in errors[1]
    assert errors[2].startswith("paramgate after epoch 2: ")


def test_a_frozen_weight_written_in_place_stops_fit_at_the_end_of_the_epoch():
    module = build(max_norm=1.0)
    callback = ParamGateCallback()
    trainer = trainer_for(callback)
    with pytest.raises(paramgate.FrozenParameterChanged, match=r"PG101 backbone\.embed\.weight") as caught:
        run(trainer, module)
    assert [f.name for f in caught.value.report.findings if f.severity == "error"] == ["backbone.embed.weight"]
    assert callback.audit_report is not None and callback.audit_report.ok  # nothing wrong with the optimizer
    assert len(callback.reports) == 1 and callback.reports[0] is caught.value.report
    assert trainer.global_step == 3 and trainer.current_epoch == 0  # the second epoch never started
    assert trainer.state.status == TrainerStatus.INTERRUPTED  # Lightning re-raised the callback's error as it is


def test_every_n_steps_stops_fit_at_the_first_check_after_the_change():
    module = build(max_norm=1.0)
    callback = ParamGateCallback(every=2)
    trainer = trainer_for(callback)
    with pytest.raises(paramgate.FrozenParameterChanged, match=r"PG101 backbone\.embed\.weight") as caught:
        run(trainer, module)
    assert callback.steps == 2 and trainer.global_step == 2
    assert callback.last_check is caught.value.report and callback.last_check.checked == 3  # the frozen weights
    assert callback.reports == []


class Crashes(FineTune):
    def training_step(self, batch, batch_idx):
        if batch_idx == 1:
            raise RuntimeError("out of memory, say")
        return super().training_step(batch, batch_idx)


def test_an_error_in_training_goes_through_and_the_callback_lets_go_of_the_module():
    callback = ParamGateCallback()
    with pytest.raises(RuntimeError, match="out of memory, say"):
        fit(build(Crashes), callback)
    assert callback.steps == 1 and callback.audit_report is not None
    assert callback._watched is None and callback._snapshot is None  # on_exception


@pytest.mark.parametrize("leave_out_bias", [False, True])
def test_each_optimizer_is_audited_and_a_parameter_another_one_trains_is_not_missing(leave_out_bias):
    module = build(TwoOptimizers, leave_out_bias=leave_out_bias)
    callback = ParamGateCallback()
    if leave_out_bias:
        with pytest.raises(paramgate.AuditFailed, match=r"PG002 neck\.bias"):
            fit(module, callback)
        assert [r.optimizer for r in callback.audit_reports] == ["SGD", "AdamW"]
        return
    fit(module, callback)
    assert [r.optimizer for r in callback.audit_reports] == ["SGD", "AdamW"]
    assert all(r.ok and "PG002" not in r.codes() for r in callback.audit_reports)
    assert callback.audit_report is callback.audit_reports[0]
    assert len(callback.reports) == 2 and all(r.ok for r in callback.reports)


def test_the_callback_changes_nothing_about_training():
    plain = build()
    fit(plain)
    rng_plain = torch.get_rng_state()
    gated = build()
    callback = ParamGateCallback(every=1)
    fit(gated, callback)
    assert callback.steps == 6 and callback.last_check is not None and callback.last_check.ok
    assert torch.equal(torch.get_rng_state(), rng_plain)  # no random number drawn
    assert state(gated) == state(plain)  # bit for bit
    assert [p.requires_grad for p in gated.parameters()] == [p.requires_grad for p in plain.parameters()]
    assert [m.training for m in gated.modules()] == [m.training for m in plain.modules()]


def test_arguments_are_checked_by_name():
    for kwargs, name in (
        ({"on_error": "ignore"}, "on_error"),
        ({"every": 0}, "every"),
        ({"every": True}, "every"),
        ({"logger": "paramgate"}, "logger"),
        ({"plugins": object()}, "plugins"),
    ):
        with pytest.raises(paramgate.InvalidArgumentError, match=f"^{name}: "):
            ParamGateCallback(**kwargs)


def test_the_class_pickles_by_name_and_the_module_imports_no_framework():
    callback = ParamGateCallback(every=3, on_error="log")
    copy = pickle.loads(pickle.dumps(callback))
    assert type(copy) is type(callback) and copy.every == 3 and copy.on_error == "log"
    script = (
        "import sys\n"
        "import paramgate_torch.hf, paramgate_torch.lightning\n"
        "leaked = {'torch', 'lightning', 'pytorch_lightning', 'transformers'} & set(sys.modules)\n"
        "assert not leaked, leaked\n"
        "try:\n"
        "    paramgate_torch.lightning.Nothing\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr

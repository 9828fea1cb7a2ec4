"""``paramgate_torch.hf.ParamGateCallback`` inside a real ``transformers.Trainer.train`` on CPU.

The model is a two-class BERT with one layer, built from a config: nothing is downloaded.
"""

from __future__ import annotations

import logging
import pickle

import pytest
import torch
from torchnets import raw
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

import paramgate
from paramgate_torch.hf import ParamGateCallback


class DecayAll(torch.optim.Optimizer):
    """SGD with decoupled weight decay on every parameter of its groups, gradient or not (as KellerJordan/Muon#54)."""

    def __init__(self, params, lr: float, weight_decay: float) -> None:
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.mul_(1 - group["lr"] * group["weight_decay"])
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"])


FROZEN = 23
"""The encoder's parameters."""


def tiny_bert() -> BertForSequenceClassification:
    """A one-layer BERT classifier with its encoder frozen: only ``classifier.*`` trains."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    model = BertForSequenceClassification(config)
    model.bert.requires_grad_(False)
    assert len(list(model.bert.parameters())) == FROZEN
    return model


def dataset() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        {
            "input_ids": torch.randint(0, 50, (8,), generator=g),
            "attention_mask": torch.ones(8, dtype=torch.long),
            "labels": torch.tensor(i % 2),
        }
        for i in range(12)
    ]


def trainer_for(model, tmp_path, *callbacks: TrainerCallback, optimizers=(None, None)) -> Trainer:
    args = TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=2,
        per_device_train_batch_size=4,  # 3 steps an epoch
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        save_strategy="no",
        logging_strategy="no",
        seed=0,
    )
    return Trainer(model=model, args=args, train_dataset=dataset(), callbacks=list(callbacks), optimizers=optimizers)


def state(model: torch.nn.Module) -> dict[str, bytes]:
    return {name: raw(t) for name, t in model.state_dict().items()}


def encoder(model: BertForSequenceClassification) -> dict[str, bytes]:
    return {name: raw(p) for name, p in model.bert.named_parameters()}


def messages(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "paramgate" and r.levelno == level]


def test_a_clean_run_audits_the_optimizer_the_trainer_built_and_verifies_every_epoch(tmp_path, caplog):
    model = tiny_bert()
    callback = ParamGateCallback(every=2)
    assert isinstance(callback, TrainerCallback)
    assert type(callback).__module__ == "paramgate_torch.hf"
    trainer = trainer_for(model, tmp_path, callback)
    with caplog.at_level(logging.WARNING, logger="paramgate"):
        trainer.train()
    assert trainer.state.global_step == 6 and callback.steps == 6
    # The Trainer hands callbacks accelerate's AcceleratedOptimizer; the audit reads the AdamW inside,
    # which create_optimizer built from the parameters that require grad (two groups: decay or not).
    assert type(trainer.optimizer).__name__ == "AcceleratedOptimizer"
    report = callback.audit_report
    assert report is not None and report.ok and report.findings == ()
    assert report.optimizer == "AdamW"
    assert [p.name for p in report.params if p.in_optimizer] == ["classifier.weight", "classifier.bias"]
    assert len(callback.reports) == 2 and all(r.ok and r.findings == () for r in callback.reports)
    assert callback.last_check is not None and callback.last_check.ok and callback.last_check.checked == FROZEN
    assert messages(caplog, logging.WARNING) == [] and messages(caplog, logging.ERROR) == []
    assert callback._watched is None and callback._snapshot is None  # lets go of the model


def test_adamw_over_every_parameter_is_a_warning_because_the_trainer_clears_gradients(tmp_path, caplog):
    model = tiny_bert()
    model.bert.requires_grad_(True)
    batch = dataset()[:4]
    model(**{k: torch.stack([b[k] for b in batch]) for k in batch[0]}).loss.backward()  # a sanity check
    model.bert.requires_grad_(False)  # frozen after a backward pass: the encoder holds gradients
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    assert not paramgate.audit(model, optimizer).ok  # outside the Trainer: PG001 errors
    before = encoder(model)
    callback = ParamGateCallback()
    with caplog.at_level(logging.WARNING, logger="paramgate"):
        trainer_for(model, tmp_path, callback, optimizers=(optimizer, None)).train()
    # Trainer.train calls model.zero_grad() (set to None) before on_train_begin, and torch's AdamW
    # skips a parameter without a gradient: in the optimizer, but not moved.
    report = callback.audit_report
    assert report is not None and report.ok
    assert {(f.code, f.severity) for f in report.findings} == {("PG001", "warning")}
    assert len(report.findings) == FROZEN  # every encoder parameter
    assert encoder(model) == before
    assert len(callback.reports) == 2 and all(r.ok for r in callback.reports)
    assert messages(caplog, logging.WARNING)[0].startswith("paramgate audit before training:")


def test_an_optimizer_that_decays_frozen_weights_stops_train_before_the_first_step(tmp_path):
    model = tiny_bert()
    before = state(model)
    callback = ParamGateCallback()
    trainer = trainer_for(
        model, tmp_path, callback, optimizers=(DecayAll(model.parameters(), lr=0.01, weight_decay=0.1), None)
    )
    with pytest.raises(paramgate.AuditFailed, match=r"PG001 bert\.embeddings\.word_embeddings\.weight") as caught:
        trainer.train()
    assert caught.value.report is callback.audit_report and caught.value.report.optimizer == "DecayAll"
    assert trainer.state.global_step == 0 and callback.steps == 0
    assert state(model) == before
    assert callback._watched is None and callback._snapshot is None


def test_log_mode_logs_the_audit_and_the_change_and_trains_on(tmp_path, caplog):
    model = tiny_bert()
    callback = ParamGateCallback(on_error="log")
    trainer = trainer_for(
        model, tmp_path, callback, optimizers=(DecayAll(model.parameters(), lr=0.01, weight_decay=0.1), None)
    )
    with caplog.at_level(logging.WARNING, logger="paramgate"):
        trainer.train()
    assert trainer.state.global_step == 6
    assert callback.audit_report is not None and not callback.audit_report.ok
    assert len(callback.reports) == 2 and not any(r.ok for r in callback.reports)
    assert "bert.embeddings.word_embeddings.weight" in callback.reports[0].changed  # the audit was right
    errors = messages(caplog, logging.ERROR)
    assert len(errors) == 3
    assert errors[0].startswith("paramgate: the audit before training found")
    assert errors[1].startswith("paramgate after epoch 1: ") and "PG101 bert.embeddings" in errors[1]
    assert errors[2].startswith("paramgate after epoch 2: ")


@pytest.mark.parametrize(("every", "steps"), [(None, 3), (1, 1)])
def test_a_frozen_weight_written_in_place_stops_train(tmp_path, every, steps):
    model = tiny_bert()
    # max_norm: nn.Embedding renormalizes the rows it looks up, in place, in every forward pass
    # (BERT initializes with std 0.02, so its rows have norms near 0.08).
    model.bert.embeddings.word_embeddings.max_norm = 0.01
    callback = ParamGateCallback(every=every)
    trainer = trainer_for(model, tmp_path, callback)
    with pytest.raises(paramgate.FrozenParameterChanged, match=r"PG101 bert\.embeddings\.word_embeddings\.weight"):
        trainer.train()
    assert callback.audit_report is not None and callback.audit_report.ok
    assert trainer.state.global_step == steps  # stopped at the epoch's end, or at the first check
    assert len(callback.reports) == (1 if every is None else 0)


def test_the_default_optimizer_with_an_empty_no_decay_group_is_not_an_error(tmp_path):
    model = tiny_bert()
    model.classifier.bias.requires_grad_(False)  # only a weight matrix trains, as with LoRA adapters
    callback = ParamGateCallback(on_error="log")
    trainer = trainer_for(model, tmp_path, callback)
    trainer.train()
    assert [len(g["params"]) for g in trainer.optimizer.param_groups] == [1, 0]
    assert callback.audit_report is not None and callback.audit_report.ok


def test_the_callback_changes_nothing_about_training(tmp_path):
    plain = tiny_bert()
    trainer_for(plain, tmp_path / "plain").train()
    rng_plain = torch.get_rng_state()
    gated = tiny_bert()
    callback = ParamGateCallback(every=1)
    trainer_for(gated, tmp_path / "gated", callback).train()
    assert callback.steps == 6 and callback.last_check is not None and callback.last_check.ok
    assert torch.equal(torch.get_rng_state(), rng_plain)
    assert state(gated) == state(plain)  # bit for bit
    assert [p.requires_grad for p in gated.parameters()] == [p.requires_grad for p in plain.parameters()]
    assert [m.training for m in gated.modules()] == [m.training for m in plain.modules()]


def test_arguments_are_checked_by_name_and_the_class_pickles():
    for kwargs, name in (({"on_error": "ignore"}, "on_error"), ({"every": -1}, "every"), ({"every": 1.5}, "every")):
        with pytest.raises(paramgate.InvalidArgumentError, match=f"^{name}: "):
            ParamGateCallback(**kwargs)
    copy = pickle.loads(pickle.dumps(ParamGateCallback(every=4)))
    assert type(copy) is ParamGateCallback and copy.every == 4

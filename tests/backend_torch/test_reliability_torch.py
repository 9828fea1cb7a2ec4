"""Reliability on the torch backend: its bad inputs, no side effects on a real training run, no leaks.

The NumPy half, and the plugin, CLI and threading parts, are tests/test_reliability.py;
docs/reliability.md lists the whole corpus.
"""

from __future__ import annotations

import gc
import random
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torchnets import flip_bit, raw

import paramgate
from paramgate_numpy import Momentum, Parameter


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    return model


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Linear(4, 4).requires_grad_(False)
        self.head = nn.Linear(4, 2)


@dataclass(frozen=True)
class Case:
    run: Callable[[], object]
    expect: type[paramgate.ParamGateError] | str
    """The exception class; a finding code; or "note" (the audit's remark on a parameter it cannot hash)."""
    names: str
    todo: str


def _consumed_parameters() -> object:
    model = _net()
    params = model.parameters()
    print(sum(p.numel() for p in params))  # counted once for a log line: the generator is empty now
    return paramgate.audit(model, params)


def _meta() -> nn.Module:
    with torch.device("meta"):
        return nn.Linear(4, 2)


def _meta_guard() -> object:
    with paramgate.guard(_meta()):
        pass
    return None


def _lazy() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 4).requires_grad_(False), nn.LazyLinear(2))


def _lazy_snapshot() -> object:
    return paramgate.snapshot(_lazy())  # no bits before the first forward pass gives the lazy weight its shape


def _with(attr: str, tensor: Callable[[], torch.Tensor], *, buffer: bool = False) -> nn.Module:
    with warnings.catch_warnings():  # torch warns that sparse CSR and quantized tensors are beta/deprecated
        warnings.simplefilter("ignore")
        t = tensor()
    model = Head()
    if buffer:
        model.register_buffer(attr, t)
    else:
        model.register_parameter(attr, nn.Parameter(t, requires_grad=False))
    return model


def _changed(mutate: Callable[[Head], None]) -> Callable[[], object]:
    def run() -> object:
        torch.manual_seed(0)
        model = Head()
        snap = paramgate.snapshot(model)
        with torch.no_grad():
            model.head.weight.add_(1)  # the head trained
        mutate(model)
        return snap.verify(model)

    return run


def _resize(model: Head) -> None:
    model.backbone.weight.data = torch.zeros(5, 4)


def _replace_frozen(model: Head) -> None:
    model.backbone.weight = nn.Parameter(torch.full((4, 4), 0.5), requires_grad=False)


def _replace_head(model: Head) -> None:
    model.head = nn.Linear(4, 3)


def _add(model: Head) -> None:
    model.extra = nn.Linear(2, 2)


def _remove(model: Head) -> None:
    del model.backbone


def _half(model: Head) -> None:
    model.half()


CORPUS: dict[str, Case] = {
    # Not a model, or a model already read.
    "torch-parameters-generator-as-model": Case(
        lambda: paramgate.audit(_net().parameters()),
        paramgate.OneShotIteratorError,
        "model: got a one-shot iterator (generator)",
        "Pass the model object itself",
    ),
    "torch-parameters-consumed-as-optimizer": Case(
        _consumed_parameters,
        paramgate.OneShotIteratorError,
        "optimizer: got a one-shot iterator (generator)",
        "params = paramgate.trainable(model)",
    ),
    "torch-state-dict-as-model": Case(
        lambda: paramgate.audit(_net().state_dict()),
        paramgate.UnsupportedModelError,
        "model: collections.OrderedDict",
        "Pass the model object itself",
    ),
    "torch-tensor-as-model": Case(
        lambda: paramgate.audit(torch.zeros(3)),
        paramgate.UnsupportedModelError,
        "model: torch.Tensor",
        "pass the model.",
    ),
    "torch-empty-module": Case(
        lambda: paramgate.audit(nn.Module()),
        paramgate.EmptyModelError,
        "model has no parameters",
        "check that you passed the model itself",
    ),
    # The wrong optimizer, or one from the other framework.
    "torch-optimizer-class-not-instance": Case(
        lambda: paramgate.audit(_net(), torch.optim.SGD),
        paramgate.UnsupportedOptimizerError,
        "optimizer: cannot read a builtins.type",
        "Pass the optimizer object itself",
    ),
    "torch-optimizer-group-of-a-generator": Case(
        lambda: paramgate.audit(_net(), [{"params": _net().parameters()}]),
        paramgate.UnsupportedOptimizerError,
        "optimizer: cannot read a builtins.list",
        "with lists, not generators",
    ),
    "torch-optimizer-of-another-model": Case(
        lambda: paramgate.audit(_net(), torch.optim.SGD(_net()[1].parameters(), lr=0.1)),
        "PG007",
        "group 0 slot 0",
        "build it from this model's parameters",
    ),
    "torch-model-numpy-optimizer": Case(
        lambda: paramgate.audit(_net(), Momentum([Parameter(np.zeros(2), "w")], 0.1, 0.9)),
        paramgate.UnsupportedOptimizerError,
        "it belongs to numpy, not to torch",
        "pass the optimizer that trains this model",
    ),
    "numpy-model-torch-optimizer": Case(
        lambda: paramgate.audit([Parameter(np.zeros(2), "w")], torch.optim.SGD(_net().parameters(), lr=0.1)),
        paramgate.UnsupportedOptimizerError,
        "it belongs to torch, not to numpy",
        "pass the optimizer that trains this model",
    ),
    "numpy-model-list-of-torch-tensors": Case(
        lambda: paramgate.snapshot([Parameter(np.zeros(2), "w")], list(_net().parameters())),
        paramgate.UnsupportedOptimizerError,
        "it belongs to torch, not to numpy",
        "pass the optimizer that trains this model",
    ),
    "torch-model-list-of-numpy-arrays": Case(
        lambda: paramgate.audit(_net(), [np.zeros(2)]),
        paramgate.UnsupportedOptimizerError,
        "optimizer: cannot read a builtins.list",
        "Pass the optimizer object itself",
    ),
    # Tensors without fingerprintable bytes: the audit says so, a snapshot refuses them by name.
    "meta-parameters-audit": Case(
        lambda: paramgate.audit(_meta()), "note", "weight", "no data until the model is materialized"
    ),
    "meta-parameters-snapshot": Case(
        lambda: paramgate.snapshot(_meta()),
        paramgate.InvalidParameterError,
        "'weight' is on the meta device",
        "materialize the model",
    ),
    "meta-parameters-guard": Case(
        _meta_guard, paramgate.InvalidParameterError, "'weight' is on the meta device", "materialize the model"
    ),
    "lazy-parameters-audit": Case(
        lambda: paramgate.audit(_lazy()), "note", "1.weight", "shape and size are known after the first forward pass"
    ),
    "lazy-parameters-snapshot": Case(
        _lazy_snapshot,
        paramgate.InvalidParameterError,
        "'1.weight' is an uninitialized lazy parameter",
        "run one forward pass",
    ),
    "sparse-coo-parameter": Case(
        lambda: paramgate.snapshot(_with("w", lambda: torch.eye(3).to_sparse())),
        paramgate.InvalidParameterError,
        "'w' has layout torch.sparse_coo",
        "convert it with .to_dense()",
    ),
    "sparse-csr-parameter": Case(
        lambda: paramgate.snapshot(_with("w", lambda: torch.eye(3).to_sparse_csr())),
        paramgate.InvalidParameterError,
        "'w' has layout torch.sparse_csr",
        "convert it with .to_dense()",
    ),
    "sparse-buffer": Case(
        lambda: paramgate.guard(_with("mask", lambda: torch.eye(3).to_sparse(), buffer=True)).__enter__(),
        paramgate.InvalidParameterError,
        "'mask' has layout torch.sparse_coo",
        "convert it with .to_dense()",
    ),
    "quantized-buffer": Case(
        lambda: paramgate.snapshot(
            _with("q", lambda: torch.quantize_per_tensor(torch.ones(3), 0.1, 0, torch.qint8), buffer=True)
        ),
        paramgate.InvalidParameterError,
        "'q' has layout torch.strided (quantized)",
        ".dequantize()",
    ),
    # The model changed between snapshot and verify: findings, not crashes.
    "torch-frozen-resized": Case(_changed(_resize), "PG105", "backbone.weight", "take a new snapshot"),
    "torch-frozen-replaced": Case(_changed(_replace_frozen), "PG101", "backbone.weight", "something else wrote to it"),
    "torch-head-replaced": Case(_changed(_replace_head), "PG105", "head.weight", "take a new snapshot"),
    "torch-module-added": Case(
        _changed(_add), "PG104", "extra.weight", "take the snapshot after the model is complete"
    ),
    "torch-module-removed": Case(_changed(_remove), "PG104", "backbone.weight", "take a new snapshot"),
    "torch-dtype-changed": Case(_changed(_half), "PG105", "backbone.weight", "take a new snapshot"),
}


@pytest.mark.parametrize("case", CORPUS.values(), ids=CORPUS.keys())
def test_bad_input_corpus_torch(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    if case.expect == "note":
        report = case.run()
        notes = {r.name: r.note for r in report.params}  # type: ignore[attr-defined]
        text = f"{case.names} {notes[case.names]}"
    elif isinstance(case.expect, str):
        report = case.run()
        found = [f for f in report.findings if f.code == case.expect]  # type: ignore[attr-defined]
        assert found, f"expected {case.expect}, got {report.codes()}"  # type: ignore[attr-defined]
        text = " ".join(f"{f.name} {f.message}" for f in found)
    else:
        with pytest.raises(paramgate.ParamGateError) as info:
            case.run()
        assert type(info.value) is case.expect, repr(info.value)
        # Raised by paramgate, not by torch internals: the traceback ends in paramgate's code.
        assert info.traceback[-1].frame.f_globals["__name__"].startswith("paramgate"), info.traceback[-1]
        text = str(info.value)
    assert case.names in text, text
    assert case.todo in text, text
    capsys.readouterr()


# ---------------------------------------------------------------------------------------------
# No side effects: a seeded training run ends in the same bits with and without the gate.
# ---------------------------------------------------------------------------------------------


class SmallNet(nn.Module):
    """conv + BatchNorm backbone, dropout (it consumes the RNG), linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        self.drop = nn.Dropout(0.3)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.backbone(x)))


OPTIMIZERS = {
    "sgd-momentum-decay": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-2),
}


def _dump(value: Any) -> Any:
    """Tensors as (dtype, shape, raw bytes), recursively: equal dumps mean equal bits."""
    if isinstance(value, torch.Tensor):
        return (str(value.dtype), tuple(value.shape), raw(value))
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    return value


def _torch_training(make: Callable[[Any], torch.optim.Optimizer], gate: dict[str, int] | None) -> dict[str, Any]:
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model = SmallNet()
    model.backbone[0].requires_grad_(False)  # a frozen conv; BatchNorm trains, its statistics drift
    optimizer = make([p for p in model.parameters() if p.requires_grad])

    def step() -> None:
        x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 2, (4,))
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    if gate is None:
        for _ in range(4):
            step()
    else:
        listed = paramgate.trainable(model)
        given = optimizer.param_groups[0]["params"]
        assert len(listed) == len(given) and all(a is b for a, b in zip(listed, given, strict=True))
        assert paramgate.audit(model, optimizer).ok
        snap = paramgate.snapshot(model, optimizer)
        with paramgate.guard(model, optimizer, **gate) as gated:
            for _ in range(4):
                step()
                gated.step()
        assert gated.report is not None and gated.report.ok and gated.last_check is not None
        assert set(gated.report.statistics_changed) == {
            "backbone.1.running_mean",
            "backbone.1.running_var",
            "backbone.1.num_batches_tracked",
        }
        assert snap.verify(model).ok
    return {
        "state": _dump(model.state_dict()),
        "grads": {n: None if p.grad is None else raw(p.grad) for n, p in model.named_parameters()},
        "flags": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "optimizer": _dump(optimizer.state_dict()),
        "torch_rng": raw(torch.get_rng_state()),
        "numpy_rng": _dump(list(np.random.get_state())[1:]),
        "python_rng": random.getstate(),
    }


@pytest.mark.parametrize("gate", [{"every": 1}, {"rolling": 2}], ids=str)
@pytest.mark.parametrize("make", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_no_side_effects_torch_training(make, gate):
    bare = _torch_training(make, None)
    gated = _torch_training(make, gate)
    assert bare == gated
    torch.manual_seed(0)
    assert raw(SmallNet().head[2].weight) != bare["state"]["head.2.weight"][2], "the run must train"


# ---------------------------------------------------------------------------------------------
# No leaks: after a guard with real steps, while its snapshot lives, no tensor of the model is alive.
# ---------------------------------------------------------------------------------------------


def _train_under_guard(model: nn.Module, optimizer: torch.optim.Optimizer) -> paramgate.Guard:
    # A function of its own, so that the loss (whose graph reaches every parameter) dies with its frame.
    with paramgate.guard(model, optimizer, every=1) as gate:
        for _ in range(3):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 1, 0])).backward()
            optimizer.step()
            gate.step()
    return gate


def test_no_tensor_kept_alive_after_a_guard_while_its_snapshot_lives():
    torch.manual_seed(0)
    model = SmallNet()
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    optimizer = torch.optim.AdamW(paramgate.trainable(model), lr=1e-2)
    snap = paramgate.snapshot(model, optimizer)
    gate = _train_under_guard(model, optimizer)
    tensors = [*model.parameters(), *model.buffers(), *(p.grad for p in model.parameters() if p.grad is not None)]
    tensors += [t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    refs = [weakref.ref(x) for x in (model, optimizer, *tensors)]
    assert len(refs) == 2 + 6 + 3 + 2 + 2 * 3  # parameters, statistics, the head's grads, AdamW's state
    del model, optimizer, tensors
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    assert snap.prints and gate.report is not None and gate.report.ok and gate.last_check is not None


def test_a_kept_frozen_parameter_changed_keeps_no_torch_tensor_alive():
    model = SmallNet()
    refs = [weakref.ref(t) for t in (*model.parameters(), *model.buffers())]
    model.backbone.requires_grad_(False)
    with pytest.raises(paramgate.FrozenParameterChanged) as info, paramgate.guard(model):
        flip_bit(model.backbone[0].weight, 0, 0)
    kept = info.value
    del model
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    assert kept.report.changed == ["backbone.0.weight"]


# Found by the property campaign: torch copies a bool tensor by value (any non-zero byte becomes 1), so
# the contiguous copy a non-contiguous tensor needs hid a flipped bit in a byte already holding True.
@pytest.mark.parametrize("on_device", [False, True], ids=["host", "device"])
@pytest.mark.parametrize("kind", ["parameter", "buffer"])
def test_a_flipped_bit_in_a_non_contiguous_bool_tensor_is_caught(on_device, kind):
    from _helpers import AdapterPlugin

    from paramgate_torch.adapter import TorchAdapter

    class OnDevice(TorchAdapter):
        host_devices = frozenset()  # every tensor takes the device path, as CUDA tensors do

    pm = paramgate.ParamGatePluginManager()
    pm.register(AdapterPlugin(OnDevice), name="torch-on-device")
    base = torch.tensor([[True, False], [False, False]])
    model = Head()
    if kind == "parameter":
        model.register_parameter("mask", nn.Parameter(base.t(), requires_grad=False))
    else:
        model.register_buffer("mask", base.t())
    snap = paramgate.snapshot(model, plugins=pm if on_device else None)
    flip_bit(base, 0, 1)  # True stays True, its byte goes from 0x01 to 0x03
    assert bool(model.mask[0, 0])
    report = snap.verify(model)
    assert [f.code for f in report.findings if f.name == "mask"] == ["PG101" if kind == "parameter" else "PG103"]

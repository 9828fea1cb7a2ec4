"""Reliability on the NumPy backend: bad input, no side effects, no leaks, threads, the CLI.

paramgate runs inside training scripts: it must never be what breaks a run, and
never miss a change.  The corpus below is the countable part of that promise
(docs/reliability.md lists it); the torch half is
tests/backend_torch/test_reliability_torch.py and the property-based half
tests/test_properties.py.
"""

from __future__ import annotations

import gc
import importlib.metadata
import pathlib
import pickle
import random
import subprocess
import sys
import textwrap
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from _helpers import AdapterPlugin, flip_bit

import paramgate
from paramgate.cli import main
from paramgate.plugins import ParamGatePluginManager, PluginLoadWarning
from paramgate_numpy import Momentum, Parameter
from paramgate_numpy import plugin as numpy_plugin
from paramgate_numpy.adapter import NumpyAdapter

# ---------------------------------------------------------------------------------------------
# 1. The corpus of bad inputs.
#
# Every case is one call a user could make by mistake.  It is answered either by a
# ParamGateError subclass (the call's fault) or by a finding (the model's fault: the call is
# fine, what it found is wrong).  Either way the text must name the argument or parameter at
# fault (``names``) and say what to do (``todo``); a raw framework traceback fails the case.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    run: Callable[[], object]
    expect: type[paramgate.ParamGateError] | str
    """The exception class, or the finding code when the answer is a finding."""
    names: str | tuple[str, ...]
    """What the text must contain to name the argument or parameter at fault."""
    todo: str
    """What the text must contain to say what to do."""


def _model() -> list[Parameter]:
    return [
        Parameter(np.ones((3, 4)), "backbone.w", requires_grad=False),
        Parameter(np.zeros(4, np.float32), "head.w"),
    ]


def _consumed_generator() -> object:
    gen = (p for p in _model())
    list(gen)  # read once (to log it, say): now empty
    return paramgate.audit(gen)


def _consumed_filter() -> object:
    model = _model()
    params = filter(lambda p: p.requires_grad, model)
    print([p.name for p in params])  # the classic: logging the filter empties it
    return paramgate.audit(model, params)


def _consumed_filter_as_list() -> object:
    model = _model()
    params = filter(lambda p: p.requires_grad, model)
    list(params)
    return paramgate.audit(model, list(params))  # list() of an exhausted filter: []


def _optimizer_of_another_model() -> object:
    model, other = _model(), [Parameter(np.ones(2), "other.w")]
    return paramgate.audit(model, Momentum(other, learning_rate=0.1, momentum=0.9))


def _changed_between(mutate: Callable[[list[Parameter]], list[Parameter]]) -> Callable[[], object]:
    """A snapshot, then ``mutate`` (which returns the model as it is now), then verify."""

    def run() -> object:
        model = [*_model(), Parameter(np.ones(2), "backbone.gone", requires_grad=False)]
        snap = paramgate.snapshot(model)
        model[1].data += 1  # the head trained
        return snap.verify(mutate(model))

    return run


def _resize(model: list[Parameter]) -> list[Parameter]:
    model[0].data = np.ones((3, 5))
    return model


def _new_dtype(model: list[Parameter]) -> list[Parameter]:
    model[0].data = model[0].data.astype(np.float32)
    return model


def _replace(model: list[Parameter]) -> list[Parameter]:
    model[0] = Parameter(np.full((3, 4), 2.0), "backbone.w", requires_grad=False)  # same name, other bits
    return model


def _add(model: list[Parameter]) -> list[Parameter]:
    return [*model, Parameter(np.ones(1), "head.extra")]


def _remove(model: list[Parameter]) -> list[Parameter]:
    return model[:2]


def _duplicates() -> list[Parameter]:
    return [Parameter(np.ones(2), "backbone.w", requires_grad=False), Parameter(np.ones(3), "backbone.w")]


def _plugins(adapter: type[NumpyAdapter] | Callable[[], object], *, tryfirst: bool = True) -> ParamGatePluginManager:
    """A fresh manager: the builtin NumPy plugin and one third-party plugin, 'acme-plugin'."""
    pm = ParamGatePluginManager()
    pm.register(numpy_plugin, name="numpy")
    pm.register(AdapterPlugin(adapter, tryfirst=tryfirst), name="acme-plugin")
    return pm


def _broken(method: str, result: object = None) -> type[NumpyAdapter]:
    """A third-party adapter whose ``method`` raises (or, given ``result``, returns it)."""

    def misbehave(self: Any, *args: Any) -> object:
        if result is None:
            raise ValueError("acme internals broke")
        return result

    return type("AcmeAdapter", (NumpyAdapter,), {"name": "acme", method: misbehave})


def _plugin_raises_in_hook() -> object:
    def explode() -> object:
        raise RuntimeError("acme exploded")

    return paramgate.audit(_model(), plugins=_plugins(explode, tryfirst=False))


def _adapter_call(method: str, call: str, result: object = None) -> Callable[[], object]:
    def run() -> object:
        pm = _plugins(_broken(method, result))
        model = _model()
        if call == "snapshot":
            return paramgate.snapshot(model, plugins=pm)
        if call == "optimizer":
            return paramgate.audit(model, model[1:], plugins=pm)
        return getattr(paramgate, call)(model, plugins=pm)

    return run


def _guard_entered_twice() -> object:
    gate = paramgate.guard(_model())
    with gate:
        pass
    with gate:
        pass
    return None


def _step_outside() -> object:
    gate = paramgate.guard(_model(), every=1)
    with gate:
        pass
    return gate.step()


def _guard_none() -> object:
    with paramgate.guard(None):  # type: ignore[arg-type]
        pass
    return None


CORPUS: dict[str, Case] = {
    # Not a model at all.
    "model-none": Case(
        lambda: paramgate.audit(None), paramgate.UnsupportedModelError, "model is None", "pass the model object"
    ),
    "model-path-str": Case(
        lambda: paramgate.audit("ckpt/resnet50.pt"),
        paramgate.UnsupportedModelError,
        "model is a str",
        "run `paramgate audit MODULE:FACTORY`",
    ),
    "model-pathlib": Case(
        lambda: paramgate.snapshot(pathlib.Path("model.ckpt")),
        paramgate.UnsupportedModelError,
        f"model is a {type(pathlib.Path()).__name__}",
        "run `paramgate audit MODULE:FACTORY`",
    ),
    "model-bytes": Case(
        lambda: paramgate.trainable(b"weights"), paramgate.UnsupportedModelError, "model is a bytes", "not paths"
    ),
    "model-int": Case(
        lambda: paramgate.audit(42),
        paramgate.UnsupportedModelError,
        "model: builtins.int",
        "Pass the model object itself",
    ),
    "model-state-dict": Case(
        lambda: paramgate.audit({"w": np.zeros(2)}),
        paramgate.UnsupportedModelError,
        "model: builtins.dict",
        "Pass the model object itself",
    ),
    "model-a-tensor": Case(
        lambda: paramgate.audit(np.zeros(2)),
        paramgate.UnsupportedModelError,
        "model: numpy.ndarray",
        "pass the model.",
    ),
    "model-list-with-a-stray-array": Case(
        lambda: paramgate.audit([*_model(), np.zeros(2)]),
        paramgate.UnsupportedModelError,
        "model: builtins.list",
        "a list whose items are all",
    ),
    "guard-of-none": Case(_guard_none, paramgate.UnsupportedModelError, "model is None", "pass the model object"),
    "verify-against-none": Case(
        lambda: paramgate.snapshot(_model()).verify(None),
        paramgate.UnsupportedModelError,
        "model is None",
        "pass the model object",
    ),
    # Empty, or already read.
    "model-empty": Case(
        lambda: paramgate.audit([]),
        paramgate.EmptyModelError,
        "model has no parameters",
        "check that you passed the model itself",
    ),
    "model-generator-consumed": Case(
        _consumed_generator,
        paramgate.OneShotIteratorError,
        "model: got a one-shot iterator",
        "Pass the model object itself",
    ),
    "optimizer-filter-consumed": Case(
        _consumed_filter,
        paramgate.OneShotIteratorError,
        "optimizer: got a one-shot iterator",
        "params = paramgate.trainable(model)",
    ),
    "optimizer-list-of-consumed-filter": Case(
        _consumed_filter_as_list, "PG003", "optimizer", "paramgate.trainable(model)"
    ),
    # The wrong optimizer.
    "optimizer-of-another-model": Case(
        _optimizer_of_another_model, "PG007", "other.w", "build it from this model's parameters"
    ),
    "optimizer-a-string": Case(
        lambda: paramgate.audit(_model(), "sgd"),
        paramgate.UnsupportedOptimizerError,
        "optimizer: cannot read a builtins.str",
        "Pass the optimizer object itself",
    ),
    "optimizer-the-class": Case(
        lambda: paramgate.audit(_model(), Momentum),
        paramgate.UnsupportedOptimizerError,
        "optimizer: cannot read a builtins.type",
        "Pass the optimizer object itself",
    ),
    "optimizer-group-of-a-generator": Case(
        lambda: paramgate.audit(_model(), [{"params": (p for p in _model())}]),
        paramgate.UnsupportedOptimizerError,
        "optimizer: cannot read a builtins.list",
        "with lists, not generators",
    ),
    # Malformed parameters.
    "parameter-without-name": Case(
        lambda: paramgate.audit([{"name": "a", "data": np.zeros(1)}, {"data": np.zeros(1)}]),
        paramgate.InvalidParameterError,
        "parameter #1 has no name",
        "give it a unique, non-empty string name",
    ),
    "parameter-data-a-list": Case(
        lambda: paramgate.audit([{"name": "w", "data": [1.0, 2.0]}]),
        paramgate.InvalidParameterError,
        "parameter 'w'",
        "wrap it in np.asarray",
    ),
    "parameter-without-data": Case(
        lambda: paramgate.audit([{"name": "w", "requires_grad": True}]),
        paramgate.InvalidParameterError,
        "('w')",
        "give each parameter dict the keys",
    ),
    "parameter-flag-not-bool": Case(
        lambda: paramgate.audit([{"name": "w", "data": np.zeros(1), "requires_grad": "no"}]),
        paramgate.InvalidParameterError,
        "parameter 'w'",
        "use True or False",
    ),
    "parameter-object-dtype": Case(
        lambda: paramgate.snapshot([Parameter(np.array([object()]), "weird", requires_grad=False)]),
        paramgate.InvalidParameterError,
        "'weird'",
        "store numbers in it",
    ),
    "duplicate-names-audit": Case(lambda: paramgate.audit(_duplicates()), "PG008", "backbone.w", "rename one of them"),
    "duplicate-names-snapshot": Case(
        lambda: paramgate.snapshot(_duplicates()),
        paramgate.InvalidParameterError,
        "'backbone.w'",
        "rename one of them",
    ),
    # The model changed between snapshot and verify: findings, not crashes.
    "resized-after-snapshot": Case(_changed_between(_resize), "PG105", "backbone.w", "take a new snapshot"),
    "new-dtype-after-snapshot": Case(_changed_between(_new_dtype), "PG105", "backbone.w", "take a new snapshot"),
    "replaced-after-snapshot": Case(_changed_between(_replace), "PG101", "backbone.w", "something else wrote to it"),
    "added-after-snapshot": Case(
        _changed_between(_add), "PG104", "head.extra", "take the snapshot after the model is complete"
    ),
    "removed-after-snapshot": Case(_changed_between(_remove), "PG104", "backbone.gone", "take a new snapshot"),
    # Arguments out of range, and guards used out of order.
    "trainable-unknown-name": Case(
        lambda: paramgate.audit(_model(), trainable={"head.W"}),
        paramgate.InvalidArgumentError,
        "'head.W'",
        "use the names paramgate.audit(model) reports",
    ),
    "guard-every-zero": Case(
        lambda: paramgate.guard(_model(), every=0),
        paramgate.InvalidArgumentError,
        "every:",
        "expected a positive number of steps",
    ),
    "guard-entered-twice": Case(_guard_entered_twice, paramgate.GuardStateError, "guard", "create a new one"),
    "guard-step-outside-block": Case(
        _step_outside, paramgate.GuardStateError, "step()", "call it inside the guard's with block"
    ),
    # A third-party adapter plugin that misbehaves: the error names it.
    "plugin-raises-in-hook": Case(
        _plugin_raises_in_hook, paramgate.AdapterError, "plugin 'acme-plugin'", "Fix or uninstall the plugin"
    ),
    "plugin-raises-in-owns_model": Case(
        _adapter_call("owns_model", "audit"),
        paramgate.AdapterError,
        "plugin 'acme-plugin' raised in owns_model()",
        "PARAMGATE_BLOCK_PLUGINS=acme-plugin",
    ),
    "plugin-raises-in-parameters": Case(
        _adapter_call("parameters", "trainable"),
        paramgate.AdapterError,
        ("acme adapter raised in parameters()", "AcmeAdapter)"),
        "report it to the plugin's authors",
    ),
    "plugin-raises-in-fingerprint": Case(
        _adapter_call("fingerprint", "snapshot"),
        paramgate.AdapterError,
        ("acme adapter raised in fingerprint()", "AcmeAdapter)"),
        "report it to the plugin's authors",
    ),
    "plugin-raises-in-owns_optimizer": Case(
        _adapter_call("owns_optimizer", "optimizer"),
        paramgate.AdapterError,
        "acme adapter raised in owns_optimizer()",
        "report it to the plugin's authors",
    ),
    "plugin-raises-in-optimizer_groups": Case(
        _adapter_call("optimizer_groups", "optimizer"),
        paramgate.AdapterError,
        "acme adapter raised in optimizer_groups()",
        "report it to the plugin's authors",
    ),
    "plugin-fingerprint-wrong-type": Case(
        _adapter_call("fingerprint", "snapshot", result="digest"),
        paramgate.AdapterError,
        "acme adapter's fingerprint() returned str",
        "report it to its authors",
    ),
    "plugin-groups-wrong-type": Case(
        _adapter_call("optimizer_groups", "optimizer", result=iter(())),
        paramgate.AdapterError,
        "acme adapter's optimizer_groups() returned tuple_iterator",
        "report it to its authors",
    ),
    "plugin-yields-wrong-type": Case(
        _adapter_call("parameters", "audit", result=[{"name": "w"}]),
        paramgate.AdapterError,
        "acme adapter yielded dict",
        "report it to its authors",
    ),
    "plugin-returns-no-adapter": Case(
        lambda: paramgate.audit(_model(), plugins=_plugins(object, tryfirst=False)),
        paramgate.PluginLoadError,
        "plugin 'acme-plugin' returned object",
        "Fix or uninstall the plugin",
    ),
}


@pytest.mark.parametrize("case", CORPUS.values(), ids=CORPUS.keys())
def test_bad_input_corpus(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    if isinstance(case.expect, str):
        report = case.run()
        found = [f for f in report.findings if f.code == case.expect]  # type: ignore[attr-defined]
        assert found, f"expected {case.expect}, got {report.codes()}"  # type: ignore[attr-defined]
        text = " ".join(f"{f.name} {f.message}" for f in found)
    else:
        with pytest.raises(paramgate.ParamGateError) as info:
            case.run()
        # The exact class, not just any ParamGateError: scripts catch them by kind.
        assert type(info.value) is case.expect, repr(info.value)
        # Raised by paramgate itself: a traceback that ends in paramgate, never in framework internals.
        assert info.traceback[-1].frame.f_globals["__name__"].startswith("paramgate"), info.traceback[-1]
        text = str(info.value)
    for name in (case.names,) if isinstance(case.names, str) else case.names:
        assert name in text, text
    assert case.todo in text, text
    capsys.readouterr()


# An adapter entry point that fails to load is reported by name, with what to do, and the others
# still work.  Entry points are faked (importlib.metadata.entry_points is what load_entrypoints
# reads); the modules behind them are real files, so each failure is the real import machinery's.
ENTRY_POINT_FAILURES = {
    "entry-point-module-missing": ("paramgate_acme_missing_xyz", None, "ModuleNotFoundError"),
    "entry-point-import-raises": (
        "paramgate_acme_needs_tf",
        "raise ImportError('paramgate_acme needs tensorflow>=3')",
        "ImportError: paramgate_acme needs tensorflow>=3",
    ),
    "entry-point-attribute-missing": ("paramgate_numpy.plugin:no_such_hook", None, "AttributeError"),
    "entry-point-invalid-hookimpl": (
        "paramgate_acme_badhook",
        "from paramgate import hookimpl\n\n@hookimpl\ndef paramgate_demo_kit(frame):\n    return None\n",
        "PluginValidationError",
    ),
}


@pytest.mark.parametrize(("value", "source", "error"), ENTRY_POINT_FAILURES.values(), ids=ENTRY_POINT_FAILURES.keys())
def test_bad_input_corpus_entry_points(value, source, error, tmp_path, monkeypatch, capsys):
    module = value.partition(":")[0]
    if source is not None:
        (tmp_path / f"{module}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
    points = [
        importlib.metadata.EntryPoint(name="acme", value=value, group="paramgate"),
        importlib.metadata.EntryPoint(name="numpy", value="paramgate_numpy.plugin", group="paramgate"),
    ]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [ep for ep in points if ep.group == group])
    pm = ParamGatePluginManager()
    try:
        with pytest.warns(PluginLoadWarning) as caught:
            pm.load_entrypoints()
    finally:
        sys.modules.pop(module, None)
    (warning,) = caught
    text = str(warning.message)
    assert f"paramgate plugin 'acme' ({value}) failed to load" in text and error in text, text
    assert "Fix or uninstall it, or set PARAMGATE_BLOCK_PLUGINS=acme" in text
    assert list(pm.load_failures) == ["acme"]
    assert paramgate.audit(_model(), plugins=pm).framework == "numpy"  # the others still work
    # `paramgate plugins` lists it as failed, and still exits 0.
    monkeypatch.setattr("paramgate.cli.get_plugin_manager", lambda: pm)
    assert main(["plugins"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "FAILED: " in rows["acme"] and error.partition(":")[0] in rows["acme"]
    assert "paramgate_numpy.plugin" in rows["numpy"]


# ---------------------------------------------------------------------------------------------
# 3. No side effects: the same seeded training, bare and gated, ends in the same bits.
# ---------------------------------------------------------------------------------------------


def _numpy_training(gate: dict[str, int] | None, steps: int = 5) -> dict[str, object]:
    """A seeded Momentum run; with ``gate``, under audit + snapshot + guard(**gate) + step()."""
    np.random.seed(1234)  # the legacy global RNG: the one a library could consume behind a script's back
    random.seed(1234)
    model = [
        Parameter(np.random.standard_normal((8, 4)), "backbone.w", requires_grad=False),
        Parameter(np.zeros(4), "backbone.bn.moving_mean", requires_grad=False),
        Parameter(np.random.standard_normal((4, 2)).astype(np.float32), "head.w"),
        Parameter(np.zeros(2, np.float32), "head.b"),
    ]
    params = [p for p in model if p.requires_grad]  # the same list in both runs, not paramgate's
    opt = Momentum(params, learning_rate=0.05, momentum=0.9, weight_decay=1e-2)

    def train_step() -> None:
        x = np.random.standard_normal((16, 8))
        keep = np.random.random_sample((16, 8)) > 0.2  # dropout consumes the RNG
        features = (x * keep) @ model[0].data
        model[1].data *= 0.9  # running statistics, updated outside the optimizer (PG103, never PG101)
        model[1].data += 0.1 * features.mean(axis=0)
        out = features.astype(np.float32) @ model[2].data + model[3].data
        err = out - np.float32(random.random())  # and Python's RNG too
        opt([features.T.astype(np.float32) @ err / 16, err.mean(axis=0)])

    gated = None
    if gate is None:
        for _ in range(steps):
            train_step()
    else:
        assert paramgate.trainable(model) == params
        assert paramgate.audit(model, opt).ok
        snap = paramgate.snapshot(model, opt)
        with paramgate.guard(model, opt, **gate) as gated:
            for _ in range(steps):
                train_step()
                gated.step()
        assert gated.steps == steps and gated.last_check is not None and gated.report is not None
        assert gated.report.ok and gated.report.statistics_changed == ["backbone.bn.moving_mean"]
        assert snap.verify(model).ok
    legacy = np.random.get_state()
    return {
        "params": [(p.name, p.requires_grad, p.statistic, p.data.dtype.str, p.data.tobytes()) for p in model],
        "flags": [p.data.flags.writeable for p in model],
        "moments": [m.tobytes() for m in opt.moments],
        "optimizer": {k: v for k, v in vars(opt).items() if k not in ("moments", "groups", "parameters")},
        "groups": [(len(g["params"]), g["lr"], g["weight_decay"]) for g in opt.groups],
        "numpy_rng": (legacy[0], legacy[1].tobytes(), *legacy[2:]),
        "python_rng": random.getstate(),
    }


@pytest.mark.parametrize("gate", [{"every": 1}, {"rolling": 2}, {"every": 1, "threads": 1}], ids=str)
def test_no_side_effects_numpy_momentum(gate):
    bare = _numpy_training(None)
    gated = _numpy_training(gate)
    assert bare == gated
    untrained = _numpy_training(None, steps=0)
    assert bare["params"][2] != untrained["params"][2], "the run must train, or the comparison proves nothing"


# ---------------------------------------------------------------------------------------------
# 4. No leaks: paramgate keeps no tensor alive, and a snapshot is digests, not bytes.
# ---------------------------------------------------------------------------------------------


def _leak_model() -> list[Parameter]:
    # Four frozen 4 MiB tensors: enough bytes for the worker-thread pool to hash them.
    big = [Parameter(np.full(1 << 20, i, np.float32), f"backbone.w{i}", requires_grad=False) for i in range(4)]
    return [*big, Parameter(np.ones(3), "backbone.bn.running_mean", requires_grad=False), Parameter(np.ones(2), "head")]


def test_no_tensor_kept_alive_after_a_guard_while_its_snapshot_lives():
    model = _leak_model()
    opt = Momentum(paramgate.trainable(model), learning_rate=0.1, momentum=0.9)
    refs = [weakref.ref(x) for p in model for x in (p, p.data)] + [weakref.ref(opt), *map(weakref.ref, opt.moments)]
    snap = paramgate.snapshot(model, opt)
    with paramgate.guard(model, opt, every=1) as gate:
        for _ in range(3):
            opt([np.ones(2)])
            gate.step()
    with paramgate.guard(model, opt, rolling=2) as rolling:
        rolling.step()
    kept = (snap, gate, gate.snapshot, gate.report, gate.last_check, rolling, paramgate.audit(model, opt))
    del model, opt
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    assert kept[0].verify is not None and kept[3].ok  # what is kept is still usable


@pytest.mark.parametrize("where", ["exit", "step"])
def test_a_kept_frozen_parameter_changed_keeps_no_tensor_alive(where):
    # A script may keep the exception (to log it later); its traceback holds paramgate's frames.
    model = _leak_model()
    refs = [weakref.ref(x) for p in model for x in (p, p.data)]
    with pytest.raises(paramgate.FrozenParameterChanged) as info, paramgate.guard(model, every=1) as gate:  # noqa: PT012
        flip_bit(model[0].data, 0, 0)
        if where == "step":
            gate.step()
    kept = info.value
    del model
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    assert kept.report.changed == ["backbone.w0"] and kept.__traceback__ is not None


def _snapshot_bytes(count: int, elements: int) -> int:
    model = [Parameter(np.ones(elements, np.float32), f"backbone.t{i:04d}", requires_grad=False) for i in range(count)]
    size = len(pickle.dumps(paramgate.snapshot(model).prints))
    del model
    return size


def test_snapshot_size_grows_with_tensor_count_not_bytes():
    small = _snapshot_bytes(4, 1 << 14)  # 4 tensors, 256 KiB in all
    big = _snapshot_bytes(4, 1 << 24)  # 4 tensors of 64 MiB: 256 MiB in all, 1024 times the bytes
    assert abs(big - small) <= 16, (small, big)  # only the byte counts' encodings differ
    sizes = {n: _snapshot_bytes(n, 16) for n in (16, 32, 64, 128)}
    per_tensor = [(sizes[2 * n] - sizes[n]) / n for n in (16, 32, 64)]
    assert max(per_tensor) - min(per_tensor) < 1, sizes  # linear in the number of tensors
    assert per_tensor[0] < 200, per_tensor  # about a hundred bytes per tensor: name, digest, shape, dtype
    print(f"snapshot pickle: 4 x 64 KiB -> {small} B, 4 x 64 MiB -> {big} B, {per_tensor[0]:.0f} B per tensor")


# ---------------------------------------------------------------------------------------------
# 5. Concurrency: guards on one model in two threads, and guards inside guards.
# ---------------------------------------------------------------------------------------------


def _run_threads(*targets: Callable[[], object]) -> list[object]:
    results: list[object] = [None] * len(targets)

    def wrap(i: int, target: Callable[[], object]) -> None:
        try:
            results[i] = target()
        except BaseException as exc:  # handed to the main thread, which asserts on it
            results[i] = exc

    threads = [threading.Thread(target=wrap, args=(i, t)) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return results


def test_two_threads_guard_the_same_model_without_interfering():
    model = _leak_model()
    opt = Momentum(paramgate.trainable(model), learning_rate=0.1, momentum=0.9)
    start, trained = threading.Barrier(2), threading.Event()

    def trainer() -> object:
        with paramgate.guard(model, opt, every=1) as gate:
            start.wait()
            for _ in range(20):
                opt([np.ones(2)])
                assert gate.step().ok
        trained.set()
        return gate.report

    def watcher() -> object:
        with paramgate.guard(model, rolling=3, threads=4) as gate:
            start.wait()
            for _ in range(20):
                assert gate.step().ok
            assert trained.wait(60)  # leave once the head has moved, so that its exit check sees it moved
        return gate.report

    reports = _run_threads(trainer, watcher)
    assert all(isinstance(r, paramgate.InvarianceReport) and r.ok for r in reports), reports
    assert reports[0].findings == () and reports[1].codes() == []  # the head moved under both


def test_a_change_under_two_threads_guards_is_reported_by_both():
    model = _leak_model()
    entered, changed = threading.Barrier(3), threading.Barrier(3)

    def guarded() -> object:
        with paramgate.guard(model, every=1) as gate:
            entered.wait()  # both snapshots taken before the change
            changed.wait()
            gate.step()
        return gate

    def main_thread_change() -> None:
        entered.wait()
        flip_bit(model[2].data, 4 * 1000 + 3, 7)
        changed.wait()

    *results, _ = _run_threads(guarded, guarded, main_thread_change)
    for result in results:
        assert isinstance(result, paramgate.FrozenParameterChanged), result
        assert result.report.changed == ["backbone.w2"]


def test_a_guard_inside_a_guard():
    model = _leak_model()
    with (  # noqa: PT012 - the nested guards are the scenario
        pytest.raises(paramgate.FrozenParameterChanged) as outer_exit,
        paramgate.guard(model, every=1) as outer,
    ):
        prints = outer.snapshot.prints
        # A change inside both: the inner guard reports it...
        with pytest.raises(paramgate.FrozenParameterChanged) as inner, paramgate.guard(model, every=1) as gate:  # noqa: PT012
            assert gate.step().ok
            flip_bit(model[1].data, 0, 0)
        assert inner.value.report.changed == ["backbone.w1"] and gate.steps == 1
        # ...and so does the outer one: the inner guard left its snapshot and its step count alone.
        assert outer.snapshot.prints is prints and outer.steps == 0
        with pytest.raises(paramgate.FrozenParameterChanged) as seen:
            outer.step()
        assert seen.value.report.changed == ["backbone.w1"] and outer.steps == 1
        flip_bit(model[1].data, 0, 0)  # undone: the outer guard is satisfied again
        assert outer.step().ok
        # A change before an inner guard is that guard's starting point, and only the outer's finding.
        flip_bit(model[3].data, 8, 1)
        with paramgate.guard(model) as clean:
            pass
        assert clean.report is not None and clean.report.ok
    assert outer_exit.value.report.changed == ["backbone.w3"] and outer.report is outer_exit.value.report


# ---------------------------------------------------------------------------------------------
# 6. The command line: a user error is one line on stderr and exit code 2, never a traceback;
#    an internal error says it is a bug in paramgate and how to report it, and exits 3.
# ---------------------------------------------------------------------------------------------

FACTORIES = """
import sys

import numpy as np
from paramgate_numpy import Momentum, Parameter


def model():
    return [Parameter(np.zeros(3), "backbone.w", requires_grad=False), Parameter(np.ones(2), "head.w")]


def raises():
    raise RuntimeError("CUDA out of memory.\\nTried to allocate 2.00 GiB")


def returns_path():
    return "checkpoints/model.ckpt"


def returns_none():
    return None


def returns_triple():
    m = model()
    return m, Momentum(m, 0.1, 0.9), "extra"


def returns_other_optimizer():
    return model(), "adamw"


def returns_empty():
    return []


def exits():
    sys.exit(3)


VALUE = 3
"""

SCRIPTS = {
    "factories.py": FACTORIES,
    "broken_import.py": "import numpy\nraise ImportError('needs the GPU build')\n",
    "syntax_error.py": "def build(:\n    pass\n",
    "parses_args.py": "import argparse\n\nargparse.ArgumentParser().parse_args(['--epochs'])\n",
}

CLI_USER_ERRORS = {
    "missing-module": ("nosuchmodule_xyz:build", "no module named 'nosuchmodule_xyz'"),
    "missing-file": ("missing_file.py:build", "file missing_file.py does not exist"),
    "module-without-factory": ("factories:nope", "module factories has no attribute 'nope'"),
    "factory-not-callable": ("factories:VALUE", "VALUE is a int, not a callable factory"),
    "factory-raises": ("factories:raises", "calling raises() raised RuntimeError: CUDA out of memory. Tried to"),
    "factory-exits": ("factories:exits", "calling exits() called sys.exit(3)"),
    "returns-a-path": ("factories:returns_path", "returns_path() returned something paramgate cannot audit"),
    "returns-none": ("factories:returns_none", "model is None"),
    "returns-a-3-tuple": ("factories:returns_triple", "it returned a 3-tuple"),
    "returns-another-optimizer": ("factories:returns_other_optimizer", "optimizer: cannot read a builtins.str"),
    "returns-an-empty-model": ("factories:returns_empty", "model has no parameters"),
    "import-raises": ("broken_import:build", "importing broken_import failed: ImportError: needs the GPU build"),
    "syntax-error": ("syntax_error.py:build", "importing syntax_error.py failed: SyntaxError"),
    "script-exits-on-import": ("parses_args.py:build", "importing parses_args.py called sys.exit(2)"),
    "no-colon": ("factories.model", "expected MODULE:FACTORY"),
    "no-module": (":build", "expected MODULE:FACTORY"),
    "no-factory": ("factories:", "expected MODULE:FACTORY"),
}


@pytest.fixture
def scripts(tmp_path):
    for name, source in SCRIPTS.items():
        (tmp_path / name).write_text(textwrap.dedent(source))
    return tmp_path


def _cli(cwd: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paramgate", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(("target", "message"), CLI_USER_ERRORS.values(), ids=CLI_USER_ERRORS.keys())
def test_cli_user_error_is_one_line_and_exit_2(scripts, target, message):
    proc = _cli(scripts, "audit", target)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.splitlines()
    if target.startswith("parses_args"):
        lines = lines[-1:]  # argparse in the script printed its own usage first; ours is still one line
    assert len(lines) == 1 and lines[0].startswith("paramgate: error: "), proc.stderr
    assert message in lines[0], lines[0]
    assert repr(target) in lines[0]  # it names what the user typed


def test_cli_a_clean_target_still_exits_0(scripts):
    proc = _cli(scripts, "audit", "factories:model")
    assert (proc.returncode, proc.stderr) == (0, "") and "No findings." in proc.stdout


def test_cli_internal_error_says_it_is_a_bug_and_exits_3(scripts, monkeypatch, capsys):
    def broken(*args: object) -> None:
        raise RuntimeError("boom in the core")

    monkeypatch.chdir(scripts)
    monkeypatch.setattr("paramgate.api.build_audit", broken)  # a genuine bug inside paramgate
    try:
        assert main(["audit", "factories:model"]) == 3
    finally:
        sys.modules.pop("factories", None)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "paramgate: internal error: RuntimeError: boom in the core"
    assert "bug in paramgate" in err[1] and "please report it" in err[1] and "traceback below" in err[1]
    assert err[2] == "Traceback (most recent call last):" and err[-1] == "RuntimeError: boom in the core"


def test_cli_interrupt_exits_130_without_a_traceback(scripts, monkeypatch, capsys):
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.chdir(scripts)
    monkeypatch.setattr("paramgate.api.build_audit", interrupted)
    try:
        assert main(["audit", "factories:model"]) == 130
    finally:
        sys.modules.pop("factories", None)
    assert capsys.readouterr().err == "paramgate: interrupted\n"

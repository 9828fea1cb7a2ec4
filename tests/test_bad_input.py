"""Bad input gets a ParamGateError that names what is wrong and says what to do."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import paramgate
from paramgate_numpy import Momentum, Parameter


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (None, "model is None"),
        ("resnet50.ckpt", "not paths"),
        (pathlib.Path("model.ckpt"), "not paths"),
        (42, "builtins.int is not a model"),
        ({"w": np.zeros(2)}, "builtins.dict is not a model"),
    ],
)
def test_not_a_model(model, message):
    with pytest.raises(paramgate.UnsupportedModelError, match=message) as info:
        paramgate.audit(model)
    assert "Installed adapters: " in str(info.value) and "numpy (plugin 'numpy')" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_a_generator_as_model_is_refused_not_consumed(seed_model):
    gen = (p for p in seed_model)
    with pytest.raises(paramgate.OneShotIteratorError, match="Pass the model object itself"):
        paramgate.trainable(gen)
    assert len(list(gen)) == 4


def test_empty_model():
    with pytest.raises(paramgate.EmptyModelError, match="model has no parameters"):
        paramgate.audit([])


def test_parameter_without_a_name():
    with pytest.raises(paramgate.InvalidParameterError, match="parameter #1 has no name"):
        paramgate.audit([{"name": "a", "data": np.zeros(1)}, {"data": np.zeros(1), "requires_grad": True}])
    with pytest.raises(paramgate.InvalidParameterError, match="parameter #0 has no name"):
        paramgate.trainable([Parameter(np.zeros(1))])


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ({"name": "w", "requires_grad": True}, "'w'.*has no 'data'"),
        ({"name": "w", "data": [1.0, 2.0]}, "parameter 'w': 'data' is a list, not a NumPy array"),
        ({"name": "w", "data": np.zeros(1), "requires_grad": "yes"}, "parameter 'w': requires_grad is 'yes'"),
    ],
)
def test_malformed_parameter_dicts(param, message):
    with pytest.raises(paramgate.InvalidParameterError, match=message):
        paramgate.audit([param])


def test_object_arrays_cannot_be_fingerprinted():
    model = [Parameter(np.array([object()], dtype=object), "weird", requires_grad=False), Parameter(np.ones(1), "h")]
    assert paramgate.audit(model).ok  # auditing is fine
    with pytest.raises(paramgate.InvalidParameterError, match="'weird' has dtype object"):
        paramgate.snapshot(model)


def test_optimizer_of_the_wrong_kind(seed_model):
    with pytest.raises(paramgate.UnsupportedOptimizerError, match=r"optimizer: cannot read a builtins\.str"):
        paramgate.audit(seed_model, "sgd")
    with pytest.raises(paramgate.OneShotIteratorError, match="optimizer: got a one-shot iterator"):
        paramgate.snapshot(seed_model, iter(seed_model))


def test_optimizer_from_another_model_in_snapshot_is_not_a_crash(seed_model):
    other = [Parameter(np.ones(2), "elsewhere")]
    opt = Momentum(other, learning_rate=0.1, momentum=0.9)
    snap = paramgate.snapshot(seed_model, opt)
    assert snap.verify(seed_model).codes() == ["PG102", "PG102"]


def test_every_error_is_a_paramgate_error():
    errors = [getattr(paramgate, name) for name in paramgate.__all__ if name.endswith(("Error", "Changed", "Failed"))]
    assert len(errors) == 15
    assert all(issubclass(e, paramgate.ParamGateError) for e in errors)


def test_a_framework_object_without_its_adapter_says_so():
    # A class that only claims to live in torch's namespace: what a torch model looks like
    # to the core while only the NumPy adapter is installed.
    from paramgate_numpy import plugin

    pm = paramgate.ParamGatePluginManager()
    pm.register(plugin, "numpy")
    Module = type("Module", (), {"__module__": "torch.nn.modules.module"})
    with pytest.raises(paramgate.UnsupportedModelError, match="looks like a torch object") as info:
        paramgate.audit(Module(), plugins=pm)
    assert "torch.nn.modules.module.Module is not a model" in str(info.value)

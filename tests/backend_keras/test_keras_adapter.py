"""The Keras adapter's records: names, roles, counts, optimizer groups (real Keras 3, torch backend)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np
import pytest
import torch
from backend_keras.kerasnets import BACKBONE, HEAD, STATISTICS, build_net, fit

import paramgate
from paramgate_keras.adapter import KerasAdapter


def _entries(model):
    return {e.name: e for e in KerasAdapter().parameters(model)}


def test_the_keras_adapter_claims_keras_models_before_the_torch_adapter():
    model, _, _ = build_net()
    assert isinstance(model, torch.nn.Module)  # on the torch backend a Keras layer is a torch module too
    assert paramgate.get_plugin_manager().adapter_for_model(model).name == "keras"
    adapter = KerasAdapter()
    assert not adapter.owns_model(torch.nn.Linear(2, 2))
    assert not adapter.owns_optimizer(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1))
    assert adapter.owns_optimizer(keras.optimizers.SGD(0.1))
    assert adapter.owns_optimizer(list(model.trainable_weights))
    assert not adapter.owns_model(keras.optimizers.SGD(0.1))


def test_records_name_every_weight_by_path_with_its_role_shape_and_count():
    model, backbone, _ = build_net()
    backbone.trainable = False
    report = paramgate.audit(model)
    assert [p.name for p in report.params] == BACKBONE + STATISTICS + HEAD == [v.path for v in model.weights]
    roles = {p.name: p.role for p in report.params}
    assert roles == {
        **dict.fromkeys(BACKBONE, "frozen"),
        **dict.fromkeys(STATISTICS, "state"),
        **dict.fromkeys(HEAD, "trainable"),
    }
    assert {p.name: p.shape for p in report.params} == {v.path: tuple(v.shape) for v in model.weights}
    assert {p.dtype for p in report.params} == {"float32"}
    assert all(p.kind == "parameter" for p in report.params)  # Keras keeps statistics as variables
    assert report.totals.all == model.count_params() == 90
    assert report.totals.trainable == sum(int(np.prod(v.shape)) for v in model.trainable_weights) == 18
    assert report.totals.state == 16
    # paramgate.trainable hands back the very variables fit() will train.
    assert [id(v) for v in paramgate.trainable(model)] == [id(v) for v in model.trainable_weights]


def test_an_unbuilt_model_has_no_weights_yet():
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(paramgate.EmptyModelError, match="built"):
        paramgate.audit(model)


def test_batchnorm_statistics_update_only_in_a_trainable_layer():
    model, backbone, _ = build_net()
    entries = _entries(model)
    assert all(entries[name].role == "state" and entries[name].updating is True for name in STATISTICS)
    backbone.trainable = False  # Keras runs a frozen BatchNormalization in inference mode
    entries = _entries(model)
    assert all(entries[name].role == "state" and entries[name].updating is False for name in STATISTICS)
    assert all(entries[name].updating is None for name in BACKBONE + HEAD)


def test_frozen_batchnorm_weights_in_a_trainable_layer_are_pg009():
    model, backbone, _ = build_net()
    bn = backbone.get_layer("bn")
    bn.gamma.trainable = bn.beta.trainable = False  # the layer stays trainable, so fit() updates its statistics
    report = paramgate.audit(model)
    assert [(f.code, f.name) for f in report.findings] == [("PG009", "net/backbone/bn")]  # the names' own spelling


def test_same_named_layers_get_numbered_names():
    class Twin(keras.Model):
        def __init__(self):
            super().__init__(name="twin")
            self.a = keras.layers.Dense(3, name="d")
            self.b = keras.layers.Dense(3, name="d")

        def call(self, x):
            return self.b(self.a(x))

    model = Twin()
    model(np.zeros((1, 2), "float32"))
    assert [v.path for v in model.weights] == ["twin/d/kernel", "twin/d/bias"] * 2
    report = paramgate.audit(model)
    assert [p.name for p in report.params] == ["twin/d/kernel", "twin/d/bias", "twin/d/kernel#1", "twin/d/bias#1"]
    assert report.ok
    assert [p.note is not None for p in report.params] == [False, False, True, True]


def test_an_unbuilt_optimizer_is_read_as_what_fit_will_build_it_from():
    model, backbone, _ = build_net()
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True), "mse")
    backbone.trainable = False  # after compile, before the first fit: the optimizer is not built yet
    assert not model.optimizer.built
    report = paramgate.audit(model, model.optimizer)
    assert report.ok and report.findings == ()
    (group,) = report.groups
    assert group.params == tuple(HEAD)
    assert (group.lr, group.momentum, group.weight_decay) == (0.05, 0.9, None)
    assert group.options == {"nesterov": True, "built": False}
    fit(model)  # measured: fit() builds it from model.trainable_variables of that moment
    assert [v.path for v in model.optimizer._trainable_variables] == HEAD


def test_optimizer_settings_schedules_and_decay_exemptions():
    model, _, _ = build_net()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    opt = keras.optimizers.AdamW(schedule, weight_decay=0.01, use_ema=True, ema_overwrite_frequency=3)
    opt.exclude_from_weight_decay(var_names=["bias"])
    (group,) = paramgate.audit(model, opt).groups
    assert (group.lr, group.momentum, group.weight_decay) == (None, None, 0.01)
    assert group.options["lr_schedule"] == "ExponentialDecay"
    assert group.options["use_ema"] is True and group.options["ema_overwrite_frequency"] == 3
    assert group.options["beta_1"] == 0.9 and group.options["decay_exempt"] == "names matching 'bias'"


def test_loss_scale_and_multi_optimizers():
    model, _, _ = build_net()
    (group,) = paramgate.audit(model, keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))).groups
    assert group.lr == 0.1 and group.options["loss_scale"] == "dynamic"

    head_sgd, rest_adam = keras.optimizers.SGD(0.1), keras.optimizers.Adam(0.001)
    routes = keras.optimizers.OptimizerMap(rest_adam, {"net/head/.*": head_sgd})
    model.compile(keras.optimizers.MultiOptimizer(routes), "mse")
    for built in (False, True):
        report = paramgate.audit(model, model.optimizer)
        assert report.ok, report.render()
        by_lr = {g.lr: g.params for g in report.groups}
        assert by_lr == {0.1: tuple(HEAD), 0.001: tuple(BACKBONE)}
        assert all(g.options["built"] is built for g in report.groups)
        if not built:
            fit(model)

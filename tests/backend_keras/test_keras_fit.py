"""``ParamGateCallback`` inside real ``model.fit`` runs, and the compile trap as Keras 3.15 really has it.

Every scenario checks Keras's own behaviour independently of paramgate (raw
bytes of the weights before and after), then what paramgate reports about it.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import logging

import keras
import pytest
from backend_keras.kerasnets import BACKBONE, HEAD, STATISTICS, build_net, fit, moved, values

import paramgate
from paramgate_keras import ParamGateCallback


def test_clean_fine_tune_audits_ok_and_keeps_the_frozen_backbone_bit_for_bit(caplog):
    model, backbone, _ = build_net()
    backbone.trainable = False  # before compile, the documented way
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    before = values(model)
    gate = ParamGateCallback()
    with caplog.at_level(logging.WARNING, logger="paramgate"):
        fit(model, epochs=2, callbacks=[gate])
    assert moved(before, values(model)) == sorted(HEAD)  # Keras itself: only the head moved, BN statistics included
    assert gate.audit_report is not None and gate.audit_report.ok and gate.audit_report.findings == ()
    assert gate.audit_report.groups[0].params == tuple(HEAD)
    assert [r.ok for r in gate.reports] == [True, True]
    assert [r.findings for r in gate.reports] == [(), ()]  # no PG103: a frozen BN runs in inference mode
    assert [r.checked for r in gate.reports] == [8, 8]
    assert not caplog.records
    assert gate._snapshot is None and gate._watched is None  # let go when training ends


def test_statistics_of_a_trainable_batchnorm_are_pg103_not_pg101(caplog):
    model, backbone, _ = build_net()
    bn = backbone.get_layer("bn")
    backbone.get_layer("dense").trainable = False
    bn.gamma.trainable = bn.beta.trainable = False  # every backbone weight frozen, the BN layer still trainable
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = values(model)
    gate = ParamGateCallback()
    with caplog.at_level(logging.WARNING, logger="paramgate"):
        fit(model, callbacks=[gate])
    assert moved(before, values(model)) == sorted(HEAD + STATISTICS)
    assert gate.audit_report.codes() == ["PG009"]  # predicted before the first step
    (report,) = gate.reports
    assert report.ok and report.statistics_changed == STATISTICS and report.changed == []
    assert {r.message.split(":", 1)[0] for r in caplog.records} == {
        "paramgate audit before training",
        "paramgate after epoch 1",
    }


def test_freezing_after_fit_without_recompiling_leaves_the_frozen_variables_in_the_optimizer():
    model, backbone, _ = build_net()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    fit(model)  # builds the optimizer with all six weights
    backbone.trainable = False  # no recompile: the trap of keras-team/keras#6405
    report = paramgate.audit(model, model.optimizer)
    assert report.ok  # warnings only: measured below, the torch train step does not move them
    assert [(f.code, f.severity, f.name) for f in report.findings] == [("PG001", "warning", n) for n in BACKBONE]
    assert "recompile (model.compile(...))" in report.groups[0].options["stale"]
    # Keras on the torch backend hands optimizer.apply() only model.trainable_weights, read at every step:
    # momentum buffers of the backbone are non-zero, yet it does not move.
    before = values(model)
    gate = ParamGateCallback()
    fit(model, epochs=2, callbacks=[gate])
    assert moved(before, values(model)) == sorted(HEAD)
    assert [r.ok for r in gate.reports] == [True, True]
    # Recompiling with a new optimizer instance is clean again.
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    fit(model)
    assert paramgate.audit(model, model.optimizer).findings == ()


def test_weight_decay_does_not_reach_a_frozen_variable_left_in_a_built_optimizer():
    model, backbone, _ = build_net()
    model.compile(keras.optimizers.AdamW(0.01, weight_decay=0.5), "mse")
    fit(model)
    backbone.trainable = False
    report = paramgate.audit(model, model.optimizer)
    assert report.groups[0].weight_decay == 0.5
    assert {(f.code, f.severity) for f in report.findings} == {("PG001", "warning")}  # not an error: measured
    before = values(model)
    fit(model)
    assert moved(before, values(model)) == sorted(HEAD)  # decay is applied to the variables the step passes only


def test_unfreezing_after_fit_is_pg002_and_the_callback_stops_fit_before_keras_fails():
    model, backbone, _ = build_net()
    backbone.trainable = False
    opt = keras.optimizers.SGD(0.1)
    model.compile(opt, "mse")
    fit(model)  # builds the optimizer with the head only
    backbone.trainable = True
    report = paramgate.audit(model, model.optimizer)
    assert [(f.code, f.severity, f.name) for f in report.findings] == [("PG002", "error", n) for n in BACKBONE]
    assert report.groups[0].options["stale"].startswith("trainable changed after this optimizer was built")
    with pytest.raises(ValueError, match="Unknown variable"):  # what Keras itself does, one step in
        fit(model)
    before = values(model)
    iterations = int(opt.iterations.value)
    gate = ParamGateCallback()
    with pytest.raises(paramgate.AuditFailed) as caught:
        fit(model, callbacks=[gate])
    assert caught.value.report is gate.audit_report
    assert values(model) == before and int(opt.iterations.value) == iterations  # not one step ran
    model.compile(opt, "mse")  # recompiling with the same, built optimizer changes nothing
    assert paramgate.audit(model, model.optimizer).codes() == ["PG002"] * 4
    model.compile(keras.optimizers.SGD(0.1), "mse")
    fit(model)
    assert paramgate.audit(model, model.optimizer).findings == ()


def _ema_trap():
    model, backbone, _ = build_net()
    model.compile(keras.optimizers.SGD(0.1, use_ema=True, ema_overwrite_frequency=1), "mse")
    fit(model)
    # New backbone weights (a checkpoint loaded after the first fit), frozen without recompiling.
    for v in backbone.trainable_weights:
        v.assign(v.value + 1)
    backbone.trainable = False
    return model


def test_an_ema_optimizer_writes_its_averages_into_frozen_variables_it_still_holds(caplog):
    model = _ema_trap()
    report = paramgate.audit(model, model.optimizer)
    assert [(f.code, f.severity, f.name) for f in report.findings] == [("PG001", "error", n) for n in BACKBONE]
    assert "ema_overwrite_frequency=1" in report.findings[0].message
    assert "recompile (model.compile(...))" in report.findings[0].message
    before = values(model)
    gate = ParamGateCallback(on_error="log")  # log and train on, to see what the step does
    with caplog.at_level(logging.ERROR, logger="paramgate"), pytest.raises(ValueError, match="length of model"):
        fit(model, callbacks=[gate])  # Keras's own finalize_variable_values fails at the end of fit
    assert moved(before, values(model)) == sorted(BACKBONE + HEAD)  # the frozen backbone really moved
    (report,) = gate.reports
    assert sorted(report.changed) == sorted(BACKBONE)
    assert {f.code for f in report.findings} == {"PG101"}
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 2 and "PG001" in logged[0] and "after epoch 1" in logged[1] and "PG101" in logged[1]


def test_the_callback_raises_before_the_ema_overwrites_anything():
    model = _ema_trap()
    before = values(model)
    with pytest.raises(paramgate.AuditFailed, match="PG001 net/backbone/dense/kernel"):
        fit(model, callbacks=[ParamGateCallback()])
    assert values(model) == before


def test_a_frozen_variable_changed_by_hand_stops_fit_after_that_epoch():
    model, backbone, _ = build_net()
    backbone.trainable = False
    model.compile(keras.optimizers.SGD(0.1), "mse")

    class Tamper(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                kernel = backbone.get_layer("dense").kernel
                kernel.assign(kernel.value * 2)

    epochs = []
    with pytest.raises(paramgate.FrozenParameterChanged) as caught:
        fit(
            model,
            epochs=3,
            callbacks=[
                Tamper(),
                ParamGateCallback(),
                keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: epochs.append(e)),
            ],
        )
    assert caught.value.report.changed == ["net/backbone/dense/kernel"]
    assert epochs == []  # raised in the first epoch's on_epoch_end: fit stopped there


def test_the_callback_changes_nothing_keras_computes():
    runs = []
    for gate in (None, ParamGateCallback()):
        model, backbone, _ = build_net()
        backbone.trainable = False
        model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
        fit(model, epochs=2, callbacks=None if gate is None else [gate])
        runs.append((values(model), [v.value.detach().numpy().tobytes() for v in model.optimizer.variables]))
    assert runs[0] == runs[1]


def test_bad_arguments_and_references():
    with pytest.raises(paramgate.InvalidArgumentError, match="on_error"):
        ParamGateCallback(on_error="ignore")
    with pytest.raises(paramgate.InvalidArgumentError, match="logger"):
        ParamGateCallback(logger="paramgate")
    with pytest.raises(paramgate.InvalidArgumentError, match="plugins"):
        ParamGateCallback(plugins=object())
    assert isinstance(ParamGateCallback(), keras.callbacks.Callback)
    model, backbone, _ = build_net()
    backbone.trainable = False
    model.compile(keras.optimizers.SGD(0.1), "mse")
    gate = ParamGateCallback()
    fit(model, callbacks=[gate])
    assert gate._watched is None and gate._snapshot is None  # no reference to the model after fit
    assert len(gate.reports) == 1

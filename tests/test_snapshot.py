"""Snapshots and guards: frozen means the same bits, and the gate keeps nothing alive."""

from __future__ import annotations

import gc
import pickle
import weakref

import numpy as np
import pytest
from _helpers import AdapterPlugin, flip_bit

import paramgate
from paramgate_numpy import Momentum, Parameter
from paramgate_numpy import plugin as numpy_plugin
from paramgate_numpy.adapter import NumpyAdapter
from paramgate_numpy.demo import train_step

DTYPES = ["float64", "float32", "float16", "int64", "int8", "uint8", "bool", "complex64", "complex128"]


def _frozen_model(dtype: str, shape: tuple[int, ...] = (3, 5)) -> list[Parameter]:
    rng = np.random.default_rng(7)
    data = rng.integers(0, 2, size=shape).astype(dtype) if dtype == "bool" else rng.normal(size=shape).astype(dtype)
    return [Parameter(data, "backbone.w", requires_grad=False), Parameter(np.ones(2, np.float32), "head.b")]


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_single_bit_flip_is_caught(dtype):
    model = _frozen_model(dtype)
    data = model[0].data
    for byte in range(data.nbytes):
        for bit in range(8):
            snap = paramgate.snapshot(model)
            flip_bit(data, byte, bit)
            report = snap.verify(model)
            assert report.changed == ["backbone.w"], (dtype, byte, bit)
            assert not report.ok
            flip_bit(data, byte, bit)  # restore
    assert paramgate.snapshot(model).verify(model).changed == []


def test_bfloat16_bit_patterns_viewed_as_int16_are_caught():
    # NumPy has no bfloat16; frameworks hand its bits over as 16-bit integers.
    bits = np.array([0x3F80, 0x7FC0, 0x8000, 0x0000], dtype=np.uint16)  # 1.0, NaN, -0.0, +0.0
    model = [Parameter(bits.view(np.int16), "w", requires_grad=False), Parameter(np.ones(1), "h")]
    snap = paramgate.snapshot(model)
    model[0].data[2] = 0  # -0.0 -> +0.0 in bfloat16
    assert snap.verify(model).changed == ["w"]


def test_nan_and_negative_zero_unchanged_are_no_false_alarm():
    weird = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, np.float32(1e-45)], dtype=np.float32)
    model = [Parameter(weird, "backbone.w", requires_grad=False), Parameter(np.ones(2), "head.b")]
    snap = paramgate.snapshot(model)
    model[1].data += 1  # training moved only the head
    report = snap.verify(model)
    assert report.ok and report.findings == ()


def test_negative_zero_to_positive_zero_is_a_change():
    # Value comparison says -0.0 == 0.0; the bits differ, and frozen means the same bits.
    model = [Parameter(np.array([-0.0, 1.0]), "w", requires_grad=False), Parameter(np.ones(1), "h")]
    snap = paramgate.snapshot(model)
    model[0].data[0] = 0.0
    assert snap.verify(model).changed == ["w"]


def test_nan_payload_change_is_a_change():
    data = np.array([np.nan], dtype=np.float64)
    model = [Parameter(data, "w", requires_grad=False), Parameter(np.ones(1), "h")]
    snap = paramgate.snapshot(model)
    data.view(np.uint64)[0] ^= np.uint64(1)  # still NaN, different payload
    assert np.isnan(data[0])
    assert snap.verify(model).changed == ["w"]


def test_swapped_elements_are_caught():
    model = [Parameter(np.arange(6, dtype=np.float32), "w", requires_grad=False), Parameter(np.ones(1), "h")]
    snap = paramgate.snapshot(model)
    model[0].data[[0, 5]] = model[0].data[[5, 0]]
    assert snap.verify(model).changed == ["w"]


def test_non_contiguous_and_zero_d_and_empty_arrays():
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    strided = Parameter(base[:, ::2], "strided", requires_grad=False)
    scalar = Parameter(np.array(3.0), "scalar", requires_grad=False)
    empty = Parameter(np.zeros((0, 4)), "empty", requires_grad=False)
    model = [strided, scalar, empty, Parameter(np.ones(2), "head")]
    snap = paramgate.snapshot(model)
    base[1, 1] += 1  # not part of the strided view: no change
    assert snap.verify(model).ok
    base[1, 2] += 1  # part of it
    scalar.data[()] = 4.0
    assert snap.verify(model).changed == ["strided", "scalar"]


def test_demo_training_keeps_backbone_and_moves_head(seed_model):
    opt = Momentum(paramgate.trainable(seed_model), learning_rate=0.01, momentum=0.9)
    with paramgate.guard(seed_model, opt) as g:
        for _ in range(3):
            train_step(seed_model, opt)
    assert g.report is not None and g.report.ok and g.report.findings == ()
    assert g.report.checked == 4


def test_guard_raises_naming_every_moved_frozen_parameter(seed_model):
    seed_model[1]["data"][:] = 0.5  # make the bias decay visibly too
    opt = Momentum(seed_model, learning_rate=0.01, momentum=0.9, weight_decay=0.01)
    with pytest.raises(paramgate.FrozenParameterChanged) as info, paramgate.guard(seed_model, opt):
        train_step(seed_model, opt)
    err = info.value
    assert isinstance(err, AssertionError) and isinstance(err, paramgate.ParamGateError)
    assert err.report.changed == ["backbone.conv1.weight", "backbone.conv1.bias"]
    assert "backbone.conv1.weight" in str(err) and "backbone.conv1.bias" in str(err)
    assert "optimizer group 0" in str(err)
    assert pickle.loads(pickle.dumps(err)).report.changed == err.report.changed


def test_guard_lets_the_blocks_own_exception_through(seed_model):
    opt = Momentum(seed_model, learning_rate=0.01, momentum=0.9, weight_decay=0.01)
    g = paramgate.guard(seed_model, opt)
    with pytest.raises(KeyError, match="boom"):  # noqa: PT012, SIM117 - the block is the point
        with g:
            train_step(seed_model, opt)
            raise KeyError("boom")
    assert g.report is None


def test_guard_enters_once(seed_model):
    g = paramgate.guard(seed_model)
    with g:
        pass
    with pytest.raises(RuntimeError, match="only once"), g:
        pass


def test_trainable_never_changed_is_pg102_and_statistics_pg103():
    model = [
        Parameter(np.ones(3), "backbone.w", requires_grad=False),
        Parameter(np.zeros(3), "backbone.bn.moving_mean", requires_grad=False),
        Parameter(np.ones(2), "head.w"),
    ]
    snap = paramgate.snapshot(model)
    model[1].data += 0.1  # statistics drift in train mode
    report = snap.verify(model)
    assert [(f.code, f.name, f.severity) for f in report.findings] == [
        ("PG102", "head.w", "warning"),
        ("PG103", "backbone.bn.moving_mean", "warning"),
    ]
    assert report.ok and report.changed == [] and report.statistics_changed == ["backbone.bn.moving_mean"]
    assert ".eval()" in report.findings[1].message


def test_added_removed_and_resized_parameters_are_findings():
    w = Parameter(np.ones(3), "backbone.w", requires_grad=False)
    gone = Parameter(np.ones(3), "backbone.gone", requires_grad=False)
    head = Parameter(np.ones(2), "head.w")
    model = [w, gone, head]
    snap = paramgate.snapshot(model)
    w.data = np.ones(4)  # replaced with a new shape
    head.data = head.data.astype(np.float32)  # new dtype
    new = Parameter(np.ones(1), "head.extra")
    report = snap.verify([w, head, new])
    got = [(f.code, f.name, f.severity) for f in report.findings]
    assert got == [
        ("PG104", "backbone.gone", "warning"),
        ("PG104", "head.extra", "warning"),
        ("PG105", "backbone.w", "error"),
        ("PG105", "head.w", "warning"),
    ]
    assert "float64[3]" in report.findings[2].message and "float64[4]" in report.findings[2].message


def test_unfreezing_after_the_snapshot_is_explained():
    model = [Parameter(np.ones(3), "w", requires_grad=False), Parameter(np.ones(2), "h")]
    snap = paramgate.snapshot(model)
    model[0].requires_grad = True
    model[0].data += 1
    (finding,) = [f for f in snap.verify(model).findings if f.code == "PG101"]
    assert "take a new snapshot after unfreezing" in finding.message


def test_snapshot_holds_no_reference_to_any_tensor():
    data = np.ones((64, 64), np.float32)
    head = np.ones(4, np.float32)
    model = [Parameter(data, "w", requires_grad=False), Parameter(head, "h")]
    opt = Momentum([model[1]], learning_rate=0.1, momentum=0.9)
    refs = [weakref.ref(x) for x in (model[0], model[1], data, head, opt)]
    snap = paramgate.snapshot(model, opt)
    g = paramgate.guard(model, opt)
    with g:
        pass
    del model, opt, data, head
    gc.collect()
    assert [r() for r in refs] == [None] * 5
    assert snap.prints[0].fingerprint.nbytes == 64 * 64 * 4
    assert len(pickle.dumps(snap.prints)) < 2000  # digests, not 16 KiB of data


def test_the_gate_changes_nothing(seed_model):
    """No flags flipped, no values touched, no RNG consumed, optimizer state intact."""
    np.random.seed(123)
    legacy = np.random.get_state()
    opt = Momentum(seed_model, learning_rate=0.01, momentum=0.9, weight_decay=0.01)
    opt([np.ones_like(p["data"]) for p in seed_model])
    before = [(p["requires_grad"], p["data"].tobytes(), p["data"].flags.writeable) for p in seed_model]
    moments = [m.tobytes() for m in opt.moments]
    paramgate.trainable(seed_model)
    paramgate.audit(seed_model, opt)
    paramgate.snapshot(seed_model, opt).verify(seed_model)
    with paramgate.guard(seed_model, opt):
        pass
    assert [(p["requires_grad"], p["data"].tobytes(), p["data"].flags.writeable) for p in seed_model] == before
    assert [m.tobytes() for m in opt.moments] == moments
    after = np.random.get_state()
    assert legacy[0] == after[0] and np.array_equal(legacy[1], after[1]) and legacy[2:] == after[2:]


def test_snapshot_of_one_framework_cannot_verify_another(seed_model):
    # A second "framework" that claims tuples: a snapshot of a list model (numpy)
    # refuses to verify a tuple model, whose adapter is another one.
    class Tuples(NumpyAdapter):
        name = "tuples"

        def owns_model(self, model):
            return isinstance(model, tuple) and super().owns_model(model)

    pm = paramgate.ParamGatePluginManager()
    pm.register(numpy_plugin, name="numpy")
    pm.register(AdapterPlugin(Tuples), name="tuples")
    snap = paramgate.snapshot(seed_model, plugins=pm)
    assert snap.framework == "numpy"
    with pytest.raises(paramgate.SnapshotMismatchError, match="numpy model, but a tuples model"):
        snap.verify(tuple(seed_model))

"""Keras variable fingerprints: zero-copy host hashing by address, the device digest, single-bit flips."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np
import pytest
import torch
from backend_keras.kerasnets import BACKBONE, HEAD, STATISTICS, build_net

import paramgate
from paramgate.fingerprint import fingerprint_buffer, pgmix_reference
from paramgate_keras.adapter import KerasAdapter, host_view


def _raw(v):
    return v.value.detach().numpy().tobytes()


def test_host_fingerprints_read_the_variables_own_memory():
    model, _, _ = build_net()
    adapter = KerasAdapter()
    for entry in adapter.parameters(model):
        tensor = entry.obj.value
        view = host_view(tensor)
        assert view.ctypes.data == tensor.data_ptr(), entry.name  # zero-copy, by address
        assert view.nbytes == entry.nbytes == tensor.nbytes
        assert adapter.fingerprint(entry) == fingerprint_buffer(_raw(entry.obj))
    # keras.ops.convert_to_numpy would copy (measured): the reason host_view exists.
    with warnings.catch_warnings():
        # torch 2.13's Tensor.__array__ has no copy= keyword, which NumPy 2 deprecates; keras calls np.array on it.
        warnings.simplefilter("ignore", DeprecationWarning)
        copied = keras.ops.convert_to_numpy(model.weights[0].value)
    assert copied.ctypes.data != model.weights[0].value.data_ptr()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64", "int32", "int8", "bool"])
def test_device_digest_matches_the_specification(dtype, monkeypatch):
    monkeypatch.setattr(KerasAdapter, "host_devices", frozenset())  # run the device path on CPU tensors
    rng = np.random.default_rng(3)
    for shape in [(), (1,), (3,), (5, 3)]:
        v = keras.Variable(rng.normal(size=shape) * 10, dtype=dtype, trainable=False, name="v")
        (entry,) = KerasAdapter().parameters(_holder(v))
        digest = KerasAdapter().fingerprint(entry)
        assert digest.algorithm == "pgmix64x2"
        assert digest == pgmix_reference(v.value.detach().reshape(-1).view(torch.uint8).numpy().tobytes())


def _holder(variable):
    class Holder(keras.Layer):
        def __init__(self):
            super().__init__(name="holder")
            self.v = variable

    return Holder()


def test_a_single_bit_flip_in_a_frozen_variable_is_pg101_on_exactly_that_variable():
    model, backbone, _ = build_net()
    backbone.trainable = False
    snap = paramgate.snapshot(model)
    kernel = backbone.get_layer("dense").kernel.value
    words = kernel.detach().view(-1).view(torch.int32)
    for bit in range(32):
        with torch.no_grad():
            words[5] ^= 1 << bit if bit < 31 else -(1 << 31)
        report = snap.verify(model)
        assert report.changed == ["net/backbone/dense/kernel"], bit
        assert [f.code for f in report.findings] == ["PG101"] + ["PG102"] * 2  # the head never trained
        with torch.no_grad():
            words[5] ^= 1 << bit if bit < 31 else -(1 << 31)
        assert snap.verify(model).changed == []


def test_signed_zeros_count_and_fingerprinting_changes_nothing():
    model, backbone, _ = build_net()
    backbone.trainable = False
    bias = backbone.get_layer("dense").bias
    bias.assign(np.zeros(8, "float32"))
    snap = paramgate.snapshot(model)
    flags = [(v.trainable, v.value.requires_grad) for v in model.weights]
    raw = [_raw(v) for v in model.weights]
    rng = torch.get_rng_state()
    for _ in range(2):
        paramgate.snapshot(model)
    assert [(v.trainable, v.value.requires_grad) for v in model.weights] == flags
    assert [_raw(v) for v in model.weights] == raw
    assert torch.equal(torch.get_rng_state(), rng)
    bias.assign(np.full(8, -0.0, "float32"))  # equal values, other bits
    assert snap.verify(model).changed == ["net/backbone/dense/bias"]


def test_names_and_roles_survive_the_snapshot():
    model, backbone, _ = build_net()
    backbone.trainable = False
    snap = paramgate.snapshot(model)
    assert [p.name for p in snap.prints] == BACKBONE + STATISTICS + HEAD
    assert [p.role for p in snap.prints] == ["frozen"] * 4 + ["state"] * 2 + ["trainable"] * 2

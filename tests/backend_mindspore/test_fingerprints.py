"""MindSpore fingerprints: zero-copy host hashing, and pgmix64x2 in MindSpore ops against the specification."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from msnets import frozen_net, train_cell

import paramgate
import paramgate_mindspore.hashing as hashing
from paramgate.fingerprint import fingerprint_buffer, pgmix_reference
from paramgate_mindspore.adapter import MindSporeAdapter


def _bytes(t):
    return t.asnumpy().reshape(-1).view(np.uint8).tobytes()


DTYPES = [ms.float32, ms.float16, ms.bfloat16, ms.float64, ms.int8, ms.uint8, ms.int32, ms.int64, ms.bool_]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [0, 1, 3, 5, 17])
def test_device_digest_matches_the_specification(dtype, n):
    values = np.random.default_rng(n).standard_normal(n) * 100
    t = ms.Tensor(values.astype(np.float32)).astype(dtype) if n else ms.Tensor(np.zeros(0, np.float32)).astype(dtype)
    assert hashing.device_fingerprint(t) == pgmix_reference(_bytes(t))


def test_device_digest_of_0d_2d_and_complex_tensors():
    for scalar in (ms.Tensor(np.float32(-0.0)), ms.Tensor(np.int8(-3)), ms.Tensor(True)):
        assert hashing.device_fingerprint(scalar) == pgmix_reference(_bytes(scalar))
    grid = ms.Tensor(np.arange(15, dtype=np.float16).reshape(3, 5))
    assert hashing.device_fingerprint(grid) == pgmix_reference(_bytes(grid))
    column = ms.Tensor(np.arange(15, dtype=np.float32).reshape(3, 5))[:, 1]  # a strided view
    assert hashing.device_fingerprint(column) == pgmix_reference(np.arange(1, 15, 5, dtype=np.float32).tobytes())
    z = ms.Tensor(np.array([1 + 2j, -0.0 - 1j], np.complex64))
    assert hashing.device_fingerprint(z) == pgmix_reference(_bytes(z))


def test_device_digest_over_chunks_equals_one_pass(monkeypatch):
    t = ms.Tensor(np.arange(37, dtype=np.uint8))  # 9 whole words and a 1-byte tail
    whole = hashing.device_fingerprint(t)
    monkeypatch.setattr(hashing, "CHUNK_WORDS", 2)
    assert hashing.device_fingerprint(t) == whole == pgmix_reference(_bytes(t))


def test_every_single_bit_flip_changes_both_digests():
    base = np.array([0.0, -0.0, 1.5, np.nan, np.inf, -2.25, 1e-38, 3.0], np.float32)
    host0 = fingerprint_buffer(base.view(np.uint8))
    dev0 = hashing.device_fingerprint(ms.Tensor(base))
    for byte in range(base.nbytes):
        for bit in range(8):
            flipped = base.copy()
            flipped.view(np.uint8)[byte] ^= np.uint8(1 << bit)
            t = ms.Tensor(flipped)
            assert hashing.device_fingerprint(t) != dev0, (byte, bit)
            assert MindSporeAdapter().fingerprint(_entry(t)) != host0, (byte, bit)


def _entry(t):
    p = ms.Parameter(t, name="w", requires_grad=False)
    return next(iter(MindSporeAdapter().parameters([p])))


def test_host_fingerprint_reads_the_parameters_own_memory_after_graph_training():
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        net = frozen_net()
        opt = nn.Momentum(paramgate.trainable(net), learning_rate=0.1, momentum=0.9)
        train_cell(net, opt, 2)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    for p in net.get_parameters():
        view = p.asnumpy()
        # Zero-copy: the array the adapter hashes is the parameter's own memory.
        assert view.ctypes.data == p.data_ptr(), p.name
        assert MindSporeAdapter().fingerprint(_entry(p)) == fingerprint_buffer(view.reshape(-1).view(np.uint8))


def test_a_sign_flip_of_zero_and_a_nan_payload_are_changes():
    net = frozen_net()
    bias = net.backbone[0].bias
    snap = paramgate.snapshot(net)
    data = bias.asnumpy()
    data.reshape(-1).view(np.uint32)[0] ^= np.uint32(0x80000000)  # +0.0 -> -0.0: equal values, other bits
    assert [f.name for f in snap.verify(net).findings if f.code == "PG101"] == ["backbone.0.bias"]
    data.reshape(-1).view(np.uint32)[0] = 0x7FC00001  # a NaN
    snap = paramgate.snapshot(net)
    data.reshape(-1).view(np.uint32)[0] = 0x7FC00002  # another NaN payload
    assert [f.name for f in snap.verify(net).findings if f.code == "PG101"] == ["backbone.0.bias"]


@pytest.fixture
def device_path(monkeypatch):
    """Hash CPU parameters with the device code, as an Ascend or GPU parameter would be."""
    monkeypatch.setattr(MindSporeAdapter, "host_devices", frozenset())


@pytest.mark.usefixtures("device_path")
def test_the_field_scenario_on_the_device_path():
    net = frozen_net()
    opt = nn.Momentum(net.get_parameters(), learning_rate=0.01, momentum=0.9, weight_decay=0.01)
    snap = paramgate.snapshot(net, opt)
    assert {p.fingerprint.algorithm for p in snap.prints} == {"pgmix64x2"}
    from msnets import train

    train(net, opt, 2, backbone_eval=True)
    verdict = snap.verify(net)
    assert "backbone.0.weight" in verdict.changed and "backbone.1.gamma" not in verdict.changed


def test_moving_from_device_to_host_digest_is_pg106_not_pg101(monkeypatch):
    net = frozen_net()
    monkeypatch.setattr(MindSporeAdapter, "host_devices", frozenset())
    snap = paramgate.snapshot(net)
    monkeypatch.setattr(MindSporeAdapter, "host_devices", frozenset({"CPU"}))
    verdict = snap.verify(net)
    assert verdict.ok and "PG101" not in [f.code for f in verdict.findings]
    assert "PG106" in [f.code for f in verdict.findings]

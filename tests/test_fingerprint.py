"""Fingerprints: every flipped bit is caught, nothing is copied, threads change nothing."""

from __future__ import annotations

import dataclasses
import importlib
import io
import itertools
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _helpers import AdapterPlugin, flip_bit

import paramgate
from paramgate.fingerprint import fingerprint_buffer, pgmix_reference
from paramgate_numpy import Momentum, Parameter
from paramgate_numpy.adapter import NumpyAdapter

fp_module = importlib.import_module("paramgate.fingerprint")
snapshot_module = importlib.import_module("paramgate.snapshot")  # paramgate.snapshot is also a function
DTYPES = [np.float64, np.float32, np.float16, np.int8, np.uint64, np.bool_, np.complex64, np.complex128]


def _array(dtype, n=6):
    rng = np.random.default_rng(0)
    if dtype is np.bool_:
        return rng.random(n) > 0.5
    return (rng.standard_normal(n) * 100).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_single_bit_flip_of_a_frozen_parameter_is_caught(dtype):
    frozen = Parameter(_array(dtype), "backbone.w", requires_grad=False)
    model = [frozen, Parameter(np.ones(2), "head.w")]
    snap = paramgate.snapshot(model)
    for byte, bit in itertools.product(range(frozen.data.nbytes), range(8)):
        flip_bit(frozen.data, byte, bit)
        assert snap.verify(model).changed == ["backbone.w"], (byte, bit)
        flip_bit(frozen.data, byte, bit)  # back to the original bits
    assert snap.verify(model).changed == []


def test_bit_63_flips_in_two_words_do_not_cancel():
    # The counterexample that breaks a linear sum-of-products hash.
    words = np.arange(1, 9, dtype=np.uint64)
    before, before_mix = fingerprint_buffer(words), pgmix_reference(words)
    words[[2, 5]] ^= np.uint64(1 << 63)
    assert fingerprint_buffer(words) != before
    assert pgmix_reference(words) != before_mix


def test_nan_payload_and_negative_zero_are_bits():
    a = np.array([np.nan, 0.0], np.float32)
    before = fingerprint_buffer(a)
    assert fingerprint_buffer(a.copy()) == before  # the same NaN is the same bits
    a.view(np.uint32)[0] ^= 1  # another NaN payload
    assert np.isnan(a[0]) and fingerprint_buffer(a) != before
    b = np.array([0.0], np.float32)
    assert fingerprint_buffer(b) != fingerprint_buffer(np.array([-0.0], np.float32))


def test_chunked_digest_does_not_depend_on_threads(monkeypatch):
    monkeypatch.setattr(fp_module, "CHUNK_BYTES", 64)
    data = np.random.default_rng(1).integers(0, 255, 1000, dtype=np.uint8)
    alone = fingerprint_buffer(data)
    with ThreadPoolExecutor(3) as pool:
        token = fp_module.use_pool(pool)
        try:
            pooled = fingerprint_buffer(data)
        finally:
            fp_module.reset_pool(token)
    assert alone == pooled and alone.nbytes == 1000
    for byte in (0, 63, 64, 999):  # first and last byte of chunks, and of the buffer
        flip_bit(data, byte, 7)
        assert fingerprint_buffer(data) != alone
        flip_bit(data, byte, 7)


def test_threaded_snapshot_equals_single_threaded(monkeypatch):
    monkeypatch.setattr(snapshot_module, "THREAD_MIN_BYTES", 8)
    monkeypatch.setattr(snapshot_module, "CHUNK_BYTES", 256)
    monkeypatch.setattr(fp_module, "CHUNK_BYTES", 256)
    rng = np.random.default_rng(2)
    model = [Parameter(rng.standard_normal(n), f"w{i}", requires_grad=False) for i, n in enumerate([3, 20, 40, 90])]
    one = paramgate.snapshot(model, threads=1)
    two = paramgate.snapshot(model, threads=2)
    assert [p.fingerprint for p in one.prints] == [p.fingerprint for p in two.prints]
    flip_bit(model[3].data, 700, 0)  # in the last chunk of the biggest tensor
    assert two.verify(model).changed == ["w3"]


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_refused(seed_model, threads):
    with pytest.raises(paramgate.InvalidArgumentError, match="threads: expected a positive int"):
        paramgate.snapshot(seed_model, threads=threads)


def test_non_contiguous_arrays_are_hashed_by_their_elements():
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    view = Parameter(base.T, "backbone.w", requires_grad=False)  # a transposed view, not contiguous
    model = [view, Parameter(np.ones(2), "head.w")]
    snap = paramgate.snapshot(model)
    assert snap.prints[0].fingerprint == fingerprint_buffer(np.ascontiguousarray(base.T))
    base[2, 1] = -0.0 if base[2, 1] else 1.0
    assert snap.verify(model).changed == ["backbone.w"]


def test_a_snapshot_keeps_digests_not_copies():
    model = [Parameter(np.ones(8 << 20, np.uint8), f"w{i}", requires_grad=False) for i in range(4)]
    model.append(Parameter(np.ones(2), "head.w"))
    tracemalloc.start()
    try:
        snap = paramgate.snapshot(model)
        report = snap.verify(model)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok
    assert peak < 256 << 10, f"snapshot and verify of 32 MiB allocated {peak} bytes"


# pgmix64x2, the device digest, through its NumPy specification.


def test_pgmix_catches_every_single_bit_flip_swap_and_sign_flip():
    data = (np.random.default_rng(3).standard_normal(9) * 10).astype(np.float32)
    base = pgmix_reference(data)
    seen = {base.digest}
    for byte, bit in itertools.product(range(data.nbytes), range(8)):
        flipped = data.copy()
        flip_bit(flipped, byte, bit)
        seen.add(pgmix_reference(flipped).digest)
    assert len(seen) == 1 + data.nbytes * 8  # every flip detected, and no two flips collide
    for i, j in itertools.combinations(range(len(data)), 2):
        swapped = data.copy()
        swapped[[i, j]] = swapped[[j, i]]
        assert pgmix_reference(swapped) != base
    assert pgmix_reference(-data) != base
    assert pgmix_reference(np.float32([0.0])) != pgmix_reference(np.float32([-0.0]))


@pytest.mark.parametrize("size", range(0, 10))
def test_pgmix_tail_bytes_and_length_count(size):
    data = np.arange(size, dtype=np.uint8) + 1
    digest = pgmix_reference(data)
    assert digest.nbytes == size and digest.algorithm == "pgmix64x2"
    longer = np.concatenate([data, np.zeros(1, np.uint8)])  # same words once padded: the length tells them apart
    assert pgmix_reference(longer) != digest


def test_pgmix_blocks_get_their_own_seeds(monkeypatch):
    monkeypatch.setattr(fp_module, "PGMIX_BLOCK_WORDS", 2)
    a = np.array([7, 0, 0, 0], np.uint32)
    b = np.array([0, 0, 7, 0], np.uint32)  # the same word at the same index within the next block
    assert pgmix_reference(a) != pgmix_reference(b)


# What changes between snapshot and verify.


def test_a_tensor_hashed_by_another_algorithm_is_pg106_not_pg101(seed_model):
    class DeviceNumpy(NumpyAdapter):
        """The same arrays, hashed as if they lived on a device."""

        def fingerprint(self, entry):
            data = entry.obj["data"] if isinstance(entry.obj, dict) else entry.obj.data
            return pgmix_reference(np.ascontiguousarray(data).reshape(-1).view(np.uint8))

    snap = paramgate.snapshot(seed_model)
    pm = paramgate.ParamGatePluginManager()
    pm.register(AdapterPlugin(DeviceNumpy), name="device-numpy")
    moved = paramgate.Snapshot(snap.framework, snap.prints, pm)
    report = moved.verify(seed_model)
    assert report.ok and report.codes() == ["PG106"] * 4
    assert "moved between host and device memory" in report.findings[0].message


def test_fingerprints_record_their_algorithm(seed_model):
    snap = paramgate.snapshot(seed_model)
    assert {p.fingerprint.algorithm for p in snap.prints} == {"xxh3-128"} and snap.digest == "xxh3-128"
    assert dataclasses.replace(snap.prints[0].fingerprint, algorithm="other") != snap.prints[0].fingerprint


# The progress bar.


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("interactive", [True, False])
def test_progress_bar_only_on_an_interactive_terminal_over_the_threshold(monkeypatch, seed_model, interactive):
    stream = _Terminal() if interactive else io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr(snapshot_module, "PROGRESS_MIN_BYTES", 1)
    paramgate.snapshot(seed_model).verify(seed_model)
    if interactive:
        assert "paramgate: fingerprinting" in stream.getvalue() and "100%" in stream.getvalue()
    else:
        assert stream.getvalue() == ""
    monkeypatch.setattr(snapshot_module, "PROGRESS_MIN_BYTES", 1 << 30)
    stream.truncate(0)
    paramgate.snapshot(seed_model)
    assert stream.getvalue() == ""


# Checking while training: every N steps, or a rolling slice per step.


def _training(seed_model):
    params = paramgate.trainable(seed_model)
    return Momentum(params, learning_rate=0.01, momentum=0.9)


def test_guard_every_n_steps_raises_at_the_first_check_after_the_change(seed_model):
    opt = _training(seed_model)
    grads = [np.ones_like(p["data"]) for p in opt.parameters]
    gate = paramgate.guard(seed_model, opt, every=3)
    with pytest.raises(paramgate.FrozenParameterChanged) as info, gate:  # noqa: PT012 - the loop is the scenario
        for step in range(1, 10):
            opt(grads)
            if step == 4:
                seed_model[1]["data"][5] += 1.0  # something writes to the frozen bias
            report = gate.step()
            assert (report is not None) == (step % 3 == 0)
    assert gate.steps == 6 and info.value.report.changed == ["backbone.conv1.bias"]
    assert gate.last_check is info.value.report and gate.last_check.checked == 2


def test_guard_rolling_covers_every_frozen_tensor_within_k_steps(seed_model):
    extra = [Parameter(np.full(n, 1.0), f"backbone.extra{n}", requires_grad=False) for n in (10, 200, 3000)]
    model = [*seed_model, *extra]
    opt = _training(model)
    compared = []
    with paramgate.guard(model, opt, rolling=2) as gate:
        for _ in range(4):
            report = gate.step()
            assert report is not None and report.ok
            compared.append(report.checked)
    frozen = [p for p in gate.snapshot.prints if p.role == "frozen"]
    assert len(frozen) == 5
    assert compared[0] + compared[1] == 5 and compared[:2] == compared[2:]  # two slices, every frozen tensor once
    assert gate.report is not None and gate.report.ok


def test_guard_rolling_catches_a_change_within_k_steps(seed_model):
    opt = _training(seed_model)
    gate = paramgate.guard(seed_model, opt, rolling=2)
    with pytest.raises(paramgate.FrozenParameterChanged), gate:  # noqa: PT012 - within two steps, whichever
        seed_model[0]["data"][0, 0, 0, 0] = 7.0
        for _ in range(2):
            gate.step()
    assert gate.report is None, "the exit check caught it, not a step"
    assert gate.steps <= 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"every": 0}, "every: expected a positive number of steps"),
        ({"rolling": -2}, "rolling: expected a positive number of steps"),
        ({"every": True}, "every: expected a positive number of steps"),
        ({"every": 2, "rolling": 2}, "every and rolling: choose one"),
        ({"threads": 0}, "threads: expected a positive int"),
    ],
)
def test_guard_arguments_are_checked(seed_model, kwargs, message):
    with pytest.raises(paramgate.InvalidArgumentError, match=message):
        paramgate.guard(seed_model, **kwargs)


def test_guard_step_outside_the_block_is_a_state_error(seed_model):
    gate = paramgate.guard(seed_model, every=1)
    with pytest.raises(paramgate.GuardStateError, match="inside the guard's with block"):
        gate.step()
    with gate:
        assert gate.step() is not None
    with pytest.raises(paramgate.GuardStateError):
        gate.step()
    with pytest.raises(paramgate.GuardStateError, match="only once"), gate:
        pass


def test_checks_between_steps_show_no_progress_bar(monkeypatch, seed_model):
    stream = _Terminal()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr(snapshot_module, "PROGRESS_MIN_BYTES", 1)
    with paramgate.guard(seed_model, every=1) as gate:
        stream.truncate(0)
        stream.seek(0)
        gate.step()
        assert stream.getvalue() == ""
    assert "100%" in stream.getvalue()  # the full verify on exit shows it

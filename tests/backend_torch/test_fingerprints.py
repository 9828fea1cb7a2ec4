"""Torch fingerprints: the host path and the device path, which runs on CPU tensors here."""

from __future__ import annotations

import importlib
import itertools

import pytest
import torch
from _helpers import AdapterPlugin
from torch import nn
from torchnets import flip_bit, net, raw, train

import paramgate
from paramgate.fingerprint import fingerprint_buffer, pgmix_reference
from paramgate_torch.adapter import TorchAdapter
from paramgate_torch.hashing import device_fingerprint

hashing = importlib.import_module("paramgate_torch.hashing")
fp_module = importlib.import_module("paramgate.fingerprint")

DTYPES = [
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
    torch.int8,
    torch.int64,
    torch.bool,
    torch.complex64,
]


def _tensor(dtype, n=5):
    g = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        return torch.randint(0, 2, (n,), generator=g).bool()
    if dtype in (torch.int8, torch.int64):
        return torch.randint(-100, 100, (n,), generator=g).to(dtype)
    return (torch.randn(n, generator=g) * 10).to(dtype)


class OnDevice(TorchAdapter):
    """The torch adapter with every tensor taking the device path, as CUDA tensors do."""

    host_devices = frozenset()


def device_plugins():
    pm = paramgate.ParamGatePluginManager()
    pm.register(AdapterPlugin(OnDevice), name="torch-on-device")
    return pm


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", [1, 2, 3, 7, 64])
def test_device_path_matches_the_specification(dtype, n):
    t = _tensor(dtype, n)
    assert device_fingerprint(t) == pgmix_reference(raw(t))


def test_device_path_over_chunks_blocks_and_odd_views(monkeypatch):
    t = torch.randn(1000)
    expected = pgmix_reference(raw(t))
    monkeypatch.setattr(hashing, "CHUNK_WORDS", 64)  # many chunks, a short last one
    assert device_fingerprint(t) == expected
    monkeypatch.setattr(hashing, "PGMIX_BLOCK_WORDS", 256)  # word indices wrap into new blocks
    monkeypatch.setattr(fp_module, "PGMIX_BLOCK_WORDS", 256)
    assert device_fingerprint(t) == pgmix_reference(raw(t)) != expected
    monkeypatch.undo()
    odd = torch.arange(40, dtype=torch.int8)[3:30]  # starts off a word boundary
    assert device_fingerprint(odd) == pgmix_reference(raw(odd))
    transposed = torch.randn(7, 5).t()
    assert device_fingerprint(transposed) == pgmix_reference(raw(transposed))
    assert device_fingerprint(torch.zeros(0)) == pgmix_reference(b"")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_device_path_catches_every_single_bit_flip(dtype):
    t = _tensor(dtype, 3)
    base = device_fingerprint(t)
    for byte, bit in itertools.product(range(t.numel() * t.element_size()), range(8)):
        flipped = t.clone()
        flip_bit(flipped, byte, bit)
        assert device_fingerprint(flipped) != base, (byte, bit)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int8, torch.complex64], ids=str)
def test_device_path_catches_swaps_and_sign_flips(dtype):
    t = _tensor(dtype, 6)
    base = device_fingerprint(t)
    for i, j in itertools.combinations(range(6), 2):
        if torch.equal(t[i].view(-1), t[j].view(-1)):
            continue
        swapped = t.clone()
        swapped[[i, j]] = swapped[[j, i]]
        assert device_fingerprint(swapped) != base, (i, j)
    assert device_fingerprint(-t) != base
    assert device_fingerprint(torch.tensor([0.0])) != device_fingerprint(torch.tensor([-0.0]))


def test_host_path_is_xxh3_over_the_raw_bytes_for_every_dtype():
    adapter = TorchAdapter()
    model = nn.Module()
    for i, dtype in enumerate(DTYPES):
        model.register_parameter(f"w{i}", nn.Parameter(_tensor(dtype), requires_grad=False))
    entries = list(adapter.parameters(model))
    for entry in entries:
        assert adapter.fingerprint(entry) == fingerprint_buffer(raw(entry.obj))
        assert entry.nbytes == entry.obj.nbytes


def test_field_scenarios_hold_on_the_device_path():
    pm = device_plugins()
    model = net()
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    optimizer = torch.optim.SGD(paramgate.trainable(model), lr=0.1)
    with paramgate.guard(model, optimizer, plugins=pm) as gate:
        train(model, optimizer)
    assert gate.report is not None and gate.report.findings == ()
    assert {p.fingerprint.algorithm for p in gate.snapshot.prints} == {"pgmix64x2"}

    snap = paramgate.snapshot(model, plugins=pm)
    flip_bit(model.backbone[0].weight, 5, 7)
    assert snap.verify(model).changed == ["backbone.0.weight"]


def test_moving_between_host_and_device_is_pg106():
    model = net()
    model.backbone.requires_grad_(False)
    on_host = paramgate.snapshot(model)
    on_device = paramgate.Snapshot(on_host.framework, on_host.prints, device_plugins())
    report = on_device.verify(model)
    assert report.ok and set(report.codes()) == {"PG106"}


@pytest.mark.parametrize("on_device", [False, True], ids=["host", "device"])
def test_guard_every_and_rolling_on_a_torch_loop(on_device):
    pm = device_plugins() if on_device else None
    model = net()
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    optimizer = torch.optim.SGD(paramgate.trainable(model), lr=0.1)
    with paramgate.guard(model, optimizer, rolling=3, plugins=pm) as gate:
        for _ in range(3):
            train(model, optimizer, steps=1)
            assert gate.step().ok
    gate = paramgate.guard(model, optimizer, every=2, plugins=pm)
    with pytest.raises(paramgate.FrozenParameterChanged) as info, gate:  # noqa: PT012 - a loop is the scenario
        for step in range(4):
            train(model, optimizer, steps=1)
            if step == 2:
                with torch.no_grad():
                    model.backbone[1].weight.mul_(0.5)
            gate.step()
    assert gate.steps == 4 and info.value.report.changed == ["backbone.1.weight"] and gate.report is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's own compile stack
def test_compiled_device_path_gives_the_same_digest(monkeypatch):
    # torch.compile fuses each chunk into one kernel (on the CPU here, through the C++ backend).
    monkeypatch.setattr(hashing, "CHUNK_WORDS", 256)  # several chunks of two lengths: dynamic shapes
    tensors = [torch.randn(1000), torch.arange(7, dtype=torch.int8), torch.randn(9, 3).t().to(torch.bfloat16)]
    for t in tensors:
        assert device_fingerprint(t, compiled=True) == device_fingerprint(t) == pgmix_reference(raw(t))
    monkeypatch.setenv("PARAMGATE_TORCH_COMPILE", "1")
    assert device_fingerprint(tensors[0]) == pgmix_reference(raw(tensors[0]))


def test_threaded_fingerprints_equal_single_threaded_and_keep_nothing():
    import gc
    import weakref

    model = nn.Module()
    model.big = nn.ParameterList(
        nn.Parameter(torch.full((3 << 20,), float(i)), requires_grad=False) for i in range(8)
    )  # 8 x 12 MiB: enough work for the pool
    model.head = nn.Linear(4, 2)
    rng = torch.get_rng_state()
    one = paramgate.snapshot(model, threads=1)
    two = paramgate.snapshot(model, threads=2)
    assert [p.fingerprint for p in one.prints] == [p.fingerprint for p in two.prints]
    flip_bit(model.big[5], 7 << 20, 1)
    assert two.verify(model).changed == ["big.5"]
    assert torch.equal(torch.get_rng_state(), rng)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_host_path_catches_every_single_bit_flip_in_a_frozen_parameter(dtype):
    model = nn.Module()
    model.w = nn.Parameter(_tensor(dtype, 3), requires_grad=False)
    model.head = nn.Linear(2, 1)
    snap = paramgate.snapshot(model)
    for byte, bit in itertools.product(range(model.w.nbytes), range(8)):
        flip_bit(model.w, byte, bit)
        assert snap.verify(model).changed == ["w"], (byte, bit)
        flip_bit(model.w, byte, bit)
    assert snap.verify(model).changed == []

"""JAX fingerprints: the zero-copy host path, and the device path, which runs on CPU arrays here."""

from __future__ import annotations

import importlib
import itertools
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _helpers import AdapterPlugin
from backend_jax.jaxnets import flip_bit, mlp, raw, train

import paramgate
from paramgate.fingerprint import fingerprint_buffer, pgmix_reference
from paramgate_jax.adapter import JaxAdapter, _host_view
from paramgate_jax.hashing import device_fingerprint

hashing = importlib.import_module("paramgate_jax.hashing")
fp_module = importlib.import_module("paramgate.fingerprint")

DTYPES = [
    jnp.float32,
    jnp.bfloat16,
    jnp.float16,
    jnp.float8_e4m3fn,
    jnp.int8,
    jnp.uint8,
    jnp.int32,
    jnp.bool_,
    jnp.complex64,
]
FROZEN_BACKBONE = {"backbone": False, "head": True}


def _array(dtype, n=5):
    rng = np.random.default_rng(0)
    if dtype == jnp.bool_:
        return jnp.asarray(rng.integers(0, 2, n).astype(bool))
    if jnp.issubdtype(dtype, jnp.integer):
        return jnp.asarray(rng.integers(-100, 100, n)).astype(dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return jnp.asarray(rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dtype)
    return jnp.asarray(rng.standard_normal(n) * 10).astype(dtype)


class OnDevice(JaxAdapter):
    """The JAX adapter with every array taking the device path, as GPU and TPU arrays do."""

    host_platforms = frozenset()


def device_plugins():
    pm = paramgate.ParamGatePluginManager()
    pm.register(AdapterPlugin(OnDevice), name="jax-on-device")
    return pm


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
def test_device_path_matches_the_specification(dtype):
    for n in (1, 2, 3, 7, 64):
        x = _array(dtype, n)
        assert device_fingerprint(x) == pgmix_reference(raw(x)), n
    for x in (jnp.zeros((0,), dtype), jnp.zeros((2, 0, 3), dtype), _array(dtype, 1).reshape(())):
        assert device_fingerprint(x) == pgmix_reference(raw(x)), x.shape


def test_device_path_over_chunks_blocks_and_shapes(monkeypatch):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((10, 100)), jnp.float32)
    expected = pgmix_reference(raw(x))
    monkeypatch.setattr(hashing, "CHUNK_WORDS", 64)  # many chunks, a short last one
    assert device_fingerprint(x) == expected
    monkeypatch.setattr(hashing, "PGMIX_BLOCK_WORDS", 256)  # word indices wrap into new blocks
    monkeypatch.setattr(fp_module, "PGMIX_BLOCK_WORDS", 256)
    assert device_fingerprint(x) == pgmix_reference(raw(x)) != expected
    odd = jnp.arange(27, dtype=jnp.int8)  # a tail of three bytes, in the last of several chunks
    assert device_fingerprint(odd) == pgmix_reference(raw(odd))
    monkeypatch.undo()
    assert device_fingerprint(x.T) == pgmix_reference(raw(x.T))  # a transposed array: its own row-major bytes


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.int8, jnp.complex64], ids=lambda d: jnp.dtype(d).name)
def test_device_path_catches_every_single_bit_flip(dtype):
    # bool is left out: a byte other than 0 or 1 is not a bool jax keeps.
    x = _array(dtype, 3)
    base = device_fingerprint(x)
    for byte, bit in itertools.product(range(x.nbytes), range(8)):
        assert device_fingerprint(flip_bit(x, byte, bit)) != base, (byte, bit)
    assert device_fingerprint(jnp.array([0.0])) != device_fingerprint(jnp.array([-0.0]))
    swapped = x[jnp.array([1, 0, 2])]
    assert device_fingerprint(swapped) != base


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
def test_host_path_is_a_zero_copy_view_hashed_with_xxh3(dtype):
    x = _array(dtype, 6).reshape(2, 3)
    view = _host_view(x)
    assert view is not None
    # The very buffer jax holds: np.asarray on a CPU array does not copy, and _host_view checks it.
    assert np.frombuffer(view, np.uint8).ctypes.data == x.unsafe_buffer_pointer()
    entry = next(iter(JaxAdapter().parameters({"w": x})))
    assert JaxAdapter().fingerprint(entry) == fingerprint_buffer(raw(x))


def test_keys_and_numpy_leaves_are_fingerprinted_by_their_bits():
    key = jax.random.key(0)
    params = {"rng": key, "table": np.arange(3.0), "w": jnp.ones(2)}
    entries = {e.name: e for e in JaxAdapter().parameters(params)}
    assert (entries["rng"].kind, entries["rng"].role) == ("buffer", "state")
    assert JaxAdapter().fingerprint(entries["rng"]) == fingerprint_buffer(raw(jax.random.key_data(key)))
    assert JaxAdapter().fingerprint(entries["table"]) == fingerprint_buffer(raw(params["table"]))
    assert OnDevice().fingerprint(entries["rng"]) == pgmix_reference(raw(jax.random.key_data(key)))


def test_field_scenarios_hold_on_the_device_path():
    pm = device_plugins()
    params = mlp()
    tx = optax.masked(optax.adamw(1e-2), FROZEN_BACKBONE)
    snap = paramgate.snapshot(params, tx, trainable=FROZEN_BACKBONE, plugins=pm)
    assert {p.fingerprint.algorithm for p in snap.prints} == {"pgmix64x2"}
    assert set(snap.verify(train(params, tx)).changed) == {"backbone.dense.kernel", "backbone.dense.bias"}
    recipe = optax.multi_transform(
        {"trainable": optax.sgd(0.1), "frozen": optax.set_to_zero()}, {"backbone": "frozen", "head": "trainable"}
    )
    snap = paramgate.snapshot(params, recipe, trainable=FROZEN_BACKBONE, plugins=pm)
    assert snap.verify(train(params, recipe)).findings == ()


def test_moving_between_host_and_device_is_pg106():
    params = mlp()
    on_host = paramgate.snapshot(params, trainable=FROZEN_BACKBONE)
    on_device = paramgate.Snapshot(on_host.framework, on_host.prints, device_plugins())
    report = on_device.verify(params)
    assert report.ok and set(report.codes()) == {"PG106"}


def test_an_array_sharded_over_two_devices_is_hashed_where_it_lives(tmp_path):
    # Two CPU devices stand in for two accelerators; the flag must be set before jax starts.
    script = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec
        import paramgate
        from paramgate.fingerprint import pgmix_reference
        from paramgate_jax.adapter import JaxAdapter

        mesh = jax.make_mesh((2,), ("x",))
        x = jax.device_put(jnp.arange(24, dtype=jnp.float32).reshape(6, 4), NamedSharding(mesh, PartitionSpec("x")))
        assert len(x.sharding.device_set) == 2
        entry = next(iter(JaxAdapter().parameters({"w": x})))
        assert JaxAdapter().fingerprint(entry) == pgmix_reference(np.asarray(x).tobytes())
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr

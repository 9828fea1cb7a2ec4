"""``paramgate demo --framework jax`` and the plugin's entry point."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest
from _helpers import demo_json, framework_neutral

import paramgate
from paramgate.cli import main


def test_jax_demo_audit_equals_the_numpy_demo_audit():
    code_np, numpy_run = demo_json("numpy")
    code_jax, jax_run = demo_json("jax")
    assert code_np == code_jax == 0
    assert jax_run["audit"]["framework"] == "jax" and jax_run["audit"]["optimizer"]["type"] == "Optimizer"
    assert framework_neutral(jax_run["audit"]) == framework_neutral(numpy_run["audit"])
    assert jax_run["invariance"]["findings"] == numpy_run["invariance"]["findings"] == []


def test_jax_demo_buggy_is_caught_before_and_after():
    code, run = demo_json("jax", buggy=True)
    assert code == 1
    assert [(f["code"], f["severity"], f["name"]) for f in run["audit"]["findings"]] == [
        ("PG001", "error", "backbone.conv1.weight"),
        ("PG001", "error", "backbone.conv1.bias"),
    ]
    assert [f["name"] for f in run["invariance"]["findings"] if f["code"] == "PG101"] == [
        "backbone.conv1.weight",
        "backbone.conv1.bias",
    ]


def test_cli_replays_the_walkthrough(capsys):
    assert main(["demo", "--framework", "jax", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "paramgate demo (jax)" in out and "wrt=Selected([head.dense.weight, head.dense.bias])" in out
    assert "The optimizer only saw the head; the frozen backbone kept every bit." in out


def test_demo_kit_without_jax_names_the_install(monkeypatch):
    from paramgate_jax import plugin

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "optax" else real(name, *a))
    with pytest.raises(
        paramgate.FactoryError, match=r'optax is not installed; install them with pip install "paramgate\[jax\]"'
    ):
        plugin.paramgate_demo_kit(framework="jax")
    assert plugin.paramgate_demo_kit(framework="numpy") is None


def test_the_adapter_modules_import_no_framework(tmp_path):
    # Stand-in packages that record being imported, as in tests/test_imports.py.
    log = tmp_path / "imported.log"
    for name in ("jax", "jaxlib", "flax", "optax"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"open({str(log)!r}, 'a').write({name!r} + '\\n')\n")
    script = textwrap.dedent(
        """
        import paramgate_jax, paramgate_jax.adapter, paramgate_jax.demo, paramgate_jax.hashing
        import paramgate_jax.plugin, paramgate_jax.probe, paramgate_jax.tree
        adapter = paramgate_jax.adapter.JaxAdapter()
        assert not adapter.owns_model({"w": [1.0]}) and not adapter.owns_optimizer([])
        assert paramgate_jax.plugin.paramgate_demo_kit(framework="numpy") is None
        """
    )
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not log.exists(), log.read_text()

"""The command line: demo, audit, plugins, exit codes."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

from paramgate.cli import main

SEED_ZH = ["开始筛选需要训练的参数", "已加入待训练列表。", "已被冻结。", "筛选完成！"]


def test_demo_tells_the_seed_story(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for line in [
        "Checking parameter: backbone.conv1.weight     | requires_grad? -> False",
        "  └─ SKIPPED! Frozen.",
        "Checking parameter: head.dense.weight         | requires_grad? -> True",
        "  └─ PASSED! Added to the list to train.",
        "Filtering done!",
        "opt = Momentum([head.dense.weight, head.dense.bias], learning_rate=0.01, momentum=0.9",
        "every frozen parameter is bit-for-bit unchanged",
    ]:
        assert line in out
    verdict = out[out.index("6. Verdict") :]
    assert "backbone.conv1.weight  frozen     unchanged" in verdict
    assert "head.dense.weight      trainable  changed" in verdict
    assert "backbone.conv1.weight  [64, 3, 3, 3]" in out and "head.dense.bias        [2]" in out


def test_demo_in_chinese_uses_the_seeds_own_lines(capsys):
    assert main(["demo", "--lang", "zh"]) == 0
    out = capsys.readouterr().out
    for line in SEED_ZH:
        assert line in out
    assert "检查参数: backbone.conv1.weight     | requires_grad? -> False" in out


def test_demo_buggy_shows_pg001_then_pg101(capsys):
    assert main(["demo", "--buggy"]) == 1
    out = capsys.readouterr().out
    assert out.index("ERROR PG001 backbone.conv1.weight") < out.index("5. Training")
    assert out.index("5. Training") < out.index("ERROR PG101 backbone.conv1.weight")
    assert "backbone.conv1.weight  frozen     changed" in out


def test_demo_json(capsys):
    assert main(["demo", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["audit"]["schema"] == "paramgate.audit" and data["audit"]["ok"] is True
    assert [p["name"] for p in data["audit"]["params"] if p["in_optimizer"]] == ["head.dense.weight", "head.dense.bias"]
    assert data["invariance"]["ok"] is True and data["invariance"]["findings"] == []
    assert main(["demo", "--json", "--buggy"]) == 1
    buggy = json.loads(capsys.readouterr().out)
    assert {f["code"] for f in buggy["audit"]["findings"]} == {"PG001"}
    assert [f["name"] for f in buggy["invariance"]["findings"]] == ["backbone.conv1.weight"]


def test_demo_unknown_framework_is_usage_error(capsys):
    assert main(["demo", "--framework", "tensorflow"]) == 2
    assert "no installed adapter provides a demo for it" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed here")
def test_torch_demo_without_torch_says_how_to_install_it(capsys):
    assert main(["demo", "--framework", "torch"]) == 2
    assert 'torch is not installed; install it with pip install "paramgate[torch]"' in capsys.readouterr().err


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "myfactories.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            import paramgate
            from paramgate_numpy import Momentum, Parameter

            def model():
                return [Parameter(np.zeros(3), "backbone.w", requires_grad=False), Parameter(np.ones(2), "head.w")]

            def clean():
                m = model()
                return m, Momentum(paramgate.trainable(m), learning_rate=0.1, momentum=0.9)

            def buggy():
                m = model()
                return m, Momentum(m, learning_rate=0.1, momentum=0.9, weight_decay=0.01)

            def model_only():
                return model()

            def not_a_model():
                return "checkpoints/model.ckpt"

            def raises():
                raise RuntimeError("no GPU")

            VALUE = 3
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    sys.modules.pop("myfactories", None)


def test_audit_exit_codes(factories, capsys):
    assert main(["audit", "myfactories:clean"]) == 0
    assert "No findings." in capsys.readouterr().out
    assert main(["audit", "myfactories:buggy"]) == 1
    assert "ERROR PG001 backbone.w" in capsys.readouterr().out
    assert main(["audit", "myfactories:model_only"]) == 0
    assert "no optimizer given" in capsys.readouterr().out
    assert main(["audit", str(factories / "myfactories.py") + ":buggy"]) == 1


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchmodule_xyz:build", "no module named 'nosuchmodule_xyz'"),
        ("myfactories:missing", "has no attribute 'missing'"),
        ("myfactories:VALUE", "not a callable factory"),
        ("myfactories:raises", "raised RuntimeError: no GPU"),
        ("myfactories:not_a_model", "not paths"),
        ("nocolon", "expected MODULE:FACTORY"),
        ("missing_file.py:build", "does not exist"),
    ],
)
def test_audit_bad_input_exits_2_with_a_message(factories, capsys, target, message):
    assert main(["audit", target]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paramgate: error: ") and message in err


def test_audit_formats(factories, capsys):
    assert main(["audit", "myfactories:buggy", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["findings"][0]["code"] == "PG001"
    assert main(["audit", "myfactories:buggy", "--format", "markdown"]) == 1
    assert "| error | PG001 | `backbone.w` |" in capsys.readouterr().out
    assert main(["audit", "myfactories:buggy", "--lang", "zh"]) == 1
    assert "冻结参数被交给了优化器" in capsys.readouterr().out


def test_plugins_lists_numpy(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["plugin", "framework", "package", "module", "framework", "version"]
    assert any(line.split()[:2] == ["numpy", "numpy"] and "paramgate_numpy.plugin" in line for line in out.splitlines())


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_console_script_and_module_entry_points():
    for cmd in (["paramgate", "--version"], [sys.executable, "-m", "paramgate", "--version"]):
        if cmd[0] == "paramgate":
            cmd = [str(__import__("pathlib").Path(sys.executable).with_name("paramgate")), "--version"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.startswith("paramgate "), proc.stderr

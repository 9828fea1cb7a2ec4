"""Importing paramgate, loading plugins and auditing NumPy imports no framework."""

from __future__ import annotations

import subprocess
import sys
import textwrap

FRAMEWORKS = (
    "torch",
    "mindspore",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "tensorflow",
    "keras",
    "lightning",
    "pytorch_lightning",
    "transformers",
    "accelerate",
)


def test_core_and_plugins_import_no_framework(tmp_path):
    # Stand-in packages that record being imported: whether or not the real frameworks
    # are installed in this environment, an import of any of them is seen.
    log = tmp_path / "imported.log"
    for name in FRAMEWORKS:
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(f"open({str(log)!r}, 'a').write({name!r} + '\\n')\n")
    script = textwrap.dedent(
        """
        import sys
        import paramgate
        assert "numpy" not in sys.modules, "importing paramgate imported numpy"
        pm = paramgate.get_plugin_manager()
        assert pm.adapters(), "no adapter loaded"
        assert "numpy" not in sys.modules, "loading plugins imported numpy"
        import numpy as np
        from paramgate_numpy import Momentum, Parameter
        model = [Parameter(np.zeros(3), "b", requires_grad=False), Parameter(np.ones(2), "h")]
        report = paramgate.audit(model, Momentum(paramgate.trainable(model), 0.1, 0.9))
        assert report.ok
        with paramgate.guard(model):
            pass
        from paramgate.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        main(["plugins"])
        import paramgate_torch.adapter, paramgate_torch.demo, paramgate_torch.plugin
        import paramgate_torch.distributed, paramgate_torch.hf, paramgate_torch.lightning
        import paramgate_keras, paramgate_keras.adapter, paramgate_keras.callback, paramgate_keras.plugin
        assert not paramgate_keras.adapter.KerasAdapter().owns_model(model)
        assert not paramgate_torch.adapter.TorchAdapter().owns_model(model)
        import paramgate_mindspore, paramgate_mindspore.adapter, paramgate_mindspore.callback
        import paramgate_mindspore.demo, paramgate_mindspore.hashing, paramgate_mindspore.plugin
        assert not paramgate_mindspore.adapter.MindSporeAdapter().owns_model(model)
        assert not paramgate_mindspore.adapter.MindSporeAdapter().owns_optimizer(model)
        leaked = sorted(set(FRAMEWORKS) & set(sys.modules))
        assert not leaked, leaked
        """
    ).replace("FRAMEWORKS", repr(FRAMEWORKS))
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert not log.exists(), log.read_text()

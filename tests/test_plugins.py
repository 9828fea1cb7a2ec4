"""The plugin manager: builtin and third-party adapters register the same way."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
from _helpers import AdapterPlugin

import paramgate
from paramgate.plugins import ParamGatePluginManager, PluginLoadWarning
from paramgate_numpy import Parameter
from paramgate_numpy import plugin as numpy_plugin
from paramgate_numpy.adapter import NumpyAdapter


@pytest.fixture
def pm():
    """A fresh manager per test, with the builtin NumPy plugin registered by name."""
    manager = ParamGatePluginManager()
    manager.register(numpy_plugin, name="numpy")
    return manager


def _model():
    return [Parameter(np.zeros(2), "frozen", requires_grad=False), Parameter(np.ones(2), "head")]


def test_builtin_numpy_adapter_comes_from_the_entry_point_group():
    pm = paramgate.get_plugin_manager()
    assert pm is paramgate.get_plugin_manager()  # loaded once
    infos = {i.name: i for i in pm.plugin_infos()}
    assert infos["numpy"].module == "paramgate_numpy.plugin"
    assert infos["numpy"].package == "paramgate" and infos["numpy"].version == paramgate.__version__
    assert infos["numpy"].framework == "numpy" and infos["numpy"].framework_version == np.__version__


def test_a_third_party_adapter_overrides_with_tryfirst(pm):
    class Loud(NumpyAdapter):
        name = "numpy-loud"

    plugin = AdapterPlugin(Loud)
    pm.register(plugin, name="loud")
    try:
        assert paramgate.audit(_model(), plugins=pm).framework == "numpy-loud"
    finally:
        pm.unregister(plugin)
    assert paramgate.audit(_model(), plugins=pm).framework == "numpy"


def test_blocking_a_plugin_removes_its_adapter(pm):
    pm.unregister(name="numpy")
    pm.set_blocked("numpy")
    assert pm.adapters() == []
    with pytest.raises(paramgate.UnsupportedModelError, match="Installed adapters: none"):
        paramgate.audit(_model(), plugins=pm)


def test_a_plugin_that_raises_is_named(pm):
    def explode():
        raise RuntimeError("adapter exploded")

    pm.register(AdapterPlugin(explode, tryfirst=False), name="broken-plugin")
    with pytest.raises(paramgate.AdapterError, match=r"'broken-plugin'.*adapter exploded"):
        paramgate.audit(_model(), plugins=pm)


@pytest.mark.parametrize(
    ("method", "call", "message"),
    [
        # Claiming a model: the error names the plugin.
        ("owns_model", paramgate.trainable, r"plugin 'raiser-plugin' raised in owns_model\(\): ValueError: broken"),
        # Reading a model it claimed: the error names the adapter.
        ("parameters", paramgate.audit, r"the raiser adapter raised in parameters\(\): ValueError: broken"),
    ],
)
def test_an_adapter_that_raises_is_named(pm, method, call, message):
    def broken(self, model):
        raise ValueError("broken")

    raiser = type("Raiser", (NumpyAdapter,), {"name": "raiser", method: broken})
    pm.register(AdapterPlugin(raiser), name="raiser-plugin")
    with pytest.raises(paramgate.AdapterError, match=message):
        call(_model(), plugins=pm)


def test_a_non_adapter_result_is_refused(pm):
    pm.register(AdapterPlugin(object, tryfirst=False), name="wrong")
    with pytest.raises(paramgate.PluginLoadError, match="'wrong' returned object"):
        pm.adapters()


def _install_dist(tmp_path, name: str, entry_points: str, modules: dict[str, str]) -> None:
    """A real installed distribution (dist-info on sys.path), so entry points load for real."""
    info = tmp_path / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for module, source in modules.items():
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))


def test_entry_point_that_fails_to_import_is_reported_and_others_still_work(tmp_path, monkeypatch):
    _install_dist(
        tmp_path,
        "paramgate_thirdparty",
        """
        [paramgate]
        missing = paramgate_missing_module_xyz
        extra = paramgate_extra_plugin
        """,
        {
            "paramgate_extra_plugin": """
            from paramgate import hookimpl
            from paramgate_numpy.adapter import NumpyAdapter

            class Extra(NumpyAdapter):
                name = "extra"
                distribution = "paramgate_thirdparty"

                def owns_model(self, model):
                    return isinstance(model, dict) and "extra" in model

            @hookimpl
            def paramgate_adapter():
                return Extra()
            """
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = ParamGatePluginManager()
    with pytest.warns(PluginLoadWarning, match="'missing'.*ModuleNotFoundError"):
        pm.load_entrypoints()
    assert "missing" in pm.load_failures
    infos = {i.name: i for i in pm.plugin_infos()}
    assert infos["missing"].error is not None and "paramgate_missing_module_xyz" in infos["missing"].error
    assert infos["extra"].package == "paramgate_thirdparty" and infos["extra"].framework_version == "1.0"
    assert paramgate.audit(_model(), plugins=pm).framework == "numpy"  # the builtin still works
    with pytest.raises(paramgate.UnsupportedModelError, match="failed to load: missing"):
        paramgate.audit(42, plugins=pm)
    sys.modules.pop("paramgate_extra_plugin", None)


def test_block_env_keeps_a_plugin_from_loading(monkeypatch):
    monkeypatch.setenv("PARAMGATE_BLOCK_PLUGINS", "numpy")
    pm = ParamGatePluginManager()
    pm.load_entrypoints()
    assert pm.is_blocked("numpy") and "numpy" not in [plugin for plugin, _ in pm.adapters()]

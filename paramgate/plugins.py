"""Loading adapter plugins and choosing one for a model.

Plugins come from the ``paramgate`` entry-point group, builtin and third-party
alike, and are loaded lazily and once (:func:`get_plugin_manager`).  An entry point
that fails to import is reported by name and the others still load.  Set
``PARAMGATE_BLOCK_PLUGINS=name1,name2`` to keep plugins from loading.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pluggy

from paramgate import hookspecs
from paramgate.errors import (
    AdapterError,
    OneShotIteratorError,
    PluginLoadError,
    UnsupportedModelError,
    UnsupportedOptimizerError,
)
from paramgate.protocol import ParamGate

__all__ = [
    "ENTRY_POINT_GROUP",
    "ParamGatePluginManager",
    "PluginInfo",
    "PluginLoadWarning",
    "get_plugin_manager",
]

ENTRY_POINT_GROUP = "paramgate"
BLOCK_ENV = "PARAMGATE_BLOCK_PLUGINS"


class PluginLoadWarning(UserWarning):
    """An adapter plugin could not be loaded; the others still work."""


@dataclass(frozen=True)
class PluginInfo:
    """One registered (or failed) plugin, as ``paramgate plugins`` lists it."""

    name: str
    module: str
    package: str | None
    version: str | None
    framework: str | None
    framework_version: str | None
    error: str | None = None


def _dist_version(dist: str | None) -> str | None:
    if not dist:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class ParamGatePluginManager(pluggy.PluginManager):
    """A pluggy manager for the ``paramgate`` project that knows its adapters."""

    def __init__(self) -> None:
        super().__init__("paramgate")
        self.add_hookspecs(hookspecs)
        self._adapters: list[tuple[str, ParamGate]] | None = None
        self._dists: dict[str, tuple[str, str]] = {}
        self.load_failures: dict[str, str] = {}

    # Adapters are computed once; any change to the registry forgets them.
    def register(self, plugin: Any, name: str | None = None) -> str | None:
        self._adapters = None
        return super().register(plugin, name)

    def unregister(self, plugin: Any | None = None, name: str | None = None) -> Any | None:
        self._adapters = None
        return super().unregister(plugin, name)

    def load_entrypoints(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every plugin of the entry-point group, reporting failures by name."""
        blocked = {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}
        for name in blocked:
            self.set_blocked(name)
        seen: set[str] = set()
        for ep in importlib.metadata.entry_points(group=group):
            if ep.name in seen or self.is_blocked(ep.name) or self.has_plugin(ep.name):
                continue
            seen.add(ep.name)
            try:
                plugin = ep.load()
                self.register(plugin, name=ep.name)
            except Exception as exc:  # any failure of third-party code is reported, not raised
                msg = f"{type(exc).__name__}: {exc}"
                self.load_failures[ep.name] = msg
                warnings.warn(
                    f"paramgate plugin {ep.name!r} ({ep.value}) failed to load and is skipped: {msg}. "
                    f"Fix or uninstall it, or set {BLOCK_ENV}={ep.name} to silence this.",
                    PluginLoadWarning,
                    stacklevel=2,
                )
                continue
            if ep.dist is not None:
                self._dists[ep.name] = (ep.dist.name, ep.dist.version)

    def adapters(self) -> list[tuple[str, ParamGate]]:
        """``(plugin name, adapter)`` pairs in the order they are asked to claim a model."""
        if self._adapters is None:
            found: list[tuple[str, ParamGate]] = []
            for impl in reversed(self.hook.paramgate_adapter.get_hookimpls()):
                plugin_name = self.get_name(impl.plugin) or repr(impl.plugin)
                try:
                    adapter = impl.function()
                except Exception as exc:
                    raise AdapterError(
                        f"paramgate plugin {plugin_name!r} raised in paramgate_adapter(): "
                        f"{type(exc).__name__}: {exc}. Fix or uninstall the plugin, "
                        f"or set {BLOCK_ENV}={plugin_name}."
                    ) from exc
                if adapter is None:
                    continue
                if not isinstance(adapter, ParamGate):
                    raise PluginLoadError(
                        f"paramgate plugin {plugin_name!r} returned {type(adapter).__name__} from "
                        "paramgate_adapter(), which lacks parts of the paramgate.ParamGate protocol. Fix or "
                        f"uninstall the plugin, or set {BLOCK_ENV}={plugin_name}."
                    )
                found.append((plugin_name, adapter))
            self._adapters = found
        return list(self._adapters)

    def plugin_infos(self) -> list[PluginInfo]:
        """What ``paramgate plugins`` lists: loaded adapters first, then failures."""
        infos = []
        for plugin_name, adapter in self.adapters():
            plugin = self.get_plugin(plugin_name)
            module = getattr(plugin, "__name__", type(plugin).__name__)
            package, version = self._dists.get(plugin_name, (None, None))
            infos.append(
                PluginInfo(
                    name=plugin_name,
                    module=module,
                    package=package,
                    version=version,
                    framework=adapter.name,
                    framework_version=_dist_version(adapter.distribution),
                )
            )
        for plugin_name, error in sorted(self.load_failures.items()):
            infos.append(PluginInfo(plugin_name, "?", None, None, None, None, error=error))
        return infos

    def _describe(self) -> str:
        names = [f"{adapter.name} (plugin {plugin_name!r})" for plugin_name, adapter in self.adapters()]
        text = ", ".join(names) or "none"
        if self.load_failures:
            text += "; failed to load: " + ", ".join(sorted(self.load_failures))
        return text

    def _claims(self, method: str, obj: object) -> Iterator[tuple[str, ParamGate]]:
        for plugin_name, adapter in self.adapters():
            try:
                claimed = getattr(adapter, method)(obj)
            except Exception as exc:
                raise AdapterError(
                    f"paramgate plugin {plugin_name!r} raised in {method}(): {type(exc).__name__}: {exc}. "
                    f"Fix or uninstall the plugin, or set {BLOCK_ENV}={plugin_name}."
                ) from exc
            if claimed:
                yield plugin_name, adapter

    def adapter_for_model(self, model: object, argument: str = "model") -> ParamGate:
        """The first adapter that owns ``model``; a clear error when none does."""
        _refuse_iterator(model, argument)
        for _, adapter in self._claims("owns_model", model):
            return adapter
        installed = {a.name for _, a in self.adapters()}
        raise UnsupportedModelError(_unsupported_model_message(model, argument, self._describe(), installed))

    def adapter_for(self, model: object, optimizer: object | None = None) -> ParamGate:
        """The model's adapter, after checking that it can read ``optimizer`` (if given)."""
        adapter = self.adapter_for_model(model)
        if optimizer is not None:
            self.check_optimizer(adapter, optimizer)
        return adapter

    def check_optimizer(self, adapter: ParamGate, optimizer: object) -> None:
        """Raise unless ``adapter`` (the model's) can read ``optimizer``."""
        _refuse_iterator(optimizer, "optimizer")
        try:
            owned = adapter.owns_optimizer(optimizer)
        except Exception as exc:
            raise AdapterError(
                f"the {adapter.name} adapter raised in owns_optimizer(): {type(exc).__name__}: {exc}. This is a bug "
                f"in the adapter ({type(adapter).__module__}.{type(adapter).__qualname__}) or an optimizer it does "
                "not expect; please report it to the plugin's authors (`paramgate plugins` lists which plugin "
                "provides it)."
            ) from exc
        if owned:
            return
        others = [a.name for _, a in self._claims("owns_optimizer", optimizer)]
        where = (
            f"it belongs to {', '.join(others)}, not to {adapter.name} like the model: "
            "pass the optimizer that trains this model"
            if others
            else f"no installed adapter reads it (installed: {self._describe()}). Pass the optimizer object "
            "itself, or the list of this model's parameters (or of {'params': [...]} group dicts, with lists, "
            "not generators) that you are about to hand to one"
        )
        raise UnsupportedOptimizerError(
            f"optimizer: cannot read a {type(optimizer).__module__}.{type(optimizer).__qualname__} "
            f"for a {adapter.name} model; {where}."
        )


def _refuse_iterator(obj: object, argument: str) -> None:
    # isinstance is a pure type check: it neither advances nor copies the iterator.
    if isinstance(obj, Iterator):
        raise OneShotIteratorError(
            f"{argument}: got a one-shot iterator ({type(obj).__name__}); reading it would empty it, and an "
            "optimizer built from it afterwards gets no parameters (the classic exhausted filter()). "
            + (
                "Pass the model object itself."
                if argument == "model"
                else "Pass a list instead: params = paramgate.trainable(model), or list(filter(...))."
            )
        )


def _unsupported_model_message(model: object, argument: str, installed: str, frameworks: set[str]) -> str:
    if model is None:
        return (
            f"{argument} is None: pass the model object (e.g. the nn.Module or Cell). Installed adapters: {installed}."
        )
    if isinstance(model, str | bytes | os.PathLike):
        return (
            f"{argument} is a {type(model).__name__} ({model!r}): paramgate audits live model objects, "
            "not paths. To audit a script run `paramgate audit MODULE:FACTORY`. "
            f"Installed adapters: {installed}."
        )
    kind = f"{type(model).__module__}.{type(model).__qualname__}"
    hint = ""
    root = type(model).__module__.split(".", 1)[0]
    if root in frameworks:
        hint = (
            f" The {root} adapter is installed but takes the model itself (e.g. an nn.Module or a Cell), "
            "not a tensor, a state_dict or a list of parameters: pass the model."
        )
    elif root in {"torch", "mindspore", "jax", "jaxlib", "flax", "keras", "tensorflow"}:
        hint = f" It looks like a {root} object: install an adapter plugin for {root} (see `paramgate plugins`)."
    else:
        # No framework recognised: say what a model is, so the message carries an instruction.
        hint = (
            " Pass the model object itself (an nn.Module, a Cell, or for NumPy a list whose items are all "
            "paramgate_numpy.Parameter objects or parameter dicts), or install the adapter plugin of its framework."
        )
    return (
        f"{argument}: {kind} is not a model any installed adapter understands.{hint} Installed adapters: {installed}."
    )


@functools.cache
def get_plugin_manager() -> ParamGatePluginManager:
    """The process-wide plugin manager, with every entry-point plugin loaded once."""
    pm = ParamGatePluginManager()
    pm.load_entrypoints()
    return pm

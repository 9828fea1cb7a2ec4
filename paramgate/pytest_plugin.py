"""paramgate's pytest plugin: the ``paramgate_guard`` fixture and the ``paramgate_audit`` marker.

Registered under the ``pytest11`` entry point, so it loads in every pytest run
of every project that installs paramgate.  It is inert unless a test uses it:
loading it imports no framework and no NumPy (only pytest and the standard
library; paramgate itself is imported when the fixture or marker is used),
registers one marker, and adds no per-test hook unless a collected test carries
that marker.  ``-p no:paramgate`` turns it off.

``paramgate_guard``
    ``with paramgate_guard(model, optimizer): train_step()`` wraps
    :func:`paramgate.guard`; when a frozen parameter changed the test fails
    with one line per changed parameter: its name, its role, and how many of
    its elements differ.  The guard itself keeps digests only; to count
    differing elements the fixture keeps a host copy of the frozen tensors'
    bytes for the duration of the block (NumPy and plain PyTorch tensors; other
    frameworks get "count unavailable").  ``count_elements=False`` skips the copy.

``@pytest.mark.paramgate_audit("pkg.module:factory")``
    Audits what the factory returns (the model, or ``(model, optimizer)``),
    resolved as ``paramgate audit MODULE:FACTORY`` resolves it (a module on
    ``sys.path`` or a path to a ``.py`` file), before the test body runs; error
    findings fail the test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from paramgate.plugins import ParamGatePluginManager
    from paramgate.snapshot import Guard

__all__ = ["GuardBlock", "paramgate_guard"]

MARKER = "paramgate_audit"
MARKER_HELP = (
    f"{MARKER}(target): audit what the factory 'pkg.module:factory' returns (as `paramgate audit` does) "
    "before the test runs; fail the test if the audit finds an error"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The per-test hook exists only in runs that collected a test with the marker.
    used = any(item.get_closest_marker(MARKER) is not None for item in items)
    if used and not config.pluginmanager.has_plugin(_AuditMarker.NAME):
        config.pluginmanager.register(_AuditMarker(), _AuditMarker.NAME)


# ---------------------------------------------------------------------------------------------------------------
# The fixture


@pytest.fixture
def paramgate_guard() -> Callable[..., GuardBlock]:
    """``with paramgate_guard(model, optimizer): train_step()`` fails the test if a frozen parameter changed.

    Takes :func:`paramgate.guard`'s arguments (``trainable=``, ``every=``,
    ``rolling=``, ``threads=``, ``plugins=``) and ``count_elements`` (default
    True: keep a copy of the frozen tensors' bytes during the block, so that
    the failure says how many elements differ).  ``as gate`` gives the
    :class:`paramgate.Guard`: call ``gate.step()`` to check between steps.
    """

    def make(
        model: object,
        optimizer: object | None = None,
        *,
        trainable: object | None = None,
        every: int | None = None,
        rolling: int | None = None,
        threads: int | None = None,
        plugins: ParamGatePluginManager | None = None,
        count_elements: bool = True,
    ) -> GuardBlock:
        return GuardBlock(
            model,
            optimizer,
            dict(trainable=trainable, every=every, rolling=rolling, threads=threads, plugins=plugins),
            count_elements,
        )

    return make


@dataclass
class _Copy:
    adapter: object
    entry: object
    numel: int
    before: Any  # a 1-D uint8 NumPy array, or None when this framework's bytes cannot be read here


class GuardBlock:
    """The context manager the ``paramgate_guard`` fixture returns: a guard that fails the test, not raises."""

    def __init__(self, model: object, optimizer: object | None, options: dict[str, Any], count_elements: bool) -> None:
        import paramgate

        self._guard: Guard = paramgate.guard(model, optimizer, **options)
        self._model: object | None = model
        self._plugins: ParamGatePluginManager | None = options["plugins"]
        self._count = count_elements
        self._copies: dict[str, _Copy] = {}

    def __enter__(self) -> Guard:
        gate = self._guard.__enter__()
        if self._count:
            self._copies = self._take_copies()
        return gate

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        from paramgate.errors import FrozenParameterChanged

        try:
            self._guard.__exit__(exc_type, exc, tb)
        except FrozenParameterChanged as raised:
            exc = raised
        if isinstance(exc, FrozenParameterChanged):  # raised on exit, or by gate.step() inside the block
            message = self._message(exc)
            self._release()
            try:
                pytest.fail(message, pytrace=False)
            except pytest.fail.Exception as failed:
                raise failed from None  # the message says it all: no "during handling" chain
        self._release()

    def _release(self) -> None:
        self._copies = {}
        self._model = None

    def _take_copies(self) -> dict[str, _Copy]:
        from paramgate.checks import collect
        from paramgate.plugins import get_plugin_manager

        snapshot = self._guard.snapshot
        assert snapshot is not None
        frozen = {p.name for p in snapshot.prints if p.role == "frozen"}
        pm = get_plugin_manager() if self._plugins is None else self._plugins
        adapter = pm.adapter_for_model(self._model)
        tensors, _ = collect(adapter, self._model)
        return {
            t.name: _Copy(adapter, t.entry, t.entry.numel, _host_bytes(adapter, t.entry))
            for t in tensors
            if t.name in frozen and t.entry.numel
        }

    def _message(self, exc: Exception) -> str:
        from paramgate.errors import FrozenParameterChanged

        assert isinstance(exc, FrozenParameterChanged)
        snapshot = self._guard.snapshot
        roles = {p.name: p.role for p in snapshot.prints} if snapshot is not None else {}
        errors = [f for f in exc.report.findings if f.severity == "error"]
        lines = [f"paramgate_guard: {len(errors)} frozen parameter(s) changed:"]
        for f in errors:
            name = f.name or "?"
            what = self._differ(name) if f.code == "PG101" else f.title
            lines.append(f"  {name} ({roles.get(name, 'frozen')}): {what}")
        lines.append("")
        lines.append("paramgate's findings:")
        lines += [f"  {f.code} {f.message}" for f in errors]
        return "\n".join(lines)

    def _differ(self, name: str) -> str:
        copy = self._copies.get(name)
        if copy is None:
            return "changed (element count not taken: count_elements=False)" if not self._count else "changed"
        if copy.before is None:
            return f"{copy.numel:,d} elements (count unavailable for this framework)"
        now = _host_bytes(copy.adapter, copy.entry)
        count = _count_differing(copy.before, now, copy.numel)
        if count is None:
            return f"{copy.numel:,d} elements (count unavailable: its size changed)"
        return f"{count:,d} of {copy.numel:,d} elements differ"


def _host_bytes(adapter: object, entry: object) -> Any:
    """A host copy of a tensor's raw bytes (1-D uint8 NumPy array) from the adapter's ``host_copy``; None without it.

    ``host_copy`` is an optional adapter method (the core knows no framework): the NumPy, PyTorch,
    MindSpore and Keras adapters have one.
    """
    host_copy = getattr(adapter, "host_copy", None)
    if host_copy is None:
        return None
    try:
        return host_copy(entry)
    except Exception:  # a tensor the adapter cannot copy (meta, sparse...): no count, the finding still stands
        return None


def _count_differing(before: Any, now: Any, numel: int) -> int | None:
    """Elements whose bytes differ (so a NaN payload or -0.0 counts); None when the sizes no longer match."""
    if now is None or now.size != before.size or before.size % numel:
        return None
    rows = (before.reshape(numel, -1) != now.reshape(numel, -1)).any(axis=1)
    return int(rows.sum())


# ---------------------------------------------------------------------------------------------------------------
# The marker


class _AuditMarker:
    """Runs the audits of ``@pytest.mark.paramgate_audit``; registered only when a collected test has the marker."""

    NAME = "paramgate-audit-marker"

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        for marker in item.iter_markers(MARKER):
            _run_audit(marker)


def _run_audit(marker: pytest.Mark) -> None:
    from paramgate.cli import load_factory
    from paramgate.errors import AuditFailed, ParamGateError

    if len(marker.args) != 1 or marker.kwargs:
        pytest.fail(
            f"@pytest.mark.{MARKER}: expected one argument, a 'pkg.module:factory' target, "
            f"got args={marker.args!r} kwargs={marker.kwargs!r}",
            pytrace=False,
        )
    target = marker.args[0]
    if not isinstance(target, str):
        pytest.fail(f"@pytest.mark.{MARKER}: expected a 'pkg.module:factory' string, got {target!r}", pytrace=False)
    try:
        built = load_factory(target)
        model, optimizer = built if isinstance(built, tuple) and len(built) == 2 else (built, None)
        import paramgate

        report = paramgate.audit(model, optimizer)
    except ParamGateError as exc:
        problem = str(exc)  # failed outside the except block, so that no "during handling" chain is shown
    else:
        if report.ok:
            return
        problem = str(AuditFailed(report))
    pytest.fail(f"{MARKER}({target!r}): {problem}", pytrace=False)

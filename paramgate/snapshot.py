"""Snapshots (fingerprints, never copies) and the invariance check.

A :class:`Snapshot` keeps, per tensor, its name, role, shape, dtype and a digest
of its raw bytes; it holds no reference to any tensor, parameter, model or
optimizer.  :meth:`Snapshot.verify` fingerprints the model again and compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from paramgate.checks import Tensor, call_adapter, collect, place
from paramgate.errors import FrozenParameterChanged, InvalidParameterError, SnapshotMismatchError
from paramgate.findings import Finding
from paramgate.fingerprint import DIGEST_NAME
from paramgate.protocol import ParamGate
from paramgate.records import Fingerprint, Kind, Role
from paramgate.report import InvarianceReport

if TYPE_CHECKING:
    from paramgate.plugins import ParamGatePluginManager

__all__ = ["Guard", "Snapshot", "TensorPrint"]


@dataclass(frozen=True)
class TensorPrint:
    """What a snapshot remembers of one tensor: plain data and a digest."""

    name: str
    aliases: tuple[str, ...]
    role: Role
    kind: Kind
    trainable: bool
    shape: tuple[int, ...]
    dtype: str
    fingerprint: Fingerprint
    group: int | None


def _fingerprint(adapter: ParamGate, t: Tensor) -> Fingerprint:
    fp = call_adapter(adapter, "fingerprint", adapter.fingerprint, t.entry)
    assert isinstance(fp, Fingerprint)
    return fp


def _unique_names(duplicates: Sequence[str]) -> None:
    if duplicates:
        raise InvalidParameterError(
            f"two different tensors are both called {duplicates[0]!r}: a snapshot matches tensors by name, "
            "so rename one of them"
        )


class Snapshot:
    """Fingerprints of every tensor of a model at one moment.

    Create one with :func:`paramgate.snapshot`.  Its size grows with the number of
    tensors, not with their bytes.
    """

    def __init__(self, framework: str, prints: tuple[TensorPrint, ...], plugins: ParamGatePluginManager) -> None:
        self.framework = framework
        self.digest = DIGEST_NAME
        self.prints = prints
        self._plugins = plugins

    def __repr__(self) -> str:
        return f"<paramgate.Snapshot {self.framework}: {len(self.prints)} tensors>"

    @classmethod
    def take(
        cls, adapter: ParamGate, model: object, optimizer: object | None, plugins: ParamGatePluginManager
    ) -> Snapshot:
        tensors, duplicates = collect(adapter, model)
        _unique_names(duplicates)
        groups: dict[int, int] = {}
        if optimizer is not None:
            _, placements, _ = place(adapter, optimizer, tensors)
            groups = {key: p.groups[0] for key, p in placements.items()}
        prints = tuple(
            TensorPrint(
                name=t.name,
                aliases=tuple(t.aliases),
                role=t.entry.role,
                kind=t.entry.kind,
                trainable=t.entry.requires_grad,
                shape=t.entry.shape,
                dtype=t.entry.dtype,
                fingerprint=_fingerprint(adapter, t),
                group=groups.get(id(t.entry.obj)),
            )
            for t in tensors
        )
        return cls(adapter.name, prints, plugins)

    def verify(self, model: object) -> InvarianceReport:
        """Fingerprint ``model`` again and report what changed since the snapshot.

        Frozen parameters whose bits changed are PG101 errors; statistics that
        changed are PG103 (never PG101); trainable parameters that did not change
        are PG102; added or removed names are PG104; a new shape or dtype is PG105.
        """
        adapter = self._plugins.adapter_for_model(model)
        if adapter.name != self.framework:
            raise SnapshotMismatchError(
                f"model: this snapshot was taken of a {self.framework} model, but a {adapter.name} model was "
                "passed to verify(); verify the same model you snapshotted"
            )
        tensors, duplicates = collect(adapter, model)
        _unique_names(duplicates)
        by_name: dict[str, Tensor] = {}
        for t in tensors:
            for name in (t.name, *t.aliases):
                by_name.setdefault(name, t)
        findings: list[Finding] = []
        seen: set[int] = set()
        for p in self.prints:
            found = next((by_name[n] for n in (p.name, *p.aliases) if n in by_name), None)
            if found is None:
                findings.append(
                    Finding(
                        "PG104",
                        "warning",
                        p.name,
                        f"{p.name} ({p.role}) was in the model when the snapshot was taken and is gone now; "
                        "if you replaced or renamed it on purpose, take a new snapshot afterwards",
                        f"{p.name}（{p.role}）在快照时存在，现在不见了；如果是有意替换或改名，请之后重新拍快照",
                    )
                )
                continue
            seen.add(id(found))
            findings += _compare(adapter, p, found)
        for t in tensors:
            if id(t) not in seen:
                findings.append(
                    Finding(
                        "PG104",
                        "warning",
                        t.name,
                        f"{t.name} ({t.entry.role}) was added after the snapshot was taken, so nothing is known "
                        "about its earlier bits; take the snapshot after the model is complete",
                        f"{t.name}（{t.entry.role}）是在快照之后才加入的；请在模型完整之后再拍快照",
                    )
                )
        order = {p.name: i for i, p in enumerate(self.prints)}
        findings.sort(key=lambda f: (f.code, order.get(f.name or "", len(order))))
        return InvarianceReport(framework=adapter.name, checked=len(tensors), findings=tuple(findings))


def _compare(adapter: ParamGate, p: TensorPrint, t: Tensor) -> list[Finding]:
    was_frozen = p.role == "frozen"
    if (t.entry.shape, t.entry.dtype) != (p.shape, p.dtype):
        return [
            Finding(
                "PG105",
                "error" if was_frozen else "warning",
                p.name,
                f"{p.name} was {p.dtype}{list(p.shape)} at the snapshot and is {t.entry.dtype}"
                f"{list(t.entry.shape)} now: it was replaced or resized"
                + (" although it was frozen" if was_frozen else "")
                + "; take a new snapshot after changing the model on purpose",
                f"{p.name} 在快照时是 {p.dtype}{list(p.shape)}，"
                f"现在是 {t.entry.dtype}{list(t.entry.shape)}：它被替换或改变了大小",
            )
        ]
    if _fingerprint(adapter, t) == p.fingerprint:
        if p.role == "trainable":
            return [
                Finding(
                    "PG102",
                    "warning",
                    p.name,
                    f"{p.name} is trainable but not one bit of it changed: check that it is in the optimizer, "
                    "that it receives a gradient, and that the learning rate is not zero",
                    f"{p.name} 是可训练参数，但一个比特都没有变：请检查它是否在优化器中、是否有梯度、学习率是否为零",
                )
            ]
        return []
    if p.role == "state":
        return [
            Finding(
                "PG103",
                "warning",
                p.name,
                f"statistics {p.name} changed: normalization layers update running statistics in train mode even "
                "when every weight is frozen; call .eval() on the frozen backbone (after every .train()) if "
                "they should stay fixed",
                f"统计量 {p.name} 发生了变化：训练模式下归一化层即使权重全部冻结也会更新滑动统计量；"
                "如需固定，请对冻结的主干调用 .eval()（每次 .train() 之后）",
            )
        ]
    if p.role == "frozen":
        if p.group is not None:
            why = (
                f"it is in optimizer group {p.group}, which moved it (weight decay, momentum or a stale gradient): "
                "build the optimizer from paramgate.trainable(model)"
            )
            why_zh = (
                f"它在优化器第 {p.group} 组中，被权重衰减、动量或残留梯度改动了："
                "请用 paramgate.trainable(model) 构造优化器"
            )
        else:
            why = (
                "it is not in the optimizer you gave, so something else wrote to it (a tied weight, an in-place "
                "operation, load_state_dict, or an optimizer built from all parameters)"
            )
            why_zh = (
                "它不在你给出的优化器中，所以是别的东西改写了它"
                "（权重绑定、原地操作、load_state_dict 或包含全部参数的优化器）"
            )
        now = " (it requires grad now: take a new snapshot after unfreezing)" if t.entry.requires_grad else ""
        return [
            Finding(
                "PG101",
                "error",
                p.name,
                f"frozen parameter {p.name} changed ({p.fingerprint.nbytes:,d} bytes compared, digests differ): "
                f"{why}{now}",
                f"冻结参数 {p.name} 发生了变化（比较了 {p.fingerprint.nbytes:,d} 字节，摘要不同）：{why_zh}",
            )
        ]
    return []


class Guard:
    """Snapshot on entry, verify on exit; raise if a frozen parameter changed.

    Create one with :func:`paramgate.guard`.  After the block, :attr:`report`
    holds the :class:`~paramgate.InvarianceReport`.  If the block raises, nothing
    is verified and the exception goes on unchanged.  The guard holds the model
    only while the block runs.
    """

    def __init__(self, model: object, optimizer: object | None, plugins: ParamGatePluginManager) -> None:
        self._model: object | None = model
        self._optimizer = optimizer
        self._plugins = plugins
        self.snapshot: Snapshot | None = None
        self.report: InvarianceReport | None = None

    def __enter__(self) -> Guard:
        if self._model is None:
            raise RuntimeError("a paramgate guard can be entered only once; create a new one")
        adapter = self._plugins.adapter_for(self._model, self._optimizer)
        self.snapshot = Snapshot.take(adapter, self._model, self._optimizer, self._plugins)
        self._optimizer = None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        model, self._model = self._model, None
        if exc_type is not None or self.snapshot is None:
            return
        self.report = self.snapshot.verify(model)
        if not self.report.ok:
            raise FrozenParameterChanged(self.report)

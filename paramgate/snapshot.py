"""Snapshots (fingerprints, never copies) and the invariance check.

A :class:`Snapshot` keeps, per tensor, its name, role, shape, dtype and a digest
of its raw bytes; it holds no reference to any tensor, parameter, model or
optimizer.  :meth:`Snapshot.verify` fingerprints the model again and compares.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from paramgate.checks import Resolved, Tensor, call_adapter, collect, place, resolve, world_of
from paramgate.distributed import World, merge_findings, replica_findings
from paramgate.errors import (
    AdapterError,
    DistributedError,
    FrozenParameterChanged,
    GuardStateError,
    InvalidArgumentError,
    InvalidParameterError,
    SnapshotMismatchError,
)
from paramgate.findings import Finding
from paramgate.fingerprint import CHUNK_BYTES, DIGEST_NAME, reset_pool, use_pool
from paramgate.protocol import ParamGate
from paramgate.records import Fingerprint, Kind, Placement, Role
from paramgate.report import InvarianceReport

if TYPE_CHECKING:
    from paramgate.plugins import ParamGatePluginManager

__all__ = ["PROGRESS_MIN_BYTES", "THREAD_MIN_BYTES", "Guard", "Snapshot", "TensorPrint", "fingerprint_tensors"]

THREAD_MIN_BYTES = 1 << 20
"""Tensors at least this big (1 MiB) are hashed on worker threads; smaller ones are not worth the hand-off."""

POOL_MIN_BYTES = 16 << 20
"""Below this much work for the threads (16 MiB, about half a millisecond of hashing) no pool is started."""

PROGRESS_MIN_BYTES = 1 << 30
"""Fingerprinting at least this many bytes (1 GiB) shows a progress bar on an interactive terminal."""


def check_threads(threads: int | None) -> int:
    """Worker threads for fingerprinting: ``None`` means one per core, up to 8."""
    if threads is None:
        return max(1, min(8, os.cpu_count() or 1))
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidArgumentError(f"threads: expected a positive int or None (one per core), got {threads!r}")
    return threads


class _Progress:
    """A one-line progress bar on an interactive stderr; silent in logs and pipes."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.done, self.stream = total, 0, stream
        self.shown = 0.0

    @classmethod
    def start(cls, total: int) -> _Progress | None:
        stream = sys.stderr
        if total < PROGRESS_MIN_BYTES or stream is None or not stream.isatty():
            return None
        return cls(total, stream)

    def add(self, nbytes: int) -> None:
        self.done += nbytes
        now = time.monotonic()
        if now - self.shown >= 0.1 or self.done >= self.total:
            self.shown = now
            share = self.done / self.total
            bar = "#" * int(share * 30)
            self.stream.write(
                f"\rparamgate: fingerprinting {self.done / 1e9:.1f}/{self.total / 1e9:.1f} GB [{bar:<30}] {share:4.0%}"
            )
            self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def fingerprint_tensors(
    adapter: ParamGate, tensors: Sequence[Tensor], threads: int | None = None, *, show_progress: bool = True
) -> list[Fingerprint]:
    """Fingerprint ``tensors`` in order; big ones on worker threads, one huge one in parallel chunks.

    Only tensors of at least :data:`THREAD_MIN_BYTES` go to threads (a hand-off
    costs about 15 us); a tensor over :data:`~paramgate.fingerprint.CHUNK_BYTES`
    is hashed by this thread, its chunks spread over the pool.  The digests do not
    depend on the number of threads.  ``show_progress`` allows the progress bar
    (shown only for big models on an interactive terminal).
    """
    workers = check_threads(threads)
    sizes = [t.entry.nbytes or 0 for t in tensors]
    progress = _Progress.start(sum(sizes)) if show_progress else None
    out: list[Fingerprint | None] = [None] * len(tensors)
    pooled = [i for i, n in enumerate(sizes) if THREAD_MIN_BYTES <= n <= CHUNK_BYTES]
    huge = any(n > CHUNK_BYTES for n in sizes)
    try:
        if workers < 2 or (not huge and (len(pooled) < 2 or sum(sizes[i] for i in pooled) < POOL_MIN_BYTES)):
            for i, t in enumerate(tensors):
                out[i] = _fingerprint(adapter, t)
                if progress:
                    progress.add(sizes[i])
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="paramgate") as pool:
                token = use_pool(pool)
                try:
                    futures: dict[Future[Fingerprint], int] = {
                        pool.submit(_fingerprint, adapter, tensors[i]): i for i in pooled
                    }
                    handed_off = set(pooled)
                    for i in range(len(tensors)):
                        if i in handed_off:
                            continue
                        out[i] = _fingerprint(adapter, tensors[i])
                        if progress:
                            progress.add(sizes[i])
                    for future in as_completed(futures):
                        i = futures[future]
                        out[i] = future.result()
                        if progress:
                            progress.add(sizes[i])
                finally:
                    reset_pool(token)
    finally:
        if progress:
            progress.close()
    done = [fp for fp in out if fp is not None]
    assert len(done) == len(tensors)
    return done


@dataclass(frozen=True, slots=True)
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
    placement: Placement | None = None


def _fingerprint(adapter: ParamGate, t: Tensor) -> Fingerprint:
    fp = call_adapter(adapter, "fingerprint", adapter.fingerprint, t.entry)
    if not isinstance(fp, Fingerprint):
        raise AdapterError(
            f"the {adapter.name} adapter's fingerprint() returned {type(fp).__name__} for {t.name!r}, not a "
            "Fingerprint; this is a bug in the adapter: please report it to its authors"
        )
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

    def __init__(
        self,
        framework: str,
        prints: tuple[TensorPrint, ...],
        plugins: ParamGatePluginManager,
        threads: int | None = None,
        intent: Mapping[str, bool] | None = None,
        world: World | None = None,
    ) -> None:
        self.framework = framework
        self.world = world
        """The distributed run this snapshot's model is part of (None when alone): verify compares with it."""
        self.digest = DIGEST_NAME
        self.prints = prints
        self.threads = threads
        self._plugins = plugins
        # The flags the snapshot was taken under (when stated or inferred), so that checks read
        # the model the same way; plain names and bools, never a tensor.
        self._intent = None if intent is None else Resolved(None, dict(intent).get)

    def __repr__(self) -> str:
        return f"<paramgate.Snapshot {self.framework}: {len(self.prints)} tensors>"

    @classmethod
    def take(
        cls,
        adapter: ParamGate,
        model: object,
        optimizer: object | None,
        plugins: ParamGatePluginManager,
        threads: int | None = None,
        trainable: object | None = None,
    ) -> Snapshot:
        check_threads(threads)
        world = world_of(adapter, model)
        resolved = resolve(adapter, model, optimizer, trainable)
        tensors, duplicates = collect(adapter, model, resolved)
        _unique_names(duplicates)
        groups: dict[int, int] = {}
        if resolved.optimizer is not None:
            _, placements, _ = place(adapter, resolved.optimizer, tensors)
            groups = {key: p.groups[0] for key, p in placements.items()}
        fingerprints = fingerprint_tensors(adapter, tensors, threads, show_progress=world is None or world.rank == 0)
        prints = tuple(
            TensorPrint(
                t.name,
                tuple(t.aliases) if t.aliases else (),
                t.entry.role,
                t.entry.kind,
                t.entry.requires_grad,
                t.entry.shape,
                t.entry.dtype,
                fp,
                groups.get(id(t.entry.obj)),
                t.entry.placement,
            )
            for t, fp in zip(tensors, fingerprints, strict=True)
        )
        intent = None if resolved.stated is None else {t.name: t.entry.requires_grad for t in tensors}
        return cls(adapter.name, prints, plugins, threads, intent, world)

    def verify(self, model: object) -> InvarianceReport:
        """Fingerprint ``model`` again and report what changed since the snapshot.

        Frozen parameters whose bits changed are PG101 errors; statistics that
        changed are PG103 (never PG101); trainable parameters that did not change
        are PG102; added or removed names are PG104; a new shape or dtype is PG105;
        a tensor now hashed by another algorithm (moved between host and device)
        is PG106.
        """
        return self.check(model, self.prints, full=True)

    def check(self, model: object, prints: Sequence[TensorPrint], *, full: bool = False) -> InvarianceReport:
        """Verify only ``prints`` (a part of :attr:`prints`); what guards do between steps.

        With ``full=False`` tensors added since the snapshot are not reported and
        ``checked`` counts the tensors compared.
        """
        adapter = self._plugins.adapter_for_model(model)
        if adapter.name != self.framework:
            raise SnapshotMismatchError(
                f"model: this snapshot was taken of a {self.framework} model, but a {adapter.name} model was "
                "passed to verify(); verify the same model you snapshotted"
            )
        world = self.world
        if world is None:
            findings, checked, _ = self._check_here(adapter, model, prints, full)
            return InvarianceReport(framework=adapter.name, checked=checked, findings=tuple(findings))
        # Every rank checks what it holds, then the ranks swap verdicts (a few bytes per tensor), so that
        # every rank reports, and raises, the same thing.  A rank that fails here still takes part in the
        # exchange, so the others learn of it at once instead of waiting for it.
        try:
            findings, checked, replicas = self._check_here(adapter, model, prints, full)
        except Exception as exc:
            world.exchange(("error", f"{type(exc).__name__}: {exc}"))
            raise
        received: list[Any] = world.exchange(("ok", tuple(findings), replicas))
        failed = [(rank, got[1]) for rank, got in enumerate(received) if got[0] == "error"]
        if failed:
            raise DistributedError(
                "verify failed on "
                + "; ".join(f"rank {rank}: {error}" for rank, error in failed)
                + f" (reported on rank {world.rank}); fix that rank's error, every rank stopped with it"
            )
        merged = merge_findings([got[1] for got in received], world.size)
        merged += replica_findings([got[2] for got in received])
        order = {p.name: i for i, p in enumerate(self.prints)}
        merged.sort(key=lambda f: (f.code, order.get(f.name or "", len(order)), -1 if f.rank is None else f.rank))
        return InvarianceReport(
            framework=adapter.name, checked=checked, findings=tuple(merged), rank=world.rank, world_size=world.size
        )

    def _check_here(
        self, adapter: ParamGate, model: object, prints: Sequence[TensorPrint], full: bool
    ) -> tuple[list[Finding], int, dict[str, bytes]]:
        """This process's findings, how many tensors it compared, and its frozen replicas' digests."""
        tensors, duplicates = collect(adapter, model, self._intent)
        _unique_names(duplicates)
        by_name: dict[str, Tensor] = {}
        for t in tensors:
            for name in (t.name, *t.aliases):
                by_name.setdefault(name, t)
        findings: list[Finding] = []
        seen: set[int] = set()
        pairs: list[tuple[TensorPrint, Tensor]] = []
        for p in prints:
            found = by_name.get(p.name)
            if found is None and p.aliases:
                found = next((by_name[n] for n in p.aliases if n in by_name), None)
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
            resized = _resized(p, found)
            if resized is not None:
                findings.append(resized)
            else:
                pairs.append((p, found))
        # Checks between training steps stay quiet: a bar every N steps would garble the training's own output.
        quiet = not full or (self.world is not None and self.world.rank != 0)
        fingerprints = fingerprint_tensors(adapter, [t for _, t in pairs], self.threads, show_progress=not quiet)
        replicas: dict[str, bytes] = {}
        for (p, t), fp in zip(pairs, fingerprints, strict=True):
            finding = _compare(p, t, fp, adapter)
            if finding is not None:
                findings.append(finding)
            if p.placement == "replicated" and p.role == "frozen":
                replicas[p.name] = fp.algorithm.encode() + b":" + fp.digest
        for t in tensors if full else ():
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
        if len(findings) > 1:
            order = {p.name: i for i, p in enumerate(self.prints)}
            findings.sort(key=lambda f: (f.code, order.get(f.name or "", len(order))))
        checked = len(tensors) if full else len(pairs)
        return findings, checked, replicas


def _resized(p: TensorPrint, t: Tensor) -> Finding | None:
    was_frozen = p.role == "frozen"
    if t.entry.shape == p.shape and t.entry.dtype == p.dtype:
        return None
    return Finding(
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


def _explain(adapter: ParamGate, t: Tensor, then: Fingerprint) -> str | None:
    """Why the bits changed, from the adapter's optional ``explain_change(entry, then)`` method."""
    explain = getattr(adapter, "explain_change", None)
    if explain is None:
        return None
    why = call_adapter(adapter, "explain_change", explain, t.entry, then)
    return why if isinstance(why, str) and why else None


def _compare(p: TensorPrint, t: Tensor, now: Fingerprint, adapter: ParamGate) -> Finding | None:
    then = p.fingerprint
    if now.algorithm != then.algorithm:
        return Finding(
            "PG106",
            "warning",
            p.name,
            f"{p.name} was hashed with {then.algorithm} at the snapshot and with {now.algorithm} now: it moved "
            "between host and device memory, so its bits were not compared; take the snapshot after moving "
            "the model to where it trains",
            f"{p.name} 快照时用 {then.algorithm} 计算摘要，现在用 {now.algorithm}：它在主机与设备内存之间移动过，"
            "因此没有比较比特；请在把模型移到训练设备之后再拍快照",
        )
    if now == then:
        if p.role == "trainable":
            return Finding(
                "PG102",
                "warning",
                p.name,
                f"{p.name} is trainable but not one bit of it changed: check that it is in the optimizer, "
                "that it receives a gradient, and that the learning rate is not zero",
                f"{p.name} 是可训练参数，但一个比特都没有变：请检查它是否在优化器中、是否有梯度、学习率是否为零",
            )
        return None
    if p.role == "state":
        return Finding(
            "PG103",
            "warning",
            p.name,
            f"statistics {p.name} changed: normalization layers update running statistics in train mode even "
            "when every weight is frozen; if they should stay fixed, switch the frozen backbone to inference "
            "mode after every switch to training (torch: backbone.eval(); MindSpore: backbone.set_train(False))",
            f"统计量 {p.name} 发生了变化：训练模式下归一化层即使权重全部冻结也会更新滑动统计量；"
            "如需固定，请在每次切换到训练模式之后把冻结的主干切回推理模式"
            "（torch：backbone.eval()；MindSpore：backbone.set_train(False)）",
        )
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
        why = _explain(adapter, t, then) or why  # the adapter knows a cause the generic guess cannot see
        unfrozen = " (it requires grad now: take a new snapshot after unfreezing)" if t.entry.requires_grad else ""
        return Finding(
            "PG101",
            "error",
            p.name,
            f"frozen parameter {p.name} changed ({then.nbytes:,d} bytes compared, digests differ): {why}{unfrozen}",
            f"冻结参数 {p.name} 发生了变化（比较了 {then.nbytes:,d} 字节，摘要不同）：{why_zh}",
        )
    return None


class Guard:
    """Snapshot on entry, verify on exit; raise if a frozen parameter changed.

    Create one with :func:`paramgate.guard`.  After the block, :attr:`report`
    holds the :class:`~paramgate.InvarianceReport`.  If the block raises, nothing
    is verified and the exception goes on unchanged.  The guard holds the model
    only while the block runs.

    Inside the block, :meth:`step` (called once per training step) checks the
    frozen tensors between steps: all of them every ``every`` steps, or with
    ``rolling=K`` one K-th of them (by bytes) at every step, so that each frozen
    tensor is checked at least once every K steps.
    """

    def __init__(
        self,
        model: object,
        optimizer: object | None,
        plugins: ParamGatePluginManager,
        *,
        trainable: object | None = None,
        every: int | None = None,
        rolling: int | None = None,
        threads: int | None = None,
    ) -> None:
        for argument, value in (("every", every), ("rolling", rolling)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidArgumentError(f"{argument}: expected a positive number of steps or None, got {value!r}")
        if every is not None and rolling is not None:
            raise InvalidArgumentError(
                "every and rolling: choose one; every=N checks all frozen tensors every N steps, rolling=K "
                "checks a K-th of them at every step"
            )
        check_threads(threads)
        self._model: object | None = model
        self._optimizer = optimizer
        self._plugins = plugins
        self._every = every
        self._rolling = rolling
        self._threads = threads
        self._trainable = trainable
        self._slices: list[tuple[TensorPrint, ...]] = []
        self._entered = False
        self.steps = 0
        self.snapshot: Snapshot | None = None
        self.report: InvarianceReport | None = None
        self.last_check: InvarianceReport | None = None

    def __enter__(self) -> Guard:
        if self._entered:
            raise GuardStateError("a paramgate guard can be entered only once; create a new one")
        self._entered = True
        # adapter_for, not an assert: guard(None) is the user's mistake and gets UnsupportedModelError.
        adapter = self._plugins.adapter_for(self._model, self._optimizer)
        self.snapshot = Snapshot.take(
            adapter, self._model, self._optimizer, self._plugins, self._threads, self._trainable
        )
        self._optimizer = self._trainable = None
        frozen = [p for p in self.snapshot.prints if p.role == "frozen"]
        if self._rolling is not None:
            self._slices = _balanced(frozen, self._rolling)
        elif self._every is not None:
            self._slices = [tuple(frozen)]
        return self

    def step(self) -> InvarianceReport | None:
        """Count one training step; check frozen tensors when due, and raise if one changed.

        Returns the check's report on steps that check, None on the others.
        Without ``every`` or ``rolling`` it only counts.
        """
        if self._model is None or self.snapshot is None:
            raise GuardStateError("step(): call it inside the guard's with block, once per training step")
        self.steps += 1
        if not self._slices:
            return None
        if self._rolling is not None:
            due = self._slices[(self.steps - 1) % len(self._slices)]
        elif self._every is not None and self.steps % self._every == 0:
            due = self._slices[0]
        else:
            return None
        self.last_check = self.snapshot.check(self._model, due)
        if not self.last_check.ok:
            raise FrozenParameterChanged(self.last_check)
        return self.last_check

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        model, self._model = self._model, None
        if exc_type is not None or self.snapshot is None:
            return
        self.report = self.snapshot.verify(model)
        # A FrozenParameterChanged the caller keeps holds this frame in its traceback: drop the model first.
        del model
        if not self.report.ok:
            raise FrozenParameterChanged(self.report)


def _balanced(prints: Sequence[TensorPrint], parts: int) -> list[tuple[TensorPrint, ...]]:
    """``prints`` in ``parts`` slices of about equal bytes (largest first, each to the lightest slice)."""
    slices: list[list[TensorPrint]] = [[] for _ in range(min(parts, max(len(prints), 1)))]
    loads = [0] * len(slices)
    for p in sorted(prints, key=lambda p: p.fingerprint.nbytes, reverse=True):
        lightest = loads.index(min(loads))
        slices[lightest].append(p)
        loads[lightest] += p.fingerprint.nbytes
    return [tuple(s) for s in slices if s]

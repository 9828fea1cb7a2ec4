"""torch.distributed: the ranks' bounded exchange, and the FSDP1 pre-flight.

:class:`TorchWorld` is what the core's :class:`paramgate.distributed.World` asks
for: this process's rank and a bounded all-gather of a small payload.  It goes
through the process group's key-value store (the one ``init_process_group``
created), not through a collective: each rank posts its payload under its own
key and waits for the others' keys with a deadline, so a rank that raised or
died shows up as a missing key, named, after at most ``timeout`` seconds.  No
rank ever blocks in a collective the others will not join.

:func:`fsdp_preflight` predicts, before wrapping, which FSDP1 units would mix
frozen and trainable parameters (``use_orig_params=False`` refuses them).
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from paramgate import DistributedError, Finding

__all__ = ["TIMEOUT_ENV", "TorchWorld", "fsdp_preflight", "world"]

TIMEOUT_ENV = "PARAMGATE_DISTRIBUTED_TIMEOUT"
"""Seconds a rank waits for the others during a verify (default 300)."""

_WORLDS: dict[tuple[int, int], TorchWorld] = {}


class TorchWorld:
    """The default process group as the core's ``World``: rank, size, and a bounded exchange."""

    def __init__(self, rank: int, size: int, store: Any, timeout: float) -> None:
        self.rank = rank
        self.size = size
        self.timeout = timeout
        self._store = store
        self._round = 0

    def exchange(self, payload: object) -> list[object]:
        self._round += 1
        key = f"paramgate/{self._round}/"
        # This rank's key from two rounds ago is no longer read by anyone: every rank that posted
        # for the last round had finished reading the one before.
        if self._round > 2:
            self._delete(f"paramgate/{self._round - 2}/{self.rank}")
        self._store.set(key + str(self.rank), pickle.dumps(payload))
        deadline = time.monotonic() + self.timeout
        missing = [r for r in range(self.size) if r != self.rank]
        while missing:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DistributedError(
                    f"rank {', '.join(map(str, missing))} went silent: no verdict within {self.timeout:g} s of "
                    f"rank {self.rank}'s during verify round {self._round}. It raised or died before reaching "
                    "the check, or calls snapshot/verify/guard.step() a different number of times than the "
                    f"others; every rank must make the same calls ({TIMEOUT_ENV} sets the wait)"
                )
            try:
                self._store.wait([key + str(missing[0])], timedelta(seconds=min(left, 1.0)))
            except Exception:  # a timeout of this short wait, or a store that lost the dead rank's connection
                time.sleep(0.05)
                continue
            missing.pop(0)
        return [pickle.loads(self._store.get(key + str(r))) for r in range(self.size)]

    def _delete(self, key: str) -> None:
        try:
            self._store.delete_key(key)
        except Exception:  # a store without deletion (FileStore) keeps the few bytes
            return


def world() -> TorchWorld | None:
    """The default process group as a ``World``, or None when torch.distributed is not running."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    size = dist.get_world_size()
    if size < 2:
        return None
    # The store init_process_group set up (private, but stable since torch 1.x): the only way to wait
    # for other ranks with a deadline and learn which one is missing.  One World per process group and
    # store, so that every rank counts its exchange rounds from the same start.
    store = dist.distributed_c10d._get_default_store()
    key = (id(dist.distributed_c10d._get_default_group()), id(store))
    known = _WORLDS.get(key)
    if known is None:
        timeout = float(os.environ.get(TIMEOUT_ENV, "300"))
        known = _WORLDS[key] = TorchWorld(dist.get_rank(), size, store, timeout)
    return known


def _units(model: Any, wrap: Callable[[Any], bool]) -> list[tuple[str, list[tuple[str, Any]]]]:
    """FSDP1's flat-parameter units: each wrapped module's own parameters, nested units excluded; the root last."""
    units: list[tuple[str, list[tuple[str, Any]]]] = []

    def visit(prefix: str, module: Any, owned: list[tuple[str, Any]]) -> None:
        for name, p in module.named_parameters(recurse=False):
            owned.append((prefix + name, p))
        for child_name, child in module.named_children():
            path = f"{prefix}{child_name}."
            if wrap(child):
                inner: list[tuple[str, Any]] = []
                visit(path, child, inner)
                units.append((path[:-1], inner))
            else:
                visit(path, child, owned)

    root: list[tuple[str, Any]] = []
    visit("", model, root)
    units.append(("", root))
    return units


def fsdp_preflight(model: Any, auto_wrap_policy: object | Iterable[type] | None = None) -> list[Finding]:
    """The FSDP1 units of ``model`` that would mix frozen and trainable parameters (PG011), before wrapping.

    ``FullyShardedDataParallel(model, use_orig_params=False, auto_wrap_policy=...)``
    flattens each unit's parameters into one tensor and refuses a unit whose
    flags differ ("Must flatten tensors with uniform requires_grad",
    huggingface/peft#1702); with ``use_orig_params=True`` it accepts it but keeps
    gradient memory for the frozen ones (pytorch/pytorch#104690).
    ``auto_wrap_policy`` is what you will pass to FSDP: a ``ModuleWrapPolicy``, a
    set of module classes, or a ``module -> bool`` predicate; None wraps the
    model as one unit.  Returns one error finding per mixed unit, naming its
    parameters and the fix.
    """
    classes = getattr(auto_wrap_policy, "_module_classes", None)
    if classes is not None:
        wrap: Callable[[Any], bool] = lambda m: isinstance(m, tuple(classes))  # noqa: E731
    elif auto_wrap_policy is None:
        wrap = lambda m: False  # noqa: E731
    elif isinstance(auto_wrap_policy, set | frozenset | list | tuple):
        kinds = tuple(auto_wrap_policy)
        wrap = lambda m: isinstance(m, kinds)  # noqa: E731
    elif callable(auto_wrap_policy):
        wrap = auto_wrap_policy
    else:
        from paramgate import InvalidArgumentError

        raise InvalidArgumentError(
            f"auto_wrap_policy: expected a ModuleWrapPolicy, a set of module classes or a module -> bool "
            f"predicate, got {type(auto_wrap_policy).__name__}"
        )
    findings = []
    for unit, params in _units(model, wrap):
        seen: dict[int, tuple[str, Any]] = {}
        for name, p in params:
            seen.setdefault(id(p), (name, p))
        frozen = [n for n, p in seen.values() if not p.requires_grad]
        trainable = [n for n, p in seen.values() if p.requires_grad]
        if not (frozen and trainable):
            continue
        label = unit or "the root unit"
        findings.append(
            Finding(
                "PG011",
                "error",
                unit or None,
                f"FSDP unit {label} would flatten frozen ({', '.join(frozen)}) and trainable "
                f"({', '.join(trainable)}) parameters into one tensor: with use_orig_params=False FSDP raises "
                "'Must flatten tensors with uniform requires_grad' (huggingface/peft#1702), and with "
                "use_orig_params=True the frozen ones still cost gradient memory (pytorch/pytorch#104690). Wrap "
                "the frozen and trainable parts as separate units (add their module classes to the "
                "auto_wrap_policy), or use FSDP2's fully_shard, which keeps each parameter's flag",
                f"FSDP 单元 {label} 会把冻结参数（{', '.join(frozen)}）和可训练参数（{', '.join(trainable)}）"
                "展平成同一个张量：use_orig_params=False 时会报错，use_orig_params=True 时冻结参数仍占梯度内存。"
                "请把冻结部分和可训练部分分别包装成单元，或改用 FSDP2 的 fully_shard",
            )
        )
    return findings

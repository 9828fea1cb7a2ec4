"""The front door: typed functions over the adapters the plugins provide."""

from __future__ import annotations

from typing import Any

from paramgate.checks import build_audit, collect
from paramgate.plugins import ParamGatePluginManager, get_plugin_manager
from paramgate.report import AuditReport
from paramgate.snapshot import Guard, Snapshot

__all__ = ["audit", "guard", "snapshot", "trainable"]


def _manager(plugins: ParamGatePluginManager | None) -> ParamGatePluginManager:
    return get_plugin_manager() if plugins is None else plugins


def trainable(model: object, *, plugins: ParamGatePluginManager | None = None) -> list[Any]:
    """The model's parameters that require grad, as a list, in model order.

    The drop-in for ``filter(lambda x: x.requires_grad, net.get_parameters())``:
    the same objects, but a list, so reading it once (to log it, say) does not
    leave the optimizer empty.  A parameter listed under two names appears once.

    >>> from paramgate_numpy import Parameter
    >>> import numpy as np
    >>> model = [Parameter(np.zeros(2), "backbone.w", requires_grad=False), Parameter(np.ones(2), "head.w")]
    >>> [p.name for p in trainable(model)]
    ['head.w']
    """
    pm = _manager(plugins)
    adapter = pm.adapter_for_model(model)
    tensors, _ = collect(adapter, model)
    return [t.entry.obj for t in tensors if t.entry.requires_grad and t.entry.kind == "parameter"]


def audit(
    model: object,
    optimizer: object | None = None,
    *,
    trainable: object | None = None,
    plugins: ParamGatePluginManager | None = None,
) -> AuditReport:
    """Report what the optimizer will and will not touch, and what is wrong with it.

    ``optimizer`` is the framework's optimizer, or the list of parameters (or of
    ``{"params": ...}`` group dicts) you are about to hand to one; omit it to
    check the model alone.  One-shot iterators are refused rather than consumed.

    ``trainable`` states what is meant to train when the tensors' own flags do
    not (JAX has none) or when you want to check against a plan: a
    ``name -> bool`` callable, a mapping of names to flags, a collection of the
    names to train, or what the adapter reads (JAX: a pytree of bools).  Without
    it, flags decide; an adapter may infer the intent from the optimizer
    instead, and the report says so (PG010).

    >>> report = audit(model, trainable(model))  # doctest: +SKIP
    >>> report.ok, report.codes()  # doctest: +SKIP
    (True, [])
    """
    return build_audit(_manager(plugins).adapter_for(model, optimizer), model, optimizer, trainable)


def snapshot(
    model: object,
    optimizer: object | None = None,
    *,
    trainable: object | None = None,
    threads: int | None = None,
    plugins: ParamGatePluginManager | None = None,
) -> Snapshot:
    """Fingerprint every tensor of ``model`` now; ``.verify(model)`` compares later.

    The snapshot holds digests, not copies, and no reference to any tensor.  The
    optimizer, if given, only tells which group each tensor was in, for messages.
    ``threads`` caps the worker threads that hash big tensors (default: one per
    core, up to 8; 1 hashes on the calling thread only).  ``trainable`` states
    what is meant to train, as for :func:`audit`: it decides which tensors
    count as frozen, and ``verify`` keeps to it.
    """
    pm = _manager(plugins)
    return Snapshot.take(pm.adapter_for(model, optimizer), model, optimizer, pm, threads, trainable)


def guard(
    model: object,
    optimizer: object | None = None,
    *,
    trainable: object | None = None,
    every: int | None = None,
    rolling: int | None = None,
    threads: int | None = None,
    plugins: ParamGatePluginManager | None = None,
) -> Guard:
    """A context manager: snapshot on entry, verify on exit.

    Raises :class:`~paramgate.FrozenParameterChanged`, naming every changed
    parameter, when a frozen parameter's bits changed inside the block::

        with paramgate.guard(model, optimizer, every=100) as gate:
            for batch in loader:
                train_step(batch)
                gate.step()  # checks every frozen tensor every 100 steps

    ``every=N`` checks all frozen tensors at every N-th ``gate.step()``;
    ``rolling=K`` checks a K-th of them (by bytes) at every step, each one at
    least once every K steps.  Either way the full check still runs on exit.
    ``trainable`` states what is meant to train, as for :func:`audit`.
    """
    return Guard(
        model, optimizer, _manager(plugins), trainable=trainable, every=every, rolling=rolling, threads=threads
    )

"""Leaves of a params pytree or a Flax NNX module, with their names, in model order.

Names come from jax key paths, joined with dots like the other adapters'
(``backbone.conv1.weight``).  jax flattens a ``dict`` in sorted key order; a
report lists the leaves in the order the model was written instead (dict
insertion order, a module's attribute order), the way torch's ``state_dict``
does, and falls back to jax's order for nodes with no order of their own.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Leaf", "is_array", "key_name", "leaves", "nnx_module", "node_at", "path_keys"]


def is_array(obj: object) -> bool:
    """Whether ``obj`` is a ``jax.Array`` (without importing jax: if it isn't imported, it can't be one)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(obj, jax.Array)


def nnx_module(obj: object) -> bool:
    """Whether ``obj`` is a Flax NNX ``Module`` (without importing flax)."""
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(obj, nnx.Module)


def key_name(key: object) -> str:
    """One key-path entry as a name component: ``DictKey('w')`` -> ``w``, ``SequenceKey(0)`` -> ``0``."""
    for attr in ("key", "name", "idx"):
        value = getattr(key, attr, None)
        if value is not None:
            return str(value)
    return str(key).strip(".[]'\"")


def path_keys(path: Sequence[object]) -> tuple[Hashable, ...]:
    """A key path as NNX filters see it: a tuple of plain str / int keys."""
    out: list[Hashable] = []
    for key in path:
        for attr in ("key", "name", "idx"):
            value = getattr(key, attr, None)
            if value is not None:
                out.append(value)
                break
        else:
            out.append(key_name(key))
    return tuple(out)


@dataclass(eq=False, slots=True)
class Leaf:
    """One leaf: its dotted name, its key path and the object itself (array or NNX Variable)."""

    name: str
    path: tuple[Any, ...]
    obj: object


def _child(node: object, key: object) -> object:
    """The child of ``node`` at one key-path entry, or a sentinel when it cannot be resolved."""
    name = type(key).__name__
    try:
        if name == "DictKey":
            return node[key.key]  # type: ignore[attr-defined,index]
        if name == "SequenceKey":
            return node[key.idx]  # type: ignore[attr-defined,index]
        if name == "GetAttrKey":
            return getattr(node, key.name)  # type: ignore[attr-defined]
    except (KeyError, IndexError, AttributeError, TypeError):
        pass
    return _UNRESOLVED


_UNRESOLVED = object()


def node_at(root: object, path: Sequence[object]) -> object | None:
    """The node at ``path`` under ``root``, or None when a key cannot be followed."""
    node = root
    for key in path:
        node = _child(node, key)
        if node is _UNRESOLVED:
            return None
    return node


def _written_order(node: object) -> dict[object, int] | None:
    """Positions of a node's keys in the order they were written, when the node keeps one."""
    if isinstance(node, Mapping):
        return {k: i for i, k in enumerate(node)}
    attrs = getattr(node, "__dict__", None)
    if isinstance(attrs, dict) and not isinstance(node, type):
        return {k: i for i, k in enumerate(attrs)}
    return None


def _raw_key(key: object) -> object:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return getattr(key, attr)
    return key


def leaves(model: object, is_leaf: Any = None) -> list[Leaf]:
    """Every leaf of ``model``, in model order (see the module docstring)."""
    import jax

    flat, _ = jax.tree_util.tree_flatten_with_path(model, is_leaf=is_leaf)
    if len(flat) < 2:
        return [Leaf(_name(path), tuple(path), obj) for path, obj in flat]
    first: dict[tuple[Any, ...], int] = {}
    for index, (path, _) in enumerate(flat):
        for depth in range(1, len(path) + 1):
            first.setdefault(tuple(path[:depth]), index)
    orders: dict[tuple[Any, ...], dict[object, int] | None] = {}
    nodes: dict[tuple[Any, ...], object] = {(): model}

    def position(prefix: tuple[Any, ...], key: object) -> tuple[int, int]:
        if prefix not in orders:
            node = nodes.get(prefix)
            orders[prefix] = None if node is None else _written_order(node)
        order = orders[prefix]
        written = None if order is None else order.get(_raw_key(key))
        # Siblings share a node, so they are all ranked the same way; jax's order breaks no ties.
        return (written, 0) if written is not None else (first[(*prefix, key)], 1)

    def sort_key(item: tuple[int, tuple[Any, ...]]) -> tuple[tuple[int, int], ...]:
        _, path = item
        out = []
        for depth, key in enumerate(path):
            prefix = path[:depth]
            if prefix not in nodes:
                parent = nodes.get(prefix[:-1])
                child = _child(parent, prefix[-1]) if parent is not None else _UNRESOLVED
                nodes[prefix] = None if child is _UNRESOLVED else child
            out.append(position(prefix, key))
        return tuple(out)

    ranked = sorted(((i, tuple(path)) for i, (path, _) in enumerate(flat)), key=sort_key)
    return [Leaf(_name(path), path, flat[i][1]) for i, path in ranked]


def _name(path: Sequence[object]) -> str:
    return ".".join(key_name(k) for k in path)

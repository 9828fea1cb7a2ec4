"""What an optax transformation really moves: a probe on the params pytree.

An optax ``GradientTransformation`` is a pair of functions; which leaves it
moves shows only when it runs.  :func:`probe` runs it: ``tx.init(params)``, then
``tx.update`` twice on a unit gradient (ones in each leaf's dtype), so that
stateful transforms (momentum, warm-up schedules that start at zero) show their
hand at the second step.  A leaf whose update is non-zero at either step is "in
the optimizer".  The params are only read: jax arrays are immutable, nothing is
donated, and the probe's optimizer state and updates are dropped when the call
ends.  The probe keeps going for up to :data:`MAX_STEPS` steps only when nothing
moved at all (gradient accumulation such as ``optax.MultiSteps`` returns zeros
until its k-th step).

Groups follow ``optax.multi_transform`` / ``optax.partition`` labels when the
transformation has them (read from the closures optax builds, the only place
they live); hyperparameters are read from ``optax.inject_hyperparams`` state.
Nothing else is guessed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from paramgate import GroupEntry, InvalidArgumentError, Member
from paramgate.records import JSONValue
from paramgate_jax.tree import Leaf

__all__ = ["MAX_STEPS", "Bound", "prefix_values", "probe"]

MAX_STEPS = 16
"""Steps the probe runs at most, when the first two move nothing at all."""

_NO_LABEL = object()
LABELS = "optimizer: the labels of optax.multi_transform / optax.partition"

MASKED_TRAP = (
    "optax.masked(inner, mask) hands back the leaves whose mask is False untouched, so their raw gradient "
    "becomes their update (google-deepmind/optax#159): masked() decides what inner applies to, not what "
    "is frozen"
)


@dataclass(eq=False)
class _Probed:
    """One leaf of the probed tree and what the probe saw of it."""

    leaf: Leaf
    label: Hashable | None = None
    moved: bool = False
    passthrough: bool = False
    flips: bool = False


@dataclass(eq=False)
class Bound:
    """An optimizer bound to its model: what :meth:`JaxAdapter.optimizer_groups` and ``would_move`` read.

    Lives for one audit or snapshot; it holds the model's leaves only for that call.
    """

    source: str
    groups: tuple[GroupEntry, ...]
    probed: tuple[_Probed, ...]
    steps: int
    tx: Any
    params: Any
    masked: bool
    stated: Mapping[str, bool] | None = None
    """Flags the optimizer states itself (an ``nnx.Optimizer``'s ``wrt`` filter), by name."""
    _by_id: dict[int, _Probed] = field(default_factory=dict)
    _still: frozenset[int] | None = None

    def __post_init__(self) -> None:
        self._by_id = {id(p.leaf.obj): p for p in self.probed}

    @property
    def inferred(self) -> dict[str, bool]:
        """What the probe says is meant to train: the leaves with a non-zero update."""
        return {p.leaf.name: p.moved for p in self.probed}

    def note(self) -> str:
        """The PG010 message: the intent was read from the probe, not stated."""
        moved = sum(p.moved for p in self.probed)
        return (
            f"no trainable= was given, so the {moved} of {len(self.probed)} leaves that the {self.source} moves "
            f"(a non-zero update in a probe: tx.init, then {self.steps} tx.update steps on a unit gradient) count "
            "as trainable and the rest as frozen; pass trainable= (a pytree of bools like the params, or a "
            "name -> bool function) to check the optimizer against what you meant"
        )

    def reason(self, obj: object) -> str | None:
        """Why the optimizer changes this (frozen) leaf, or None when it would not."""
        p = self._by_id.get(id(obj))
        if p is None or not (p.moved or p.flips):
            return None
        where = f" (label {p.label!r})" if p.label is not None else ""
        if not p.moved:
            return (
                f"its update is zero{where}, but optax.apply_updates adds it anyway (p + u), and in IEEE 754 "
                "-0.0 + 0.0 is +0.0: its -0.0 values come back as +0.0, equal values with other bits; apply "
                "the updates to the trainable leaves only to keep it bit-for-bit"
            )
        if p.passthrough:
            trap = MASKED_TRAP if self.masked else "the transformation hands its gradient back unchanged as update"
            return f"{trap}{where}"
        parts = [f"the {self.source} gives it a non-zero update for a non-zero gradient{where}"]
        if id(obj) in self._moved_without_gradient():
            parts.append("and even for a zero gradient (weight decay: e.g. optax.adamw or optax.add_decayed_weights)")
        return f"{' '.join(parts)}: its gradient reaches the optimizer like any other leaf's"

    def _moved_without_gradient(self) -> frozenset[int]:
        # A second probe, on a zero gradient, only when a message needs it.
        if self._still is None:
            flags, _, _ = _run(self.tx, self.params, 2, self.source, unit=False)
            self._still = frozenset(id(p.leaf.obj) for p, f in zip(self.probed, flags, strict=True) if f[0])
        return self._still


def prefix_values(prefix: object, leaves: Sequence[Leaf], what: str) -> list[object]:
    """The value of a prefix tree (optax labels or masks) at each of ``leaves``.

    Walks ``prefix`` along each leaf's key path until it reaches a leaf of its
    own, which then covers the whole subtree, as optax reads labels and masks.
    Raises InvalidArgumentError naming the first leaf the prefix does not cover.
    """
    import jax

    def is_leaf(node: object) -> bool:
        return node is not None and jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(node))

    out = []
    for leaf in leaves:
        node: object = prefix
        for key in leaf.path:
            if node is None or is_leaf(node):
                break
            node = _step(node, key)
            if node is _NO_LABEL:
                break
        if node is _NO_LABEL or node is None or not is_leaf(node):
            got = "nothing" if node is _NO_LABEL else ("None" if node is None else f"a {type(node).__name__}")
            raise InvalidArgumentError(
                f"{what} must cover every leaf of the params pytree, with the params' structure or a prefix of "
                f"it (e.g. {{'backbone': ..., 'head': ...}}), but leaf {leaf.name!r} gets {got}: add "
                f"{leaf.name!r} (or a subtree holding it)"
            )
        out.append(node)
    return out


def _step(node: object, key: object) -> object:
    raw = getattr(key, "key", getattr(key, "idx", getattr(key, "name", None)))
    if hasattr(node, "get_raw_value") and raw == "value":
        return node.get_raw_value()  # an NNX Variable (its .value attribute is deprecated)
    if isinstance(node, Mapping):
        return node.get(raw, _NO_LABEL)
    if type(key).__name__ == "GetAttrKey":
        return getattr(node, str(raw), _NO_LABEL)
    try:
        return node[raw]  # type: ignore[index]
    except (IndexError, KeyError, TypeError):
        return _NO_LABEL


def _closure_functions(tx: Any) -> Iterator[Callable[..., Any]]:
    """Every function reachable from ``tx``'s init and update through closures (where optax keeps its parts)."""
    seen: set[int] = set()
    stack: list[object] = [tx.init, tx.update]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or len(seen) > 10_000:
            continue
        seen.add(id(obj))
        if callable(obj) and hasattr(obj, "__code__"):
            yield obj
            for cell in getattr(obj, "__closure__", None) or ():
                try:
                    stack.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    continue
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                stack.append(wrapped)
        elif isinstance(obj, tuple | list):
            stack.extend(obj)
        elif isinstance(obj, Mapping):
            stack.extend(obj.values())
        elif hasattr(obj, "init") and hasattr(obj, "update"):
            stack.extend((obj.init, obj.update))


def _cells(fn: Callable[..., Any]) -> dict[str, object]:
    out = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
        try:
            out[name] = cell.cell_contents
        except ValueError:
            continue
    return out


def _optax_parts(tx: Any) -> tuple[tuple[Any, Any] | None, bool]:
    """The outermost ``partition`` (its labels and transforms), and whether ``tx`` uses ``masked``."""
    partition = None
    masked = False
    for fn in _closure_functions(tx):
        qualname = getattr(fn, "__qualname__", "")
        if not getattr(fn, "__module__", "").startswith("optax"):
            continue
        if qualname == "partition.<locals>.init_fn" and partition is None:
            cells = _cells(fn)
            if "param_labels" in cells and isinstance(cells.get("transforms"), Mapping):
                partition = (cells["param_labels"], cells["transforms"])
        elif qualname.startswith("masked.<locals>."):
            masked = True
    return partition, masked


def _step_flags(p: Any, g: Any, u: Any) -> Any:
    """[update non-zero, update == gradient, zero update that turns -0.0 into +0.0] for one leaf and step."""
    import jax.numpy as jnp

    flips = jnp.zeros((), bool)
    if jnp.issubdtype(p.dtype, jnp.floating) and jnp.issubdtype(u.dtype, jnp.floating):
        flips = jnp.any((p == 0) & jnp.signbit(p) & (u == 0) & ~jnp.signbit(u))
    return jnp.stack([jnp.any(u != 0), jnp.all(u == g), flips])


_flags_kernel: Callable[..., Any] | None = None


def _kernel() -> Callable[..., Any]:
    # Compiled once per leaf shape and dtype, and cached by jax across leaves and calls.
    global _flags_kernel
    if _flags_kernel is None:
        import jax

        _flags_kernel = jax.jit(_step_flags)
    return _flags_kernel


def _run(tx: Any, params: Any, steps: int, source: str, *, unit: bool = True) -> tuple[list[list[bool]], int, Any]:
    """Per leaf ``[moved, passthrough, flips]`` after ``steps`` updates on a unit (or zero) gradient.

    Runs ``tx`` eagerly, as written (jax compiles each op once per shape and
    caches it, so a second audit of the same model is fast), and reduces each
    step's updates to three flags per leaf at once, so the probe holds the
    optimizer state, the gradient and one step's updates at a time.  When
    nothing moved, it keeps stepping up to :data:`MAX_STEPS`.  Also returns the
    hyperparameters of the initial state.
    """
    import jax
    import jax.numpy as jnp

    kernel = _kernel()
    structure: Any = jax.tree_util.tree_structure(params)
    leaves = structure.flatten_up_to(params)
    grads = jax.tree_util.tree_map(jnp.ones_like if unit else jnp.zeros_like, params)
    grad_leaves = structure.flatten_up_to(grads)
    moved = [False] * len(leaves)
    same = [bool(getattr(p, "size", 0)) for p in leaves]
    flips = [False] * len(leaves)
    done = 0
    try:
        state = tx.init(params)
        hyper = _read_hyper(state)
        while done < steps or (not any(moved) and done < MAX_STEPS):
            updates, state = tx.update(grads, state, params)
            rows = [
                None if u is None else kernel(p, g, u)
                for p, g, u in zip(leaves, grad_leaves, structure.flatten_up_to(updates), strict=True)
            ]
            del updates
            for i, row in enumerate(jax.device_get(rows)):
                if row is None:
                    same[i] = False
                    continue
                moved[i] |= bool(row[0])
                same[i] &= bool(row[1])
                flips[i] |= bool(row[2])
            done += 1
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"optimizer: the {source} fails on this params pytree ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0]}); paramgate runs tx.init(params) and tx.update(grads, state, "
            "params) as your training loop would: check that the optimizer was built for these params (labels "
            "and masks with the params' structure) and needs no extra update arguments"
        ) from exc
    flags = [[m, s and m, f and not m] for m, s, f in zip(moved, same, flips, strict=True)]
    return flags, done, hyper


def _read_hyper(state: Any) -> tuple[dict[str, JSONValue] | None, dict[Any, dict[str, JSONValue] | None]]:
    """Hyperparameters outside any partition, and those of each partition label."""
    inner = _partition_states(state)
    return (
        _merge(_collect_hyper(_outside_partition(state))),
        {label: _merge(_collect_hyper(value)) for label, value in inner.items()},
    )


def _collect_hyper(state: Any) -> list[dict[str, Any]]:
    """The hyperparameter arrays of the ``optax.inject_hyperparams`` states in ``state``."""
    found = []
    for node in _states(state):
        hyper = getattr(node, "hyperparams", None)
        if isinstance(hyper, Mapping) and type(node).__name__.startswith("Inject"):
            found.append({str(k): v for k, v in hyper.items() if hasattr(v, "dtype")})
    return found


def _merge(found: Sequence[Mapping[str, Any]]) -> dict[str, JSONValue] | None:
    """One set of hyperparameters from several states; a name whose values disagree is left out."""
    merged: dict[str, JSONValue] = {}
    clashes: set[str] = set()
    for hyper in found:
        for key, value in hyper.items():
            number = _scalar(value)
            if number is None:
                continue
            if key in merged and merged[key] != number:
                clashes.add(key)
            merged[key] = number
    for key in clashes:
        del merged[key]
    return merged or None


def _states(state: Any, depth: int = 0) -> Iterator[Any]:
    if depth > 32:
        return
    yield state
    if isinstance(state, Mapping):
        children: Sequence[Any] = list(state.values())
    elif isinstance(state, tuple | list):
        children = state
    else:
        return
    for child in children:
        if not hasattr(child, "shape"):
            yield from _states(child, depth + 1)


def _scalar(value: Any) -> JSONValue:
    """A hyperparameter as JSON, at its own precision: float32 0.01 reads 0.01, not 0.009999999776."""
    import numpy as np

    if isinstance(value, bool | int | float | str):
        return value
    try:
        array = np.asarray(value)
    except Exception:  # anything that is not a plain number is left out, not guessed
        return None
    if array.shape != ():
        return None
    if array.dtype == np.bool_:
        return bool(array)
    if np.issubdtype(array.dtype, np.integer):
        return int(array)
    if np.issubdtype(array.dtype, np.floating):
        return float(str(array[()]))
    return None


def _group_fields(hyper: Mapping[str, JSONValue] | None) -> dict[str, Any]:
    hyper = dict(hyper or {})
    fields: dict[str, Any] = {}
    for key, target in (("learning_rate", "lr"), ("momentum", "momentum"), ("weight_decay", "weight_decay")):
        value = hyper.pop(key, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            fields[target] = float(value)
    fields["options"] = hyper
    return fields


def probe(
    tx: Any,
    params: Any,
    leaves: Sequence[Leaf],
    order: Mapping[str, int],
    *,
    source: str,
    stated: Mapping[str, bool] | None = None,
) -> Bound:
    """Run ``tx`` on ``params`` and read what it moves.

    ``leaves`` are ``params``' leaves in jax's order, each with the model's own
    object for it (the array, or the NNX Variable holding it), so that groups
    hold what the model's entries hold; ``order`` ranks names in model order.
    """

    partition, masked = _optax_parts(tx)
    labels: list[Any] | None = None
    transforms: Mapping[Any, Any] = {}
    if partition is not None:
        param_labels, transforms = partition
        tree = param_labels(params) if callable(param_labels) else param_labels
        # Checked in model order, so that the first leaf named is the first one the user wrote.
        ranked = sorted(range(len(leaves)), key=lambda i: order.get(leaves[i].name, len(order)))
        found = prefix_values(tree, [leaves[i] for i in ranked], LABELS)
        labels = [None] * len(leaves)
        for i, label in zip(ranked, found, strict=True):
            labels[i] = label
        unknown = [(leaves[i], labels[i]) for i in ranked if labels[i] not in transforms]
        if unknown:
            leaf, label = unknown[0]
            more = f" (and {len(unknown) - 1} more leaves)" if len(unknown) > 1 else ""
            raise InvalidArgumentError(
                f"optimizer: leaf {leaf.name!r} has the label {label!r}{more}, for which optax.multi_transform has "
                f"no transform ({', '.join(map(repr, transforms))}): add one, e.g. {{{label!r}: "
                "optax.set_to_zero()} to freeze it, or give the leaf one of those labels"
            )
    flags, steps, (outside, per_label) = _run(tx, params, 2, source)
    probed = tuple(_Probed(leaf, None if labels is None else labels[i], *flags[i]) for i, leaf in enumerate(leaves))
    members = sorted((p for p in probed if p.moved or p.flips), key=lambda p: order.get(p.leaf.name, len(order)))
    groups: list[GroupEntry] = []
    if labels is None:
        held = tuple(Member(p.leaf.obj, p.leaf.name) for p in members)
        groups.append(GroupEntry(0, held, **_group_fields(outside)))
    else:
        for label in transforms:
            held = tuple(Member(p.leaf.obj, p.leaf.name) for p in members if p.label == label)
            if not held:
                continue  # a label whose transform moves nothing (optax.set_to_zero()) holds no leaf
            fields = _group_fields(per_label.get(label) or outside)
            fields["options"] = {"label": label if isinstance(label, str | int) else repr(label), **fields["options"]}
            groups.append(GroupEntry(len(groups), held, **fields))
        if not groups:
            groups.append(GroupEntry(0, ()))
    return Bound(source, tuple(groups), probed, steps, tx, params, masked, stated)


def _partition_states(state: Any) -> Mapping[Any, Any]:
    for node in _states(state):
        inner = getattr(node, "inner_states", None)
        if type(node).__name__ == "PartitionState" and isinstance(inner, Mapping):
            return inner
    return {}


def _outside_partition(state: Any) -> Any:
    if type(state).__name__ == "PartitionState":
        return None
    if isinstance(state, Mapping):
        return {k: _outside_partition(v) for k, v in state.items()}
    if isinstance(state, tuple | list) and not hasattr(state, "hyperparams"):
        return [_outside_partition(v) for v in state]
    return state

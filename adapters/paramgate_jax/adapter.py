"""The JAX adapter: params pytrees and Flax NNX modules in, neutral records out.

What it reads, and why:

- A **params pytree** (dicts, lists, tuples, dataclasses... of ``jax.Array``) is a
  model.  Each leaf is a parameter named by its key path, joined with dots
  (``backbone.conv1.weight``), listed in the order the pytree was written.  JAX
  has no ``requires_grad``: ``jax.grad`` differentiates every leaf, so every
  leaf is trainable until ``trainable=`` or the optimizer says otherwise.
  Leaves that are not arrays (a float, a string) are refused by name: a
  snapshot needs bits to fingerprint and an identity to follow.
- A **Flax NNX module** is a model too: ``nnx.Param`` Variables are parameters;
  other Variables (``nnx.BatchStat``, caches, custom ones) are module state, kind
  ``"buffer"`` and role ``"state"`` like torch's buffers, because no optimizer
  with NNX's usual ``wrt=nnx.Param`` touches them while forward passes may
  (``updating`` says whether a BatchNorm's next call in its current mode
  will).  A plain array attribute is a constant of the module, which neither
  ``nnx.grad`` nor ``wrt=nnx.Param`` selects: a frozen parameter.  RNG streams
  (``nnx.RngState``) are left out: every call that draws advances them.
- An **optax** ``GradientTransformation`` knows its parameters only together
  with the params: :meth:`JaxAdapter.bind_optimizer` probes it
  (:mod:`paramgate_jax.probe`).  An ``nnx.Optimizer`` is probed on the state its
  ``wrt`` filter selects, and its ``wrt`` states the intent: Params it leaves
  out are frozen.
- Identity is by object (the array, or the NNX Variable): jax arrays are
  immutable, so a training step returns new ones, and a snapshot is verified
  against the new pytree by name.

jax, optax and flax are imported only inside methods, and only once ``jax`` is
already in ``sys.modules`` (the model passed in proves it is).
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from paramgate import (
    Fingerprint,
    GroupEntry,
    Intent,
    InvalidArgumentError,
    InvalidParameterError,
    Member,
    ParamEntry,
    UnsupportedModelError,
)
from paramgate.fingerprint import fingerprint_buffer
from paramgate.records import Kind, Role
from paramgate_jax.hashing import device_fingerprint
from paramgate_jax.probe import Bound, prefix_values, probe
from paramgate_jax.tree import Leaf, is_array, leaves, nnx_module, node_at, path_keys

__all__ = ["JaxAdapter"]


def _nnx() -> Any:
    return sys.modules.get("flax.nnx")


def _is_variable(obj: object) -> bool:
    nnx = _nnx()
    return nnx is not None and isinstance(obj, nnx.Variable)


def _is_ndarray(obj: object) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def _is_optax(obj: object) -> bool:
    optax = sys.modules.get("optax")
    return optax is not None and isinstance(obj, optax.GradientTransformation)


def _is_nnx_optimizer(obj: object) -> bool:
    nnx = _nnx()
    return nnx is not None and isinstance(obj, nnx.Optimizer)


def _value(obj: object) -> Any:
    """The array an entry's object holds: the object itself, or an NNX Variable's stored value."""
    if _is_variable(obj):
        raw = obj.get_raw_value()  # type: ignore[attr-defined]
        return raw if is_array(raw) or _is_ndarray(raw) else obj.get_value()  # type: ignore[attr-defined]
    return obj


def _is_key(array: Any) -> bool:
    import jax

    return bool(jax.numpy.issubdtype(array.dtype, jax.dtypes.prng_key))


def _check_array(name: str, array: Any) -> None:
    import jax

    if isinstance(array, jax.core.Tracer):
        raise InvalidParameterError(
            f"{name!r} is a tracer (the pytree is being traced by jax.jit, grad or vmap): call paramgate "
            "outside jitted and transformed functions, on concrete arrays"
        )
    if array.is_deleted():
        raise InvalidParameterError(
            f"{name!r} was deleted (donated to a jitted function with donate_argnums, or deleted by hand): audit "
            "the params pytree the training step returned, not the one it consumed"
        )


def _platform(array: Any) -> str | None:
    """The platform of a single-device array ("cpu", "gpu", "tpu"...), None when it spans several devices."""
    devices = array.sharding.device_set
    if len(devices) != 1:
        return None
    (device,) = devices
    return str(device.platform)


class JaxAdapter:
    """Reads params pytrees and Flax NNX modules, optax transformations and ``nnx.Optimizer``."""

    name = "jax"
    distribution = "jax"
    freeze_hint = (
        "To freeze leaves in optax, give them optax.set_to_zero(): optax.multi_transform({'trainable': tx, "
        "'frozen': optax.set_to_zero()}, labels) (or leave them out of the nnx.Optimizer's wrt)"
    )
    """How to keep a frozen leaf out of the optimizer, ending PG001's message (JAX has no requires_grad)."""
    host_platforms: frozenset[str] = frozenset({"cpu"})
    """Platforms whose arrays are hashed with ``xxh3-128`` through a zero-copy host view; all others are
    hashed where they live (``pgmix64x2``).  Empty it to run the device path on CPU arrays (the tests do)."""

    # -- models ---------------------------------------------------------------------------------------

    def owns_model(self, model: object) -> bool:
        jax = sys.modules.get("jax")
        if jax is None or model is None or isinstance(model, str | bytes):
            return False
        if nnx_module(model) or is_array(model):
            return True  # a bare array is claimed so that parameters() can say what to pass instead
        try:
            found = jax.tree_util.tree_leaves(model)
        except Exception:  # an object jax cannot flatten is not a pytree of ours
            return False
        return any(isinstance(leaf, jax.Array) for leaf in found)

    def parameters(self, model: object) -> Iterator[ParamEntry]:
        if nnx_module(model):
            yield from self._nnx_entries(model)
            return
        if is_array(model):
            raise UnsupportedModelError(
                "model: a single jax.Array is not a model; pass the params pytree it belongs to (e.g. "
                "{'w': w, 'b': b}) or the Flax NNX module"
            )
        for leaf in self._leaves(model):
            yield self._pytree_entry(model, leaf)

    def _pytree_entry(self, model: object, leaf: Leaf) -> ParamEntry:
        obj = leaf.obj
        if _is_variable(obj):  # an nnx.State (nnx.split, nnx.state) holds the module's own Variables
            entry = self._variable_entry(model, leaf)
            if entry is None:
                raise InvalidParameterError(
                    f"params leaf {leaf.name!r} is a {type(obj).__name__} holding no array: a snapshot needs bits "
                    "to fingerprint"
                )
            return entry
        if not (is_array(obj) or _is_ndarray(obj)):
            what = type(obj).__name__
            raise InvalidParameterError(
                f"params leaf {leaf.name!r} is a {what}, not an array: a snapshot needs bits to fingerprint; "
                "keep hyperparameters and configuration out of the params pytree, or wrap numbers in "
                "jnp.asarray(...)"
            )
        return self._entry(leaf.name, obj, obj, "parameter", "trainable")

    def _entry(
        self, name: str, obj: object, array: Any, kind: Kind, role: Role, updating: bool | None = None
    ) -> ParamEntry:
        note = None
        if is_array(array):
            _check_array(name, array)
            if _is_key(array):
                kind, role, note = "buffer", "state", "PRNG key: fingerprinted through jax.random.key_data"
        return ParamEntry(
            name,
            obj,
            tuple(array.shape),
            str(array.dtype),
            int(array.size),
            role == "trainable",
            role,
            kind,
            None,  # jax arrays are immutable: two leaves never move each other, whatever buffer they share
            note,
            updating,
            int(array.nbytes),
        )

    def _variable_entry(self, model: object, leaf: Leaf) -> ParamEntry | None:
        """An NNX Variable: Params are parameters, the others module state; None when it holds no array."""
        nnx = _nnx()
        obj = leaf.obj
        array = _value(obj)
        if not (is_array(array) or _is_ndarray(array)):
            return None  # a Variable holding a Python value: no tensor to gate
        if isinstance(obj, nnx.Param):
            return self._entry(leaf.name, obj, array, "parameter", "trainable")
        return self._entry(leaf.name, obj, array, "buffer", "state", self._updating(model, leaf))

    def _nnx_entries(self, model: object) -> Iterator[ParamEntry]:
        nnx = _nnx()
        for leaf in self._leaves(model):
            obj = leaf.obj
            if isinstance(obj, nnx.Variable):
                entry = self._variable_entry(model, leaf)
                if entry is not None:
                    yield entry
            elif is_array(obj) or _is_ndarray(obj):
                # A plain array attribute: a constant of the module that nnx.grad never differentiates.
                yield self._entry(leaf.name, obj, obj, "parameter", "frozen")
            elif isinstance(obj, nnx.Module):
                raise InvalidParameterError(
                    f"submodule {leaf.name!r} ({type(obj).__name__}) is not a pytree (pytree=False), so paramgate "
                    "cannot read its Variables; define it as a pytree module (the default)"
                )

    @staticmethod
    def _updating(model: object, leaf: Leaf) -> bool | None:
        """Whether the layer holding these statistics updates them at its next call (BatchNorm-like layers)."""
        layer = node_at(model, leaf.path[:-1])
        flag = getattr(layer, "use_running_average", None)
        return (not flag) if isinstance(flag, bool) else None

    def _leaves(self, model: object) -> list[Leaf]:
        """The model's leaves (arrays, NNX Variables, anything else), in model order, aliases included.

        RNG streams (``nnx.RngState``) are left out: every call that draws advances them.
        """
        nnx = _nnx()
        if nnx is None:
            return leaves(model)
        return [
            leaf
            for leaf in leaves(model, is_leaf=lambda x: isinstance(x, nnx.Variable))
            if not isinstance(leaf.obj, nnx.RngState)
        ]

    # -- optimizers -----------------------------------------------------------------------------------

    def owns_optimizer(self, optimizer: object) -> bool:
        if isinstance(optimizer, Bound) or _is_optax(optimizer) or _is_nnx_optimizer(optimizer):
            return True
        # An optax transformation is a NamedTuple, so lists are tested last and by their exact type.
        if isinstance(optimizer, list | tuple) and type(optimizer) in (list, tuple) and sys.modules.get("jax"):
            # By convention, the leaves one is about to hand to an optimizer.
            return all(is_array(item) or _is_variable(item) for item in optimizer)
        return False

    def bind_optimizer(self, model: object, optimizer: object) -> object:
        """Probe an optax transformation (or an ``nnx.Optimizer``'s) on the model's params."""
        if isinstance(optimizer, Bound) or not (_is_optax(optimizer) or _is_nnx_optimizer(optimizer)):
            return optimizer  # a list of leaves: read as it is
        is_nnx = nnx_module(model)
        order = {leaf.name: i for i, leaf in enumerate(self._leaves(model))}
        if _is_nnx_optimizer(optimizer):
            if not is_nnx:
                raise InvalidArgumentError(
                    "optimizer: an nnx.Optimizer trains a Flax NNX module, but the model is a "
                    f"{type(model).__name__}; pass the module the optimizer was built for"
                )
            opt: Any = optimizer
            params, probe_leaves = self._nnx_params(model, opt.wrt)
            selected = {id(leaf.obj) for leaf in probe_leaves}
            # wrt is NNX's requires_grad: Params it leaves out are frozen.  It cannot unfreeze a plain
            # array attribute (a constant of the module), so those keep their flag.
            stated = {
                leaf.name: id(leaf.obj) in selected
                for leaf in self._leaves(model)
                if isinstance(leaf.obj, _nnx().Param)
            }
            return probe(opt.tx, params, probe_leaves, order, source="nnx.Optimizer's tx", stated=stated)
        if is_nnx:
            nnx = _nnx()
            params, probe_leaves = self._nnx_params(model, nnx.Param)
        else:
            import jax

            params = model
            # The probe sees arrays; an nnx.State leaf is a Variable whose array sits one key (".value") lower.
            by_path = {leaf.path: leaf for leaf in self._leaves(model)}
            probe_leaves = []
            for path, array in jax.tree_util.tree_flatten_with_path(model)[0]:
                known = by_path.get(tuple(path)) or by_path.get(tuple(path[:-1]))
                name, obj = (known.name, known.obj) if known is not None else (_dotted(path), array)
                probe_leaves.append(Leaf(name, tuple(path), obj))
        return probe(optimizer, params, probe_leaves, order, source="optax transformation")

    def _nnx_params(self, model: object, wrt: object) -> tuple[Any, list[Leaf]]:
        """The pure arrays ``wrt`` selects (what nnx.Optimizer hands to tx), and their leaves in jax order."""
        import jax

        nnx = _nnx()
        params = nnx.as_pure(nnx.state(model, wrt))
        by_name = {leaf.name: leaf.obj for leaf in self._leaves(model)}
        flat, _ = jax.tree_util.tree_flatten_with_path(params)
        probe_leaves = []
        for path, _array in flat:
            name = _dotted(path)
            probe_leaves.append(Leaf(name, tuple(path), by_name.get(name, _array)))
        return params, probe_leaves

    def optimizer_groups(self, optimizer: object) -> Sequence[GroupEntry]:
        if isinstance(optimizer, Bound):
            return list(optimizer.groups)
        assert isinstance(optimizer, list | tuple)
        return [GroupEntry(0, tuple(Member(item) for item in optimizer))]

    def would_move(self, entry: ParamEntry, group: GroupEntry, optimizer: object) -> str | None:
        if isinstance(optimizer, Bound):
            return optimizer.reason(entry.obj)
        return None  # a list of leaves moves nothing by itself

    def intent(self, model: object, optimizer: object | None, trainable: object | None) -> Intent | None:
        """``trainable=`` as a pytree of bools (or an NNX filter), else what the optimizer says."""
        if trainable is not None:
            return self._stated(model, trainable)
        if isinstance(optimizer, Bound):
            if optimizer.stated is not None:
                return Intent(dict(optimizer.stated))
            return Intent(optimizer.inferred, optimizer.note())
        return None

    def _stated(self, model: object, trainable: object) -> Intent | None:
        model_leaves = self._leaves(model)
        nnx = _nnx()
        if nnx_module(model) and _is_nnx_filter(trainable):
            predicate = nnx.filterlib.to_predicate(trainable)
            return Intent(
                {leaf.name: bool(predicate(path_keys(leaf.path), leaf.obj)) for leaf in model_leaves},
            )
        if callable(trainable):
            return None  # a name -> bool predicate: the core reads it
        names = {leaf.name for leaf in model_leaves}
        if isinstance(trainable, Mapping) and trainable and all(k in names for k in trainable):
            return None  # names to flags: the core reads it (and checks each name)
        if (
            isinstance(trainable, Collection)
            and not isinstance(trainable, Mapping | str | bytes)
            and trainable
            and all(isinstance(n, str) for n in trainable)
        ):
            return None  # the names to train: the core reads them
        flags = prefix_values(trainable, model_leaves, "trainable")
        bad = [(leaf, flag) for leaf, flag in zip(model_leaves, flags, strict=True) if not _is_bool(flag)]
        if bad:
            leaf, flag = bad[0]
            raise InvalidArgumentError(
                f"trainable: gives leaf {leaf.name!r} {flag!r}; a pytree of bools must hold True (train it) or "
                "False (keep it frozen) at each leaf, or at a subtree above it"
            )
        return Intent({leaf.name: bool(flag) for leaf, flag in zip(model_leaves, flags, strict=True)})

    # -- fingerprints ---------------------------------------------------------------------------------

    def fingerprint(self, entry: ParamEntry) -> Fingerprint:
        array = _value(entry.obj)
        if _is_ndarray(array):
            import numpy as np

            # contiguous: a non-contiguous NumPy leaf is copied once, transiently.
            return fingerprint_buffer(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)
        _check_array(entry.name, array)
        if _is_key(array):
            import jax

            array = jax.random.key_data(array)
        if _platform(array) in self.host_platforms:
            host = _host_view(array)
            if host is not None:
                return fingerprint_buffer(host)
        return device_fingerprint(array)  # hashed where it lives: nothing is copied to the host

    def explain_change(self, entry: ParamEntry, then: Fingerprint) -> str | None:
        """Why this tensor's bits differ from ``then`` although its values may not, or None.

        Recognises the one change that keeps every value: -0.0 turned into +0.0,
        which ``optax.apply_updates`` does to frozen leaves that get a zero update.
        """
        import jax.numpy as jnp

        array = _value(entry.obj)
        if not jnp.issubdtype(array.dtype, jnp.floating) or not bool(jnp.any(array == 0)):
            return None
        signed = jnp.where(array == 0, jnp.asarray(-0.0, array.dtype), array)
        probe_entry = ParamEntry(entry.name, signed, entry.shape, entry.dtype, entry.numel, False, "frozen")
        if self.fingerprint(probe_entry) != then:
            return None
        return (
            "only the signs of its zeros changed: it held -0.0 where it now holds +0.0, with every value "
            "equal. optax.apply_updates computes p + u for every leaf, and -0.0 + 0.0 is +0.0 in IEEE 754, so a "
            "zero update (optax.set_to_zero()) still rewrites these bits; apply updates to the trainable "
            "leaves only to keep frozen leaves bit-for-bit"
        )


def _host_view(array: Any) -> memoryview | None:
    """A zero-copy uint8 view of a CPU array's buffer, or None when NumPy would need a copy.

    ``np.asarray`` on a single-device CPU array returns a read-only array over
    the very buffer jax holds (no copy) when its layout is NumPy's; the pointer
    check proves it for this array.  Anything else goes to the device path.
    """
    import numpy as np

    view = np.asarray(array)
    if view.size and view.ctypes.data != array.unsafe_buffer_pointer():
        return None
    return view.reshape(-1).view(np.uint8).data


def _dotted(path: Sequence[object]) -> str:
    from paramgate_jax.tree import key_name

    return ".".join(key_name(k) for k in path)


def _is_bool(value: object) -> bool:
    if isinstance(value, bool):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and str(dtype) == "bool" and getattr(value, "shape", None) == ()


def _is_nnx_filter(obj: object) -> bool:
    """An NNX filter: a Variable type, or one of ``flax.nnx.filterlib``'s filter objects."""
    nnx = _nnx()
    if nnx is None:
        return False
    if isinstance(obj, type):
        return issubclass(obj, nnx.Variable)
    return type(obj).__module__ == "flax.nnx.filterlib"

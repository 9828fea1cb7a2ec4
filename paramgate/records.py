"""The neutral records adapters hand to the core, and the core hands to users.

Adapters translate framework objects into :class:`ParamEntry` and :class:`GroupEntry`
values.  Those two hold the native objects, so they only live for the length of one
call.  Everything the core keeps or returns (:class:`ParamRecord`,
:class:`GroupRecord`, :class:`Fingerprint`) holds plain data and never a tensor.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

__all__ = [
    "STATISTIC_NAMES",
    "Fingerprint",
    "GroupEntry",
    "GroupRecord",
    "Intent",
    "JSONScalar",
    "JSONValue",
    "Kind",
    "Member",
    "ParamEntry",
    "ParamRecord",
    "Placement",
    "Role",
    "StorageSpan",
    "classify",
]

Role = Literal["trainable", "frozen", "state"]
"""What a tensor is for: trained, frozen, or statistics that change without an optimizer."""

Kind = Literal["parameter", "buffer"]
"""How the framework holds it: a parameter (MindSpore keeps statistics here) or a buffer."""

Placement = Literal["replicated", "sharded"]
"""In a distributed run: every rank holds the same copy (DDP), or each rank holds a part (FSDP, ZeRO-3)."""

JSONScalar = str | int | float | bool | None
JSONValue = JSONScalar | tuple[JSONScalar, ...]
"""A group option: a scalar, or a short tuple of them (Adam's ``betas``)."""

STATISTIC_NAMES = frozenset(
    {
        "running_mean",
        "running_var",
        "num_batches_tracked",
        "moving_mean",
        "moving_variance",
        "moving_var",
        "mean",
        "var",
        "variance",
    }
)
"""Last name components that mark normalization statistics across frameworks.

PyTorch keeps them as buffers, MindSpore, Keras and Paddle as non-trainable
parameters; adapters use this set so that every backend sorts them into the
``"state"`` role the same way.
"""


class StorageSpan(NamedTuple):
    """The bytes a tensor occupies inside the memory block that owns them.

    Two parameters whose spans overlap in the same ``owner`` share storage (tied
    weights).  ``owner`` is any hashable that identifies the block for the length
    of one audit, e.g. the address of the base allocation (or, with absolute
    addresses for ``start`` and ``stop``, the device).  A named tuple: one is
    built per tensor per audit, so it must be cheap.
    """

    owner: Hashable
    start: int
    stop: int

    def overlaps(self, other: StorageSpan) -> bool:
        """Whether both spans lie in one block and share at least one byte."""
        return self.owner == other.owner and self.start < other.stop and other.start < self.stop


@dataclass(slots=True, eq=False)
class ParamEntry:
    """One named tensor of a model, as an adapter reports it.

    ``obj`` is the framework's own object: the thing ``paramgate.trainable`` returns
    and the thing ``ParamGate.fingerprint`` reads.  The core identifies tensors by
    ``id(obj)``, never by value or by name, so the same object listed under two
    names is one tensor with an alias.

    ``updating`` is for statistics: True when the framework will change the
    tensor outside the optimizer at the next training step (a normalization layer
    in train mode updating its running statistics), False when it will not, None
    when the adapter cannot tell.  ``nbytes`` is the size of the tensor's data
    (None when unknown): it decides which tensors are worth a thread of their own
    when fingerprinting, and when a progress bar is shown.  ``placement`` is for
    distributed runs: ``"replicated"`` when every rank holds an identical copy
    (their fingerprints are compared across ranks, PG107), ``"sharded"`` when
    this rank holds a part (``shape`` and ``numel`` stay the global ones; the
    fingerprint covers this rank's part), None otherwise.

    Records are built once per tensor per call, so they are plain slotted classes
    (treat them as read-only).
    """

    name: str
    obj: object
    shape: tuple[int, ...]
    dtype: str
    numel: int
    requires_grad: bool
    role: Role
    kind: Kind = "parameter"
    storage: StorageSpan | None = None
    note: str | None = None
    updating: bool | None = None
    nbytes: int | None = None
    placement: Placement | None = None


@dataclass(frozen=True, eq=False)
class Member:
    """One slot of an optimizer group: the native object and, if it has one, its own name."""

    obj: object
    label: str | None = None


@dataclass(frozen=True, eq=False)
class GroupEntry:
    """One optimizer parameter group, as an adapter reports it.

    ``lr``, ``momentum`` and ``weight_decay`` are normalised across frameworks
    (``None`` when the optimizer has no such setting); everything else the group
    carries goes into ``options`` as JSON scalars (or tuples of them).
    """

    index: int
    members: tuple[Member, ...]
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    options: Mapping[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Intent:
    """Which tensors are meant to be trained, when the flags on the tensors do not say it.

    Frameworks without ``requires_grad`` (JAX: trainability lives in the optimizer's
    labels or masks) state it here, and so does a user who passes ``trainable=`` to
    :func:`paramgate.audit`.  ``trainable`` maps tensor names (as the adapter names
    them) to the intended flag; tensors it does not list keep the flag their adapter
    gave them.  ``note``, when set, says the intent was inferred rather than stated
    (e.g. from what the optimizer moves): the audit shows it as PG010.
    """

    trainable: Mapping[str, bool]
    note: str | None = None


@dataclass(slots=True)
class ParamRecord:
    """One tensor of the model in an :class:`~paramgate.AuditReport` (plain data only; read-only by convention)."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    trainable: bool
    role: Role
    kind: Kind = "parameter"
    in_optimizer: bool = False
    group: int | None = None
    aliases: tuple[str, ...] = ()
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The record as JSON-ready data with stable keys."""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "shape": list(self.shape),
            "dtype": self.dtype,
            "numel": self.numel,
            "trainable": self.trainable,
            "role": self.role,
            "kind": self.kind,
            "in_optimizer": self.in_optimizer,
            "group": self.group,
            "note": self.note,
        }


@dataclass(frozen=True)
class GroupRecord:
    """One optimizer group in an :class:`~paramgate.AuditReport` (plain data only)."""

    index: int
    params: tuple[str, ...]
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    options: Mapping[str, JSONValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The group as JSON-ready data with stable keys."""
        return {
            "index": self.index,
            "params": list(self.params),
            "lr": self.lr,
            "momentum": self.momentum,
            "weight_decay": self.weight_decay,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()},
        }


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What a snapshot keeps of one tensor: a digest of its raw bytes, not the bytes.

    Two fingerprints made by the same ``algorithm`` are equal exactly when every
    byte is equal (up to the digest's collision probability), so NaN payloads,
    -0.0 and bfloat16 bit patterns count like any other bits.  ``algorithm`` is
    ``"xxh3-128"`` for host memory and ``"pgmix64x2"`` for tensors hashed on an
    accelerator (see :mod:`paramgate.fingerprint`).
    """

    digest: bytes
    nbytes: int
    algorithm: str = "xxh3-128"


def classify(name: str, requires_grad: bool, *, statistic: bool | None = None) -> Role:
    """The role of a tensor from its flag and, for non-trainable ones, its name.

    A tensor that requires grad is ``"trainable"``.  One that does not is
    ``"state"`` when ``statistic`` says so, or (``statistic=None``) when the last
    component of its dotted or slashed name is in :data:`STATISTIC_NAMES`;
    otherwise it is ``"frozen"``.

    >>> classify("backbone.bn.moving_mean", False)
    'state'
    >>> classify("backbone.conv1.weight", False)
    'frozen'
    """
    if requires_grad:
        return "trainable"
    if statistic is None:
        statistic = name.replace("/", ".").rsplit(".", 1)[-1] in STATISTIC_NAMES
    return "state" if statistic else "frozen"

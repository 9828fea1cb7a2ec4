"""What an adapter provides: the :class:`ParamGate` protocol.

An adapter translates one framework (NumPy, PyTorch, MindSpore, JAX...) into the
neutral records of :mod:`paramgate.records`.  The core does everything else:
checks, reports, snapshots.  Adapters reach the core through the
``paramgate_adapter`` hook (see :mod:`paramgate.hookspecs`).

An adapter must not import its framework when its module is imported; look the
framework up in ``sys.modules`` instead ("if torch isn't imported, this can't be
a Tensor") and import inside the methods that really need it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from paramgate.records import Fingerprint, GroupEntry, Intent, ParamEntry

if TYPE_CHECKING:
    from paramgate.distributed import World

__all__ = ["BindsOptimizer", "HasWorld", "ParamGate", "StatesIntent"]


@runtime_checkable
class ParamGate(Protocol):
    """The contract between the neutral core and one framework's adapter."""

    @property
    def name(self) -> str:
        """Short framework name shown in reports and JSON ("numpy", "torch"...)."""
        ...

    @property
    def distribution(self) -> str | None:
        """Distribution whose installed version ``paramgate plugins`` shows, or None."""
        ...

    def owns_model(self, model: object) -> bool:
        """Whether ``model`` is a model of this framework.

        Must be cheap and must not import the framework: when the framework is not
        in ``sys.modules`` yet, ``model`` cannot be one of its objects.
        """
        ...

    def owns_optimizer(self, optimizer: object) -> bool:
        """Whether ``optimizer`` is something :meth:`optimizer_groups` can read.

        That includes the framework's optimizers and, by convention, a list of
        native parameters or of ``{"params": [...], ...}`` group dicts: what one is
        about to hand to an optimizer.
        """
        ...

    def parameters(self, model: object) -> Iterable[ParamEntry]:
        """Every named tensor of ``model`` in model order, aliases included.

        The same object listed under two names is yielded twice (the core merges
        them).  Raise :class:`~paramgate.InvalidParameterError` for a malformed
        parameter, naming it.
        """
        ...

    def optimizer_groups(self, optimizer: object) -> Sequence[GroupEntry]:
        """The optimizer's parameter groups, members in the optimizer's order."""
        ...

    def fingerprint(self, entry: ParamEntry) -> Fingerprint:
        """A digest of the raw bytes of ``entry.obj``, computed where it lives.

        Host memory: ``xxh3-128`` through :func:`~paramgate.fingerprint.fingerprint_buffer`
        over a zero-copy byte view.  Accelerator memory: ``pgmix64x2`` computed on
        the device (never copied to the host), matching
        :func:`~paramgate.fingerprint.pgmix_reference` bit for bit.  Must not keep
        any reference to the tensor, and must not change it, its flags, or any
        random state.  May be called from worker threads.
        """
        ...

    def would_move(self, entry: ParamEntry, group: GroupEntry, optimizer: object) -> str | None:
        """Why this optimizer would change a frozen parameter it holds, or None.

        The answer follows the framework's real semantics: e.g. a torch optimizer
        skips a parameter whose ``.grad`` is None whatever its flag; a MindSpore
        one hands it a zero gradient and still applies weight decay.  The reason
        names the setting ("weight_decay=0.01 in group 0"...).
        """
        ...


@runtime_checkable
class BindsOptimizer(Protocol):
    """Optional: for optimizers that know their parameters only together with the model.

    An optax ``GradientTransformation`` is a pair of functions: which leaves it
    moves shows only when it runs on the params pytree.  An adapter with this
    method gets the model and the user's optimizer once per audit or snapshot,
    before anything else reads the optimizer, and returns what
    :meth:`ParamGate.optimizer_groups` and :meth:`ParamGate.would_move` read
    instead (e.g. the result of probing the transformation).
    """

    def bind_optimizer(self, model: object, optimizer: object) -> object:
        """Return the optimizer as the adapter's other methods read it.

        Must leave the user's model, optimizer and random state untouched.
        """
        ...


@runtime_checkable
class StatesIntent(Protocol):
    """Optional: for frameworks where the tensors' flags do not say what is meant to train."""

    def intent(self, model: object, optimizer: object | None, trainable: object | None) -> Intent | None:
        """The intended flags, from ``trainable=`` as the user gave it and/or from the optimizer.

        ``optimizer`` is the bound optimizer (see :class:`BindsOptimizer`) or None;
        ``trainable`` is the user's ``trainable=`` argument, or None.  Return None to
        let the core read ``trainable`` its own way (a ``name -> bool`` callable, a
        mapping of names to flags, or a collection of trainable names) or, when it
        is None too, to keep the tensors' own flags.  Set ``Intent.note`` when the
        intent was inferred rather than stated: the audit reports it (PG010).
        """
        ...


@runtime_checkable
class HasWorld(Protocol):
    """Optional: for frameworks that run one process per rank (torch.distributed)."""

    def world(self, model: object) -> World | None:
        """The distributed run ``model`` takes part in, or None when it runs alone.

        A snapshot of a model with a world compares its verdicts across ranks
        (see :mod:`paramgate.distributed`).  Must be cheap, and must not start a
        collective operation.
        """
        ...

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
from typing import Protocol, runtime_checkable

from paramgate.records import Fingerprint, GroupEntry, ParamEntry

__all__ = ["ParamGate"]


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

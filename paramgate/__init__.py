"""paramgate: are the weights you froze really frozen, and does the optimizer see
exactly the parameters you meant?

Run it right before ``optimizer = ...``::

    import paramgate

    params = paramgate.trainable(model)          # a list, never a one-shot iterator
    print(paramgate.audit(model, params))        # what the optimizer will touch
    optimizer = Momentum(params, learning_rate=0.01, momentum=0.9)
    with paramgate.guard(model, optimizer):      # frozen must stay the same bits
        train()

The core knows no framework; adapters (``paramgate_numpy``, ...) are plugins of
the ``paramgate`` entry-point group.
"""

from paramgate.api import audit, guard, snapshot, trainable
from paramgate.errors import (
    AdapterError,
    AuditFailed,
    DistributedError,
    EmptyModelError,
    FactoryError,
    FrozenParameterChanged,
    GuardStateError,
    InvalidArgumentError,
    InvalidParameterError,
    OneShotIteratorError,
    ParamGateError,
    PluginLoadError,
    SnapshotMismatchError,
    UnsupportedModelError,
    UnsupportedOptimizerError,
)
from paramgate.findings import CODES, Finding
from paramgate.hookspecs import hookimpl
from paramgate.plugins import ParamGatePluginManager, get_plugin_manager
from paramgate.protocol import BindsOptimizer, HasWorld, ParamGate, StatesIntent
from paramgate.records import (
    Fingerprint,
    GroupEntry,
    GroupRecord,
    Intent,
    Member,
    ParamEntry,
    ParamRecord,
    StorageSpan,
)
from paramgate.report import AuditReport, InvarianceReport, Totals
from paramgate.snapshot import Guard, Snapshot

__version__ = "0.1.0"

__all__ = [
    "CODES",
    "AdapterError",
    "AuditFailed",
    "AuditReport",
    "BindsOptimizer",
    "DistributedError",
    "EmptyModelError",
    "FactoryError",
    "Finding",
    "Fingerprint",
    "FrozenParameterChanged",
    "GroupEntry",
    "GroupRecord",
    "Guard",
    "GuardStateError",
    "HasWorld",
    "Intent",
    "InvalidArgumentError",
    "InvalidParameterError",
    "InvarianceReport",
    "Member",
    "OneShotIteratorError",
    "ParamEntry",
    "ParamGate",
    "ParamGateError",
    "ParamGatePluginManager",
    "ParamRecord",
    "PluginLoadError",
    "Snapshot",
    "SnapshotMismatchError",
    "StatesIntent",
    "StorageSpan",
    "Totals",
    "UnsupportedModelError",
    "UnsupportedOptimizerError",
    "__version__",
    "audit",
    "get_plugin_manager",
    "guard",
    "hookimpl",
    "snapshot",
    "trainable",
]

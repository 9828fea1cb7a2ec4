"""paramgate's MindSpore backend: an ``nn.Cell`` and any ``nn.Optimizer``.

Registered through the ``paramgate`` entry-point group like any third-party
adapter.  Importing this package does not import mindspore: the adapter claims
a model only once mindspore is in ``sys.modules`` and the model is a Cell.
``ParamGateCallback`` (for ``Model.train``) is built on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ParamGateCallback"]


def __getattr__(name: str) -> Any:
    # The callback subclasses mindspore.train.Callback, so it can only exist once mindspore is imported.
    if name == "ParamGateCallback":
        from paramgate_mindspore.callback import callback_class

        return callback_class()
    raise AttributeError(f"module 'paramgate_mindspore' has no attribute {name!r}")

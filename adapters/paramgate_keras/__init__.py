"""paramgate's Keras 3 backend: a ``keras.Model`` (or any ``keras.Layer``) and any Keras optimizer.

Registered through the ``paramgate`` entry-point group like any third-party
adapter.  Importing this package does not import keras: the adapter claims a
model only once keras is in ``sys.modules`` and the model is a Keras layer.
``ParamGateCallback`` (for ``model.fit``) is built on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ParamGateCallback"]


def __getattr__(name: str) -> Any:
    # The callback subclasses keras.callbacks.Callback, so it can only exist once keras is imported.
    if name == "ParamGateCallback":
        from paramgate_keras.callback import callback_class

        return callback_class()
    raise AttributeError(f"module 'paramgate_keras' has no attribute {name!r}")

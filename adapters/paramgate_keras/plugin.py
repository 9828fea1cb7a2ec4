"""Entry point of the Keras adapter (``paramgate`` group, name ``keras``)."""

from __future__ import annotations

from paramgate import ParamGate, hookimpl

__all__ = ["paramgate_adapter"]


@hookimpl(tryfirst=True)
def paramgate_adapter() -> ParamGate:
    # tryfirst: on Keras's torch backend every Keras layer is also a torch.nn.Module, which the torch
    # adapter would claim; a Keras model must be read as Keras (variables, paths, the Keras optimizer).
    from paramgate_keras.adapter import KerasAdapter

    return KerasAdapter()

"""Helpers shared by the tests."""

from __future__ import annotations

import numpy as np


def flip_bit(array: np.ndarray, flat_byte: int, bit: int) -> None:
    """Flip one bit of ``array`` in place, through a byte view of its memory."""
    view = array.reshape(-1).view(np.uint8)
    view[flat_byte] ^= np.uint8(1 << bit)


class AdapterPlugin:
    """A third-party plugin whose ``paramgate_adapter`` hook returns ``make()``.

    ``tryfirst=True`` makes it claim models before the builtin NumPy adapter,
    the way a plugin overriding a builtin would.
    """

    def __init__(self, make, *, tryfirst: bool = True) -> None:
        import paramgate

        def paramgate_adapter():
            return make()

        self.paramgate_adapter = paramgate.hookimpl(tryfirst=tryfirst)(paramgate_adapter)

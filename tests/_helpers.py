"""Helpers shared by the tests."""

from __future__ import annotations

import numpy as np


def flip_bit(array: np.ndarray, flat_byte: int, bit: int) -> None:
    """Flip one bit of ``array`` in place, through a byte view of its memory."""
    view = array.reshape(-1).view(np.uint8)
    view[flat_byte] ^= np.uint8(1 << bit)

"""A minimal named NumPy parameter, shaped like MindSpore's ``Parameter``."""

from __future__ import annotations

from typing import Any

__all__ = ["Parameter"]


class Parameter:
    """A named array with a ``requires_grad`` flag.

    ``Parameter(data, name, requires_grad=True)`` mirrors MindSpore's
    ``Parameter(default_input, name, requires_grad=True)``.  Statistics (running
    means and variances) are marked with ``statistic=True`` or recognised by name
    (``moving_mean``, ``running_var``...) when ``requires_grad`` is False.

    >>> import numpy as np
    >>> p = Parameter(np.zeros(3, np.float32), "head.bias")
    >>> p.name, p.requires_grad, p.data.shape
    ('head.bias', True, (3,))
    """

    __slots__ = ("__weakref__", "data", "name", "requires_grad", "statistic")

    def __init__(
        self, data: Any, name: str | None = None, requires_grad: bool = True, *, statistic: bool | None = None
    ) -> None:
        import numpy as np

        self.data = data if isinstance(data, np.ndarray) else np.asarray(data)
        self.name = name
        self.requires_grad = requires_grad
        self.statistic = statistic

    def __repr__(self) -> str:
        return (
            f"Parameter(name={self.name!r}, shape={list(self.data.shape)}, dtype={self.data.dtype}, "
            f"requires_grad={self.requires_grad})"
        )

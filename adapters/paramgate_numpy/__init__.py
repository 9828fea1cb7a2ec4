"""paramgate's NumPy backend: a model is a list of parameters.

A parameter is either this package's :class:`Parameter` or the walkthrough's own
dict ``{"name": ..., "data": np.ndarray, "requires_grad": bool}``.
:class:`Momentum` is an optimizer with MindSpore's semantics, so the walkthrough
runs real steps on NumPy, weight decay on frozen parameters included.

Importing this package does not import NumPy; using it does.
"""

from paramgate_numpy.optim import Momentum
from paramgate_numpy.parameter import Parameter

__all__ = ["Momentum", "Parameter"]

"""paramgate's JAX backend: params pytrees and Flax NNX modules, optax and ``nnx.Optimizer``.

JAX has no ``requires_grad``: what trains lives in the optimizer (optax labels
and masks, an ``nnx.Optimizer``'s ``wrt`` filter).  This adapter finds out what
an optax transformation really moves by probing it on the params pytree, and
brings pytrees and NNX modules to the same records, findings and reports as the
other backends.

Registered through the ``paramgate`` entry-point group like any third-party
adapter.  Importing this package imports neither JAX, optax nor Flax: the
adapter claims a model only once ``jax`` is in ``sys.modules``.
"""

__all__: list[str] = []

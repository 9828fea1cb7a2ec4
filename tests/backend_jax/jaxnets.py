"""Real JAX models and training loops shared by the JAX tests (imports jax, optax and flax).

Models are tiny and loops run eagerly, so the whole folder compiles little.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from paramgate_jax.demo import momentum

__all__ = [
    "BACKBONE",
    "HEAD",
    "Net",
    "flip_bit",
    "loss",
    "mlp",
    "momentum",
    "raw",
    "seed_params",
    "train",
    "train_nnx",
]

BACKBONE = {"backbone.dense.kernel", "backbone.dense.bias"}
HEAD = {"head.kernel", "head.bias"}


def mlp(seed: int = 0) -> dict[str, Any]:
    """A params pytree: a dense backbone and a dense head, written backbone first."""
    rng = np.random.default_rng(seed)
    return {
        "backbone": {
            "dense": {
                "kernel": jnp.asarray(rng.standard_normal((4, 8)), jnp.float32),
                "bias": jnp.asarray(rng.standard_normal(8) * 0.1, jnp.float32),
            }
        },
        "head": {
            "kernel": jnp.asarray(rng.standard_normal((8, 2)), jnp.float32),
            "bias": jnp.zeros(2, jnp.float32),
        },
    }


def batch(seed: int = 1) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal((6, 4)), jnp.float32), jnp.array([0, 1, 1, 0, 1, 0])


def loss(params: dict[str, Any]) -> jax.Array:
    x, labels = batch()
    hidden = jax.nn.relu(x @ params["backbone"]["dense"]["kernel"] + params["backbone"]["dense"]["bias"])
    logits = hidden @ params["head"]["kernel"] + params["head"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train(params: Any, tx: Any, steps: int = 2, opt_state: Any = None) -> Any:
    """``jax.grad`` of every leaf, ``tx.update``, ``optax.apply_updates``: the loop optax's docs write."""
    if opt_state is None:
        opt_state = tx.init(params)
    for _ in range(steps):
        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return params


def seed_params() -> dict[str, Any]:
    """The walkthrough's four parameters as a params pytree (the NumPy demo's values, in float32)."""
    rng = np.random.default_rng(0)
    return {
        "backbone": {"conv1": {"weight": jnp.asarray(rng.random((64, 3, 3, 3)), jnp.float32), "bias": jnp.zeros(64)}},
        "head": {
            "dense": {
                "weight": jnp.array([[10, 2], [10, 1], [-8, 9], [1, 10]], jnp.float32),
                "bias": jnp.array([0.5, 0.5], jnp.float32),
            }
        },
    }


class Backbone(nnx.Module):
    def __init__(self, rngs: nnx.Rngs) -> None:
        self.dense = nnx.Linear(4, 8, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.bn(self.dense(x)))


class Net(nnx.Module):
    """A small NNX fine-tuning setup: dense + BatchNorm backbone, dense head."""

    def __init__(self, seed: int = 0) -> None:
        rngs = nnx.Rngs(seed)
        self.backbone = Backbone(rngs)
        self.head = nnx.Linear(8, 2, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.backbone(x))


def nnx_loss(model: Net) -> jax.Array:
    x, labels = batch()
    return optax.softmax_cross_entropy_with_integer_labels(model(x), labels).mean()


def train_nnx(model: Net, optimizer: nnx.Optimizer, steps: int = 2) -> None:
    """``nnx.grad`` over the optimizer's ``wrt``, then ``optimizer.update``: NNX's own loop."""
    for _ in range(steps):
        grads = nnx.grad(nnx_loss, argnums=nnx.DiffState(0, optimizer.wrt))(model)
        optimizer.update(model, grads)


def raw(array: Any) -> bytes:
    """An array's bytes, for tests that compare bits independently of paramgate."""
    return np.asarray(array).tobytes()


def flip_bit(array: Any, flat_byte: int, bit: int) -> jax.Array:
    """A new array: ``array`` with one bit flipped (jax arrays are immutable)."""
    host = np.array(array)  # a copy
    host.reshape(-1).view(np.uint8)[flat_byte] ^= np.uint8(1 << bit)
    return jnp.asarray(host)

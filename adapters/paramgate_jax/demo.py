"""The walkthrough's model as a Flax NNX module, trained with an ``nnx.Optimizer``.

The same four parameters as the NumPy demo, with the seed's shapes and values:
``backbone.conv1`` (a 3x3 convolution to 64 channels) and ``head.dense``
(``x @ W + b`` with W of shape [4, 2]).  The forward pass is the NumPy demo's:
ReLU, global average pooling, channels averaged in groups of 16, softmax
cross-entropy.

NNX trains what an optimizer's ``wrt`` filter selects, and ``nnx.grad``
differentiates ``nnx.Param`` by default; the pretrained backbone is kept as
plain array attributes, constants of the module that no such filter selects,
and the head as ``nnx.Param``.  The optimizer is an ``nnx.Optimizer`` whose
``wrt`` selects exactly the leaves handed to it, with optax's SGD with momentum
and weight decay under ``optax.inject_hyperparams`` (so the report can read its
settings).  ``--buggy`` hands it the backbone too, with weight decay.
"""

from __future__ import annotations

import importlib
from collections.abc import Hashable, Sequence
from typing import Any

from paramgate.demo import DemoKit

__all__ = ["Selected", "build_model", "kit", "momentum", "train_step"]

LEARNING_RATE = 0.01
MOMENTUM = 0.9


def momentum(learning_rate: float, momentum: float, weight_decay: float) -> Any:
    """MindSpore's ``Momentum`` in optax: ``g + weight_decay * w`` into SGD with momentum."""
    optax = _optax()
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(learning_rate, momentum))


class Selected:
    """An NNX ``wrt`` filter selecting the leaves with these dotted names."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def __call__(self, path: tuple[Hashable, ...], value: object) -> bool:
        return ".".join(map(str, path)) in self.names

    def __repr__(self) -> str:
        return f"Selected({sorted(self.names)})"


def _optax() -> Any:
    # optax ships no type information; imported by name, it is Any to mypy.
    return importlib.import_module("optax")


def build_model() -> Any:
    """The walkthrough's backbone and head as an ``nnx.Module`` (no RNG consumed: the NumPy demo's values)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    class Conv(nnx.Module):
        """A pretrained 3x3 convolution kept as plain arrays: constants of the module."""

        def __init__(self, weight: jax.Array, bias: jax.Array) -> None:
            self.weight = weight
            self.bias = bias

        def __call__(self, x: jax.Array) -> jax.Array:
            out = jax.lax.conv_general_dilated(x, self.weight, (1, 1), "VALID")  # NCHW, OIHW
            return out + self.bias[None, :, None, None]

    class Dense(nnx.Module):
        """``x @ weight + bias`` with weight [in, out], the layout of the walkthrough's head."""

        def __init__(self, weight: jax.Array, bias: jax.Array) -> None:
            self.weight = nnx.Param(weight)
            self.bias = nnx.Param(bias)

        def __call__(self, x: jax.Array) -> jax.Array:
            return x @ self.weight[...] + self.bias[...]

    class Backbone(nnx.Module):
        def __init__(self, conv1: Conv) -> None:
            self.conv1 = conv1

    class Head(nnx.Module):
        def __init__(self, dense: Dense) -> None:
            self.dense = dense

    class SeedNet(nnx.Module):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)  # the NumPy demo's values
            self.backbone = Backbone(Conv(jnp.asarray(rng.random((64, 3, 3, 3)), jnp.float32), jnp.zeros(64)))
            self.head = Head(Dense(jnp.array([[10, 2], [10, 1], [-8, 9], [1, 10]], jnp.float32), jnp.array([0.5, 0.5])))

        def __call__(self, images: jax.Array) -> jax.Array:
            conv = jax.nn.relu(self.backbone.conv1(images))
            pooled = conv.mean(axis=(2, 3))  # N, 64
            feats = pooled.reshape(images.shape[0], 4, 16).mean(axis=2)  # N, 4
            return self.head.dense(feats)

    return SeedNet()


def _batch() -> tuple[Any, Any]:
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(1)  # the NumPy demo's batch
    images = jnp.asarray(rng.random((8, 3, 8, 8)) * 0.1, jnp.float32)
    return images, jnp.array([0, 1, 0, 1, 1, 0, 1, 0])


def _loss(model: Any) -> Any:
    optax = _optax()
    images, labels = _batch()
    return optax.softmax_cross_entropy_with_integer_labels(model(images), labels).mean()


def train_step(model: object, optimizer: object) -> float:
    """One ``nnx.value_and_grad`` over what the optimizer's ``wrt`` selects, and ``optimizer.update``."""
    from flax import nnx

    assert isinstance(optimizer, nnx.Optimizer)
    loss, grads = nnx.value_and_grad(_loss, argnums=nnx.DiffState(0, optimizer.wrt))(model)
    optimizer.update(model, grads)
    return float(loss)


def _parameters(model: object) -> list[tuple[str, object]]:
    from paramgate_jax.adapter import JaxAdapter

    return [(e.name, e.obj) for e in JaxAdapter().parameters(model) if e.kind == "parameter"]


class _Kit:
    """The demo's pieces, sharing the model: an ``nnx.Optimizer`` is built from the model itself."""

    def __init__(self) -> None:
        self.model: Any = None

    def build_model(self) -> object:
        self.model = build_model()
        return self.model

    def make_optimizer(self, params: list[object], weight_decay: float) -> object:
        from flax import nnx

        optax = _optax()
        handed = {id(p) for p in params}
        names = [name for name, obj in _parameters(self.model) if id(obj) in handed]
        tx = optax.inject_hyperparams(momentum)(
            learning_rate=LEARNING_RATE, momentum=MOMENTUM, weight_decay=weight_decay
        )
        return nnx.Optimizer(self.model, tx, wrt=Selected(names))


def kit() -> DemoKit:
    """The demo's JAX pieces (a fresh set per call: the optimizer is built from the model)."""
    pieces = _Kit()
    return DemoKit(
        framework="jax",
        build_model=pieces.build_model,
        all_parameters=lambda model: [obj for _, obj in _parameters(model)],
        make_optimizer=pieces.make_optimizer,
        optimizer_code=(
            "opt = nnx.Optimizer(model, optax.inject_hyperparams(momentum)(learning_rate="
            f"{LEARNING_RATE}, momentum={MOMENTUM}, weight_decay={{weight_decay}}), wrt=Selected({{params}}))"
        ),
        train_step=train_step,
    )

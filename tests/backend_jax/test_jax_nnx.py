"""Flax NNX modules: Params, BatchStat state, plain arrays, and ``nnx.Optimizer``'s ``wrt``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from backend_jax.jaxnets import Net, train_nnx
from flax import nnx

import paramgate

BACKBONE_PARAMS = {"backbone.dense.kernel", "backbone.dense.bias", "backbone.bn.scale", "backbone.bn.bias"}
BN_STATS = {"backbone.bn.mean", "backbone.bn.var"}
HEAD = {"head.kernel", "head.bias"}
HEAD_ONLY = nnx.All(nnx.Param, nnx.PathContains("head"))


def head_labels(state):
    """multi_transform labels for an NNX state: a function, since the labels must be an nnx.State too."""
    return jax.tree_util.tree_map_with_path(lambda path, _: "trainable" if path[0].key == "head" else "frozen", state)


def test_records_of_an_nnx_module():
    report = paramgate.audit(Net())
    records = {r.name: (r.role, r.kind, r.trainable) for r in report.params}
    assert records == {
        **{name: ("trainable", "parameter", True) for name in BACKBONE_PARAMS | HEAD},
        **{name: ("state", "buffer", False) for name in BN_STATS},  # BatchStat: module state, like torch's buffers
    }
    # Module attribute order, not jax's sorted one; the RNG streams (nnx.Rngs inside layers) are left out.
    assert [r.name for r in report.params][:3] == ["backbone.dense.kernel", "backbone.dense.bias", "backbone.bn.mean"]
    assert report.totals.state == 16 and report.ok


def test_frozen_submodule_through_the_optimizers_wrt_and_its_batchnorm_statistics():
    model = Net()
    optimizer = nnx.Optimizer(model, optax.adamw(1e-2), wrt=HEAD_ONLY)
    report = paramgate.audit(model, optimizer)
    roles = {r.name: r.role for r in report.params}
    assert {n for n, role in roles.items() if role == "frozen"} == BACKBONE_PARAMS  # wrt is the intent: no PG010
    assert {n for n, role in roles.items() if role == "state"} == BN_STATS
    assert {r.name for r in report.params if r.in_optimizer} == HEAD
    assert [(f.code, f.name) for f in report.findings] == [("PG009", "backbone.bn")]  # train mode: stats update


def test_batchnorm_statistics_drift_is_pg103_never_pg101():
    model = Net()
    optimizer = nnx.Optimizer(model, optax.adamw(1e-2), wrt=HEAD_ONLY)
    with paramgate.guard(model, optimizer) as gate:
        train_nnx(model, optimizer)
    assert gate.report is not None and gate.report.ok
    assert set(gate.report.statistics_changed) == BN_STATS and set(gate.report.codes()) == {"PG103"}
    assert gate.report.changed == []  # the frozen backbone's Params kept every bit

    model.backbone.eval()  # use_running_average=True: the statistics stay put
    report = paramgate.audit(model, optimizer)
    assert report.findings == () and {r.name for r in report.params if r.in_optimizer} == HEAD
    with paramgate.guard(model, optimizer) as gate:
        train_nnx(model, optimizer)
    assert gate.report is not None and gate.report.findings == ()


def test_a_tx_that_moves_what_wrt_freezes_is_caught_and_the_head_left_out_is_pg002():
    model = Net()
    # wrt selects every Param, but the labels only train the head: the backbone Params wrt meant to train are missed.
    tx = optax.multi_transform(
        {"trainable": optax.sgd(0.1), "frozen": optax.set_to_zero()},
        head_labels,
    )
    report = paramgate.audit(model, nnx.Optimizer(model, tx, wrt=nnx.Param))
    assert {f.name for f in report.findings if f.code == "PG002"} == BACKBONE_PARAMS


def test_a_bare_optax_transformation_on_a_module_probes_its_params_and_says_so():
    model = Net()
    model.backbone.eval()
    tx = optax.multi_transform({"trainable": optax.sgd(0.1), "frozen": optax.set_to_zero()}, head_labels)
    report = paramgate.audit(model, tx)
    assert report.codes() == ["PG010"]
    assert {r.name for r in report.params if r.trainable} == HEAD


def test_trainable_as_an_nnx_filter():
    model = Net()
    model.backbone.eval()
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)  # every Param...
    report = paramgate.audit(model, optimizer, trainable=nnx.PathContains("head"))  # ...but only the head is meant
    assert {f.name for f in report.findings if f.code == "PG001" and f.severity == "error"} == BACKBONE_PARAMS


def test_plain_arrays_are_frozen_constants_and_shared_variables_are_aliases():
    class Tied(nnx.Module):
        def __init__(self) -> None:
            self.embed = nnx.Embed(5, 3, rngs=nnx.Rngs(0))
            self.table = jnp.arange(4.0)  # a plain array attribute: nnx.grad never differentiates it
            self.lm_head = self.embed.embedding  # one Variable under two names

    report = paramgate.audit(Tied())
    records = {r.name: r for r in report.params}
    assert set(records) == {"embed.embedding", "table"}
    assert records["embed.embedding"].aliases == ("lm_head",) and records["table"].role == "frozen"
    assert report.totals.trainable == 15


def test_an_nnx_optimizer_and_its_model_are_left_as_they_were():
    model = Net()
    optimizer = nnx.Optimizer(model, optax.adamw(1e-2), wrt=HEAD_ONLY)
    train_nnx(model, optimizer, steps=1)
    before = [np.array(x) for x in jax.tree.leaves((nnx.state(model), nnx.state(optimizer)))]
    paramgate.audit(model, optimizer)
    paramgate.snapshot(model, optimizer).verify(model)
    after = [np.array(x) for x in jax.tree.leaves((nnx.state(model), nnx.state(optimizer)))]
    assert [a.tobytes() for a in after] == [b.tobytes() for b in before]
    assert int(optimizer.step[...]) == 1
    train_nnx(model, optimizer, steps=1)  # and it still trains


def test_the_functional_style_audits_the_nnx_state_it_trains():
    _graphdef, params, rest = nnx.split(Net(), nnx.Param, ...)
    tx = optax.multi_transform({"trainable": optax.adam(1e-2), "frozen": optax.set_to_zero()}, head_labels)
    meant = lambda name: name.startswith("head.")  # noqa: E731
    report = paramgate.audit(params, tx, trainable=meant)
    assert report.findings == () and {r.name for r in report.params if r.in_optimizer} == HEAD
    assert paramgate.audit(rest).totals.state == 16  # the BatchStat half of the split
    snap = paramgate.snapshot(params, tx, trainable=meant)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    result = snap.verify(optax.apply_updates(params, updates))  # a new State of new Variables
    assert result.findings == (), result.render()

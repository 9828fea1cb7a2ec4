"""Params pytrees and optax transformations: the probe, the intent, and real optax updates."""

from __future__ import annotations

import gc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _helpers import demo_json, framework_neutral
from backend_jax.jaxnets import BACKBONE, HEAD, flip_bit, mlp, momentum, seed_params, train

import paramgate
from paramgate_jax.adapter import JaxAdapter

FROZEN_BACKBONE = {"backbone": False, "head": True}
LABELS = {"backbone": "frozen", "head": "trainable"}


def errors(report, code):
    return {f.name for f in report.findings if f.code == code and f.severity == "error"}


def freeze_backbone(inner=None):
    """The recipe: multi_transform with optax.set_to_zero() for the frozen label."""
    inner = inner if inner is not None else optax.adam(1e-2)
    return optax.multi_transform({"trainable": inner, "frozen": optax.set_to_zero()}, LABELS)


def test_names_order_and_records_of_a_params_pytree():
    params = {
        "zeta": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3, jnp.bfloat16)},
        "alpha": [jnp.ones(1, jnp.int8), (jnp.ones(()), None)],
    }
    report = paramgate.audit(params)
    # Written order (jax flattens dicts sorted), dotted key paths, shapes and dtypes from the arrays.
    assert [(r.name, r.shape, r.dtype) for r in report.params] == [
        ("zeta.w", (2, 3), "float32"),
        ("zeta.b", (3,), "bfloat16"),
        ("alpha.0", (1,), "int8"),
        ("alpha.1.0", (), "float32"),
    ]
    # JAX has no requires_grad: jax.grad differentiates every leaf.
    assert {r.role for r in report.params} == {"trainable"} and report.ok
    assert [id(x) for x in paramgate.trainable(params)] == [
        id(params["zeta"]["w"]),
        id(params["zeta"]["b"]),
        id(params["alpha"][0]),
        id(params["alpha"][1][0]),
    ]


def test_a_list_of_layer_dicts_is_a_jax_model_not_a_numpy_one():
    # The NumPy adapter reads lists of parameter dicts; the JAX adapter is asked first and claims jax arrays.
    layers = [{"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}, {"w": jnp.ones((2, 1))}]
    report = paramgate.audit(layers)
    assert report.framework == "jax" and [r.name for r in report.params] == ["0.w", "0.b", "1.w"]
    assert paramgate.audit([{"name": "w", "data": np.ones(2)}]).framework == "numpy"


def test_leaves_that_are_not_arrays_are_named():
    with pytest.raises(paramgate.InvalidParameterError, match=r"params leaf 'head\.scale' is a float, not an array"):
        paramgate.audit({"head": {"w": jnp.ones(2), "scale": 0.5}})
    with pytest.raises(paramgate.UnsupportedModelError, match=r"a single jax\.Array is not a model"):
        paramgate.audit(jnp.ones(3))
    numpy_leaf = paramgate.audit({"w": jnp.ones(2), "table": np.arange(3.0)})  # e.g. restored, not yet on device
    assert [r.dtype for r in numpy_leaf.params] == ["float32", "float64"]
    params = mlp()
    params["head"]["bias"].delete()  # what donate_argnums does to the pytree a jitted step consumed
    with pytest.raises(paramgate.InvalidParameterError, match=r"'head\.bias' was deleted"):
        paramgate.audit(params)


def test_audit_inside_jit_is_refused_by_name():
    def step(params):
        paramgate.audit(params)
        return params

    with pytest.raises(paramgate.InvalidParameterError, match="is a tracer"):
        jax.jit(step)(mlp())


def test_the_recipe_audits_clean_and_the_backbone_keeps_every_bit():
    params = mlp()
    tx = freeze_backbone()
    report = paramgate.audit(params, tx, trainable=FROZEN_BACKBONE)
    assert report.ok and report.findings == (), report.render()
    assert {r.name for r in report.params if r.in_optimizer} == HEAD
    assert [(g.index, set(g.params), g.options) for g in report.groups] == [(0, HEAD, {"label": "trainable"})]

    snap = paramgate.snapshot(params, tx, trainable=FROZEN_BACKBONE)
    new = train(params, tx)  # real jax.grad, tx.update and optax.apply_updates: a new pytree
    result = snap.verify(new)  # matched by name: jax arrays are immutable
    assert result.ok and result.findings == (), result.render()
    assert snap.verify(params).codes() == ["PG102", "PG102"]  # the old pytree: the head never moved


def test_intent_is_inferred_from_the_probe_and_the_report_says_so():
    params = mlp()
    report = paramgate.audit(params, freeze_backbone())
    assert [(f.code, f.severity) for f in report.findings] == [("PG010", "info")]
    assert "2 of 4 leaves" in report.findings[0].message
    assert {r.name for r in report.params if r.trainable} == HEAD
    stated = paramgate.audit(params, freeze_backbone(), trainable=FROZEN_BACKBONE)
    assert [r.to_dict() for r in stated.params] == [r.to_dict() for r in report.params]


def test_masked_trap_frozen_leaves_get_raw_gradients():
    # google-deepmind/optax#159: masked() passes the leaves whose mask is False through untouched.
    params = mlp()
    tx = optax.masked(optax.adamw(1e-2), FROZEN_BACKBONE)
    report = paramgate.audit(params, tx, trainable=FROZEN_BACKBONE)
    assert errors(report, "PG001") == BACKBONE
    message = next(f.message for f in report.findings if f.code == "PG001")
    assert "google-deepmind/optax#159" in message and "optax.set_to_zero()" in message

    snap = paramgate.snapshot(params, tx, trainable=FROZEN_BACKBONE)
    result = snap.verify(train(params, tx))
    assert set(result.changed) == BACKBONE and "PG101" in result.codes()
    assert all("optimizer group 0" in f.message for f in result.findings if f.code == "PG101")


def test_adamw_over_every_leaf_moves_a_frozen_backbone_by_weight_decay_too():
    params = mlp()
    tx = optax.adamw(1e-2, weight_decay=0.1)
    report = paramgate.audit(params, tx, trainable=FROZEN_BACKBONE)
    assert errors(report, "PG001") == BACKBONE
    message = next(f.message for f in report.findings if f.name == "backbone.dense.kernel")
    assert "non-zero update for a non-zero gradient and even for a zero gradient (weight decay" in message
    # A guard holds the dict it was given; a functional loop that writes its results back into it is guarded.
    with (
        pytest.raises(paramgate.FrozenParameterChanged) as info,
        paramgate.guard(params, tx, trainable=FROZEN_BACKBONE),
    ):
        params.update(train(params, tx, steps=1))
    assert set(info.value.report.changed) == BACKBONE


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            {"backbone": "frozen"},
            "optimizer: the labels of optax.multi_transform / optax.partition must cover every leaf",
        ),
        ({"backbone": None, "head": "trainable"}, "but leaf 'backbone.dense.kernel' gets None"),
        (
            {"backbone": {"dense": {"kernel": "frozen"}}, "head": "trainable"},
            "but leaf 'backbone.dense.bias' gets nothing",
        ),
        (
            {"backbone": "frozn", "head": "trainable"},
            "leaf 'backbone.dense.kernel' has the label 'frozn' (and 1 more leaves), for which optax.multi_transform "
            "has no transform ('trainable', 'frozen'): add one, e.g. {'frozn': optax.set_to_zero()} to freeze it",
        ),
    ],
    ids=["missing-subtree", "none-label", "missing-leaf", "unknown-label"],
)
def test_a_leaf_without_a_label_in_multi_transform_is_a_clear_error(labels, message):
    tx = optax.multi_transform({"trainable": optax.sgd(0.1), "frozen": optax.set_to_zero()}, labels)
    with pytest.raises(paramgate.InvalidArgumentError) as info:
        paramgate.audit(mlp(), tx)
    assert message in str(info.value)
    with pytest.raises(ValueError, match=r"pytree structure|no corresponding transformation"):
        tx.init(mlp())  # what optax itself says, without naming the leaf


def test_labels_from_a_function_and_optax_freezing_helpers():
    params = mlp()
    label_fn = lambda p: {"backbone": jax.tree.map(lambda _: "frozen", p["backbone"]), "head": "trainable"}  # noqa: E731
    partition = optax.partition({"trainable": optax.sgd(0.1), "frozen": optax.set_to_zero()}, label_fn)
    selective = optax.selective_transform(optax.sgd(0.1), freeze_mask={"backbone": True, "head": False})
    frozen = optax.chain(optax.freeze({"backbone": True, "head": False}), optax.sgd(0.1))
    for tx in (partition, selective, frozen):
        report = paramgate.audit(params, tx, trainable=FROZEN_BACKBONE)
        assert report.ok and report.findings == (), report.render()
        assert {r.name for r in report.params if r.in_optimizer} == HEAD


def test_hyperparameters_are_read_from_inject_hyperparams_and_never_guessed():
    params = mlp()
    tx = freeze_backbone(optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=0.05))
    (group,) = paramgate.audit(params, tx).groups
    assert (group.lr, group.momentum, group.weight_decay) == (0.001, None, 0.05)
    assert group.options == {"label": "trainable", "b1": 0.9, "b2": 0.999, "eps": 1e-08, "eps_root": 0.0}
    seed = momentum  # MindSpore's Momentum in optax, as the demo builds it
    (group,) = paramgate.audit(
        params, optax.inject_hyperparams(seed)(learning_rate=0.01, momentum=0.9, weight_decay=0.0)
    ).groups
    assert (group.lr, group.momentum, group.weight_decay, group.options) == (0.01, 0.9, 0.0, {})
    (plain,) = paramgate.audit(params, optax.adam(1e-3)).groups
    assert (plain.lr, plain.momentum, plain.weight_decay, plain.options) == (None, None, None, {})


def test_stateful_transforms_show_their_hand_in_later_steps():
    params = mlp()
    warmup = optax.adam(optax.linear_schedule(0.0, 1e-3, transition_steps=10))  # lr 0 at step 0
    assert paramgate.audit(params, warmup, trainable=True).ok
    accumulate = optax.MultiSteps(optax.sgd(0.1), every_k_schedule=4).gradient_transformation()
    report = paramgate.audit(params, accumulate, trainable=True)
    assert report.ok and all(r.in_optimizer for r in report.params), report.render()
    frozen = paramgate.audit(params, optax.set_to_zero(), trainable=True)
    assert frozen.codes().count("PG002") == 4 and "PG003" in frozen.codes()


def test_trainable_forms():
    params = mlp()
    tx = freeze_backbone()
    for stated in (
        FROZEN_BACKBONE,
        {"backbone": {"dense": False}, "head": {"kernel": True, "bias": True}},
        lambda name: name.startswith("head."),
        ["head.kernel", "head.bias"],
        {"backbone.dense.kernel": False, "backbone.dense.bias": False},
    ):
        report = paramgate.audit(params, tx, trainable=stated)
        assert report.ok and report.findings == (), (stated, report.render())
        assert {r.name for r in report.params if r.trainable} == HEAD
    with pytest.raises(paramgate.InvalidArgumentError, match=r"trainable: gives leaf 'head\.kernel' 'yes'"):
        paramgate.audit(params, tx, trainable={"backbone": False, "head": "yes"})
    with pytest.raises(paramgate.InvalidArgumentError, match="trainable must cover every leaf of the params pytree"):
        paramgate.audit(params, tx, trainable={"backbone": False})


def test_signed_zeros_turned_positive_by_apply_updates_are_a_bit_change_explained():
    params = mlp()
    params["backbone"]["dense"]["bias"] = jnp.array([-0.0, 1.0, -0.0, 2.0, -0.0, 3.0, -0.0, 4.0], jnp.float32)
    tx = freeze_backbone(optax.sgd(0.1))
    report = paramgate.audit(params, tx, trainable=FROZEN_BACKBONE)
    assert errors(report, "PG001") == {"backbone.dense.bias"}  # apply_updates will rewrite its zeros
    assert "-0.0 + 0.0 is +0.0" in report.findings[0].message

    snap = paramgate.snapshot(params, tx, trainable=FROZEN_BACKBONE)
    new = train(params, tx, steps=1)
    bias = new["backbone"]["dense"]["bias"]
    assert bool(jnp.all(bias == params["backbone"]["dense"]["bias"]))  # the same values...
    assert not bool(jnp.any(jnp.signbit(bias)))  # ...with +0.0 where -0.0 was
    result = snap.verify(new)
    assert result.changed == ["backbone.dense.bias"]  # reported honestly: the bits changed
    entry = next(e for e in JaxAdapter().parameters(new) if e.name == "backbone.dense.bias")
    then = next(p.fingerprint for p in snap.prints if p.name == "backbone.dense.bias")
    explanation = JaxAdapter().explain_change(entry, then)
    assert explanation is not None and "-0.0 + 0.0 is +0.0" in explanation
    assert JaxAdapter().explain_change(entry, paramgate.Fingerprint(b"\0" * 16, 32)) is None


def test_the_gate_changes_nothing_and_keeps_nothing_alive():
    params = mlp()
    tx = optax.masked(optax.adamw(1e-2), FROZEN_BACKBONE)
    opt_state = tx.init(params)
    before = jax.tree.map(np.array, (params, opt_state))
    numpy_rng = np.random.get_state()

    report = paramgate.audit(params, tx, trainable=FROZEN_BACKBONE)
    snap = paramgate.snapshot(params, tx, trainable=FROZEN_BACKBONE)
    result = snap.verify(params)

    after = jax.tree.map(np.array, (params, opt_state))
    assert jax.tree.all(jax.tree.map(lambda a, b: a.tobytes() == b.tobytes(), before, after))
    assert all(not x.is_deleted() for x in jax.tree.leaves((params, opt_state)))
    assert np.random.get_state()[1].tobytes() == numpy_rng[1].tobytes()
    refs = [weakref.ref(x) for x in jax.tree.leaves(params)]
    del params, opt_state, before, after
    gc.collect()
    assert all(r() is None for r in refs), "a report or snapshot kept an array alive"
    assert report.params and snap.prints and result.checked


def test_optimizers_of_other_kinds_are_refused_or_read():
    from flax import nnx

    from paramgate_numpy import Momentum, Parameter

    params = mlp()
    with pytest.raises(paramgate.UnsupportedOptimizerError, match="it belongs to numpy, not to jax"):
        paramgate.audit(params, Momentum([Parameter(np.zeros(2), "w")], 0.1, 0.9))
    model = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    with pytest.raises(paramgate.InvalidArgumentError, match=r"an nnx\.Optimizer trains a Flax NNX module"):
        paramgate.audit(params, nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param))
    handed = paramgate.audit(params, [params["head"]["kernel"], params["head"]["bias"]], trainable=FROZEN_BACKBONE)
    assert handed.ok and {r.name for r in handed.params if r.in_optimizer} == HEAD


def test_a_transformation_that_fails_on_the_params_is_a_clear_error():
    wrapped = optax.inject_hyperparams(lambda learning_rate: freeze_backbone(optax.sgd(learning_rate)))(0.1)
    with pytest.raises(paramgate.InvalidArgumentError, match="optimizer: the optax transformation fails"):
        paramgate.audit({"other": jnp.ones(2)}, wrapped)


def test_the_seed_pytree_with_a_backbone_freezing_multi_transform_audits_like_the_numpy_demo():
    tx = optax.multi_transform(
        {
            "trainable": optax.inject_hyperparams(momentum)(learning_rate=0.01, momentum=0.9, weight_decay=0.0),
            "frozen": optax.set_to_zero(),
        },
        {"backbone": "frozen", "head": "trainable"},
    )
    report = paramgate.audit(seed_params(), tx, trainable=FROZEN_BACKBONE).to_dict()
    code, numpy_run = demo_json("numpy")
    numpy = numpy_run["audit"]
    assert code == 0
    assert report["framework"] == "jax" and {p["dtype"] for p in report["params"]} == {"float32"}
    assert framework_neutral(report) == framework_neutral(numpy)
    assert report["optimizer"]["groups"][0]["options"] == {"label": "trainable"}


def test_flip_bit_helper_changes_the_fingerprint_of_a_frozen_leaf():
    params = mlp()
    snap = paramgate.snapshot(params, trainable=FROZEN_BACKBONE)
    params["backbone"]["dense"]["kernel"] = flip_bit(params["backbone"]["dense"]["kernel"], 5, 7)
    assert snap.verify(params).changed == ["backbone.dense.kernel"]


def test_pg101_message_explains_signed_zeros():
    params = mlp()
    params["backbone"]["dense"]["bias"] = -jnp.zeros(8, jnp.float32)
    tx = freeze_backbone(optax.sgd(0.1))
    result = paramgate.snapshot(params, tx, trainable=FROZEN_BACKBONE).verify(train(params, tx, steps=1))
    (finding,) = result.findings
    assert finding.code == "PG101" and "only the signs of its zeros changed" in finding.message

"""Sharded training on the 8 fake CPU devices: every mesh layout and pmap match one device step for step."""

import math

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from _step_helpers import random_batch, tiny_model
from sslm_jax.errors import ConfigError
from sslm_jax.objectives import make_pretraining_loss
from sslm_jax.training import optim, partitioning
from sslm_jax.objectives import make_eval_step
from sslm_jax.training.step import make_train_step

STEPS = 3
ACCUM = 2
SEQ = 16


def _setup(**model_overrides):
    model = tiny_model(num_hidden_layers=1, **model_overrides)  # one layer: sharding does not need more
    tx = optim.adamw(learning_rate=1e-2)
    loss_fn = make_pretraining_loss(model, use_nsp=True, segment_attention=True)
    return model, tx, loss_fn


def _batches():
    return [random_batch(16, SEQ, seed=10 + i) for i in range(STEPS)]


def _run_jit(mesh, *, eval_first=False):
    model, tx, loss_fn = _setup()
    state, shardings = partitioning.create_train_state(model, tx, jax.random.key(0), mesh, seq_len=SEQ)
    initial = jax.device_get(state)
    sums = None
    if eval_first:
        evaluate = partitioning.jit_eval_step(
            make_eval_step(loss_fn), shardings.params, partitioning.batch_sharding(mesh), mesh
        )
        sums = jax.device_get(evaluate(state.params, _batches()[0]))
    step = partitioning.jit_train_step(
        make_train_step(tx, loss_fn, grad_accum_steps=ACCUM), shardings, partitioning.batch_sharding(mesh), mesh
    )
    losses = []
    for batch in _batches():
        state, metrics = step(state, batch, jax.random.key(1))
        losses.append(float(metrics["loss"]))
    assert step.jitted._cache_size() == 1  # no recompilation from one step to the next
    return dict(initial=initial, state=state, shardings=shardings, losses=losses, eval=sums)


@pytest.fixture(scope="module")
def reference():
    """One device, no sharding: the numbers every layout must reproduce."""
    return _run_jit(partitioning.create_mesh((1, 1, 1), devices=jax.devices()[:1]), eval_first=True)


def test_state_is_created_sharded_and_identical_to_one_device(reference):
    mesh = partitioning.create_mesh((2, 2, 2))
    model, tx, _ = _setup()
    state, shardings = partitioning.create_train_state(model, tx, jax.random.key(0), mesh, seq_len=SEQ)
    for got, want, sharding in zip(jax.tree.leaves(state), jax.tree.leaves(reference["initial"]),
                                   jax.tree.leaves(shardings)):  # fmt: skip
        assert got.sharding == sharding
        np.testing.assert_array_equal(np.asarray(got), want)  # init is independent of the layout
    abstract = partitioning.abstract_train_state(model, tx, mesh, seq_len=SEQ)
    assert jax.tree.map(lambda a: (a.shape, a.dtype, a.sharding), abstract) == jax.tree.map(
        lambda a: (a.shape, a.dtype, a.sharding), state
    )


@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (1, 8, 1), (2, 2, 2)])
def test_mesh_layouts_match_one_device(reference, mesh_shape):
    mesh = partitioning.create_mesh(mesh_shape)
    run = _run_jit(mesh, eval_first=mesh_shape == (2, 2, 2))
    np.testing.assert_allclose(run["losses"], reference["losses"], rtol=1e-5)
    # Same parameters too: a wrong gradient would move them by ~ the learning rate (Adam), noise by < 1e-5.
    for got, want in zip(jax.tree.leaves(run["state"].params), jax.tree.leaves(reference["state"].params)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)
    # After the steps every leaf keeps its sharding, shape and dtype.
    for got, initial, sharding in zip(jax.tree.leaves(run["state"]), jax.tree.leaves(run["initial"]),
                                      jax.tree.leaves(run["shardings"])):  # fmt: skip
        assert got.sharding.is_equivalent_to(sharding, got.ndim)
        assert (got.shape, got.dtype) == (initial.shape, initial.dtype)
    if run["eval"] is not None:
        for key, value in reference["eval"].items():
            np.testing.assert_allclose(run["eval"][key], value, rtol=1e-5, err_msg=key)


def test_shardings_follow_the_logical_rules():
    mesh = partitioning.create_mesh((2, 2, 2))
    model, tx, _ = _setup()
    abstract = partitioning.abstract_train_state(model, tx, mesh, seq_len=SEQ)
    p = jax.tree.map(lambda a: a.sharding.spec, abstract.params)
    layer = p["bert"]["encoder"]["layer_0"]
    expected = {
        "word embedding [vocab, embed]": (p["bert"]["embeddings"]["word_embeddings"]["embedding"], P("tensor", "fsdp")),
        "positions [-, embed]": (p["bert"]["embeddings"]["position_embeddings"]["embedding"], P(None, "fsdp")),
        "query [embed, heads, kv]": (layer["attention"]["query"]["kernel"], P("fsdp", "tensor", None)),
        "query bias [heads, kv]": (layer["attention"]["query"]["bias"], P("tensor", None)),
        "attention out [heads, kv, embed]": (layer["attention"]["output"]["kernel"], P("tensor", None, "fsdp")),
        "intermediate [embed, mlp]": (layer["intermediate"]["kernel"], P("fsdp", "tensor")),
        "output [mlp, embed]": (layer["output"]["kernel"], P("tensor", "fsdp")),
        "layer norm [embed]": (layer["output_layer_norm"]["scale"], P("fsdp")),
        "mlm bias [vocab]": (p["predictions"]["bias"], P("tensor")),
    }
    for name, (got, want) in expected.items():
        assert got == want, name
    assert abstract.step.sharding.spec == P()
    # Adam's moments are sharded like the parameters they belong to.
    adam = next(s for s in jax.tree.leaves(abstract.opt_state, is_leaf=lambda x: hasattr(x, "mu")) if hasattr(s, "mu"))
    assert jax.tree.map(lambda a: a.sharding, adam.mu) == jax.tree.map(lambda a: a.sharding, abstract.params)


def test_fsdp_divides_parameter_bytes_per_device():
    mesh = partitioning.create_mesh((1, 8, 1))
    model, tx, _ = _setup()
    state, _ = partitioning.create_train_state(model, tx, jax.random.key(0), mesh, seq_len=SEQ)
    total = device0 = sharded_total = sharded_device0 = 0
    for leaf in jax.tree.leaves(state.params):
        shard = leaf.addressable_shards[0]
        assert shard.device == mesh.devices.flat[0]
        total, device0 = total + leaf.nbytes, device0 + shard.data.nbytes
        if not leaf.sharding.is_fully_replicated:
            sharded_total, sharded_device0 = sharded_total + leaf.nbytes, sharded_device0 + shard.data.nbytes
    assert sharded_device0 * 8 == sharded_total
    assert sharded_total > 0.9 * total  # only small biases stay replicated
    assert device0 < 0.2 * total


def test_pmap_matches_one_device(reference):
    model, tx, loss_fn = _setup()
    step = partitioning.pmap_train_step(make_train_step(tx, loss_fn, grad_accum_steps=ACCUM, axis_name="batch"))
    state = partitioning.replicate(reference["initial"])
    rng = partitioning.replicate(jax.random.key(1))
    losses = []
    for batch in _batches():
        state, metrics = step(state, partitioning.shard_batch(batch), rng)
        losses.append(float(partitioning.unreplicate(metrics)["loss"]))
    np.testing.assert_allclose(losses, reference["losses"], rtol=1e-5)
    state = partitioning.unreplicate(state)
    assert state.step == STEPS
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference["state"].params)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)


def test_create_mesh_fills_minus_one():
    assert dict(partitioning.create_mesh((-1, 2, 1)).shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    assert partitioning.data_parallel_size(partitioning.create_mesh((2, 2, 2))) == 4


@pytest.mark.parametrize(
    "mesh_shape,match",
    [((3, 1, 1), "needs 3 devices but 8"), ((-1, 3, 1), "cannot be split"), ((8, 1), "must be 3"), ((0, 8, 1), "3 positive sizes")],
)
def test_mesh_shape_not_matching_devices_is_a_config_error(mesh_shape, match):
    with pytest.raises(ConfigError, match=match) as info:
        partitioning.create_mesh(mesh_shape)
    assert "mesh_shape" in str(info.value) and "\n" not in str(info.value)


def test_batch_not_divisible_is_a_config_error():
    partitioning.validate_batch_size(32, 8, grad_accum_steps=4)
    with pytest.raises(ConfigError, match="batch_size=12 is not divisible by the data-parallel size 8"):
        partitioning.validate_batch_size(12, 8)
    with pytest.raises(ConfigError, match="grad_accum_steps=2"):
        partitioning.validate_batch_size(8, 8, grad_accum_steps=2)


def test_parameter_not_divisible_by_its_mesh_axis_is_a_config_error():
    model, tx, _ = _setup()  # 2 attention heads cannot be split over 8 tensor-parallel devices
    with pytest.raises(ConfigError, match=r"cannot be split over mesh axes \('tensor',\) \(8 devices\)"):
        partitioning.abstract_train_state(model, tx, partitioning.create_mesh((1, 1, 8)), seq_len=SEQ)
    assert math.prod(partitioning.resolve_mesh_shape((1, 1, -1), 8)) == 8

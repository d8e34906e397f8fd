"""The pure train/eval step on one device: exact gradient accumulation, metrics, rng folding, bf16, remat."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from _step_helpers import random_batch, tiny_model
from sslm_jax.models.bert import init_params
from sslm_jax.objectives import make_pretraining_loss
from sslm_jax.training import optim
from sslm_jax.training.state import TrainState
from sslm_jax.objectives import make_eval_step
from sslm_jax.training.step import make_train_step, split_micro_batches

SGD = optax.sgd(1.0)  # new params = params - grads: the step's gradient is readable from the update


def _state(model, tx, seed=0):
    params = init_params(model, jax.random.key(seed))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def _grads(old, new):
    return jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), old.params, new.params)


def test_split_micro_batches_is_strided():
    batch = {"x": np.arange(12).reshape(6, 2)}
    micro = split_micro_batches(batch, 2)["x"]
    np.testing.assert_array_equal(micro[0], [[0, 1], [4, 5], [8, 9]])
    np.testing.assert_array_equal(micro[1], [[2, 3], [6, 7], [10, 11]])


@pytest.fixture(scope="module")
def sgd_runs():
    """One SGD step on the same batch for each variant: plain, 4 micro-batches, remat, bfloat16 compute."""
    batch = random_batch(16, seed=4, padded_rows=1)
    variants = {"plain": ({}, 1), "accum": ({}, 4), "remat": ({"remat": True}, 1), "bf16": ({"dtype": "bfloat16"}, 1)}
    runs = {}
    for name, (overrides, accum) in variants.items():
        model = tiny_model(**overrides)
        loss_fn = make_pretraining_loss(model, use_nsp=True, segment_attention=False)
        state = _state(model, SGD)
        step = jax.jit(make_train_step(SGD, loss_fn, grad_accum_steps=accum))
        new_state, metrics = step(state, batch, jax.random.key(0))
        runs[name] = (new_state, _grads(state, new_state), metrics)
    return batch, runs


def test_grad_accumulation_equals_the_big_batch_gradient(sgd_runs):
    batch, runs = sgd_runs
    # The micro-batches really hold different numbers of predictions (a mean of means would be off).
    counts = split_micro_batches(batch, 4)["masked_weights"].sum(axis=(1, 2))
    assert len(set(counts.tolist())) > 1, counts
    big, accumulated = runs["plain"][1], runs["accum"][1]
    for (path, g1), g4 in zip(jax.tree_util.tree_leaves_with_path(big), jax.tree.leaves(accumulated)):
        np.testing.assert_allclose(g4, g1, atol=1e-5, rtol=1e-5, err_msg=jax.tree_util.keystr(path))
    assert max(float(np.abs(g).max()) for g in jax.tree.leaves(big)) > 1e-3  # non-trivial gradients
    for key in ("loss", "mlm_loss", "mlm_accuracy", "nsp_accuracy", "mlm_weight", "nsp_count", "grad_norm"):
        np.testing.assert_allclose(runs["accum"][2][key], runs["plain"][2][key], rtol=1e-5, err_msg=key)
    assert float(runs["plain"][2]["nsp_count"]) == 15  # the padded row is not an example


def test_remat_gives_the_same_loss_and_gradients(sgd_runs):
    _, runs = sgd_runs
    np.testing.assert_allclose(runs["remat"][2]["loss"], runs["plain"][2]["loss"], rtol=1e-6)
    for g_remat, g in zip(jax.tree.leaves(runs["remat"][1]), jax.tree.leaves(runs["plain"][1])):
        np.testing.assert_allclose(g_remat, g, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params(sgd_runs):
    _, runs = sgd_runs
    state, _, metrics = runs["bf16"]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(metrics["loss"])
    np.testing.assert_allclose(metrics["loss"], runs["plain"][2]["loss"], rtol=2e-2)


def test_metrics_state_and_learning_rate():
    model = tiny_model()
    schedule = optim.warmup_decay_schedule(peak_value=1e-3, warmup_steps=2, total_steps=10)
    tx = optim.adamw(learning_rate=schedule)
    loss_fn = make_pretraining_loss(model, use_nsp=True, segment_attention=True)
    step = jax.jit(make_train_step(tx, loss_fn, schedule=schedule))
    state = _state(model, tx)
    before = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    batch = random_batch(8, seed=5)
    losses = []
    for i in range(4):
        state, metrics = step(state, batch, jax.random.key(0))
        np.testing.assert_allclose(metrics["learning_rate"], schedule(i), rtol=1e-6)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 4
    assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == before
    for key in ("loss", "mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy", "perplexity", "grad_norm",
                "param_norm", "learning_rate", "mlm_loss_sum", "mlm_weight"):  # fmt: skip
        assert metrics[key].shape == () and np.isfinite(metrics[key]), key
    np.testing.assert_allclose(metrics["param_norm"], optax.global_norm(state.params), rtol=1e-6)
    np.testing.assert_allclose(metrics["loss"], metrics["mlm_loss"] + metrics["nsp_loss"], rtol=1e-6)
    assert losses[-1] < losses[1]  # learning (step 0 has learning rate 0)


def test_dropout_rng_is_folded_with_the_step():
    model = tiny_model(hidden_dropout_prob=0.1)
    loss_fn = make_pretraining_loss(model, use_nsp=False, segment_attention=False)
    step = jax.jit(make_train_step(SGD, loss_fn))
    state, batch = _state(model, SGD), random_batch(8, seed=6)
    loss = lambda s, seed: float(step(s, batch, jax.random.key(seed))[1]["loss"])  # noqa: E731
    assert loss(state, 0) == loss(state, 0)  # pure: same inputs, same dropout
    assert loss(state, 0) != loss(state, 1)
    assert loss(state, 0) != loss(state.replace(step=jnp.ones((), jnp.int32)), 0)  # next step, new masks


def test_eval_step_ignores_padded_rows_and_takes_state_or_params():
    model = tiny_model()
    loss_fn = make_pretraining_loss(model, use_nsp=True, segment_attention=False)
    state = _state(model, SGD)
    eval_step = jax.jit(make_eval_step(loss_fn))
    batch = random_batch(8, seed=7, padded_rows=2)
    sums = eval_step(state, batch)
    # Whatever the padded rows hold, they do not count (same shapes: one compilation).
    other = {k: v.copy() for k, v in batch.items()}
    other["input_ids"][-2:] = 5
    other["masked_ids"][-2:] = 7
    other["nsp_label"][-2:] = 1 - other["nsp_label"][-2:]
    again = eval_step(state.params, other)
    for key in sums:
        np.testing.assert_allclose(again[key], sums[key], rtol=1e-6, err_msg=key)
    assert float(sums["nsp_count"]) == 6 and float(sums["mlm_weight"]) == batch["masked_weights"][:6].sum()

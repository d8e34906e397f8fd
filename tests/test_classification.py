"""Classification / regression loss sums: hand-computed values, padding rows ignored, exact batch splitting."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslm_jax.models.bert import BertConfig, BertForSequenceClassification, init_params
from sslm_jax.objectives import classification as cls


def test_sums_by_hand():
    logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0], [5.0, 0.0, 0.0]], jnp.bfloat16)
    labels = jnp.array([0, 1, 2])
    weights = jnp.array([1.0, 1.0, 0.0])
    sums = cls.classification_loss_and_metrics(logits, labels, weights, is_regression=False)
    lse0 = np.log(np.exp(2.0) + 2.0)
    lse1 = np.log(1.0 + np.exp(1.0) + np.exp(3.0))
    assert float(sums["loss_sum"]) == pytest.approx((lse0 - 2.0) + (lse1 - 1.0), rel=1e-5)
    assert float(sums["correct"]) == 1.0  # row 0 right, row 1 wrong, row 2 (right) is padding
    assert float(sums["count"]) == 2.0
    assert all(v.dtype == jnp.float32 for v in sums.values())
    means = cls.finalize_classification(sums)
    assert float(means["accuracy"]) == 0.5
    assert float(means["loss"]) == pytest.approx(float(sums["loss_sum"]) / 2)


def test_regression_sums_by_hand():
    logits = jnp.array([[1.5], [0.0], [9.0]])
    sums = cls.classification_loss_and_metrics(
        logits, jnp.array([1.0, 2.0, 0.0]), jnp.array([1.0, 1.0, 0.0]), is_regression=True
    )
    assert set(sums) == {"loss_sum", "count"}
    assert float(sums["loss_sum"]) == pytest.approx(0.25 + 4.0)
    assert float(cls.finalize_classification(sums)["loss"]) == pytest.approx(2.125)
    np.testing.assert_allclose(cls.predictions_from_logits(logits, is_regression=True), [1.5, 0.0, 9.0])
    with pytest.raises(ValueError, match="one output per example"):
        cls.classification_loss_and_metrics(jnp.zeros((2, 2)), jnp.zeros(2), jnp.ones(2), is_regression=True)


@functools.cache
def _model_and_batch(num_labels, batch=4, length=12):
    config = BertConfig.from_size("tiny", vocab_size=64, num_hidden_layers=1, max_position_embeddings=32)
    model = BertForSequenceClassification(config, num_labels=num_labels)
    params = jax.jit(functools.partial(init_params, model))(jax.random.key(0))
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, length + 1, batch)
    mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
    data = {
        "input_ids": (rng.integers(1, 64, (batch, length)) * mask).astype(np.int32),
        "attention_mask": mask,
        "token_type_ids": ((np.arange(length)[None] >= 2) * mask).astype(np.int32),
        "label": rng.integers(0, num_labels, batch).astype(np.int32)
        if num_labels > 1
        else rng.uniform(0, 5, batch).astype(np.float32),
        "example_weight": np.array([1.0] * (batch - 1) + [0.0], np.float32),
    }
    return model, params, data


@pytest.mark.parametrize("num_labels", [3, 1])
def test_padding_rows_change_nothing_and_splits_add_up(num_labels):
    model, params, batch = _model_and_batch(num_labels)
    loss_fn = cls.make_classification_loss(model, is_regression=num_labels == 1)
    grad_fn = jax.jit(jax.value_and_grad(loss_fn, has_aux=True), static_argnames="deterministic")
    (loss, sums), grads = grad_fn(params, batch, None, deterministic=True)
    assert float(sums["count"]) == 3.0
    assert float(loss) == pytest.approx(float(sums["loss_sum"]) / 3.0, rel=1e-6)

    # The padding row (weight 0) may hold anything: loss and gradients do not move.
    other = dict(batch, input_ids=batch["input_ids"].copy())
    other["input_ids"][-1] = 7
    (loss2, _), grads2 = grad_fn(params, other, None, deterministic=True)
    assert float(loss2) == float(loss)
    jax.tree.map(np.testing.assert_array_equal, grads, grads2)

    # Halves scored against the whole batch's denominator add up to the whole (gradient accumulation).
    whole = loss_fn.denominators(batch)
    halves = [jax.tree.map(lambda x: x[s], batch) for s in (slice(0, 2), slice(2, 4))]
    parts = [grad_fn(params, h, None, deterministic=True, denominators=whole) for h in halves]
    assert sum(float(p[0][0]) for p in parts) == pytest.approx(float(loss), rel=1e-5)
    summed = jax.tree.map(lambda a, b: a + b, parts[0][1], parts[1][1])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), summed, grads)


def test_dropout_uses_the_rng_and_predict_is_deterministic():
    model, params, batch = _model_and_batch(3)
    loss_fn = cls.make_classification_loss(model, is_regression=False)
    train_loss = jax.jit(loss_fn)
    train_a, _ = train_loss(params, batch, jax.random.key(1))
    train_b, _ = train_loss(params, batch, jax.random.key(2))
    assert float(train_a) != float(train_b)
    logits = jax.jit(cls.make_predict_fn(model))(params, batch)
    assert logits.shape == (4, 3) and logits.dtype == jnp.float32
    sums = cls.classification_loss_and_metrics(logits, batch["label"], batch["example_weight"], is_regression=False)
    assert float(sums["loss_sum"]) / 3 != pytest.approx(float(train_a), rel=1e-5)  # dropout was on in training
    predictions = cls.predictions_from_logits(logits, is_regression=False)
    assert float(sums["correct"]) == float(np.sum((predictions == batch["label"]) * batch["example_weight"]))

"""Objectives: sums against a numpy reference, padding ignored, float32 losses, exact aggregation of pieces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _step_helpers import random_batch, tiny_model
from sslm_jax.models.bert import init_params
from sslm_jax.objectives import finalize, make_pretraining_loss, mlm_loss_and_metrics, nsp_loss_and_metrics


def _np_nll(logits, labels):
    logits = logits.astype(np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    return logz - np.take_along_axis(logits, labels[..., None], -1)[..., 0]


def test_mlm_sums_match_numpy_and_ignore_padding():
    rng = np.random.RandomState(0)
    logits = rng.randn(3, 5, 11).astype(np.float32) * 3
    labels = rng.randint(0, 11, (3, 5)).astype(np.int32)
    weights = (rng.rand(3, 5) < 0.6).astype(np.float32)
    sums = mlm_loss_and_metrics(logits, labels, weights)
    np.testing.assert_allclose(sums["mlm_loss_sum"], (_np_nll(logits, labels) * weights).sum(), rtol=1e-6)
    np.testing.assert_allclose(sums["mlm_correct"], ((logits.argmax(-1) == labels) * weights).sum())
    assert float(sums["mlm_weight"]) == weights.sum()
    # Whatever the padded slots hold, they do not count.
    garbage = np.where(weights > 0, labels, rng.randint(0, 11, labels.shape))
    again = mlm_loss_and_metrics(logits * np.where(weights > 0, 1, 7)[..., None], garbage, weights)
    for key in sums:
        np.testing.assert_allclose(again[key], sums[key], rtol=1e-6)


def test_losses_are_float32_from_bfloat16_logits():
    logits = jax.random.normal(jax.random.key(0), (2, 3, 50)).astype(jnp.bfloat16)
    labels = jnp.array([[1, 2, 3], [4, 5, 6]])
    sums = mlm_loss_and_metrics(logits, labels, jnp.ones((2, 3)))
    assert all(v.dtype == jnp.float32 for v in sums.values())
    expected = _np_nll(np.asarray(logits.astype(jnp.float32)), np.asarray(labels)).sum()
    np.testing.assert_allclose(sums["mlm_loss_sum"], expected, rtol=1e-5)
    nsp = nsp_loss_and_metrics(logits[:, 0, :2], jnp.array([0, 1]))
    assert all(v.dtype == jnp.float32 for v in nsp.values())


def test_nsp_sums_and_example_weights():
    logits = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 1.0]], np.float32)
    labels = np.array([0, 1, 1])
    sums = nsp_loss_and_metrics(logits, labels, np.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(sums["nsp_loss_sum"], _np_nll(logits, labels)[[0, 2]].sum(), rtol=1e-6)
    assert float(sums["nsp_correct"]) == 2.0 and float(sums["nsp_count"]) == 2.0


def test_finalize_means_and_empty_batches():
    out = finalize({"mlm_loss_sum": 6.0, "mlm_correct": 1.0, "mlm_weight": 4.0, "nsp_loss_sum": 1.0,
                    "nsp_correct": 3.0, "nsp_count": 4.0})  # fmt: skip
    np.testing.assert_allclose(
        [out["mlm_loss"], out["mlm_accuracy"], out["nsp_loss"], out["nsp_accuracy"], out["loss"]],
        [1.5, 0.25, 0.25, 0.75, 1.75],
    )
    np.testing.assert_allclose(out["perplexity"], np.exp(1.5), rtol=1e-6)
    # An all-padding batch gives zeros, and the gradient through the division stays finite.
    empty = finalize({"mlm_loss_sum": jnp.float32(0), "mlm_correct": 0.0, "mlm_weight": 0.0})
    assert float(empty["mlm_loss"]) == 0.0
    grad = jax.grad(lambda s: finalize({"mlm_loss_sum": s, "mlm_correct": 0.0, "mlm_weight": 0.0})["loss"])(1.0)
    assert np.isfinite(grad)


def _jit(loss_fn):
    """The loss as one compiled program (deterministic, no rng): run op by op, a tiny BERT's forward pass took ~8 s
    here, each of its primitives dispatched alone."""
    return jax.jit(lambda params, batch, den=None: loss_fn(params, batch, None, True, denominators=den))


@pytest.fixture(scope="module")
def model_and_params():
    model = tiny_model()
    return model, init_params(model, jax.random.key(0))


def test_pieces_with_whole_batch_denominators_add_up(model_and_params):
    model, params = model_and_params
    loss_fn = make_pretraining_loss(model, use_nsp=True, segment_attention=False)
    jitted = _jit(loss_fn)
    batch = random_batch(8, seed=1)
    whole_loss, whole_sums = jitted(params, batch)
    den = loss_fn.denominators(batch)
    halves = [{k: v[:3] for k, v in batch.items()}, {k: v[3:] for k, v in batch.items()}]
    counts = [float(h["masked_weights"].sum()) for h in halves]
    assert counts[0] / 3 != counts[1] / 5  # unequal predictions per row: a mean of means would be wrong
    parts = [jitted(params, h, den) for h in halves]
    np.testing.assert_allclose(parts[0][0] + parts[1][0], whole_loss, rtol=1e-6)
    for key in whole_sums:
        np.testing.assert_allclose(parts[0][1][key] + parts[1][1][key], whole_sums[key], rtol=1e-6)
    # The loss is the sum of the two objectives' means.
    np.testing.assert_allclose(whole_loss, finalize(whole_sums)["loss"], rtol=1e-6)


def test_masked_position_logits_equal_full_logits(model_and_params):
    model, params = model_and_params
    batch = random_batch(4, seed=2)
    loss_fn = make_pretraining_loss(model, use_nsp=False, segment_attention=False)
    _, sums = _jit(loss_fn)(params, batch)
    apply = jax.jit(model.apply)
    full = apply({"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    gathered = np.take_along_axis(np.asarray(full.mlm_logits), batch["masked_positions"][..., None], axis=1)
    reference = mlm_loss_and_metrics(gathered, batch["masked_ids"], batch["masked_weights"])
    np.testing.assert_allclose(sums["mlm_loss_sum"], reference["mlm_loss_sum"], rtol=1e-5)
    assert "nsp_loss_sum" not in sums


def test_segment_attention_uses_segment_ids(model_and_params):
    model, params = model_and_params
    batch = random_batch(4, seed=3)
    batch["segment_ids"] = np.where(batch["token_type_ids"] > 0, 2, batch["attention_mask"]).astype(np.int32)
    with_segments = _jit(make_pretraining_loss(model, use_nsp=False, segment_attention=True))
    without = _jit(make_pretraining_loss(model, use_nsp=False, segment_attention=False))
    assert float(with_segments(params, batch)[0]) != float(without(params, batch)[0])
    batch["segment_ids"] = batch["attention_mask"].copy()  # one document per row: the same attention
    np.testing.assert_allclose(with_segments(params, batch)[0], without(params, batch)[0])


def test_padded_slots_may_hold_any_label_or_position(model_and_params):
    """A weight-0 slot holding HF's -100, an id past the vocabulary or a position past the row gathered NaN, and
    NaN x 0 is NaN: the loss, then every parameter after the update, became NaN."""
    model, params = model_and_params
    loss_fn = make_pretraining_loss(model, use_nsp=True, segment_attention=False)
    batch = random_batch(8, seed=3)
    padded = batch["masked_weights"] == 0
    assert padded.any()
    wild = dict(batch)
    wild["masked_ids"] = np.where(padded, np.array([-100, 10**6])[np.arange(padded.size) % 2].reshape(padded.shape),
                                  batch["masked_ids"])  # fmt: skip
    wild["masked_positions"] = np.where(padded, 10**4, batch["masked_positions"])
    wild["nsp_label"] = batch["nsp_label"].copy()
    wild["masked_weights"] = batch["masked_weights"].copy()
    wild["masked_weights"][-1] = 0.0  # a whole padded row, whose NSP label is -100
    wild["attention_mask"] = batch["attention_mask"].copy()
    wild["attention_mask"][-1] = 0
    wild["nsp_label"][-1] = -100
    clean = dict(wild, masked_ids=np.where(padded, 0, batch["masked_ids"]), nsp_label=batch["nsp_label"],
                 masked_positions=np.where(padded, 0, batch["masked_positions"]))  # fmt: skip
    loss_and_grads = jax.jit(jax.value_and_grad(_jit(loss_fn), has_aux=True))
    (loss, sums), grads = loss_and_grads(params, wild)
    (want, want_sums), want_grads = loss_and_grads(params, clean)
    assert np.isfinite(float(loss)) and float(loss) == float(want)
    for key in want_sums:
        assert float(sums[key]) == float(want_sums[key]), key
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)))


def test_every_cross_entropy_ignores_labels_of_weight_zero():
    from sslm_jax.objectives.causal_lm import next_token_loss_and_metrics
    from sslm_jax.objectives.classification import classification_loss_and_metrics as classification_sums

    logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]]))
    lm = next_token_loss_and_metrics(logits, jnp.array([[0, 1, 7]]), jnp.array([[0, 1, 0]]))  # 7: past the vocab
    np.testing.assert_allclose(float(lm["lm_loss_sum"]), -np.log(0.2), rtol=1e-6)
    cls = classification_sums(logits[0], jnp.array([0, -100, 2]), jnp.array([1.0, 0.0, 1.0]), is_regression=False)
    np.testing.assert_allclose(float(cls["loss_sum"]), -np.log(0.7) - np.log(0.4), rtol=1e-6)
    reg = classification_sums(logits[0, :, :1], jnp.array([0.5, jnp.nan, 0.0]), jnp.array([1.0, 0.0, 0.0]),
                              is_regression=True)  # fmt: skip
    np.testing.assert_allclose(float(reg["loss_sum"]), (np.log(0.7) - 0.5) ** 2, rtol=1e-6)


@pytest.mark.parametrize(
    "field, shape, message",
    [
        ("masked_ids", (8, 3), r"batch\['masked_ids'\] has shape \[8, 3\], not \[B, P\] with B=8, P=4"),
        ("nsp_label", (8, 1), r"batch\['nsp_label'\] has shape \[8, 1\], not \[B\] with B=8"),
        ("attention_mask", (8, 15), r"batch\['attention_mask'\] has shape \[8, 15\], not \[B, L\] with B=8, L=16"),
    ],
)
def test_a_field_of_the_wrong_shape_is_named(model_and_params, field, shape, message):
    """These were XLA broadcasting errors ("Incompatible shapes for broadcasting: shapes=[(16, 3, 1), (16, 4, 1)]")
    that named no field."""
    model, params = model_and_params
    loss_fn = make_pretraining_loss(model, use_nsp=True, segment_attention=False)
    batch = dict(random_batch(8, seed=4))
    batch[field] = np.zeros(shape, batch[field].dtype)
    with pytest.raises(ValueError, match=r"^PretrainingLoss: " + message + r" \(a batch holds input_ids \[B, L\];"):
        jax.jit(lambda p, b: loss_fn(p, b, None, True))(params, batch)

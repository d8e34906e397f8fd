"""ELECTRA's objective: original tokens restored, exact Gumbel-max samples (at any temperature), labels after sampling
(a correct guess is original), disc_weight in the total, sums that add up over pieces of a batch, a discriminator
that learns to find replacements where they can be found, and its one-line errors."""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslm_jax.models import electra
from sslm_jax.objectives import electra as objective

V, T, P = 40, 12, 3
MASK_ID = 4


def _batch(rows=4, seed=0):
    rng = np.random.default_rng(seed)
    original = rng.integers(5, V, (rows, T)).astype(np.int32)
    positions = np.stack([np.sort(rng.choice(np.arange(1, T), P, replace=False)) for _ in range(rows)]).astype(np.int32)
    weights = np.ones((rows, P), np.float32)
    weights[0, -1] = 0.0  # a padded prediction slot
    ids = original.copy()
    rows_ix = np.arange(rows)[:, None]
    ids[rows_ix, positions] = np.where(weights > 0, MASK_ID, ids[rows_ix, positions])
    masked_ids = np.where(weights > 0, original[rows_ix, positions], 0).astype(np.int32)
    attention = np.ones((rows, T), np.int32)
    attention[1, -2:] = 0
    return original, {
        "input_ids": ids, "attention_mask": attention, "token_type_ids": np.zeros((rows, T), np.int32),
        "segment_ids": attention, "masked_positions": positions, "masked_ids": masked_ids, "masked_weights": weights,
    }  # fmt: skip


def test_original_ids_undo_the_masking():
    original, batch = _batch()
    np.testing.assert_array_equal(np.asarray(objective.original_ids(batch)), original)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_gumbel_max_samples_the_softmax_and_never_the_forbidden_token(temperature):
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = jnp.log(jnp.asarray(probs))
    sample = lambda k: objective.gumbel_sample(logits, k, forbidden=3, temperature=temperature)  # noqa: E731
    draws = jax.vmap(sample)(jax.random.split(jax.random.key(0), 20000))
    freq = np.bincount(np.asarray(draws), minlength=4) / 20000
    tempered = probs ** (1 / temperature) * np.array([1, 1, 1, 0])  # softmax(logits / T) without the forbidden token
    expected = tempered / tempered.sum()
    assert freq[3] == 0
    np.testing.assert_allclose(freq, expected, atol=4 * np.sqrt(0.25 / 20000))


def test_rtd_sums():
    logits = jnp.array([[2.0, -1.0, 3.0, -2.0]])
    labels = jnp.array([[1, 0, 0, 1]])
    sums = objective.rtd_loss_and_metrics(logits, labels, jnp.array([[1, 1, 1, 0]]))
    assert float(sums["rtd_count"]) == 3 and float(sums["rtd_correct"]) == 2
    assert float(sums["rtd_true_positives"]) == 1 and float(sums["rtd_predicted_replaced"]) == 2
    assert float(sums["rtd_replaced"]) == 1
    out = objective.finalize_rtd(sums)
    assert float(out["rtd_precision"]) == 0.5 and float(out["rtd_recall"]) == 1.0
    np.testing.assert_allclose(float(out["rtd_all_original_accuracy"]), 2 / 3)


def _jit(loss_fn):
    """The loss as one compiled program, deterministic: op by op, each primitive of the two models dispatched alone
    took seconds per call."""
    return jax.jit(lambda params, batch, rng, den=None: loss_fn(params, batch, rng, True, denominators=den))


@pytest.fixture(scope="module")
def model_and_params():
    config = electra.ElectraConfig.from_size("tiny", vocab_size=V, max_position_embeddings=T, hidden_dropout_prob=0.0,
                                             attention_probs_dropout_prob=0.0)  # fmt: skip
    model = electra.ElectraPretrainingModel(config)
    params = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, T), jnp.int32))["params"]
    return model, jax.tree.map(lambda p: getattr(p, "value", p), params, is_leaf=lambda x: hasattr(x, "value"))


def test_loss_weights_the_terms_and_pieces_add_up(model_and_params):
    model, params = model_and_params
    _, batch = _batch()
    rng = jax.random.key(3)
    with_50 = objective.make_electra_loss(model, disc_weight=50.0, mask_id=MASK_ID, segment_attention=False)
    with_1 = objective.make_electra_loss(model, disc_weight=1.0, mask_id=MASK_ID, segment_attention=False)
    loss_50, sums = _jit(with_50)(params, batch, rng)
    loss_1, _ = _jit(with_1)(params, batch, rng)
    out = with_50.finalize(sums)
    np.testing.assert_allclose(float(loss_50), float(out["mlm_loss"] + 50 * out["rtd_loss"]), rtol=1e-5)
    np.testing.assert_allclose(float(loss_50 - loss_1), 49 * float(out["rtd_loss"]), rtol=1e-5)
    assert float(sums["rtd_count"]) == batch["attention_mask"].sum()
    # Only real masked positions can be replaced; a correct sample is not a replacement.
    assert float(sums["rtd_replaced"]) <= batch["masked_weights"].sum()
    # Halves with the whole batch's denominators add up to the whole (gradient accumulation, devices).
    den = with_50.denominators(batch)
    halves = [_jit(with_50)(params, {k: v[i::2] for k, v in batch.items()}, rng, den)[1] for i in (0, 1)]
    for key in ("mlm_weight", "rtd_count"):
        assert float(halves[0][key] + halves[1][key]) == float(sums[key])


def test_a_correct_guess_counts_as_original(model_and_params, monkeypatch):
    model, params = model_and_params
    original, batch = _batch()
    # A generator that always samples the original token: nothing is replaced.
    monkeypatch.setattr(objective, "gumbel_sample", lambda logits, rng, **_: jnp.asarray(batch["masked_ids"]))
    loss_fn = objective.make_electra_loss(model, disc_weight=50.0, mask_id=MASK_ID, segment_attention=False)
    _, sums = _jit(loss_fn)(params, batch, jax.random.key(0))
    assert float(sums["rtd_replaced"]) == 0.0


def test_negative_disc_weight_is_refused(model_and_params):
    with pytest.raises(ValueError, match="disc_weight=-1"):
        objective.make_electra_loss(model_and_params[0], disc_weight=-1, mask_id=MASK_ID, segment_attention=False)


def _counting_batch(rng: np.random.Generator, rows: int = 32):
    """Rows that count up (5, 6, 7, ... wrapping within the real tokens), 3 masked positions each: a replacement
    breaks the count, so a discriminator can learn to find every one."""
    starts = rng.integers(0, V - 5, (rows, 1))
    original = ((starts + np.arange(T)) % (V - 5) + 5).astype(np.int32)
    positions = np.stack([np.sort(rng.choice(np.arange(1, T), P, replace=False)) for _ in range(rows)]).astype(np.int32)
    ids = original.copy()
    ids[np.arange(rows)[:, None], positions] = MASK_ID
    return {
        "input_ids": ids, "attention_mask": np.ones((rows, T), np.int32), "token_type_ids": np.zeros((rows, T), np.int32),
        "segment_ids": np.ones((rows, T), np.int32), "masked_positions": positions,
        "masked_ids": original[np.arange(rows)[:, None], positions], "masked_weights": np.ones((rows, P), np.float32),
    }  # fmt: skip


def test_the_discriminator_learns_to_find_replacements(model_and_params):
    """End to end through sampling, labels and the loss's gradient: on rows where a replacement always shows (a
    broken count) and replacements are near-uniform draws (temperature 100), 400 Adam steps take the discriminator
    far above calling every token original. Wrong labels, or a discriminator reading the wrong input, stay at it.
    The rate matters: at 3e-3 this discriminator stays at "all original" even trained alone on exact labels, and
    at 1e-3 whether it leaves it within 600 steps depends on the initial draw, in transformers' PyTorch model too
    (BENCHMARKS.md, "Is ELECTRA's discriminator defective?")."""
    import optax

    model, params = model_and_params
    loss_fn = objective.make_electra_loss(model, disc_weight=50.0, mask_id=MASK_ID, segment_attention=False,
                                          temperature=100.0)  # fmt: skip
    tx = optax.adam(3e-4)

    # 400 steps: XLA's optimised code pays for itself here (conftest compiles the tests' small programs at level 0).
    @functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 2})
    def step(params, opt_state, batch, rng):
        grads, _ = jax.grad(loss_fn, has_aux=True)(params, batch, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    data, opt_state = np.random.default_rng(0), tx.init(params)
    for i in range(400):
        params, opt_state = step(params, opt_state, _counting_batch(data), jax.random.key(i))
    _, sums = _jit(loss_fn)(params, _counting_batch(np.random.default_rng(1), rows=64), None)
    out = loss_fn.finalize(sums)
    assert float(out["rtd_all_original_accuracy"]) < 0.8  # about 3 of 12 tokens replaced
    assert float(out["rtd_accuracy"]) > 0.9, out
    assert float(out["rtd_recall"]) > 0.7 and float(out["rtd_precision"]) > 0.8, out


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_non_positive_temperature_is_refused(model_and_params, temperature):
    with pytest.raises(ValueError, match=f"temperature={temperature}"):
        objective.make_electra_loss(model_and_params[0], disc_weight=50.0, mask_id=MASK_ID, segment_attention=False,
                                    temperature=temperature)  # fmt: skip


def test_config_with_a_non_positive_replacement_temperature_is_refused():
    from sslm_jax.config_loading import load_config
    from sslm_jax.errors import ConfigError
    from sslm_jax.training import validation

    config = load_config(str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "electra_demo.py") + ":smoke")
    validation.validate(config)
    config.replacement_temperature = 0.0
    with pytest.raises(ConfigError, match="replacement_temperature=0.0 must be > 0"):
        validation.validate(config)


def test_a_padded_slot_that_repeats_a_real_position_changes_nothing(model_and_params):
    """Padded slots (weight 0) were scattered too: one that repeated a real slot's position could write [MASK] back
    over the restored original, or its own value over the generator's sample (which write won is unspecified)."""
    model, params = model_and_params
    original, batch = _batch()
    assert batch["masked_weights"][0, -1] == 0
    repeated = dict(batch, masked_positions=batch["masked_positions"].copy(), masked_ids=batch["masked_ids"].copy())
    repeated["masked_positions"][0, -1] = batch["masked_positions"][0, 0]  # the padded slot names a real position
    repeated["masked_ids"][0, -1] = 10**6  # and holds an id past the vocabulary
    np.testing.assert_array_equal(np.asarray(objective.original_ids(repeated)), original)
    loss_fn = objective.make_electra_loss(model, disc_weight=50.0, mask_id=MASK_ID, segment_attention=False)
    jitted = _jit(loss_fn)
    loss, sums = jitted(params, batch, jax.random.key(5))
    loss_r, sums_r = jitted(params, repeated, jax.random.key(5))
    assert float(loss_r) == float(loss) and all(float(sums_r[k]) == float(sums[k]) for k in sums)


def test_training_without_an_rng_is_refused(model_and_params):
    """The other objectives fail in Flax without a dropout key; this one silently sampled with the eval key."""
    loss_fn = objective.make_electra_loss(model_and_params[0], disc_weight=50.0, mask_id=MASK_ID,
                                          segment_attention=False)  # fmt: skip
    with pytest.raises(ValueError, match="ElectraLoss samples replacements: pass an rng"):
        loss_fn(model_and_params[1], _batch()[1], None)

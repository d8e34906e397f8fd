"""Pruning while fine-tuning (sslm_jax/training/pruning.py): the mask rule, its gradients, the wrapped model."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sslm_jax.errors import SslmError
from sslm_jax.inference import prune, quantize
from sslm_jax.models import bert
from sslm_jax.objectives import base
from sslm_jax.training import pruning
from sslm_jax.training.state import TrainState
from sslm_jax.training.step import make_train_step

CONFIG = bert.BertConfig.from_size("tiny", vocab_size=50, max_position_embeddings=16)
IDS = jnp.arange(2 * 8, dtype=jnp.int32).reshape(2, 8) % CONFIG.vocab_size


@pytest.fixture(scope="module")
def model_and_names():
    model = bert.BertForSequenceClassification(CONFIG, num_labels=2)
    params = bert.init_params(model, jax.random.key(0))
    names = tuple(prune.prunable(quantize.dense_layouts(model, params, IDS)))
    assert len(names) == 12 and all("/layer_" in n for n in names)
    return model, names


def test_magnitude_masks_worked_example():
    params = {"k": np.array([[0.1, -3.0], [2.0, 0.01]])}
    mask = prune.magnitude_masks(params, ["k"], 0.5)["k"]
    np.testing.assert_array_equal(mask, [[False, True], [True, False]])


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_movement_init_adds_zero_scores_and_the_mask_holds_the_sparsity(model_and_names, scope):
    model, names = model_and_names
    rule = pruning.MaskRule(names=names, sparsity=0.6, scope=scope)
    wrapped = pruning.MaskedModel(model, rule)
    params = nn.meta.unbox(jax.jit(wrapped.init)({"params": jax.random.key(1)}, IDS)["params"])
    scores = params[pruning.SCORES]
    assert all(not np.any(pruning._get(scores, n)) for n in names)
    masks = {n: np.asarray(m) for n, m in rule.masks(params).items()}
    total = sum(m.size for m in masks.values())
    assert sum((m == 0).sum() for m in masks.values()) / total == pytest.approx(0.6, abs=1e-3)
    if scope == "layer":
        assert all((m == 0).mean() == pytest.approx(0.6, abs=2e-3) for m in masks.values())
    # With zero scores the movement mask is the magnitude mask (step 0 is magnitude pruning).
    magnitude = prune.magnitude_masks(params, names, 0.6, scope=scope)
    n = names[0]
    assert (masks[n] > 0).mean() == pytest.approx(magnitude[n].mean(), abs=2e-3)
    masked = rule.masked(params)
    assert pruning.SCORES not in masked
    np.testing.assert_array_equal(pruning._get(masked, n), pruning._get(params, n) * masks[n])
    out = jax.jit(wrapped.apply)({"params": params}, IDS).logits
    ref = jax.jit(model.apply)({"params": masked}, IDS).logits
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-6)


def test_scores_get_the_straight_through_gradient(model_and_names):
    """dL/dS = dL/dM = (dL/dW') * W: nonzero, and equal to the kernel's gradient times the kernel."""
    model, names = model_and_names
    rule = pruning.MaskRule(names=names, sparsity=0.5, scope="layer")
    wrapped = pruning.MaskedModel(model, rule)
    params = nn.meta.unbox(jax.jit(wrapped.init)({"params": jax.random.key(2)}, IDS)["params"])

    def loss(p):
        return jnp.sum(wrapped.apply({"params": p}, IDS).logits[:, 0])

    grads = jax.jit(jax.grad(loss))(params)
    n = names[3]
    g_score = np.asarray(pruning._get(grads[pruning.SCORES], n))
    assert np.abs(g_score).max() > 0
    masked = rule.masked(params)
    effective_grad = jax.jit(jax.grad(lambda p: jnp.sum(model.apply({"params": p}, IDS).logits[:, 0])))
    g_effective = np.asarray(pruning._get(effective_grad(masked), n))
    np.testing.assert_allclose(g_score, g_effective * np.asarray(pruning._get(params, n)), rtol=1e-4, atol=1e-8)
    # the weights themselves only learn where they are kept
    mask = np.asarray(rule.masks(params)[n])
    assert not np.any(np.asarray(pruning._get(grads, n))[mask == 0])


def test_movement_sparsity_follows_the_cubic_schedule(model_and_names):
    model, names = model_and_names
    rule = pruning.MaskRule(names=names, sparsity=0.8, scope="global", steps=100)
    assert [float(rule.sparsity_at(s)) for s in (0, 10, 40, 70, 99)] == pytest.approx([0, 0, 0.7, 0.8, 0.8])
    assert rule.sparsity_at(None) == 0.8  # evaluation and the saved masks: the target
    params = nn.meta.unbox(jax.jit(pruning.MaskedModel(model, rule).init)({"params": jax.random.key(4)}, IDS)["params"])
    pruned = jax.jit(lambda p, step: sum(jnp.sum(m == 0) for m in rule.masks(p, step).values()))
    total = sum(pruning._get(params, n).size for n in names)
    for step, want in [(0, 0.0), (40, 0.7), (85, 0.8)]:  # one compilation: the step is traced
        assert int(pruned(params, step)) / total == pytest.approx(want, abs=1e-3)


@dataclasses.dataclass(frozen=True)
class _SeesStep(base.Objective):
    """Reports the `step` it was given (or -1); its loss is zero."""

    uses_step: bool = True

    def denominators(self, batch):
        return {}

    def __call__(self, params, batch, rng=None, deterministic=False, *, denominators=None, step=None):
        seen = jnp.asarray(-1 if step is None else step, jnp.float32)
        return 0.0 * jnp.sum(params["w"]), {"seen_step": seen}


@pytest.mark.parametrize("uses_step, want", [(True, 5.0), (False, -1.0)])
def test_the_train_step_passes_the_step_to_an_objective_that_asks(uses_step, want):
    tx = optax.sgd(0.1)
    params = {"w": jnp.ones(3)}
    state = TrainState(step=jnp.int32(5), params=params, opt_state=tx.init(params))
    train_step = jax.jit(make_train_step(tx, _SeesStep(uses_step=uses_step)))
    new_state, metrics = train_step(state, {"x": jnp.zeros(2)}, jax.random.key(0))
    assert float(metrics["seen_step"]) == want and int(new_state.step) == 6


def test_fixed_masks_need_no_scores(model_and_names):
    model, names = model_and_names
    params = bert.init_params(model, jax.random.key(3))
    fixed = {n: m.astype(np.float32) for n, m in prune.magnitude_masks(params, names, 0.3).items()}
    wrapped = pruning.MaskedModel(model, pruning.MaskRule(names=names, sparsity=0.3, scope="global", fixed=fixed))
    assert pruning.SCORES not in jax.jit(wrapped.init)({"params": jax.random.key(3)}, IDS)["params"]
    out = jax.jit(wrapped.apply)({"params": params}, IDS).logits
    ref = jax.jit(model.apply)({"params": prune.apply_masks(params, fixed)}, IDS).logits
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sparsity=0.5, method="movement"), "give --steps > 0"),
        (dict(sparsity=0.5, steps=-1), "--steps=-1 must be >= 0"),
        (dict(sparsity=1.0), r"in \[0, 1\)"),
        (dict(sparsity=0.5, method="random"), "unknown; use one of magnitude, movement"),
    ],
)
def test_prune_run_refuses_bad_settings_first(tmp_path, kwargs, message):
    with pytest.raises(SslmError, match=message):
        pruning.prune_run(tmp_path / "missing", tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()

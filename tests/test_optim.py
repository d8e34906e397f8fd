"""Optimizers: the weight-decay mask, BERT's AdamW defaults, schedules, LAMB's trust ratio, config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from _step_helpers import tiny_model
from configs import base
from sslm_jax.errors import ConfigError
from sslm_jax.models.bert import init_params
from sslm_jax.training import optim


@pytest.fixture(scope="module")
def params():
    return init_params(tiny_model(), jax.random.key(0))


def _flat(tree):
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_weight_decay_mask_excludes_layer_norm_and_biases(params):
    mask = _flat(optim.weight_decay_mask(params))
    assert mask.keys() == _flat(params).keys()
    for name, decayed in mask.items():
        is_norm = "layer_norm" in name.lower() or "LayerNorm" in name
        is_bias = name.endswith("['bias']")
        assert decayed == (not is_norm and not is_bias), name
    assert mask["['bert']['embeddings']['word_embeddings']['embedding']"]
    assert mask["['bert']['encoder']['layer_0']['attention']['query']['kernel']"]
    assert not mask["['bert']['encoder']['layer_0']['attention_layer_norm']['scale']"]
    assert not mask["['predictions']['bias']"]


def test_weight_decay_mask_on_boxed_params():
    boxed = init_params(tiny_model(), jax.random.key(0), boxed=True)
    mask = optim.weight_decay_mask(boxed)
    assert jax.tree.structure(mask) == jax.tree.structure(boxed)
    assert _flat(mask) == _flat(optim.weight_decay_mask(jax.tree.map(lambda x: x, boxed)))


def test_adamw_decays_only_masked_leaves_with_bert_defaults(params):
    lr, wd = 0.1, 0.01
    tx = optim.adamw(learning_rate=lr, weight_decay=wd)
    # Zero gradients: the update is exactly the decoupled decay -lr * wd * param, and 0 for excluded leaves.
    updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)  # one program
    mask = _flat(optim.weight_decay_mask(params))
    flat_params = _flat(params)
    for name, u in _flat(updates).items():
        p = flat_params[name]
        expected = -lr * wd * p if mask[name] else jnp.zeros_like(p)
        np.testing.assert_allclose(u, expected, rtol=1e-6, atol=1e-12, err_msg=name)
    # eps = 1e-6 (BERT), not optax's 1e-8: a gradient of 1e-6 gives half a step on the first update.
    g = {"bias": jnp.full((3,), 1e-6)}
    tx = optim.adamw(learning_rate=1.0, weight_decay=0.0, max_grad_norm=0.0)
    updates, _ = tx.update(g, tx.init(g), g)
    np.testing.assert_allclose(updates["bias"], -0.5, rtol=1e-5)


def test_clipping_scales_the_global_norm():
    g = {"kernel": jnp.full((4,), 10.0)}  # global norm 20
    clipped = optim.adamw(learning_rate=1.0, weight_decay=0.0, max_grad_norm=1.0, b1=0.0, b2=0.0, eps=1.0)
    plain = optim.adamw(learning_rate=1.0, weight_decay=0.0, max_grad_norm=0.0, b1=0.0, b2=0.0, eps=1.0)
    # With b1 = b2 = 0 and eps = 1, Adam's step is g / (|g| + 1): 0.5 / 1.5 after clipping to 0.5 per entry.
    np.testing.assert_allclose(clipped.update(g, clipped.init(g), g)[0]["kernel"], -0.5 / 1.5, rtol=1e-5)
    np.testing.assert_allclose(plain.update(g, plain.init(g), g)[0]["kernel"], -10 / 11, rtol=1e-5)


@pytest.mark.parametrize("decay", ["linear", "cosine", "constant"])
def test_schedule_values(decay):
    s = optim.warmup_decay_schedule(peak_value=1e-3, warmup_steps=10, total_steps=110, decay=decay)
    np.testing.assert_allclose([s(0), s(5), s(10)], [0.0, 5e-4, 1e-3], rtol=1e-6, atol=1e-12)
    mid, end, after = float(s(60)), float(s(110)), float(s(200))
    if decay == "constant":
        np.testing.assert_allclose([mid, end, after], 1e-3, rtol=1e-6)
    else:
        np.testing.assert_allclose(mid, 5e-4, rtol=1e-5)  # halfway through the decay, linear and cosine agree
        np.testing.assert_allclose([end, after], 0.0, atol=1e-12)
        if decay == "cosine":
            assert float(s(35)) > 1e-3 * 0.75  # cosine stays high longer: (1 + cos(pi/4)) / 2 = 0.854
        else:
            np.testing.assert_allclose(s(35), 7.5e-4, rtol=1e-5)


def test_schedule_without_warmup_starts_at_peak():
    s = optim.warmup_decay_schedule(peak_value=2.0, warmup_steps=0, total_steps=4)
    np.testing.assert_allclose([s(0), s(2), s(4)], [2.0, 1.0, 0.0])


def test_make_optimizer_from_base_config(params):
    config = base.get_config()
    config.warmup_steps, config.total_steps = 10, 100
    tx, schedule = optim.make_optimizer(config)
    np.testing.assert_allclose(schedule(10), config.learning_rate, rtol=1e-6)
    state = tx.init(params)
    updates, _ = jax.jit(tx.update)(params, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("optimizer", "sgd", "optimizer='sgd'"),
        ("lr_schedule", "step", "lr_schedule='step'"),
        ("warmup_steps", 2000, "warmup_steps=2000 exceeds total_steps"),
        ("learning_rate", 0.0, "learning_rate=0.0"),
        ("max_grad_norm", -1.0, "max_grad_norm=-1.0"),
    ],
)
def test_bad_optimizer_settings_are_config_errors(field, value, match):
    config = base.get_config()
    config[field] = value
    with pytest.raises(ConfigError, match=match):
        optim.make_optimizer(config)


def test_lamb_runs_and_uses_the_trust_ratio(params):
    config = base.get_config()
    config.update(optimizer="lamb", warmup_steps=0, lr_schedule="constant", learning_rate=0.01)
    tx, _ = optim.make_optimizer(config)
    grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.01, params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    flat_u, flat_p, mask = _flat(updates), _flat(params), _flat(optim.weight_decay_mask(params))
    for name, decayed in mask.items():
        u = np.linalg.norm(np.asarray(flat_u[name]))
        if decayed:  # layer-wise: every weight matrix moves by lr × its own norm
            np.testing.assert_allclose(u, 0.01 * np.linalg.norm(np.asarray(flat_p[name])), rtol=1e-4, err_msg=name)
        else:  # LayerNorm/bias: plain Adam step, lr per entry (first step, constant gradient)
            np.testing.assert_allclose(u, 0.01 * np.sqrt(flat_u[name].size), rtol=1e-3, err_msg=name)


def test_lamb_reduces_a_quadratic():
    target = {"w": {"kernel": jnp.arange(6.0).reshape(2, 3) + 1}}
    loss = lambda p: jnp.sum((p["w"]["kernel"] - target["w"]["kernel"]) ** 2)  # noqa: E731
    p = {"w": {"kernel": jnp.zeros((2, 3)) + 0.1}}
    tx = optim.lamb(learning_rate=0.1, weight_decay=0.0)
    state = tx.init(p)
    first = loss(p)
    for _ in range(20):
        updates, state = tx.update(jax.grad(loss)(p), state, p)
        p = optax.apply_updates(p, updates)
    assert loss(p) < 0.8 * first  # steps grow with ||p|| (trust ratio), so the start from 0.1 is slow

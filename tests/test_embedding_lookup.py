"""Lookups built for the backward pass: the same forward values as nn.Embed / take_along_axis, and no bfloat16
scatter-add in any model's gradient. XLA:GPU runs a bf16 scatter-add as a compare-and-swap loop (openxla/xla#26371),
and the token-type and position tables take every row of a batch: a suspect, not yet measured, in the H200 run
where our BERT step was 2.3x slower than transformers' (BENCHMARKS.md, Accelerators)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _step_helpers import random_batch
from sslm_jax.models import bert, electra, gpt, layers
from sslm_jax.objectives import make_pretraining_loss
from sslm_jax.objectives.causal_lm import make_causal_lm_loss
from sslm_jax.objectives.electra import make_electra_loss

DTYPES = (jnp.float32, jnp.bfloat16)


@pytest.mark.parametrize("rows", [2, layers.ONE_HOT_MAX_ROWS, 50])  # one-hot path, its edge, the gather path
@pytest.mark.parametrize("dtype", DTYPES)
def test_embed_matches_flax_embed_bit_for_bit_and_in_its_gradient(rows, dtype):
    ids = jnp.asarray(np.random.RandomState(0).randint(0, rows, (3, 7)), jnp.int32)
    ours, flax_embed = (cls(rows, 5, dtype=dtype) for cls in (layers.Embed, nn.Embed))
    params = flax_embed.init(jax.random.key(0), ids)
    params = jax.tree.map(lambda t: t * 1e3 + 1e-3, params)  # wide magnitudes: a rounded product would show
    out = ours.apply(params, ids)
    assert out.dtype == dtype
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(flax_embed.apply(params, ids), np.float32))
    # The table's gradient: every occurrence of a row adds its cotangent, summed in float32 whatever the compute
    # dtype (nn.Embed's bf16 lookup sums in bf16), so it equals a float32 nn.Embed's for the same cotangent.
    cotangent = jnp.asarray(np.random.RandomState(1).randn(3, 7, 5), dtype)
    reference = nn.Embed(rows, 5, dtype=jnp.float32)
    grads = [jax.grad(lambda p, m=m: jnp.sum(m.apply(p, ids).astype(jnp.float32) * cotangent))(params)
             for m in (ours, reference)]  # fmt: skip
    np.testing.assert_allclose(grads[0]["params"]["embedding"], grads[1]["params"]["embedding"], rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_positions_is_take_along_axis_exactly(dtype):
    rs = np.random.RandomState(0)
    x = jnp.asarray(rs.randn(2, 6, 3, 4) * 1e3, dtype)
    positions = jnp.asarray([[5, 0, 2], [1, 1, 4]], jnp.int32)
    got = layers.gather_positions(x, positions)
    want = jnp.take_along_axis(x, positions[:, :, None, None], axis=1)
    assert got.shape == (2, 3, 3, 4) and got.dtype == dtype
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))
    g = jax.grad(lambda v: jnp.sum(layers.gather_positions(v, positions).astype(jnp.float32) ** 2))(x)
    g_take = jax.grad(lambda v: jnp.sum(jnp.take_along_axis(v, positions[:, :, None, None], 1).astype(
        jnp.float32) ** 2))(x)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(g, np.float32), np.asarray(g_take, np.float32))


def _scatter_adds(jaxpr) -> list[tuple[tuple[int, ...], jnp.dtype, int]]:
    """(shape, dtype, number of update slices) of every scatter-add in a jaxpr, nested ones (jit, remat, scan,
    custom_jvp) included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scatter-add":
            out, updates = eqn.outvars[0].aval, eqn.invars[2].aval
            window = np.prod([updates.shape[d] for d in eqn.params["dimension_numbers"].update_window_dims])
            found.append((out.shape, out.dtype, int(np.prod(updates.shape) // window)))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else (param,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    found += _scatter_adds(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    found += _scatter_adds(sub)
    return found


def _gradient_scatters(model, loss_fn, batch, params):
    grad = jax.grad(lambda p: loss_fn(p, batch, jax.random.key(1))[0])
    return _scatter_adds(jax.make_jaxpr(grad)(params).jaxpr)


def _bert():
    config = bert.BertConfig.from_size("tiny", vocab_size=64, max_position_embeddings=32, dtype="bfloat16")
    model = bert.BertForPreTraining(config)
    return config, model, make_pretraining_loss(model, use_nsp=True, segment_attention=True)


def _electra():
    config = electra.ElectraConfig.from_size("tiny", vocab_size=64, max_position_embeddings=32, dtype="bfloat16")
    model = electra.ElectraPretrainingModel(config)
    return config, model, make_electra_loss(model, disc_weight=50.0, mask_id=3, segment_attention=True)


@pytest.mark.parametrize("family", [_bert, _electra])
def test_masked_lm_gradients_have_no_bf16_scatter_and_none_into_small_tables(family):
    config, model, loss_fn = family()
    params = bert.init_params(model, jax.random.key(0))  # electra.init_params is the same function
    scatters = _gradient_scatters(model, loss_fn, random_batch(4, 16, 3), params)
    assert all(dtype == jnp.float32 for _, dtype, _ in scatters), scatters
    width = getattr(config, "embedding_size", config.hidden_size)  # ELECTRA's tables are narrower than its stack
    # Token types: one-hot, no scatter. Positions: the batch's rows summed first, so each of T rows is added once.
    assert not [s for s in scatters if s[0] == (config.type_vocab_size, width)], scatters
    assert [n for shape, _, n in scatters if shape == (config.max_position_embeddings, width)] in ([16], [16, 16])
    assert any(shape[0] == config.vocab_size for shape, _, _ in scatters)  # the word table still gathers


def test_causal_lm_gradient_has_no_bf16_scatter():
    config = gpt.GPTConfig.from_size("tiny", vocab_size=64, bos_token_id=0, eos_token_id=0, dtype="bfloat16")
    model = gpt.GPTLMHeadModel(config)
    params = gpt.init_params(model, jax.random.key(0))
    ones = np.ones((2, 16), np.int32)
    batch = dict(input_ids=np.arange(32, dtype=np.int32).reshape(2, 16) % 64, attention_mask=ones, segment_ids=ones,
                 loss_weights=ones.astype(np.float32), position_ids=np.tile(np.arange(16, dtype=np.int32), (2, 1)))  # fmt: skip
    scatters = _gradient_scatters(model, make_causal_lm_loss(model, segment_attention=True), batch, params)
    assert scatters and all(dtype == jnp.float32 for _, dtype, _ in scatters), scatters

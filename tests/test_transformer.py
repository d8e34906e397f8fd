"""The shared blocks: masks, the explicit KV cache (prefill + decode == full recomputation), shared embeddings."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslm_jax.models import layers
from sslm_jax.models.attention import KVCache
from sslm_jax.models.transformer import Transformer, TransformerConfig, init_cache

VOCAB, WIDTH, MAX_LEN = 23, 16, 16
CAUSAL = TransformerConfig(
    hidden_size=WIDTH, num_layers=2, num_heads=2, intermediate_size=24, hidden_act="gelu_new", dropout_rate=0.0,
    attention_dropout_rate=0.0, layer_norm_eps=1e-5, pre_layer_norm=True, causal=True, final_layer_norm=True,
)  # fmt: skip


class TinyLM(nn.Module):
    """GPT-2's shape in miniature: learned positions, causal pre-LN stack, final LayerNorm, tied output."""

    config: TransformerConfig

    def setup(self):
        self.embeddings = layers.Embeddings(vocab_size=VOCAB, features=WIDTH, max_positions=MAX_LEN)
        self.decoder = Transformer(self.config, embeddings=self.embeddings)

    def __call__(self, ids, attention_mask=None, cache=None):
        out = self.decoder(ids, attention_mask=attention_mask, cache=cache)
        h, cache = out if cache is not None else (out, None)
        return self.embeddings.attend(h), cache


def _random_params(model, seed=0):
    """std 0.3 draws on init's shapes (LayerNorm scales around 1), so attention is far from uniform."""
    rs = np.random.RandomState(seed)
    shapes = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 4), jnp.int32))["params"], jax.random.key(0))
    draw = lambda path, x: (0.3 * rs.randn(*x.shape) + (path[-1].key == "scale")).astype(np.float32)  # noqa: E731
    return jax.tree_util.tree_map_with_path(draw, nn.meta.unbox(shapes))


# Two rows, prompts of lengths 3 and 6 (right-padded to 6 in one prefill), 4 decoded tokens each.
LENGTHS = np.array([3, 6])
STEPS = 4


@pytest.fixture(scope="module")
def lm():
    model = TinyLM(CAUSAL)
    params = _random_params(model)
    ids = np.random.RandomState(1).randint(0, VOCAB, (2, 10)).astype(np.int32)
    full, _ = jax.jit(model.apply)({"params": params}, ids)  # [2, 10, V]: every row's sequence, recomputed whole
    prompt = np.where(np.arange(6) < LENGTHS[:, None], ids[:, :6], 0)
    prompt_mask = (np.arange(6) < LENGTHS[:, None]).astype(np.int32)
    # The token each row feeds at decode step j (teacher forcing): its own next one.
    feed = np.stack([ids[[0, 1], LENGTHS + j] for j in range(STEPS)])  # [STEPS, 2]
    return model, params, ids, np.asarray(full), prompt, prompt_mask, feed


def _expected_decode(full):
    return np.stack([full[[0, 1], LENGTHS + j] for j in range(STEPS)])  # [STEPS, 2, V]


# --- Masks -------------------------------------------------------------------------------------------------


def test_causal_mask_is_lower_triangular_and_combines_with_padding_and_segments():
    causal = layers.attention_mask(None, None, 1, 4, causal=True)
    np.testing.assert_array_equal(causal[0, 0], np.tril(np.ones((4, 4), bool)))
    both = layers.attention_mask(np.array([[1, 1, 1, 0]]), np.array([[1, 1, 2, 0]]), 1, 4, causal=True)[0, 0]
    np.testing.assert_array_equal(both[1], [True, True, False, False])  # earlier keys of its own document
    np.testing.assert_array_equal(both[2], [False, False, True, False])  # a new document starts fresh
    np.testing.assert_array_equal(both[3], [False, False, False, False])  # padding sees no real token
    assert layers.attention_mask(None, None, 2, 4) is None  # nothing masked: the fused mask-free path


def test_cache_writes_per_row_and_masks_unwritten_and_future_slots():
    cache = KVCache.zeros(batch=2, max_length=5, num_heads=1, head_dim=1).replace(index=jnp.array([1, 3]))
    np.testing.assert_array_equal(cache.positions(2), [[1, 2], [3, 4]])
    mask = cache.mask(2)[:, 0]  # [B, T, S]
    np.testing.assert_array_equal(mask[0], [[1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(mask[1], [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    new = jnp.array([[7.0, 8.0], [5.0, 6.0]])[..., None, None]  # [B, T=2, N, D]
    written = cache.write(new, -new)
    np.testing.assert_array_equal(written.key[..., 0, 0], [[0, 7, 8, 0, 0], [0, 0, 0, 5, 6]])
    np.testing.assert_array_equal(written.value[..., 0, 0], [[0, -7, -8, 0, 0], [0, 0, 0, -5, -6]])
    np.testing.assert_array_equal(written.index, [3, 5])


# --- Cached decoding -----------------------------------------------------------------------------------------


def test_prefill_then_decode_matches_full_recomputation_and_compiles_once(lm):
    model, params, _, full, prompt, prompt_mask, feed = lm
    traces = []

    @jax.jit
    def step(params, ids, cache):
        traces.append(1)  # runs only while tracing
        return model.apply({"params": params}, ids, cache=cache)

    cache = init_cache(CAUSAL, batch=2, max_length=MAX_LEN)
    logits, cache = jax.jit(model.apply)({"params": params}, prompt, prompt_mask, cache)
    for b, n in enumerate(LENGTHS):
        np.testing.assert_allclose(logits[b, :n], full[b, :n], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(cache[0].index, LENGTHS)
    decoded = []
    for j in range(STEPS):
        logits, cache = step(params, feed[j][:, None], cache)
        decoded.append(logits[:, 0])
    np.testing.assert_allclose(np.stack(decoded), _expected_decode(full), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(cache[1].index, LENGTHS + STEPS)
    assert len(traces) == 1  # one compilation for every step


def test_decode_runs_inside_one_jitted_scan(lm):
    model, params, _, full, prompt, prompt_mask, feed = lm

    @jax.jit
    def prefill_and_decode(params, prompt, prompt_mask, feed):
        cache = init_cache(CAUSAL, batch=2, max_length=MAX_LEN)
        _, cache = model.apply({"params": params}, prompt, prompt_mask, cache)

        def body(cache, ids):
            logits, cache = model.apply({"params": params}, ids[:, None], cache=cache)
            return cache, logits[:, 0]

        return jax.lax.scan(body, cache, feed)

    cache, decoded = prefill_and_decode(params, prompt, prompt_mask, feed)
    np.testing.assert_allclose(decoded, _expected_decode(full), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(cache[0].index, LENGTHS + STEPS)


def test_greedy_generation_in_a_while_loop_matches_recomputing_each_step(lm):
    model, params, _, _, prompt, prompt_mask, _ = lm

    @jax.jit
    def generate(params, prompt, prompt_mask):
        cache = init_cache(CAUSAL, batch=2, max_length=MAX_LEN)
        logits, cache = model.apply({"params": params}, prompt, prompt_mask, cache)
        first = jnp.argmax(logits[jnp.arange(2), LENGTHS - 1], axis=-1)
        out = jnp.zeros((2, STEPS), jnp.int32).at[:, 0].set(first)

        def body(carry):
            j, cache, out = carry
            ids = jax.lax.dynamic_slice_in_dim(out, j - 1, 1, axis=1)  # the token chosen last step
            logits, cache = model.apply({"params": params}, ids, cache=cache)
            return j + 1, cache, out.at[:, j].set(jnp.argmax(logits[:, 0], axis=-1))

        return jax.lax.while_loop(lambda c: c[0] < STEPS, body, (1, cache, out))[2]

    generated = np.asarray(generate(params, prompt, prompt_mask))
    # Reference: recompute the whole (right-padded, causal) sequence for every new token.
    full_apply = jax.jit(model.apply)
    seqs = np.zeros((2, MAX_LEN), np.int32)
    seqs[:, :6] = prompt
    for j in range(STEPS):
        logits, _ = full_apply({"params": params}, seqs)
        nxt = np.argmax(np.asarray(logits)[[0, 1], LENGTHS + j - 1], axis=-1)
        np.testing.assert_array_equal(generated[:, j], nxt)
        seqs[[0, 1], LENGTHS + j] = nxt


def test_cache_is_refused_by_a_bidirectional_stack():
    model = Transformer(dataclasses.replace(CAUSAL, causal=False))
    x = jnp.zeros((2, 3, WIDTH))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    with pytest.raises(ValueError, match="causal"):
        model.apply(variables, x, cache=init_cache(model.config, 2, MAX_LEN))


# --- Layer options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("pre_layer_norm", [False, True])
def test_layer_names_and_query_positions_for_both_norm_placements(pre_layer_norm):
    config = TransformerConfig(hidden_size=8, num_layers=1, num_heads=2, intermediate_size=12, causal=True,
                               pre_layer_norm=pre_layer_norm)  # fmt: skip
    model = Transformer(config)
    x = jax.random.normal(jax.random.key(1), (2, 5, 8))
    params = model.init(jax.random.key(0), x)["params"]
    assert set(params) == {"layer_0"}
    assert set(params["layer_0"]) == {"attention", "attention_layer_norm", "intermediate", "output",
                                      "output_layer_norm"}  # fmt: skip
    assert set(params["layer_0"]["attention"]) == {"query", "key", "value", "output"}
    positions = np.array([[4, 0], [2, 2]])
    full = model.apply({"params": params}, x)
    picked = model.apply({"params": params}, x, output_positions=positions)
    np.testing.assert_allclose(picked, np.take_along_axis(np.asarray(full), positions[..., None], 1), atol=1e-6)


# --- Shared embeddings -----------------------------------------------------------------------------------


class TwoStacks(nn.Module):
    """ELECTRA's layout: a narrow generator and a wide discriminator reading one embedding table."""

    def setup(self):
        self.embeddings = layers.Embeddings(vocab_size=VOCAB, features=WIDTH, max_positions=MAX_LEN,
                                            type_vocab_size=2, layer_norm_eps=1e-12)  # fmt: skip
        small = TransformerConfig(hidden_size=8, num_layers=1, num_heads=2, intermediate_size=12)
        self.generator = Transformer(small, embeddings=self.embeddings)
        wide = dataclasses.replace(small, hidden_size=WIDTH)
        self.discriminator = Transformer(wide, embeddings=self.embeddings)

    def __call__(self, ids):
        return self.generator(ids), self.discriminator(ids)


def test_shared_embeddings_are_one_parameter_copy_used_by_both_stacks():
    model = TwoStacks()
    ids = jnp.array([[1, 2, 3, 4]])
    params = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), ids)["params"])
    assert set(params) == {"embeddings", "generator", "discriminator"}
    assert set(params["embeddings"]) == {"word_embeddings", "position_embeddings", "token_type_embeddings",
                                         "LayerNorm"}  # fmt: skip
    assert "embeddings" not in params["generator"] and "embeddings" not in params["discriminator"]
    assert "embeddings_project" in params["generator"]  # 16 -> 8, the generator's own
    assert "embeddings_project" not in params["discriminator"]  # same width: no projection
    tables = [p for p, _ in jax.tree_util.tree_leaves_with_path(params) if "word_embeddings" in jax.tree_util.keystr(p)]
    assert len(tables) == 1
    # Both stacks train the one table.
    for which in (0, 1):
        grad = jax.jit(jax.grad(lambda p: jnp.sum(model.apply({"params": p}, ids)[which] ** 2)))(params)
        assert np.abs(grad["embeddings"]["word_embeddings"]["embedding"]).max() > 0

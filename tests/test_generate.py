"""inference/generate.py: cached decoding == full recomputation, greedy == a naive loop, the sampling support and
frequencies, seeds, EOS, one compilation per bucket, and the one-line errors.

Runs against a tiny stand-in causal LM with GPT-2's calling protocol (`.logits`, `.cache`; `init_cache(config, ...)`)
until sslm_jax.models.gpt lands.
"""

import dataclasses
import functools
import subprocess
import sys

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslm_jax.errors import SslmError
from sslm_jax.inference import generate as gen
from sslm_jax.models import layers, transformer

VOCAB, WIDTH, CONTEXT = 23, 16, 64


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    vocab_size: int = VOCAB
    max_position_embeddings: int = CONTEXT
    stack: transformer.TransformerConfig = transformer.TransformerConfig(
        hidden_size=WIDTH, num_layers=2, num_heads=2, intermediate_size=24, hidden_act="gelu_new", dropout_rate=0.0,
        attention_dropout_rate=0.0, layer_norm_eps=1e-5, pre_layer_norm=True, causal=True, final_layer_norm=True,
    )  # fmt: skip


def init_cache(config: TinyConfig, batch: int, max_length: int):
    return transformer.init_cache(config.stack, batch, max_length)


@flax.struct.dataclass
class LMOutput:
    logits: jax.Array
    cache: tuple | None


class TinyLM(nn.Module):
    """GPT-2's shape in miniature, called as models.gpt's LM head will be."""

    config: TinyConfig

    def setup(self):
        c = self.config
        self.embeddings = layers.Embeddings(c.vocab_size, WIDTH, max_positions=c.max_position_embeddings)
        self.decoder = transformer.Transformer(c.stack, embeddings=self.embeddings)

    def __call__(self, input_ids, attention_mask=None, deterministic=True, cache=None):
        out = self.decoder(input_ids, attention_mask=attention_mask, deterministic=deterministic, cache=cache)
        h, cache = out if cache is not None else (out, None)
        return LMOutput(logits=self.embeddings.attend(h), cache=cache)


MODEL = TinyLM(TinyConfig())


def _random_params(model, seed=0):
    """std 0.3 draws on init's shapes (LayerNorm scales around 1), so attention is far from uniform."""
    rs = np.random.RandomState(seed)
    shapes = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 4), jnp.int32))["params"], jax.random.key(0))
    draw = lambda path, x: (0.3 * rs.randn(*x.shape) + (path[-1].key == "scale")).astype(np.float32)  # noqa: E731
    return jax.tree_util.tree_map_with_path(draw, nn.meta.unbox(shapes))


PARAMS = _random_params(MODEL)
LENGTHS = np.array([3, 9, 6])
IDS = np.random.RandomState(1).randint(0, VOCAB, (3, 24)).astype(np.int32)
PROMPT = np.where(np.arange(10) < LENGTHS[:, None], IDS[:, :10], 0)  # right-padded to 10
_full_logits = jax.jit(lambda params, ids: MODEL.apply({"params": params}, ids).logits)


def _generate(model=MODEL, prompt=PROMPT, **kw):
    settings = dict(max_new_tokens=6, init_cache=init_cache, prompt_lengths=LENGTHS, temperature=0.0)
    settings.update(kw)
    return gen.generate(model, PARAMS, prompt, jax.random.key(0), **settings)


def _naive_greedy(prompt, lengths, steps):
    """Recompute the whole sequence for every new token (causal: the right padding never matters)."""
    seqs = np.zeros((len(lengths), CONTEXT), np.int32)
    seqs[:, : prompt.shape[1]] = prompt
    rows = np.arange(len(lengths))
    out = []
    for j in range(steps):
        logits = np.asarray(_full_logits(PARAMS, seqs))
        nxt = np.argmax(logits[rows, lengths + j - 1], axis=-1)
        seqs[rows, lengths + j] = nxt
        out.append(nxt)
    return np.stack(out, axis=1)


# --- Cache == recomputation ------------------------------------------------------------------------------------


def test_prefill_and_decode_steps_give_the_logits_of_full_recomputation():
    full = np.asarray(_full_logits(PARAMS, IDS))  # every row's sequence, recomputed whole
    cache = init_cache(MODEL.config, batch=3, max_length=16 + 8)
    prompt = np.zeros((3, 16), np.int32)  # bucket 16
    prompt[:, :10] = PROMPT
    cache = jax.jit(gen.prefill, static_argnums=0)(MODEL, PARAMS, prompt, LENGTHS, cache)
    np.testing.assert_array_equal(cache[0].index, LENGTHS - 1)
    step = jax.jit(gen.decode_step, static_argnums=0)
    rows = np.arange(3)
    for j in range(6):  # teacher forcing: feed each row's own next token, from its last prompt token on
        logits, cache = step(MODEL, PARAMS, IDS[rows, LENGTHS - 1 + j], cache)
        np.testing.assert_allclose(logits, full[rows, LENGTHS - 1 + j], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(cache[1].index, LENGTHS + 5)


def test_greedy_generation_equals_a_naive_recomputing_loop():
    out = _generate(max_new_tokens=8)
    np.testing.assert_array_equal(out.tokens, _naive_greedy(PROMPT, LENGTHS, 8))
    np.testing.assert_array_equal(out.lengths, [8, 8, 8])
    assert out.tokens.dtype == jnp.int32 and out.tokens.shape == (3, 8)


# --- Sampling ----------------------------------------------------------------------------------------------------

# A fixed 8-way distribution, deliberately not sorted; the nucleus boundaries below are far from ties.
PROBS = np.array([0.10, 0.30, 0.02, 0.15, 0.07, 0.20, 0.04, 0.12])
DRAWS = 4000


def _check_samples(samples, allowed):
    """Only `allowed` tokens appear, each of them does, at its renormalised probability within 4 sigma."""
    counts = np.bincount(np.asarray(samples), minlength=8)
    assert set(np.flatnonzero(counts)) == set(allowed)
    p = np.zeros(8)
    p[allowed] = PROBS[allowed] / PROBS[allowed].sum()
    sigma = np.sqrt(DRAWS * p * (1 - p))
    np.testing.assert_array_less(np.abs(counts - DRAWS * p), 4 * sigma + 1e-9)


@pytest.mark.parametrize(
    "top_k, top_p, allowed",
    [
        (0, 1.0, list(range(8))),
        (3, 1.0, [1, 5, 3]),  # the three best
        (0, 0.7, [1, 5, 3, 7]),  # 0.30 + 0.20 + 0.15 = 0.65 < 0.7, + 0.12 reaches it
        (0, 0.5, [1, 5]),  # 0.30 < 0.5, + 0.20 reaches it
        (0, 0.01, [1]),  # never empty: the best token alone
        (0, 1e-45, [1]),  # even below float32's smallest normal (flushed to 0 on CPU)
        (4, 0.7, [1, 5, 3]),  # top-k first: renormalised 0.39, 0.26, 0.19 reach 0.7 with three
    ],
)
def test_top_k_and_top_p_keep_exactly_the_right_support_at_the_right_frequencies(top_k, top_p, allowed):
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(PROBS, jnp.float32)), (DRAWS, 8))
    sample = jax.jit(functools.partial(gen.sample_logits, temperature=1.0, top_k=top_k, top_p=top_p))
    _check_samples(sample(logits, jax.random.key(42)), allowed)
    kept = np.isfinite(np.asarray(gen.filter_logits(logits[:1], top_k=top_k, top_p=top_p))[0])
    assert set(np.flatnonzero(kept)) == set(allowed)


def test_temperature_sharpens_and_zero_is_argmax():
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(PROBS, jnp.float32)), (DRAWS, 8))
    counts = np.bincount(np.asarray(gen.sample_logits(logits, jax.random.key(3), temperature=0.5)), minlength=8)
    p = PROBS**2 / np.sum(PROBS**2)  # temperature 0.5 squares the probabilities
    np.testing.assert_array_less(np.abs(counts - DRAWS * p), 4 * np.sqrt(DRAWS * p * (1 - p)) + 1e-9)
    assert set(np.asarray(gen.sample_logits(logits, None, temperature=0.0)).tolist()) == {1}


def test_same_seed_gives_the_same_tokens_and_another_seed_differs():
    run = lambda seed: gen.generate(  # noqa: E731
        MODEL, PARAMS, PROMPT, jax.random.key(seed), max_new_tokens=10, init_cache=init_cache,
        prompt_lengths=LENGTHS, temperature=1.0, top_k=10, top_p=0.95,
    )  # fmt: skip
    a, b, c = run(7), run(7), run(8)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)


# --- EOS ------------------------------------------------------------------------------------------------------------


def test_eos_stops_its_row_while_the_others_continue():
    greedy = np.asarray(_generate(max_new_tokens=8).tokens)
    # An id row 0 emits at some step < 7 and rows 1, 2 never emit.
    eos, step = next((t, j) for j, t in enumerate(greedy[0, :7]) if t not in greedy[1:])
    out = _generate(max_new_tokens=8, eos_id=int(eos), pad_id=1000)  # a pad outside the vocabulary: never fed
    expected = greedy.copy()
    expected[0, step + 1 :] = 1000
    np.testing.assert_array_equal(out.tokens, expected)
    np.testing.assert_array_equal(out.lengths, [step + 1, 8, 8])


CALLS = []


class CountingLM(TinyLM):
    """TinyLM that records each forward pass it runs (not traces): prefill, then one per decode step."""

    def __call__(self, input_ids, attention_mask=None, deterministic=True, cache=None):
        jax.debug.callback(lambda: CALLS.append(1))
        return super().__call__(input_ids, attention_mask, deterministic, cache)


def test_the_loop_ends_as_soon_as_every_row_has_stopped():
    model = CountingLM(TinyConfig())
    greedy = np.asarray(_generate(model, max_new_tokens=8).tokens)
    eos = int(greedy[1, 2])  # row 1 stops at step 2 (or earlier, if it emitted this id before)
    stop = {row: list(greedy[row]).index(eos) if eos in greedy[row] else 8 for row in range(3)}
    CALLS.clear()
    out = _generate(model, max_new_tokens=8, eos_id=eos, pad_id=-1)
    jax.effects_barrier()
    np.testing.assert_array_equal(out.lengths, [min(stop[r] + 1, 8) for r in range(3)])
    for row in range(3):
        np.testing.assert_array_equal(out.tokens[row, : out.lengths[row]], greedy[row, : out.lengths[row]])
        assert (np.asarray(out.tokens[row, out.lengths[row] :]) == -1).all()
    assert len(CALLS) == 1 + int(np.asarray(out.lengths).max())  # prefill + the steps until the last row stopped
    # Identical rows all stop at step 0: one decode step, not eight.
    same = np.repeat(PROMPT[1:2], 3, axis=0)
    first = int(_generate(model, prompt=same, prompt_lengths=[9, 9, 9], max_new_tokens=8).tokens[0, 0])
    CALLS.clear()
    out = _generate(model, prompt=same, prompt_lengths=[9, 9, 9], max_new_tokens=8, eos_id=first, pad_id=VOCAB + 9)
    jax.effects_barrier()
    np.testing.assert_array_equal(out.lengths, [1, 1, 1])
    assert (np.asarray(out.tokens)[:, 1:] == VOCAB + 9).all() and len(CALLS) == 2


# --- Compilation ---------------------------------------------------------------------------------------------------


def _settings():
    return dict(init_cache=init_cache, max_new_tokens=5, temperature=0.0, top_k=0, top_p=1.0, eos_id=None, pad_id=0)


def test_a_second_prompt_batch_of_the_same_bucket_does_not_recompile():
    fn = gen.compiled_generate(MODEL, **_settings())
    before = fn._cache_size()
    gen.generate(MODEL, PARAMS, PROMPT, jax.random.key(0), prompt_lengths=LENGTHS, **_settings())
    other = np.random.RandomState(5).randint(0, VOCAB, (3, 14))  # another width and lengths, bucket 16 still
    gen.generate(MODEL, PARAMS, other, jax.random.key(1), prompt_lengths=[14, 2, 11], **_settings())
    assert fn._cache_size() == before + 1
    gen.generate(MODEL, PARAMS, np.ones((3, 20), np.int32), jax.random.key(1), **_settings())  # bucket 32
    assert fn._cache_size() == before + 2
    assert gen.compiled_generate(MODEL, **_settings()) is fn


def _count(jaxpr, names):
    found = 0
    for eqn in jaxpr.eqns:
        found += eqn.primitive.name in names
        for sub in jax.core.jaxprs_in_params(eqn.params):
            found += _count(sub, names)
    return found


def test_decoding_is_one_while_loop_and_prefill_one_forward_pass():
    fn = gen.compiled_generate(MODEL, **{**_settings(), "temperature": 0.7, "top_k": 5, "top_p": 0.9, "eos_id": 3})
    closed = jax.make_jaxpr(fn)(PARAMS, jnp.zeros((3, 16), jnp.int32), jnp.asarray(LENGTHS), jax.random.key(0))
    assert _count(closed.jaxpr, {"while"}) == 1
    assert _count(closed.jaxpr, {"scan"}) == 0
    # Two forward passes are traced: the prefill and the loop's one decode step.
    one_pass = jax.make_jaxpr(lambda p, ids: MODEL.apply({"params": p}, ids).logits)(PARAMS, jnp.zeros((3, 16), int))
    assert _count(closed.jaxpr, {"dot_general"}) == 2 * _count(one_pass.jaxpr, {"dot_general"})


# --- Buckets and errors --------------------------------------------------------------------------------------------


def test_bucket_lengths_are_powers_of_two_from_16_capped_by_the_context():
    assert [gen.bucket_length(n) for n in (1, 5, 16, 17, 100, 600)] == [16, 16, 16, 32, 128, 1024]
    assert gen.bucket_length(600, context=768) == 768


def test_a_prompt_near_the_context_uses_the_capped_bucket():
    prompt = np.random.RandomState(2).randint(0, VOCAB, (1, 40))  # bucket 64 == CONTEXT
    out = gen.generate(MODEL, PARAMS, prompt, None, max_new_tokens=24, init_cache=init_cache, temperature=0)
    np.testing.assert_array_equal(out.tokens, _naive_greedy(prompt, np.array([40]), 24))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(top_p=0.0), "top_p=0.0 must be in (0, 1]"),
        (dict(top_p=1.5), "top_p=1.5 must be in (0, 1]"),
        (dict(top_p=-0.2), "top_p=-0.2 must be in (0, 1]"),
        (dict(top_k=-1), "top_k=-1 must be >= 0"),
        (dict(max_new_tokens=0), "max_new_tokens=0 must be at least 1"),
        (dict(max_new_tokens=60), "prompt of 9 tokens + 60 new tokens exceeds the model's context of 64; "),
        (dict(max_new_tokens=5, context_length=12), "prompt of 9 tokens + 5 new tokens exceeds the model's context"),
        (dict(prompt_lengths=[3, 0, 4]), "prompt_lengths must be 3 values in 1..10"),
        (dict(prompt_lengths=[3, 11, 4]), "prompt_lengths must be 3 values in 1..10"),
        (dict(prompt=np.zeros((3,), np.int32)), "prompt_ids must be integer token ids of shape"),
    ],
)
def test_bad_inputs_raise_one_line_errors(kwargs, message):
    with pytest.raises(SslmError) as error:
        _generate(**kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_model_without_a_context_size_asks_for_one():
    class NoConfig:
        config = None

    with pytest.raises(SslmError, match="pass context_length="):
        gen.model_context(NoConfig())


def test_the_module_imports_no_tensorflow():
    code = "import sys, sslm_jax.inference.generate; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"

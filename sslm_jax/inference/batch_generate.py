"""KV-cache decoding with per-row settings, for the HTTP service: one compilation per (batch, prompt bucket) shape.

    fn = compiled_row_generate(model, init_cache=gpt.init_cache, capacity=256, eos_id=0, context_length=1024)
    out = fn(params, prompt_ids, prompt_lengths, RowSettings(...))   # GenerateOutput, as generate.generate's

Why not `generate.generate`: there temperature, top-k, top-p and max_new_tokens are compile-time constants, so
requests with other settings would compile anew, and one key samples the whole batch, so a row's text would depend
on its batch mates. Here every setting is a traced [B] array (requests with different settings share a batch and a
compilation), each row samples with its own key `fold_in(key(seed), step)` (the same request gives the same text
whatever it was batched with), and the loop runs until every row has its `max_new_tokens` or end-of-text, within
`capacity` steps. Prefill and the decode step are generate.py's. Greedy rows (temperature <= 0) equal
`generate.generate(temperature=0)` token for token.
"""

from __future__ import annotations

import functools
from typing import Callable

import flax
import jax
import jax.numpy as jnp

from sslm_jax.inference import generate as generate_lib

Array = jax.Array


@flax.struct.dataclass
class RowSettings:
    """Per-row sampling settings, each [B]: seeds uint32, max_new_tokens int32 (1..capacity), temperature float32
    (<= 0 greedy), top_k int32 (0 = all), top_p float32 (in (0, 1])."""

    seeds: Array
    max_new_tokens: Array
    temperature: Array
    top_k: Array
    top_p: Array


def filter_rows(logits: Array, top_k: Array, top_p: Array) -> Array:
    """`generate.filter_logits` with a top_k [B] and top_p [B] per row of logits [B, V]; ties with the last kept
    token are kept, top_k 0 and top_p >= 1 keep everything."""
    vocab = logits.shape[-1]
    neg_inf = jnp.array(-jnp.inf, logits.dtype)
    best_first = -jnp.sort(-logits, axis=-1)
    k = jnp.where((top_k > 0) & (top_k < vocab), top_k, vocab)
    kth_best = jnp.take_along_axis(best_first, (k - 1)[:, None], axis=-1)
    logits = jnp.where(logits < kth_best, neg_inf, logits)
    best_first = jnp.where(jnp.arange(vocab)[None, :] < k[:, None], best_first, neg_inf)
    probs = jax.nn.softmax(best_first, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    # The best token is always kept (see sampling.filter_logits: a tiny top_p may be flushed to 0).
    kept = (mass_before < top_p[:, None]) | (top_p[:, None] >= 1.0) | (jnp.arange(vocab)[None, :] == 0)
    threshold = jnp.min(jnp.where(kept, best_first, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits < threshold, neg_inf, logits)


def sample_rows(logits: Array, keys: Array, settings: RowSettings) -> Array:
    """One token per row of logits [B, V] -> [B] int32: argmax where temperature <= 0, else a sample."""
    logits = logits.astype(jnp.float32)
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    temperature = jnp.where(settings.temperature > 0, settings.temperature, 1.0)
    filtered = filter_rows(logits / temperature[:, None], settings.top_k, settings.top_p)
    sampled = jax.vmap(jax.random.categorical)(keys, filtered).astype(jnp.int32)
    return jnp.where(settings.temperature > 0, sampled, greedy)


def _generate_rows(
    params, prompt_ids: Array, prompt_lengths: Array, settings: RowSettings, *, model, init_cache: Callable,
    capacity: int, eos_id: int, pad_id: int, context_length: int,
) -> generate_lib.GenerateOutput:  # fmt: skip
    batch, bucket = prompt_ids.shape
    cache = init_cache(model.config, batch, min(bucket + capacity, context_length))
    cache = generate_lib.prefill(model, params, prompt_ids, prompt_lengths, cache)
    last_prompt_token = jnp.take_along_axis(prompt_ids, (prompt_lengths - 1)[:, None], axis=1)[:, 0]
    keys = jax.vmap(jax.random.key)(settings.seeds)

    def body(carry):
        step, cache, feed, tokens, lengths, done = carry
        logits, cache = generate_lib.decode_step(model, params, feed, cache)
        token = sample_rows(logits, jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, step), settings)
        tokens = tokens.at[:, step].set(jnp.where(done, pad_id, token))
        lengths = lengths + jnp.logical_not(done).astype(jnp.int32)
        done = done | (token == eos_id) | (lengths >= settings.max_new_tokens)
        return step + 1, cache, token, tokens, lengths, done

    def cond(carry):
        step, *_, done = carry
        return jnp.logical_and(step < capacity, jnp.logical_not(jnp.all(done)))

    tokens = jnp.full((batch, capacity), pad_id, jnp.int32)
    init = (jnp.int32(0), cache, last_prompt_token, tokens, jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,), bool))
    _, _, _, tokens, lengths, _ = jax.lax.while_loop(cond, body, init)
    return generate_lib.GenerateOutput(tokens=tokens, lengths=lengths)


@functools.lru_cache(maxsize=8)
def compiled_row_generate(
    model, *, init_cache: Callable, capacity: int, eos_id: int, context_length: int, pad_id: int = 0
):  # fmt: skip
    """The jitted `(params, prompt_ids [B, bucket], prompt_lengths [B], RowSettings) -> GenerateOutput`.

    `capacity`: the most new tokens any row may ask for (the service's limit), the width of `tokens`. The caller pads
    prompts with id 0 to a bucket (`generate.bucket_length`) and checks length + max_new_tokens <= context_length.
    """
    return jax.jit(
        functools.partial(
            _generate_rows, model=model, init_cache=init_cache, capacity=int(capacity), eos_id=int(eos_id),
            pad_id=int(pad_id), context_length=int(context_length),
        )
    )  # fmt: skip

"""Batched autoregressive decoding with an explicit KV cache: one prefill pass, then one compiled loop.

    out = generate(model, params, prompt_ids, jax.random.key(0), max_new_tokens=32, init_cache=gpt.init_cache,
                   prompt_lengths=[3, 7], temperature=0.8, top_k=40, top_p=0.95, eos_id=50256)
    out.tokens   # [B, 32] int32: the new tokens of each row, pad_id after its EOS
    out.lengths  # [B]: how many of them each row generated, its EOS included

The model is any Flax module with a causal LM head called as
`model.apply({"params": params}, ids, attention_mask=mask, deterministic=True, cache=cache)` that returns an output
with `.logits` [B, T, V] and `.cache` (one `models.attention.KVCache` per layer, continuing each row at its own
index, as `models.transformer.Transformer` does); `init_cache(model.config, batch, max_length)` builds the empty
cache (`models.transformer.init_cache`, `models.gpt.init_cache`).

How a call runs (everything after the host-side checks is one jitted function):
  1. Prompts are right-padded to a bucket length (a power of two, at least 16, at most the model's context), so
     every prompt batch of the same bucket and batch size reuses one compilation.
  2. Prefill, one forward pass over [B, bucket], writes all but the last real token of each row into the cache.
     Its logits are never read, so XLA drops the [B, bucket, V] vocabulary projection.
  3. A `lax.while_loop` feeds one token per row per step — the last prompt token first, then the token just
     chosen — and writes each choice into a preallocated [B, max_new_tokens] buffer. It stops after
     max_new_tokens steps or as soon as every row has produced `eos_id`.
Sampling is `sample_logits`: temperature, then top-k, then top-p (Hugging Face's order), then
`jax.random.categorical` with the key `fold_in(rng, step)`, so one seed always gives the same tokens.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np

from sslm_jax.errors import SslmError
from sslm_jax.inference import sampling

# Re-exported: `generate.sample_logits` and friends are this module's public names too.
from sslm_jax.inference.sampling import MIN_BUCKET, bucket_length, filter_logits, sample_logits  # noqa: F401

Array = jax.Array


@flax.struct.dataclass
class GenerateOutput:
    tokens: Array  # [B, max_new_tokens] int32; pad_id after a row's EOS
    lengths: Array  # [B] int32; new tokens of each row, its EOS included


def model_context(model) -> int:
    """The model's maximum number of positions, read from `model.config` (`max_position_embeddings`, or GPT-2's
    Hugging Face name `n_positions`)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    raise SslmError(
        f"cannot tell the context length of {type(model).__name__}: its config has no max_position_embeddings; "
        "pass context_length="
    )


# --- The compiled program ------------------------------------------------------------------------------------------


def prefill(model, params, prompt_ids: Array, prompt_lengths: Array, cache):
    """Writes tokens 0..len-2 of each right-padded row of `prompt_ids` [B, P] into `cache`; returns the cache.

    Each row's index ends at len - 1: its last prompt token is the first one `decode_step` feeds, whose logits
    choose the first new token (prefill's own logits go unused). Rows must hold at least one token.
    """
    real = jnp.arange(prompt_ids.shape[1], dtype=jnp.int32)[None, :] < (prompt_lengths[:, None] - 1)
    out = model.apply(
        {"params": params}, prompt_ids, attention_mask=real.astype(jnp.int32), deterministic=True, cache=cache
    )
    return out.cache


def decode_step(model, params, ids: Array, cache) -> tuple[Array, Any]:
    """Feeds one token per row, ids [B], at each row's cache index; returns (logits [B, V], updated cache)."""
    ids = ids[:, None].astype(jnp.int32)
    out = model.apply({"params": params}, ids, attention_mask=jnp.ones_like(ids), deterministic=True, cache=cache)
    return out.logits[:, 0], out.cache


def _generate(
    params,
    prompt_ids: Array,
    prompt_lengths: Array,
    rng: Array,
    *,
    model,
    init_cache: Callable,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    eos_id: int | None,
    pad_id: int,
    context_length: int,
) -> GenerateOutput:
    batch, bucket = prompt_ids.shape
    # Prefill writes `bucket` slots; decode writes slot len - 1 + j at step j < max_new_tokens, so the cache needs
    # max(bucket, longest - 1 + max_new_tokens) slots. Both are at most the context (the bucket is capped at it and
    # `generate` checks longest + max_new_tokens), so bucket + max_new_tokens, capped at the context, is enough:
    # a 40-token prompt (bucket 64) + 24 new tokens fits a 64-position model.
    cache = init_cache(model.config, batch, min(bucket + max_new_tokens, context_length))
    cache = prefill(model, params, prompt_ids, prompt_lengths, cache)
    last_prompt_token = jnp.take_along_axis(prompt_ids, (prompt_lengths - 1)[:, None], axis=1)[:, 0]
    tokens = jnp.full((batch, max_new_tokens), pad_id, jnp.int32)
    no_row = jnp.zeros((batch,), bool)

    def body(carry):
        step, cache, feed, tokens, lengths, done = carry
        logits, cache = decode_step(model, params, feed, cache)
        key = None if temperature <= 0 else jax.random.fold_in(rng, step)  # greedy needs no key (rng may be None)
        token = sample_logits(logits, key, temperature=temperature, top_k=top_k, top_p=top_p)
        tokens = tokens.at[:, step].set(jnp.where(done, pad_id, token))
        lengths = lengths + jnp.logical_not(done).astype(jnp.int32)
        if eos_id is not None:
            done = jnp.logical_or(done, token == eos_id)
        # A finished row keeps decoding its (valid) sampled ids, so nothing out of the vocabulary reaches the model.
        return step + 1, cache, token, tokens, lengths, done

    def cond(carry):
        step, *_, done = carry
        return jnp.logical_and(step < max_new_tokens, jnp.logical_not(jnp.all(done)))

    init = (jnp.int32(0), cache, last_prompt_token, tokens, jnp.zeros((batch,), jnp.int32), no_row)
    _, _, _, tokens, lengths, _ = jax.lax.while_loop(cond, body, init)
    return GenerateOutput(tokens=tokens, lengths=lengths)


def compiled_generate(
    model,
    *,
    init_cache: Callable,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    context_length: int | None = None,
):
    """The jitted `(params, prompt_ids [B, bucket], prompt_lengths [B], rng) -> GenerateOutput` for these settings.

    Cached on the settings (so `model` and `init_cache` must be hashable and stable: a module-level function, not a
    fresh lambda); jax's own cache then holds one compilation per (batch, bucket) shape. `context_length` None reads
    the model's (`model_context`); the KV cache never grows past it. No input checks: use `generate`, which
    validates, pads to the bucket and calls this.
    """
    context = model_context(model) if context_length is None else int(context_length)
    return _compiled_generate(model, init_cache, max_new_tokens, temperature, top_k, top_p, eos_id, pad_id, context)


@functools.lru_cache(maxsize=32)
def _compiled_generate(model, init_cache, max_new_tokens, temperature, top_k, top_p, eos_id, pad_id, context_length):
    # Positional, so that a setting passed explicitly and the same setting left at its default share one entry.
    return jax.jit(
        functools.partial(
            _generate,
            model=model,
            init_cache=init_cache,
            max_new_tokens=max_new_tokens,
            temperature=float(temperature),
            top_k=top_k,
            top_p=float(top_p),
            eos_id=eos_id,
            pad_id=pad_id,
            context_length=context_length,
        )
    )


# --- The entry point -------------------------------------------------------------------------------------------------


def generate(
    model,
    params,
    prompt_ids,
    rng: Array,
    *,
    max_new_tokens: int,
    init_cache: Callable,
    prompt_lengths=None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    pad_id: int = 0,
    context_length: int | None = None,
) -> GenerateOutput:
    """Continues each right-padded prompt of `prompt_ids` [B, P] by up to `max_new_tokens` tokens.

    Args:
      model, params: a causal LM (see the module docstring) and its parameters.
      prompt_ids: [B, P] token ids on the host (numpy or a list of lists), each row right-padded.
      rng: a `jax.random.key`; unused when greedy.
      max_new_tokens: the size of the output; rows that reach `eos_id` stop early (the loop ends when all have).
      init_cache: `init_cache(model.config, batch, max_length)` -> the empty per-layer KV cache.
      prompt_lengths: [B] real tokens per row (1..P); None means P for every row.
      temperature: <= 0 is greedy; otherwise logits are divided by it before top-k / top-p and sampling.
      top_k: keep the k best tokens (0: all). top_p: keep the nucleus of this mass, in (0, 1] (1: all).
      eos_id: the token that ends a row (counted in its length); None never stops early.
      pad_id: what fills a row after its EOS (any int; it never reaches the model).
      context_length: the model's maximum positions; None reads `model.config` (see `model_context`).

    Returns:
      GenerateOutput(tokens [B, max_new_tokens] int32, lengths [B] int32).

    Raises:
      SslmError: on a bad setting, bad lengths, or a prompt + max_new_tokens longer than the context.
    """
    if max_new_tokens < 1:
        raise SslmError(f"max_new_tokens={max_new_tokens} must be at least 1")
    problem = sampling.settings_problem(top_k=top_k, top_p=top_p)
    if problem:
        raise SslmError(problem)
    prompt_ids = np.asarray(prompt_ids)
    if prompt_ids.ndim != 2 or prompt_ids.shape[1] == 0 or not np.issubdtype(prompt_ids.dtype, np.integer):
        raise SslmError(f"prompt_ids must be integer token ids of shape [batch, length]; got {prompt_ids.shape}")
    batch, width = prompt_ids.shape
    lengths = np.full((batch,), width) if prompt_lengths is None else np.asarray(prompt_lengths)
    if lengths.shape != (batch,) or lengths.min() < 1 or lengths.max() > width:
        raise SslmError(f"prompt_lengths must be {batch} values in 1..{width} (the padded width); got {lengths}")
    context = model_context(model) if context_length is None else int(context_length)
    longest = int(lengths.max())
    if longest + max_new_tokens > context:
        raise SslmError(
            f"prompt of {longest} tokens + {max_new_tokens} new tokens exceeds the model's context of {context}; "
            "shorten the prompt or ask for fewer new tokens"
        )
    bucket = bucket_length(longest, context=context)
    # The prompt's padding is id 0, never pad_id: an id outside the vocabulary would embed as NaN in unread slots.
    padded = np.zeros((batch, bucket), np.int32)
    keep = min(width, bucket)
    padded[:, :keep] = np.where(np.arange(keep)[None, :] < lengths[:, None], prompt_ids[:, :keep], 0)
    fn = compiled_generate(
        model,
        init_cache=init_cache,
        max_new_tokens=int(max_new_tokens),
        temperature=float(temperature),
        top_k=int(top_k),
        top_p=float(top_p),
        eos_id=None if eos_id is None else int(eos_id),
        pad_id=int(pad_id),
        context_length=context,
    )
    return fn(params, jnp.asarray(padded), jnp.asarray(lengths, jnp.int32), rng)

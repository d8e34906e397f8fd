"""Choosing the next token and padding prompts: the pieces that the live decoder (`generate`) and the portable
exported model (`portable`) share, so that both pad a prompt batch to the same bucket and draw the same token from
the same logits and key.

This module imports jax and nothing of Flax or the models: `portable` (a serving process that loads a `jax.export`
artifact) imports it, and must stay free of the training code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

MIN_BUCKET = 16


def settings_problem(*, top_k: int, top_p: float) -> str | None:
    """What is wrong with these filter settings, in one line for the caller's error, or None if nothing."""
    if top_k < 0:
        return f"top_k={top_k} must be >= 0 (0 keeps every token)"
    if not 0.0 < top_p <= 1.0:
        return f"top_p={top_p} must be in (0, 1] (1 keeps every token)"
    return None


def filter_logits(logits: Array, *, top_k: int = 0, top_p: float = 1.0) -> Array:
    """Sets every logit outside the top-k, then outside the nucleus of mass `top_p`, to -inf. [..., V] -> [..., V].

    top_k=0 and top_p=1 keep everything. The nucleus is the smallest set of best tokens whose probability (after
    the top-k cut, renormalised) reaches `top_p`; it always holds the best token. Tokens tied with the last kept
    one are kept too (as in Hugging Face's warpers).

    Example: probabilities [0.1, 0.5, 0.3, 0.1] -> top_k=2 keeps tokens 1, 2; top_p=0.7 keeps 1, 2 (0.5 < 0.7,
    0.5 + 0.3 >= 0.7); top_p=0.5 keeps token 1 alone.
    """
    logits = logits.astype(jnp.float32)
    neg_inf = jnp.array(-jnp.inf, logits.dtype)
    if 0 < top_k < logits.shape[-1]:
        kth_best = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth_best, neg_inf, logits)
    if top_p < 1.0:
        best_first = -jnp.sort(-logits, axis=-1)
        probs = jax.nn.softmax(best_first, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs  # of the strictly better tokens
        # Kept entries are a prefix; the best token is kept outright: a top_p below float32's smallest normal
        # (1e-45 passes `settings_problem`) is flushed to 0 on some backends, and `0 < 0` would keep nothing.
        kept = (mass_before < top_p) | (jnp.arange(logits.shape[-1]) == 0)
        threshold = jnp.min(jnp.where(kept, best_first, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < threshold, neg_inf, logits)
    return logits


def sample_logits(logits: Array, rng: Array, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Array:
    """One token id per row of `logits` [..., V] -> [...] int32. temperature <= 0 is greedy (argmax; rng unused)."""
    if temperature <= 0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    scaled = logits.astype(jnp.float32) / temperature
    return jax.random.categorical(rng, filter_logits(scaled, top_k=top_k, top_p=top_p), axis=-1).astype(jnp.int32)


def bucket_length(length: int, *, context: int | None = None, minimum: int = MIN_BUCKET) -> int:
    """The padded prompt length: the next power of two >= `length`, at least `minimum`, at most `context`.

    Example: 5 -> 16, 16 -> 16, 17 -> 32, 600 -> 1024; with context=768, 600 -> 768.
    """
    bucket = max(minimum, 1 << max(0, int(length) - 1).bit_length())
    return bucket if context is None else min(bucket, context)

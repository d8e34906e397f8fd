"""Multi-head self-attention with an optional explicit key/value cache for incremental decoding.

The cache is a plain pytree (`KVCache`), not a Flax mutable collection: a decode loop holds it in its carry,
hands it to `apply` and gets the updated one back, as MaxText does. Everything is pure and of static shape, so
a whole generation runs inside one `lax.scan` / `lax.while_loop` and compiles once.

Layout: every row starts at slot 0 (prompts are right-padded) and keeps its own write position `index` [B], so
prompts of different lengths decode side by side with the positions they would have alone:

    cache = KVCache.zeros(batch=2, max_length=8, num_heads=1, head_dim=4)
    prefill ["a b c _", "d e f g"] (T=4)  -> slots 0..3 written in both rows, then the caller sets index [3, 4]
    decode  ["x", "y"] (T=1)              -> x lands in row 0 slot 3 (over the padding), y in row 1 slot 4;
                                             x sees slots 0..3, y slots 0..4; index [4, 5]
"""

from __future__ import annotations

import functools

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from sslm_jax.models.layers import Array, DType, dense, gather_positions

# Activation layout of queries, keys, values and the cache buffers ([B, T or S, N, D]).
QKV_AXES = ("batch", "length", "heads", "kv")


@flax.struct.dataclass
class KVCache:
    """One attention layer's keys and values for slots 0..S_max-1 of each row, and where each row writes next.

    `index[b]` is the number of slots of row b holding real tokens, which is also the position of its next token.
    Slots at or after `index[b]` may hold stale values (a padded prompt's tail); `mask` never lets a query see them.
    """

    key: Array  # [B, S_max, N, D]
    value: Array  # [B, S_max, N, D]
    index: Array  # [B] int32

    @classmethod
    def zeros(cls, batch: int, max_length: int, num_heads: int, head_dim: int, dtype: DType = jnp.float32) -> KVCache:
        """An empty cache. `dtype` should be the attention's compute dtype (the keys are stored as computed)."""
        # Two buffers, not one twice: a jit that donates the cache may not donate one array for two arguments.
        key, value = (jnp.zeros((batch, max_length, num_heads, head_dim), dtype) for _ in range(2))
        return cls(key=key, value=value, index=jnp.zeros((batch,), jnp.int32))

    @property
    def max_length(self) -> int:
        return self.key.shape[1]

    def positions(self, length: int) -> Array:
        """Positions [B, T] of the next `length` tokens of each row: index[b], index[b] + 1, ...

        Example: index [3, 5], length 2 -> [[3, 4], [5, 6]] (also the position ids of learned embeddings).
        """
        return self.index[:, None] + jnp.arange(length, dtype=jnp.int32)[None, :]

    def mask(self, length: int) -> Array:
        """Mask [B, 1, T, S_max] for the next `length` tokens: query t of row b sees slots 0..index[b] + t.

        Example: index [1], length 2, S_max 4 -> query 0 sees [T, T, F, F], query 1 sees [T, T, T, F]:
        causal within the new tokens, nothing of what is not yet written (or stale).
        """
        slots = jnp.arange(self.max_length, dtype=jnp.int32)
        return (slots[None, None, :] <= self.positions(length)[:, :, None])[:, None]

    def write(self, key: Array, value: Array) -> KVCache:
        """Stores key/value [B, T, N, D] at slots index[b]..index[b] + T - 1 and advances index by T.

        index + T must not pass S_max: `lax.dynamic_update_slice` would clamp the start and overwrite earlier slots.
        """
        put = jax.vmap(lambda buf, new, start: jax.lax.dynamic_update_slice_in_dim(buf, new, start, axis=0))
        stored = (put(buf, new.astype(buf.dtype), self.index) for buf, new in ((self.key, key), (self.value, value)))
        key_buf, value_buf = (nn.with_logical_constraint(t, QKV_AXES) for t in stored)
        return KVCache(key=key_buf, value=value_buf, index=self.index + key.shape[1])


class SelfAttention(nn.Module):
    """Multi-head self-attention through `jax.nn.dot_product_attention` (XLA, cuDNN or TPU picks the kernel).

    Attention-probability dropout cannot be expressed in the fused kernel, so when it is active (training with
    `attention_dropout > 0`) the weights are computed explicitly; evaluation always takes the fused path.

    `query_positions` [B, P] restricts the queries (and the output, [B, P, H]) to those rows; keys and values still
    come from the whole sequence, so each kept row is exactly what the full computation gives there.

    With `cache` the T tokens of `x` are the next ones of each row: their keys and values are written into the
    cache (see `KVCache.write`), the queries attend over the whole buffer under `KVCache.mask` (AND `mask`, if
    given, [B, 1, T, S_max]), and the call returns `(output, updated_cache)` instead of `output`.
    """

    num_heads: int
    head_dim: int
    attention_dropout: float
    init_range: float
    dtype: DType
    param_dtype: DType
    implementation: str | None = None

    @nn.compact
    def __call__(
        self,
        x: Array,
        mask: Array | None,
        deterministic: bool,
        query_positions: Array | None = None,
        cache: KVCache | None = None,
    ) -> Array | tuple[Array, KVCache]:
        qkv = functools.partial(
            dense,
            (self.num_heads, self.head_dim),
            kernel_axes=("embed", "heads", "kv"),
            bias_axes=("heads", "kv"),
            init_range=self.init_range,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        queries = x
        if query_positions is not None:
            if cache is not None:
                raise ValueError("query_positions and cache cannot be combined")
            queries = gather_positions(x, query_positions)
            if mask is not None:  # [B, 1, T, S] -> the kept query rows [B, 1, P, S]
                mask = jnp.take_along_axis(mask, query_positions[:, None, :, None].astype(jnp.int32), axis=2)
        q, k, v = (qkv(name=n)(inp) for n, inp in (("query", queries), ("key", x), ("value", x)))
        q, k, v = (nn.with_logical_constraint(t, QKV_AXES) for t in (q, k, v))
        if cache is not None:
            seen = cache.mask(x.shape[1])
            mask = seen if mask is None else jnp.logical_and(mask, seen)
            cache = cache.write(k, v)
            k, v = cache.key.astype(q.dtype), cache.value.astype(q.dtype)
        if deterministic or self.attention_dropout == 0.0:
            out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=self.implementation)
        else:
            scores = jnp.einsum("btnh,bsnh->bnts", q, k) / jnp.sqrt(self.head_dim).astype(self.dtype)
            if mask is not None:
                scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
            probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(self.dtype)
            probs = nn.Dropout(self.attention_dropout)(probs, deterministic=False)
            out = jnp.einsum("bnts,bsnh->btnh", probs, v)
        out = nn.with_logical_constraint(out, QKV_AXES)
        out = dense(
            x.shape[-1],
            axis=(-2, -1),
            kernel_axes=("heads", "kv", "embed"),
            bias_axes=("embed",),
            init_range=self.init_range,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="output",
        )(out)
        return out if cache is None else (out, cache)

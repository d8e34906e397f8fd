"""The Transformer layer and stack every family is built from: post-LN (BERT, ELECTRA) or pre-LN (GPT-2),
bidirectional or causal, with an optional explicit KV cache for decoding.

    config = TransformerConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=256,
                               pre_layer_norm=True, causal=True, final_layer_norm=True)
    # in a parent's setup:
    self.embeddings = layers.Embeddings(vocab_size=100, features=64, max_positions=128)
    self.decoder = Transformer(config, embeddings=self.embeddings)
    # training / scoring:                     h = self.decoder(ids, attention_mask=mask)            [B, T, 64]
    # decoding: cache = init_cache(config, batch=B, max_length=128)
    #   prefill (right-padded prompts):       h, cache = self.decoder(prompt, attention_mask=pmask, cache=cache)
    #   each step, one token per row:         h, cache = self.decoder(next_ids[:, None], cache=cache)

Parameter names are BERT's (layer_i/{attention/{query,key,value,output}, attention_layer_norm, intermediate,
output, output_layer_norm}); in a pre-LN layer `attention_layer_norm` and `output_layer_norm` are the norms
before the attention and before the MLP (GPT-2's ln_1, ln_2).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from sslm_jax.models import layers
from sslm_jax.models.attention import KVCache, SelfAttention

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class TransformerConfig(layers.Numerics):
    """What a stack of Transformer layers needs; each family's config maps its own fields onto this one."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    dropout_rate: float = 0.1  # after the attention and after the MLP
    attention_dropout_rate: float = 0.1  # on the attention probabilities
    layer_norm_eps: float = 1e-12
    init_range: float = 0.02
    pre_layer_norm: bool = False  # False: x = LN(x + f(x)) (BERT); True: x = x + f(LN(x)) (GPT-2)
    causal: bool = False  # each position sees only itself and earlier ones
    final_layer_norm: bool = False  # a LayerNorm after the last layer (pre-LN stacks need one)
    remat: bool = False  # recompute each layer's activations in the backward pass (memory for FLOPs)
    dtype: str = "float32"  # compute dtype
    param_dtype: str = "float32"  # master weights
    attention_implementation: str | None = None  # of jax.nn.dot_product_attention; None lets XLA choose

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")
        layers.activation(self.hidden_act)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def init_cache(config: TransformerConfig, batch: int, max_length: int) -> tuple[KVCache, ...]:
    """An empty cache for every layer of a `Transformer(config)`: K/V [batch, max_length, heads, head_dim] each."""
    return tuple(
        KVCache.zeros(batch, max_length, config.num_heads, config.head_dim, config.compute_dtype)
        for _ in range(config.num_layers)
    )


class TransformerLayer(nn.Module):
    """Self-attention then an MLP (dense → activation → dense), each with dropout, a residual and a LayerNorm.

    With `query_positions` [B, P] it computes (and returns) only those rows, [B, P, H]; with `cache` it returns
    `(output, updated_cache)` (see `attention.SelfAttention`).
    """

    config: TransformerConfig

    @nn.compact
    def __call__(
        self,
        x: Array,
        mask: Array | None,
        deterministic: bool,
        query_positions: Array | None = None,
        cache: KVCache | None = None,
    ) -> Array | tuple[Array, KVCache]:
        c = self.config
        dt, pdt = c.compute_dtype, c.weights_dtype
        attention_norm = layers.layer_norm(c.layer_norm_eps, dt, pdt, name="attention_layer_norm")
        mlp_norm = layers.layer_norm(c.layer_norm_eps, dt, pdt, name="output_layer_norm")
        h = SelfAttention(
            num_heads=c.num_heads,
            head_dim=c.head_dim,
            attention_dropout=c.attention_dropout_rate,
            init_range=c.init_range,
            dtype=dt,
            param_dtype=pdt,
            implementation=c.attention_implementation,
            name="attention",
        )(attention_norm(x) if c.pre_layer_norm else x, mask, deterministic, query_positions, cache)
        if cache is not None:
            h, cache = h
        if query_positions is not None:
            x = layers.gather_positions(x, query_positions)  # the residual stream of the kept rows
        h = nn.Dropout(c.dropout_rate)(h, deterministic=deterministic)
        x = x + h if c.pre_layer_norm else attention_norm(x + h)
        h = layers.dense(
            c.intermediate_size,
            kernel_axes=("embed", "mlp"),
            bias_axes=("mlp",),
            init_range=c.init_range,
            dtype=dt,
            param_dtype=pdt,
            name="intermediate",
        )(mlp_norm(x) if c.pre_layer_norm else x)
        h = nn.with_logical_constraint(layers.activation(c.hidden_act)(h), ("batch", "length", "mlp"))
        h = layers.dense(
            x.shape[-1],
            kernel_axes=("mlp", "embed"),
            bias_axes=("embed",),
            init_range=c.init_range,
            dtype=dt,
            param_dtype=pdt,
            name="output",
        )(h)
        h = nn.Dropout(c.dropout_rate)(h, deterministic=deterministic)
        x = x + h if c.pre_layer_norm else mlp_norm(x + h)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        return x if cache is None else (x, cache)


class Transformer(nn.Module):
    """(Shared) embeddings → projection to `hidden_size` if their width differs → `num_layers` layers → final LN.

    `embeddings` is a module built in the parent's setup (usually `layers.Embeddings`), so several stacks can share
    it; its parameters live under the parent, not here. Without it `inputs` are already vectors [B, T, E].
    When E != hidden_size the stack owns a projection `embeddings_project` (Hugging Face ElectraModel's name).

    Without a cache: `attention_mask` [B, T] (1 = token), `segment_ids` [B, T] (packed documents) and
    `config.causal` make the mask; `output_positions` [B, P] makes the last layer compute only those rows.
    Returns hidden states [B, T, H] (or [B, P, H]).

    With `cache` (one `KVCache` per layer, `init_cache`; causal stacks only) the T tokens of `inputs` continue each
    row at its cache index, their positions default to `KVCache.positions`, and the call returns
    `(hidden [B, T, H], updated cache)`. Rows are right-padded: `attention_mask` [B, T], a prefix of ones per row,
    says how many of the T tokens are real, and each row's index advances by that many (by T without it), so the
    next call overwrites the padding. Example: prompts of lengths 3 and 5 prefilled as [2, 5] with
    attention_mask [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]] leave index [3, 5]; a decode step with ids [2, 1] then sits at
    positions [3, 5].
    """

    config: TransformerConfig
    embeddings: nn.Module | None = None

    @nn.compact
    def __call__(
        self,
        inputs: Array,
        *,
        attention_mask: Array | None = None,
        segment_ids: Array | None = None,
        token_type_ids: Array | None = None,
        position_ids: Array | None = None,
        deterministic: bool = True,
        output_positions: Array | None = None,
        cache: tuple[KVCache, ...] | None = None,
    ) -> Array | tuple[Array, tuple[KVCache, ...]]:
        c = self.config
        batch, length = inputs.shape[:2]
        if cache is not None:
            if not c.causal:
                raise ValueError("a KV cache needs a causal stack (config.causal=True)")
            if segment_ids is not None or output_positions is not None:
                raise ValueError("segment_ids and output_positions are not supported with a cache")
            if len(cache) != c.num_layers:
                raise ValueError(f"cache has {len(cache)} layers, the stack {c.num_layers}")
        x = inputs
        if self.embeddings is not None:
            if cache is not None and position_ids is None:
                position_ids = cache[0].positions(length)
            x = self.embeddings(inputs, token_type_ids, position_ids, deterministic)
        if x.shape[-1] != c.hidden_size:
            x = layers.dense(
                c.hidden_size,
                kernel_axes=("embed", "mlp"),
                bias_axes=("mlp",),
                init_range=c.init_range,
                dtype=c.compute_dtype,
                param_dtype=c.weights_dtype,
                name="embeddings_project",
            )(x)
            x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        # With a cache, attention builds its mask from the cache index (causal over the written slots).
        mask = None if cache is not None else layers.attention_mask(
            attention_mask, segment_ids, batch, length, causal=c.causal
        )
        # `deterministic` is argument 3 counting self; it decides Python control flow, so it must be static.
        layer_cls = nn.remat(TransformerLayer, static_argnums=(3,)) if c.remat else TransformerLayer
        new_cache = []
        for i in range(c.num_layers):
            layer = layer_cls(c, name=f"layer_{i}")
            if cache is None:
                # Rows nobody reads need no last layer: with output_positions it runs on those rows only.
                x = layer(x, mask, deterministic, output_positions if i == c.num_layers - 1 else None)
            else:
                x, layer_cache = layer(x, mask, deterministic, None, cache[i])
                new_cache.append(layer_cache)
        if c.final_layer_norm:
            x = layers.layer_norm(c.layer_norm_eps, c.compute_dtype, c.weights_dtype, name="final_layer_norm")(x)
            x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        if cache is None:
            return x
        written = length if attention_mask is None else jnp.sum(attention_mask.astype(jnp.int32), axis=-1)
        index = cache[0].index + written  # the real tokens only: right padding is overwritten by the next call
        return x, tuple(layer_cache.replace(index=index) for layer_cache in new_cache)

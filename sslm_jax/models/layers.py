"""Small building blocks shared by every model family: initialisers with logical axis names, dense, LayerNorm,
masks and the (shareable) `Embeddings`. Attention is in `attention.py`, the layer and the stack in `transformer.py`.

Every parameter is created through `nn.with_logical_partitioning`, so `model.init` returns boxed
`nn.LogicallyPartitioned` leaves whose names (`embed, heads, kv, mlp, vocab`) the trainer maps onto a
`(data, fsdp, tensor)` mesh with a short rule table (see `sslm_jax/training/partitioning.py`). Activations are
annotated with `nn.with_logical_constraint`, a no-op unless the caller sets logical axis rules.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
DType = Any

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    # Hugging Face's "gelu" is the exact erf form; "gelu_new"/"gelu_pytorch_tanh" the tanh approximation.
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_fast": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}


class Numerics:
    """`compute_dtype` / `weights_dtype` of a model config dataclass from its `dtype` / `param_dtype` fields."""

    @property
    def compute_dtype(self):
        return jnp.dtype(self.dtype)

    @property
    def weights_dtype(self):
        return jnp.dtype(self.param_dtype)


def activation(name: str) -> Callable[[Array], Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"hidden_act={name!r} is not supported; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class LogicallyPartitioned(nn.LogicallyPartitioned):
    """`nn.LogicallyPartitioned` that skips the sharding constraint while the value is not yet in its named shape.

    `nn.DenseGeneral` with several feature axes (q/k/v: [embed, heads, kv]) initialises a flat 2-D kernel and
    unboxes it before reshaping; under logical-axis rules and a mesh (the jitted train step, where Flax re-runs
    the init abstractly to check shapes) the 3-name constraint on the 2-D value would fail.
    """

    def unbox(self, apply_constraint=True):
        return super().unbox(apply_constraint=apply_constraint and jnp.ndim(self.value) == len(self.names))


def _partitioned(init, axes: tuple[str | None, ...]):
    return lambda *args, **kwargs: LogicallyPartitioned(init(*args, **kwargs), axes)


def normal_init(stddev: float, axes: tuple[str | None, ...]):
    return _partitioned(nn.initializers.normal(stddev), axes)


def zeros_init(axes: tuple[str | None, ...]):
    return _partitioned(nn.initializers.zeros_init(), axes)


def ones_init(axes: tuple[str | None, ...]):
    return _partitioned(nn.initializers.ones_init(), axes)


def layer_norm(eps: float, dtype: DType, param_dtype: DType, name: str | None = None) -> nn.LayerNorm:
    # use_fast_variance=False: E[(x - mean)^2] as PyTorch computes it; E[x^2] - mean^2 loses digits in fp32.
    return nn.LayerNorm(
        epsilon=eps,
        dtype=dtype,
        param_dtype=param_dtype,
        use_fast_variance=False,
        scale_init=ones_init(("embed",)),
        bias_init=zeros_init(("embed",)),
        name=name,
    )


def dense(features, *, kernel_axes, bias_axes, init_range, dtype, param_dtype, axis=-1, name=None):
    """A `DenseGeneral` whose kernel and bias carry logical axis names."""
    return nn.DenseGeneral(
        features=features,
        axis=axis,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=normal_init(init_range, kernel_axes),
        bias_init=zeros_init(bias_axes),
        name=name,
    )


def attention_mask(
    attention_mask: Array | None, segment_ids: Array | None, batch: int, length: int, *, causal: bool = False
) -> Array | None:
    """Boolean mask [B, 1, T, S] (True = may attend) from a padding mask [B, S], segment ids [B, S], causality.

    Example: attention_mask=[[1, 1, 1, 0]], segment_ids=[[1, 1, 2, 0]] gives, for query 0, keys [T, T, F, F]
    and for query 2, keys [F, F, T, F]: packed documents never see each other and nobody sees padding. With
    `causal=True` query t also loses every key after t: query 1 of attention_mask=[[1, 1, 1, 0]] sees [T, T, F, F].
    None when nothing is masked, so attention keeps its mask-free fused path.
    """
    mask = None
    if attention_mask is not None:
        mask = jnp.broadcast_to(attention_mask.astype(bool)[:, None, None, :], (batch, 1, length, length))
    if segment_ids is not None:
        same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
        mask = same if mask is None else jnp.logical_and(mask, same)
    if causal:
        lower = jnp.broadcast_to(jnp.tril(jnp.ones((length, length), bool)), (batch, 1, length, length))
        mask = lower if mask is None else jnp.logical_and(mask, lower)
    return mask


def _first_token(hidden: Array, attention_mask: Array | None) -> Array:
    return hidden[:, 0]


def _masked_mean(hidden: Array, attention_mask: Array | None) -> Array:
    if attention_mask is None:
        return jnp.mean(hidden, axis=1)
    weights = attention_mask.astype(hidden.dtype)[..., None]
    return jnp.sum(hidden * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1)


# How a classifier reads a sequence [B, T, H] -> [B, H] (`config.model.pooling`). "cls" is BERT's and ELECTRA's
# token 0; "mean" averages the real tokens, which masked-LM pretraining trains (it never trains BERT's [CLS] pooler).
POOLINGS: dict[str, Callable[[Array, Array | None], Array]] = {"cls": _first_token, "mean": _masked_mean}


def check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of {', '.join(map(repr, POOLINGS))}")


def gather_positions(x: Array, positions: Array) -> Array:
    """Rows of each sequence: x [B, T, ...], positions [B, P] -> [B, P, ...].

    Example: x[0] = [[a], [b], [c]], positions [[2, 0]] -> [[[c], [a]]].

    Computed as a one-hot matmul (exact: one product by 1.0 per output, summed with zeros in float32), not a
    gather, for the backward pass: a gather's gradient is a scatter-add, which XLA:GPU emits as a compare-and-swap
    loop in bfloat16 (openxla/xla#26371); a matmul's is a matmul. Costs B·P·T·H multiply-adds, under 0.1 % of a
    layer's. A position outside 0..T-1 gives a zero row.
    """
    one_hot = jax.nn.one_hot(positions, x.shape[1], dtype=x.dtype)  # [B, P, T]
    flat = x.reshape(*x.shape[:2], -1)
    rows = jnp.einsum("bpt,btf->bpf", one_hot, flat, precision=jax.lax.Precision.HIGHEST)
    return rows.reshape(*positions.shape, *x.shape[2:])


# Tables of at most this many rows (token types) are looked up by one-hot matmul; see `Embed`.
ONE_HOT_MAX_ROWS = 16


class Embed(nn.Embed):
    """`nn.Embed` whose lookup is built for its backward pass; the forward values are nn.Embed's, bit for bit.

    nn.Embed casts the whole table to the compute dtype and then gathers, so with bf16 compute the gradient is a
    bf16 scatter-add, which XLA:GPU runs as a compare-and-swap retry loop (openxla/xla#26371): under contention
    (every token of a batch adding into token type 0, every row into position 0..T-1) that is tens of times slower
    than a float32 atomic add. Here the rows are gathered from the stored (float32) table and cast afterwards, so
    the scatter is float32 (native atomics); tables of at most ONE_HOT_MAX_ROWS rows skip the scatter altogether
    (a one-hot matmul, exact at HIGHEST precision, whose gradient is a matmul). Quantization still intercepts
    `__call__` and `attend` as nn.Embed's (`sslm_jax.inference.quantize`).
    """

    def __call__(self, inputs: Array) -> Array:
        if not jnp.issubdtype(inputs.dtype, jnp.integer):
            raise ValueError(f"embedding ids must be integers, got {inputs.dtype}")
        table = jnp.asarray(self.embedding)
        if self.num_embeddings <= ONE_HOT_MAX_ROWS:
            one_hot = jax.nn.one_hot(inputs, self.num_embeddings, dtype=table.dtype)
            rows = jnp.einsum("...r,rf->...f", one_hot, table, precision=jax.lax.Precision.HIGHEST)
        else:
            rows = jnp.take(table, inputs, axis=0)
        return rows.astype(self.dtype or table.dtype)


class Embeddings(nn.Module):
    """Word + (optional) learned position + (optional) token-type embeddings → (optional) LayerNorm → dropout.

    Built in a parent's `setup` and handed to one or more `transformer.Transformer`s (`embeddings=`), so two stacks
    can read one table (ELECTRA's generator and discriminator); its parameters live once, under the parent's
    attribute name. `attend` projects hidden states back onto the word table for tied output layers.

        emb = Embeddings(vocab_size=100, features=8, max_positions=16, type_vocab_size=2, layer_norm_eps=1e-12)
        emb(ids)                      # ids [B, T] -> [B, T, 8]; types default to 0, positions to 0..T-1
        emb.attend(h)                 # h [B, T, 8] -> logits [B, T, 100]

    A stack wider or narrower than `features` projects the output itself (`embeddings_project`, as Hugging Face's
    ElectraModel does), not here: a shared table feeds stacks of different widths, each with its own projection.
    Parameter names (word_embeddings, position_embeddings, token_type_embeddings, LayerNorm) are Hugging Face's
    BERT's, which checkpoints and `sslm_jax.interop.huggingface` rely on.
    """

    vocab_size: int
    features: int
    max_positions: int | None = None  # None: no learned positions (e.g. rotary ones applied in attention)
    type_vocab_size: int | None = None  # None: no token-type table
    layer_norm_eps: float | None = None  # None: no LayerNorm (GPT-2 adds its embeddings raw)
    dropout_rate: float = 0.0
    init_range: float = 0.02
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    def setup(self):
        def table(rows, axes):
            init = normal_init(self.init_range, axes)
            return Embed(rows, self.features, dtype=self.dtype, param_dtype=self.param_dtype, embedding_init=init)

        self.word_embeddings = table(self.vocab_size, ("vocab", "embed"))
        if self.max_positions:
            self.position_embeddings = table(self.max_positions, (None, "embed"))
        if self.type_vocab_size:
            self.token_type_embeddings = table(self.type_vocab_size, (None, "embed"))
        if self.layer_norm_eps is not None:
            self.LayerNorm = layer_norm(self.layer_norm_eps, self.dtype, self.param_dtype)
        self.dropout = nn.Dropout(self.dropout_rate)

    def __call__(
        self,
        input_ids: Array,
        token_type_ids: Array | None = None,
        position_ids: Array | None = None,
        deterministic: bool = True,
    ) -> Array:
        """ids [B, T] -> [B, T, features]; missing token types are 0, missing positions 0..T-1."""
        length = input_ids.shape[1]
        x = self.word_embeddings(input_ids)
        # Summation order (word, type, position) is Hugging Face BERT's; float sums in another order differ.
        if self.type_vocab_size:
            x = x + self.token_type_embeddings(jnp.zeros_like(input_ids) if token_type_ids is None else token_type_ids)
        if self.max_positions:
            if length > self.max_positions:
                raise ValueError(f"sequence length {length} exceeds max_position_embeddings={self.max_positions}")
            if position_ids is None:  # one row of positions, broadcast: its gradient sums over the batch first
                x = x + self.position_embeddings(jnp.arange(length, dtype=jnp.int32)[None])
            else:
                x = x + self.position_embeddings(position_ids)
        if self.layer_norm_eps is not None:
            x = self.LayerNorm(x)
        x = self.dropout(x, deterministic=deterministic)
        return nn.with_logical_constraint(x, ("batch", "length", "embed"))

    def attend(self, x: Array) -> Array:
        """Logits against the (tied) word-embedding table: [..., features] -> [..., vocab]."""
        return self.word_embeddings.attend(x)


def init_params(model: nn.Module, rng: jax.Array, seq_len: int = 8, boxed: bool = False):
    """Random parameters for `model` (BERT, GPT-2, ELECTRA: token ids in); `boxed=True` keeps the
    `nn.LogicallyPartitioned` axis metadata.

    Compiled as one program: run op by op, the forward pass inside `init` dispatched each primitive alone, which
    took ~5 s for a tiny BERT on CPU. Prefer the trainer's sharded init (`jax.eval_shape` first) for big models;
    this is for tests and notebooks.
    """
    ids = jnp.zeros((1, seq_len), jnp.int32)
    params = jax.jit(lambda r: model.init({"params": r, "dropout": r}, ids)["params"])(rng)
    return params if boxed else nn.meta.unbox(params)

"""A functional Flax (Linen) GPT-2, numerically Hugging Face's `GPT2LMHeadModel` (pre-LN, learned positions, causal).

    config = GPTConfig.from_size("tiny", vocab_size=8000)
    model = GPTLMHeadModel(config)
    params = init_params(model, jax.random.key(0))
    out = model.apply({"params": params}, input_ids, attention_mask=mask)   # out.logits [B, T, V], out.cache None
    # packed documents: segment_ids [B, T] keep attention inside each one, position_ids restart at each
    out = model.apply({"params": params}, ids, segment_ids=segments, position_ids=positions)
    # decoding with an explicit cache (right-padded prompts; then one token per row per call):
    cache = init_cache(config, batch=B, max_length=64)
    out = model.apply({"params": params}, prompt, attention_mask=prompt_mask, cache=cache)   # prefill
    out = model.apply({"params": params}, next_ids[:, None], cache=out.cache)                 # decode

The decoder is the shared `transformer.Transformer` (pre-LN, causal, final LayerNorm) reading `layers.Embeddings`
(word + position, no LayerNorm); the output projection is tied to the word table and has no bias. Parameters:
transformer/{embeddings/{word_embeddings, position_embeddings}, decoder/{layer_i/..., final_layer_norm}};
`sslm_jax.interop.hf_gpt2` maps them onto Hugging Face's names and Conv1D layout (fused c_attn).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax

from sslm_jax.models import layers
from sslm_jax.models.layers import init_params  # noqa: F401 (API: random parameters for tests, notebooks)
from sslm_jax.models.attention import KVCache
from sslm_jax.models.transformer import Transformer, TransformerConfig
from sslm_jax.models.transformer import init_cache as init_stack_cache

Array = jax.Array

# GPT-2's published sizes (Radford et al., 2019) and two miniatures. Heads = hidden / 64; intermediate = 4 * hidden.
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "small": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),  # 124M
    "medium": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096),  # 355M
    "large": dict(num_hidden_layers=36, hidden_size=1280, num_attention_heads=20, intermediate_size=5120),  # 774M
}

# Our field -> Hugging Face GPT2Config's name in config.json.
HF_NAMES = {
    "vocab_size": "vocab_size",
    "max_position_embeddings": "n_positions",
    "hidden_size": "n_embd",
    "num_hidden_layers": "n_layer",
    "num_attention_heads": "n_head",
    "intermediate_size": "n_inner",
    "hidden_act": "activation_function",
    "resid_pdrop": "resid_pdrop",
    "embd_pdrop": "embd_pdrop",
    "attn_pdrop": "attn_pdrop",
    "layer_norm_eps": "layer_norm_epsilon",
    "initializer_range": "initializer_range",
    "bos_token_id": "bos_token_id",
    "eos_token_id": "eos_token_id",
}


@dataclasses.dataclass(frozen=True)
class GPTConfig(layers.Numerics):
    """Architecture and numerics of a GPT-2. Frozen (hashable) so it can be closed over by jitted functions.

    `intermediate_size=None` means 4 * hidden_size (Hugging Face's `n_inner=None`) and is resolved at construction,
    so `replace(hidden_size=...)` keeps the old width unless it also passes `intermediate_size=None`.
    """

    vocab_size: int = 50257
    max_position_embeddings: int = 1024  # Hugging Face's n_positions
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int | None = None
    hidden_act: str = "gelu_new"
    resid_pdrop: float = 0.1  # after the attention and after the MLP
    embd_pdrop: float = 0.1  # on the summed embeddings
    attn_pdrop: float = 0.1  # on the attention probabilities
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    # Numerics: `dtype` is the compute dtype ("bfloat16" for mixed precision), `param_dtype` the master weights.
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False  # recompute each layer's activations in the backward pass (memory for FLOPs)
    attention_implementation: str | None = None  # of jax.nn.dot_product_attention; None lets XLA choose

    def __post_init__(self):
        if self.intermediate_size is None:
            object.__setattr__(self, "intermediate_size", 4 * self.hidden_size)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        layers.activation(self.hidden_act)
        for field in ("dtype", "param_dtype"):
            if getattr(self, field) not in ("float32", "bfloat16", "float16"):
                raise ValueError(f"{field}={getattr(self, field)!r}; use 'float32', 'bfloat16' or 'float16'")

    @classmethod
    def from_size(cls, size: str, **overrides: Any) -> GPTConfig:
        """`GPTConfig.from_size("small", vocab_size=50257, dtype="bfloat16")`."""
        if size not in SIZES:
            raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
        return cls(**{**SIZES[size], **overrides})

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], **overrides: Any) -> GPTConfig:
        """A Hugging Face GPT-2 config.json dict (n_embd, n_layer, ...) -> GPTConfig; unknown keys are ignored."""
        fields = {ours: d[theirs] for ours, theirs in HF_NAMES.items() if theirs in d}
        if isinstance(fields.get("eos_token_id"), list):  # HF allows several; keep the config hashable
            fields["eos_token_id"] = tuple(fields["eos_token_id"])
        return cls(**{**fields, **overrides})

    def to_hf_dict(self) -> dict[str, Any]:
        return {theirs: getattr(self, ours) for ours, theirs in HF_NAMES.items()}

    def replace(self, **changes: Any) -> GPTConfig:
        return dataclasses.replace(self, **changes)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def transformer(self) -> TransformerConfig:
        """The decoder stack: pre-LN, causal, with a final LayerNorm."""
        return TransformerConfig(
            hidden_size=self.hidden_size,
            num_layers=self.num_hidden_layers,
            num_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            dropout_rate=self.resid_pdrop,
            attention_dropout_rate=self.attn_pdrop,
            layer_norm_eps=self.layer_norm_eps,
            init_range=self.initializer_range,
            pre_layer_norm=True,
            causal=True,
            final_layer_norm=True,
            remat=self.remat,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            attention_implementation=self.attention_implementation,
        )

    def embeddings(self) -> layers.Embeddings:
        """Word + learned position embeddings, then dropout: no token types, no LayerNorm (GPT-2 adds them raw)."""
        return layers.Embeddings(
            vocab_size=self.vocab_size,
            features=self.hidden_size,
            max_positions=self.max_position_embeddings,
            dropout_rate=self.embd_pdrop,
            init_range=self.initializer_range,
            dtype=self.compute_dtype,
            param_dtype=self.weights_dtype,
        )


def init_cache(config: GPTConfig, batch: int, max_length: int) -> tuple[KVCache, ...]:
    """An empty KV cache for every layer: keys/values [batch, max_length, heads, head_dim] in the compute dtype.

    `max_length` (prompt + generated tokens) may not pass `max_position_embeddings`: there are no positions beyond.
    """
    if max_length > config.max_position_embeddings:
        raise ValueError(f"max_length={max_length} exceeds max_position_embeddings={config.max_position_embeddings}")
    return init_stack_cache(config.transformer, batch, max_length)


@flax.struct.dataclass
class CausalLMOutput:
    logits: Array  # [B, T, V]: position t predicts token t + 1
    cache: tuple[KVCache, ...] | None  # the updated cache when one was given, else None


class GPTModel(nn.Module):
    """The decoder (Hugging Face's `GPT2Model`): ids [B, T] -> hidden states [B, T, H] after the final LayerNorm.

    With `cache` it returns `(hidden, updated_cache)` (see `transformer.Transformer`), without it `hidden`.
    """

    config: GPTConfig

    def setup(self):
        self.embeddings = self.config.embeddings()
        self.decoder = Transformer(self.config.transformer, embeddings=self.embeddings)

    def __call__(
        self,
        input_ids: Array,
        attention_mask: Array | None = None,
        position_ids: Array | None = None,
        segment_ids: Array | None = None,
        deterministic: bool = True,
        cache: tuple[KVCache, ...] | None = None,
    ) -> Array | tuple[Array, tuple[KVCache, ...]]:
        return self.decoder(
            input_ids,
            attention_mask=attention_mask,
            segment_ids=segment_ids,
            position_ids=position_ids,
            deterministic=deterministic,
            cache=cache,
        )

    def attend(self, x: Array) -> Array:
        """Logits against the (tied) word table: [..., H] -> [..., V]."""
        return self.embeddings.attend(x)


class GPTLMHeadModel(nn.Module):
    """GPT-2 with its tied, bias-free language-model head (Hugging Face's `GPT2LMHeadModel`).

    Args of `__call__`:
      input_ids: [B, T] token ids.
      attention_mask: [B, T], 1 = token, 0 = padding. Without a cache it masks padded keys (right padding; compare
        only real positions). With a cache it says how many of each row's T tokens are real (a prefix of ones):
        the row's cache index advances by that many, so the next call overwrites the padding.
      position_ids: [B, T]; default 0..T-1, or each row's cache index onwards with a cache. Packed documents pass
        positions that restart at each document.
      segment_ids: [B, T] document ids of packed rows: attention stays inside each document (no cache).
      deterministic: False enables dropout (pass `rngs={"dropout": key}`).
      cache: `init_cache(config, B, max_length)` or the cache a previous call returned.

    Returns:
      `CausalLMOutput(logits [B, T, V] in the compute dtype, cache)`; `cache` is None when none was given.
    """

    config: GPTConfig

    def setup(self):
        self.transformer = GPTModel(self.config)

    def __call__(
        self,
        input_ids: Array,
        attention_mask: Array | None = None,
        position_ids: Array | None = None,
        segment_ids: Array | None = None,
        deterministic: bool = True,
        cache: tuple[KVCache, ...] | None = None,
    ) -> CausalLMOutput:
        out = self.transformer(input_ids, attention_mask, position_ids, segment_ids, deterministic, cache)
        hidden, new_cache = out if cache is not None else (out, None)
        logits = nn.with_logical_constraint(self.transformer.attend(hidden), ("batch", "length", "vocab"))
        return CausalLMOutput(logits=logits, cache=new_cache)


# --- The family record (sslm_jax.models.registry) -------------------------------------------------------------

# `config.model` fields that decide the parameters' shapes or meaning.
SHAPE_FIELDS = ("size", "vocab_size", "max_position_embeddings", "hidden_act")


def config_from_settings(m, vocab_size: int) -> GPTConfig:
    """The GPTConfig of a run's `config.model` section; `m.vocab_size` 0 takes the vocabulary's size.

    `hidden_dropout_prob` drives both GPT-2 dropouts outside attention (embd_pdrop, resid_pdrop),
    `attention_probs_dropout_prob` attn_pdrop. GPT-2's bos/eos id 50256 is kept only where the vocabulary has it,
    else None (the run's tokenizer knows its end-of-text id). Example: model.size="tiny", vocab 8192 ->
    GPTConfig(hidden_size=128, vocab_size=8192, eos_token_id=None, ...).
    """
    if m["vocab_size"] and m["vocab_size"] < vocab_size:
        raise ValueError(
            f"vocab_size={m['vocab_size']} is smaller than the vocabulary ({vocab_size} tokens); use 0 to take the "
            "vocabulary's size"
        )
    vocab_size = m["vocab_size"] or vocab_size
    end_of_text = GPTConfig.eos_token_id if GPTConfig.eos_token_id < vocab_size else None
    return GPTConfig.from_size(
        m["size"],
        vocab_size=vocab_size,
        bos_token_id=end_of_text,
        eos_token_id=end_of_text,
        max_position_embeddings=m["max_position_embeddings"],
        hidden_act=m["hidden_act"],
        resid_pdrop=m["hidden_dropout_prob"],
        embd_pdrop=m["hidden_dropout_prob"],
        attn_pdrop=m["attention_probs_dropout_prob"],
        dtype=m["dtype"],
        param_dtype=m["param_dtype"],
        remat=m["remat"],
        attention_implementation=m["attention_implementation"] or None,
    )


def settings_from_hf(d: dict) -> dict[str, Any]:
    """A Hugging Face GPT-2 config.json -> `config.model` settings (SHAPE_FIELDS), its size named from SIZES.

    ValueError when its layer count and widths are none of SIZES or its layer_norm_eps is not GPT-2's.
    """
    hf = GPTConfig.from_hf_dict(d)
    shape = {k: getattr(hf, k) for k in SIZES["small"]}
    size = next((name for name, dims in SIZES.items() if dims == shape), None)
    if size is None:
        raise ValueError(f"a GPT-2 with {shape} is none of sslm_jax's model sizes ({', '.join(SIZES)})")
    if hf.layer_norm_eps != GPTConfig.layer_norm_eps:
        raise ValueError(f"layer_norm_eps={hf.layer_norm_eps}; sslm_jax's GPT sizes use {GPTConfig.layer_norm_eps}")
    return {f: size if f == "size" else getattr(hf, f) for f in SHAPE_FIELDS}


def forward_flops_per_sequence(config: GPTConfig, seq_len: int) -> float:
    """Matmul FLOPs (2 per multiply-add) of one forward pass over one sequence.

    Per layer and token: Q, K, V and output projections 8·H², the MLP 4·H·I, attention scores and values 4·L·H
    (the causal half is not discounted, as in the usual MFU convention); the tied head 2·H·V at every position.
    """
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    per_token = config.num_hidden_layers * (8 * h * h + 4 * h * i + 4 * seq_len * h) + 2 * h * v
    return float(seq_len * per_token)


def train_flops_per_sequence(config: GPTConfig, seq_len: int, num_predictions: int | None = None) -> float:
    """Model FLOPs of one training sequence: 3 × forward. A causal LM predicts at every position, so
    `num_predictions` (the family interface's masked-LM count) is ignored."""
    del num_predictions
    return 3.0 * forward_flops_per_sequence(config, seq_len)


def _is_backbone(params) -> bool:
    return "embeddings" in params and "decoder" in params


def _family():
    from sslm_jax.models.registry import ModelFamily

    return ModelFamily(
        name="gpt",
        shape_fields=SHAPE_FIELDS,
        config_from_settings=config_from_settings,
        heads={
            "causal_lm": lambda c, n: GPTLMHeadModel(c),
            "encoder": lambda c, n: GPTModel(c),
        },
        backbone="transformer",
        is_backbone=_is_backbone,
        hf_model_type="gpt2",
        settings_from_hf=settings_from_hf,
        train_flops=train_flops_per_sequence,
        init_cache=init_cache,
    )


FAMILY = _family()

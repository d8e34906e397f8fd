"""A functional Flax (Linen) BERT, numerically Hugging Face's `BertModel` (post-LN, learned positions).

    config = BertConfig.from_size("tiny", vocab_size=8000)
    model = BertForPreTraining(config)
    params = init_params(model, jax.random.key(0))
    out = model.apply({"params": params}, input_ids, attention_mask=mask, token_type_ids=types,
                      masked_positions=positions)          # optional: project only where predictions are needed
    out.mlm_logits  # [B, P, V] (or [B, T, V] without masked_positions);  out.nsp_logits  # [B, 2]

The encoder is the shared `transformer.Transformer` (post-LN, bidirectional) reading `layers.Embeddings`; this
file holds BERT's config, size table, pooler and heads. Parameter names follow Hugging Face's module tree
(bert/embeddings, bert/encoder/layer_i, cls/predictions, ...) so `sslm_jax.interop.huggingface` converts by renaming
and transposing, and every parameter carries logical axis names (see `layers.py`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from sslm_jax.models import layers
from sslm_jax.models.layers import init_params  # noqa: F401 (API: random parameters for tests, notebooks)
from sslm_jax.models.transformer import Transformer, TransformerConfig

Array = jax.Array

# The published BERT sizes: the miniatures of Turc et al. (2019, "Well-Read Students Learn Better") and
# BERT-Base/Large. Heads = hidden / 64; intermediate = 4 * hidden.
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "small": dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "medium": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
    "large": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096),
}

# Fields that mean the same thing in Hugging Face's config.json.
HF_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings", "type_vocab_size",
    "layer_norm_eps", "pad_token_id", "initializer_range",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class BertConfig(layers.Numerics):
    """Architecture and numerics of a BERT. Frozen (hashable) so it can be closed over by jitted functions."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    initializer_range: float = 0.02
    # Numerics: `dtype` is the compute dtype ("bfloat16" for mixed precision), `param_dtype` the master weights.
    dtype: str = "float32"
    param_dtype: str = "float32"
    # Recompute each layer's activations in the backward pass instead of storing them (memory for FLOPs).
    remat: bool = False
    # `implementation` of jax.nn.dot_product_attention: None lets XLA choose; "cudnn" forces the fused GPU kernel.
    attention_implementation: str | None = None
    # How the classification head reads the sequence (layers.POOLINGS): "cls" is Hugging Face's tanh pooler over
    # [CLS]; "mean" averages the last layer's real tokens, with no pooler. Not a Hugging Face field.
    pooling: str = "cls"

    def __post_init__(self):
        layers.check_pooling(self.pooling)
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}"
            )
        layers.activation(self.hidden_act)
        for field in ("dtype", "param_dtype"):
            if getattr(self, field) not in ("float32", "bfloat16", "float16"):
                raise ValueError(f"{field}={getattr(self, field)!r}; use 'float32', 'bfloat16' or 'float16'")

    @classmethod
    def from_size(cls, size: str, **overrides: Any) -> "BertConfig":
        """`BertConfig.from_size("mini", vocab_size=8000, dtype="bfloat16")`."""
        if size not in SIZES:
            raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
        return cls(**{**SIZES[size], **overrides})

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], **overrides: Any) -> "BertConfig":
        return cls(**{k: d[k] for k in HF_FIELDS if k in d}, **overrides)

    def to_hf_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in HF_FIELDS}

    def replace(self, **changes: Any) -> "BertConfig":
        return dataclasses.replace(self, **changes)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def transformer(self) -> TransformerConfig:
        """The encoder stack: post-LN, bidirectional, no final LayerNorm."""
        return TransformerConfig(
            hidden_size=self.hidden_size,
            num_layers=self.num_hidden_layers,
            num_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            dropout_rate=self.hidden_dropout_prob,
            attention_dropout_rate=self.attention_probs_dropout_prob,
            layer_norm_eps=self.layer_norm_eps,
            init_range=self.initializer_range,
            remat=self.remat,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            attention_implementation=self.attention_implementation,
        )

    def embeddings(self) -> layers.Embeddings:
        """Word + position + token-type embeddings, LayerNorm and dropout (to be bound in a parent's setup)."""
        return layers.Embeddings(
            vocab_size=self.vocab_size,
            features=self.hidden_size,
            max_positions=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            layer_norm_eps=self.layer_norm_eps,
            dropout_rate=self.hidden_dropout_prob,
            init_range=self.initializer_range,
            dtype=self.compute_dtype,
            param_dtype=self.weights_dtype,
        )


@flax.struct.dataclass
class PreTrainingOutput:
    mlm_logits: Array  # [B, T, V], or [B, P, V] when masked_positions are given
    nsp_logits: Array  # [B, 2]


@flax.struct.dataclass
class MaskedLMOutput:
    mlm_logits: Array


@flax.struct.dataclass
class ClassificationOutput:
    logits: Array  # [B, num_labels]


class BertModel(nn.Module):
    """The encoder: returns (sequence_output [B, T, H], pooled_output [B, H] or None).

    With `output_positions` [B, P] the sequence output holds only those rows, [B, P, H], and the last layer
    computes nothing else (for masked-LM pretraining: 20 of 128 rows); the pooler still gets [CLS].
    """

    config: BertConfig
    add_pooling_layer: bool = True

    def setup(self):
        c = self.config
        self.embeddings = c.embeddings()
        self.encoder = Transformer(c.transformer, embeddings=self.embeddings)
        if self.add_pooling_layer:
            self.pooler = layers.dense(
                c.hidden_size,
                kernel_axes=("embed", "mlp"),
                bias_axes=("mlp",),
                init_range=c.initializer_range,
                dtype=c.compute_dtype,
                param_dtype=c.weights_dtype,
            )

    def __call__(
        self,
        input_ids: Array,
        attention_mask: Array | None = None,
        token_type_ids: Array | None = None,
        position_ids: Array | None = None,
        segment_ids: Array | None = None,
        deterministic: bool = True,
        output_positions: Array | None = None,
    ):
        pool_row = output_positions is not None and self.add_pooling_layer
        if pool_row:  # the pooler reads [CLS]: keep row 0 as the first computed row
            output_positions = jnp.concatenate([jnp.zeros_like(output_positions[:, :1]), output_positions], axis=1)
        x = self.encoder(
            input_ids,
            attention_mask=attention_mask,
            segment_ids=segment_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            deterministic=deterministic,
            output_positions=output_positions,
        )
        pooled = jnp.tanh(self.pooler(x[:, 0])) if self.add_pooling_layer else None
        return (x[:, 1:] if pool_row else x), pooled

    def attend(self, x: Array) -> Array:
        return self.embeddings.attend(x)


class BertLMPredictionHead(nn.Module):
    """transform (dense → act → LayerNorm) then the tied vocabulary projection plus a bias."""

    config: BertConfig

    @nn.compact
    def __call__(self, x: Array, attend) -> Array:
        c = self.config
        x = layers.dense(
            c.hidden_size,
            kernel_axes=("embed", "mlp"),
            bias_axes=("mlp",),
            init_range=c.initializer_range,
            dtype=c.compute_dtype,
            param_dtype=c.weights_dtype,
            name="transform",
        )(x)
        # Pin the transform's output to the encoder's activation layout. Left to propagation, XLA (jaxlib 0.10.2,
        # data × fsdp × tensor mesh) picked a layout for [B, P, H] whose backward pass gave wrong gradients.
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        x = layers.activation(c.hidden_act)(x)
        x = layers.layer_norm(c.layer_norm_eps, c.compute_dtype, c.weights_dtype, name="transform_layer_norm")(x)
        bias = self.param("bias", layers.zeros_init(("vocab",)), (c.vocab_size,), c.weights_dtype)
        logits = attend(x) + bias.astype(c.compute_dtype)
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


gather_positions = layers.gather_positions  # x [B, T, H], positions [B, P] -> [B, P, H]


class BertForPreTraining(nn.Module):
    """BERT with the masked-LM head and the NSP/SOP head (Hugging Face's `BertForPreTraining`)."""

    config: BertConfig

    def setup(self):
        self.bert = BertModel(self.config, add_pooling_layer=True)
        self.predictions = BertLMPredictionHead(self.config)
        self.seq_relationship = layers.dense(
            2,
            kernel_axes=("embed", None),
            bias_axes=(None,),
            init_range=self.config.initializer_range,
            dtype=self.config.compute_dtype,
            param_dtype=self.config.weights_dtype,
        )

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        masked_positions=None,
        position_ids=None,
        segment_ids=None,
        deterministic: bool = True,
    ) -> PreTrainingOutput:
        # With masked_positions, the encoder's last layer and the vocabulary projection (as in google-research/bert)
        # run only where predictions are needed.
        seq, pooled = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids, segment_ids, deterministic, masked_positions
        )
        return PreTrainingOutput(
            mlm_logits=self.predictions(seq, self.bert.attend),
            nsp_logits=self.seq_relationship(pooled),
        )


class BertForMaskedLM(nn.Module):
    """BERT with the masked-LM head only (no pooler), as Hugging Face's `BertForMaskedLM`."""

    config: BertConfig

    def setup(self):
        self.bert = BertModel(self.config, add_pooling_layer=False)
        self.predictions = BertLMPredictionHead(self.config)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        masked_positions=None,
        position_ids=None,
        segment_ids=None,
        deterministic: bool = True,
    ) -> MaskedLMOutput:
        seq, _ = self.bert(
            input_ids, attention_mask, token_type_ids, position_ids, segment_ids, deterministic, masked_positions
        )
        return MaskedLMOutput(mlm_logits=self.predictions(seq, self.bert.attend))


class BertForSequenceClassification(nn.Module):
    """Pooled [CLS] → dropout → linear; `num_labels=1` is regression (Hugging Face's layout). With
    `config.pooling="mean"` the mean of the last layer's real tokens replaces the pooler (which then does not exist)."""

    config: BertConfig
    num_labels: int = 2

    def setup(self):
        c = self.config
        self.bert = BertModel(c, add_pooling_layer=c.pooling == "cls")
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.classifier = layers.dense(
            self.num_labels,
            kernel_axes=("embed", None),
            bias_axes=(None,),
            init_range=c.initializer_range,
            dtype=c.compute_dtype,
            param_dtype=c.weights_dtype,
        )

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        segment_ids=None,
        deterministic: bool = True,
    ) -> ClassificationOutput:
        hidden, pooled = self.bert(input_ids, attention_mask, token_type_ids, position_ids, segment_ids, deterministic)
        if pooled is None:
            pooled = layers.POOLINGS[self.config.pooling](hidden, attention_mask)
        return ClassificationOutput(logits=self.classifier(self.dropout(pooled, deterministic=deterministic)))


# --- The family record (sslm_jax.models.registry) -------------------------------------------------------------

# `config.model` fields that decide the parameters' shapes or meaning.
SHAPE_FIELDS = ("size", "vocab_size", "max_position_embeddings", "type_vocab_size", "hidden_act")


def config_from_settings(m, vocab_size: int) -> BertConfig:
    """The BertConfig of a run's `config.model` section; `m.vocab_size` 0 takes the vocabulary's size.

    Example: config_from_settings(config.model, 8192) with model.size="tiny" -> BertConfig(hidden_size=128, ...).
    """
    if m["vocab_size"] and m["vocab_size"] < vocab_size:
        raise ValueError(
            f"vocab_size={m['vocab_size']} is smaller than the vocabulary ({vocab_size} tokens); use 0 to take the "
            "vocabulary's size"
        )
    return BertConfig.from_size(
        m["size"],
        vocab_size=m["vocab_size"] or vocab_size,
        max_position_embeddings=m["max_position_embeddings"],
        type_vocab_size=m["type_vocab_size"],
        hidden_act=m["hidden_act"],
        hidden_dropout_prob=m["hidden_dropout_prob"],
        attention_probs_dropout_prob=m["attention_probs_dropout_prob"],
        dtype=m["dtype"],
        param_dtype=m["param_dtype"],
        remat=m["remat"],
        attention_implementation=m["attention_implementation"] or None,
        pooling=m.get("pooling", "cls"),
    )


def settings_from_hf(d: dict) -> dict[str, Any]:
    """A Hugging Face BERT config.json -> `config.model` settings (SHAPE_FIELDS), its size named from SIZES.

    ValueError when its layer count and widths are none of SIZES or its layer_norm_eps is not BERT's.
    """
    hf = BertConfig.from_hf_dict(d)
    shape = {k: getattr(hf, k) for k in SIZES["base"]}
    size = next((name for name, dims in SIZES.items() if dims == shape), None)
    if size is None:
        raise ValueError(f"a BERT with {shape} is none of sslm_jax's model sizes ({', '.join(SIZES)})")
    if hf.layer_norm_eps != BertConfig.layer_norm_eps:
        raise ValueError(f"layer_norm_eps={hf.layer_norm_eps}; sslm_jax's BERT sizes use {BertConfig.layer_norm_eps}")
    return {f: size if f == "size" else getattr(hf, f) for f in SHAPE_FIELDS}


def forward_flops_per_sequence(config: BertConfig, seq_len: int, num_predictions: int | None) -> float:
    """Matmul FLOPs (2 per multiply-add) of one forward pass over one sequence.

    Per layer and token: Q, K, V and output projections 8·H², the feed-forward 4·H·I, attention scores and
    values 4·L·H. The MLM head costs 2·H² + 2·H·V at each projected position: every position when
    `num_predictions` is None, else only the masked ones.
    """
    h, i, v = config.hidden_size, config.intermediate_size, config.vocab_size
    per_token = config.num_hidden_layers * (8 * h * h + 4 * h * i + 4 * seq_len * h)
    heads = (seq_len if num_predictions is None else num_predictions) * (2 * h * h + 2 * h * v)
    return float(seq_len * per_token + heads)


def train_flops_per_sequence(config: BertConfig, seq_len: int, num_predictions: int | None) -> float:
    """Model FLOPs of one training sequence: forward + backward = 3 × forward (remat recomputation not credited)."""
    return 3.0 * forward_flops_per_sequence(config, seq_len, num_predictions)


def _is_backbone(params) -> bool:
    return "embeddings" in params and "encoder" in params


def _family():
    from sslm_jax.models.registry import ModelFamily

    return ModelFamily(
        name="bert",
        shape_fields=SHAPE_FIELDS,
        config_from_settings=config_from_settings,
        heads={
            "pretraining": lambda c, n: BertForPreTraining(c),
            "masked_lm": lambda c, n: BertForMaskedLM(c),
            "classification": lambda c, n: BertForSequenceClassification(c, num_labels=n),
            "encoder": lambda c, n: BertModel(c, add_pooling_layer=True),
        },
        backbone="bert",
        is_backbone=_is_backbone,
        hf_model_type="bert",
        settings_from_hf=settings_from_hf,
        train_flops=train_flops_per_sequence,
    )


FAMILY = _family()

"""ELECTRA (Clark et al., 2020) in Flax Linen: the generator, the discriminator and the joint pretraining model,
numerically Hugging Face's `ElectraForMaskedLM` and `ElectraForPreTraining` (post-LN encoders, learned positions).

    config = ElectraConfig.from_size("small", vocab_size=30522)      # the discriminator (ELECTRA-Small)
    generator_config(config)                                          # 1/4 as wide: hidden 64, 1 head, FFN 256
    model = ElectraPretrainingModel(config)
    params = init_params(model, jax.random.key(0))
    g = model.apply({"params": params}, masked_ids, attention_mask=mask, masked_positions=positions,
                    method="generator")                               # g.mlm_logits [B, P, V]
    # ... sample replacements from g.mlm_logits, write them into the input at `positions` ...
    d = model.apply({"params": params}, corrupted_ids, attention_mask=mask, method="discriminator")
    d.logits                                                          # [B, T]; > 0 means "this token was replaced"

Both stacks read ONE `layers.Embeddings`: the word, position and token-type tables AND the embedding LayerNorm,
built by the discriminator's backbone and handed to the generator's stack; each stack keeps its own
`embeddings_project` when its hidden size differs from `embedding_size`. This is the original code's sharing
(google-research/electra builds both models' embeddings in one reused "electra/embeddings" scope, LayerNorm
included), and what the released generator checkpoints hold (the discriminator's tables and LayerNorm). Hugging Face
has no joint model, and recipes on top of it often tie only the three tables.

Parameter trees, named as Hugging Face's modules (`sslm_jax.interop.hf_electra` renames and transposes):
    ElectraDiscriminator      {electra: {embeddings, encoder}, discriminator_predictions: {dense, dense_prediction}}
    ElectraGenerator          {electra, generator_predictions: {dense, LayerNorm}, generator_lm_head: {bias}}
    ElectraForSequenceClassification  {electra, classifier: {dense, out_proj}}
    ElectraPretrainingModel   the discriminator's tree + generator_encoder (the generator's stack) +
                              generator_predictions + generator_lm_head
so a pretraining checkpoint fine-tunes a classifier by path (its `electra` is the discriminator), and
`hf_electra.split_pretraining_params` cuts it into the two Hugging Face trees.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from sslm_jax.models import bert, layers
from sslm_jax.models.bert import ClassificationOutput, MaskedLMOutput, init_params  # noqa: F401 (init_params: API)
from sslm_jax.models.transformer import Transformer

Array = jax.Array


def _size(num_layers: int, hidden: int, heads: int, embedding: int) -> dict[str, int]:
    return dict(num_hidden_layers=num_layers, hidden_size=hidden, num_attention_heads=heads,
                intermediate_size=4 * hidden, embedding_size=embedding)  # fmt: skip


# The paper's sizes (Small, Base, Large) and two miniatures. `tiny` has heads of 32 so that its default 1/4-wide
# generator is one whole head.
SIZES: dict[str, dict[str, int]] = {
    "tiny": _size(2, 128, 4, 128),
    "mini": _size(4, 256, 4, 128),
    "small": _size(12, 256, 4, 128),  # ELECTRA-Small: 13.5M parameters (discriminator, vocab 30522)
    "base": _size(12, 768, 12, 768),
    "large": _size(24, 1024, 16, 1024),
}
# The generator's width as a fraction of the discriminator's (the paper's Table 6: Small 1/4, Base 1/3, Large 1/4).
GENERATOR_FRACTIONS: dict[str, float] = {"tiny": 1 / 4, "mini": 1 / 4, "small": 1 / 4, "base": 1 / 3, "large": 1 / 4}

# Fields that mean the same thing in Hugging Face's config.json.
HF_FIELDS = (*bert.HF_FIELDS, "embedding_size", "classifier_dropout")


@dataclasses.dataclass(frozen=True)
class ElectraConfig(bert.BertConfig):
    """BERT's fields, numerics options, validation and encoder stack (`transformer`: post-LN, bidirectional), plus
    Hugging Face ELECTRA's `embedding_size` and `classifier_dropout`; defaults are ELECTRA-Small's discriminator.

    `generator_hidden_fraction` is not Hugging Face's: it is how `generator_config` derives a joint model's generator
    from this (discriminator) config, and means nothing for a generator's own config.
    """

    hidden_size: int = 256
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    embedding_size: int = 128
    classifier_dropout: float | None = None  # the classification head's dropout; None: hidden_dropout_prob
    generator_hidden_fraction: float = 0.25

    @classmethod
    def from_size(cls, size: str, **overrides: Any) -> ElectraConfig:
        """`ElectraConfig.from_size("small", vocab_size=8000)`; the generator fraction defaults to the size's."""
        if size not in SIZES:
            raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
        return cls(**{**SIZES[size], "generator_hidden_fraction": GENERATOR_FRACTIONS[size], **overrides})

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any], **overrides: Any) -> ElectraConfig:
        """A Hugging Face config.json dict -> ElectraConfig (generator fraction: its size's); other keys are ignored."""
        config = cls(**{k: d[k] for k in HF_FIELDS if k in d})
        size = size_of(config)
        return config.replace(**({"generator_hidden_fraction": GENERATOR_FRACTIONS[size]} if size else {}), **overrides)

    def to_hf_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in HF_FIELDS}

    def embeddings(self) -> layers.Embeddings:
        """Word + position + token-type tables of width `embedding_size`, LayerNorm, dropout."""
        return layers.Embeddings(
            vocab_size=self.vocab_size, features=self.embedding_size, max_positions=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size, layer_norm_eps=self.layer_norm_eps,
            dropout_rate=self.hidden_dropout_prob, init_range=self.initializer_range, dtype=self.compute_dtype,
            param_dtype=self.weights_dtype,
        )  # fmt: skip


def size_of(config: ElectraConfig) -> str | None:
    """The SIZES name whose layer count and widths `config` has, or None."""
    shape = {k: getattr(config, k) for k in SIZES["base"]}
    return next((name for name, dims in SIZES.items() if dims == shape), None)


def generator_config(config: ElectraConfig, fraction: float | None = None) -> ElectraConfig:
    """The generator of a joint model whose discriminator is `config`: `fraction` (default
    `config.generator_hidden_fraction`) of its hidden size in whole heads of the discriminator's head_dim, with
    intermediate = 4 * hidden; layers, embedding_size, vocabulary and numerics are the discriminator's.

    Example: ELECTRA-Small (hidden 256, 4 heads of 64) and 1/4 -> hidden 64, 1 head, intermediate 256; Base (768, 12
    heads) and 1/3 -> 256, 4 heads, 1024. The original code rounds the width and takes max(1, hidden // 64) heads;
    here a width that is not whole heads is a ValueError (one line), so no head is silently narrower.
    """
    f = config.generator_hidden_fraction if fraction is None else fraction
    if not 0 < f <= 1:
        raise ValueError(f"generator_hidden_fraction={f:g} must be in (0, 1]")
    width = config.hidden_size * f
    heads = round(width / config.head_dim)
    if heads < 1 or abs(width - heads * config.head_dim) > 1e-6 * config.hidden_size:
        raise ValueError(
            f"generator_hidden_fraction={f:g} does not divide the heads: {config.hidden_size} x {f:g} = {width:g} is "
            f"not a whole number of heads of {config.head_dim} (the discriminator's head_dim)"
        )
    hidden = heads * config.head_dim
    return config.replace(hidden_size=hidden, num_attention_heads=heads, intermediate_size=4 * hidden)


# --- Modules ----------------------------------------------------------------------------------------------------


@flax.struct.dataclass
class DiscriminatorOutput:
    logits: Array  # [B, T]: per token, the logit that it was replaced


@flax.struct.dataclass
class PretrainingOutput:
    mlm_logits: Array  # the generator's, [B, P, V] (or [B, T, V] without masked_positions)
    discriminator_logits: Array  # [B, T]


_ACTIVATION_AXES = ("batch", "length", "embed")


def _dense(c: ElectraConfig, features: int, kernel_axes, name: str) -> nn.Module:
    return layers.dense(features, kernel_axes=kernel_axes, bias_axes=kernel_axes[-1:], init_range=c.initializer_range,
                        dtype=c.compute_dtype, param_dtype=c.weights_dtype, name=name)  # fmt: skip


def _run(stack: Transformer, ids, attention_mask, token_type_ids, position_ids, segment_ids, deterministic, rows):
    return stack(ids, attention_mask=attention_mask, segment_ids=segment_ids, token_type_ids=token_type_ids,
                 position_ids=position_ids, deterministic=deterministic, output_positions=rows)  # fmt: skip


class ElectraModel(nn.Module):
    """The backbone (Hugging Face's `ElectraModel`): embeddings [B, T, E] -> `embeddings_project` to H when E != H ->
    post-LN encoder -> hidden states [B, T, H], no pooler. With `output_positions` [B, P] only those rows, [B, P, H]
    (the last layer computes nothing else)."""

    config: ElectraConfig

    def setup(self):
        self.embeddings = self.config.embeddings()
        self.encoder = Transformer(self.config.transformer, embeddings=self.embeddings)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, segment_ids=None,
                 deterministic: bool = True, output_positions=None) -> Array:  # fmt: skip
        return _run(self.encoder, input_ids, attention_mask, token_type_ids, position_ids, segment_ids, deterministic,
                    output_positions)  # fmt: skip

    def attend(self, x: Array) -> Array:
        """Logits against the (tied) word table: [..., E] -> [..., V]."""
        return self.embeddings.attend(x)


class ElectraDiscriminatorPredictions(nn.Module):
    """dense H -> H, the config's activation, dense H -> 1: hidden [B, T, H] -> logits [B, T]."""

    config: ElectraConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = self.config
        x = nn.with_logical_constraint(_dense(c, c.hidden_size, ("embed", "mlp"), "dense")(x), _ACTIVATION_AXES)
        return _dense(c, 1, ("embed", None), "dense_prediction")(layers.activation(c.hidden_act)(x))[..., 0]


class ElectraGeneratorPredictions(nn.Module):
    """dense H -> E, gelu (always: Hugging Face's choice, whatever hidden_act), LayerNorm: [.., H] -> [.., E]."""

    config: ElectraConfig

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = self.config
        x = nn.with_logical_constraint(_dense(c, c.embedding_size, ("mlp", "embed"), "dense")(x), _ACTIVATION_AXES)
        x = layers.activation("gelu")(x)
        return layers.layer_norm(c.layer_norm_eps, c.compute_dtype, c.weights_dtype, name="LayerNorm")(x)


class ElectraLMHead(nn.Module):
    """`generator_lm_head`: the word table (tied, passed as `attend`) plus a bias of its own: [.., E] -> [.., V]."""

    config: ElectraConfig

    @nn.compact
    def __call__(self, x: Array, attend) -> Array:
        c = self.config
        bias = self.param("bias", layers.zeros_init(("vocab",)), (c.vocab_size,), c.weights_dtype)
        return nn.with_logical_constraint(attend(x) + bias.astype(c.compute_dtype), ("batch", "length", "vocab"))


class ElectraDiscriminator(nn.Module):
    """Hugging Face's `ElectraForPreTraining`: `__call__(input_ids, attention_mask=None, token_type_ids=None,
    position_ids=None, segment_ids=None, deterministic=True) -> DiscriminatorOutput(logits [B, T])`."""

    config: ElectraConfig

    def setup(self):
        self.electra = ElectraModel(self.config)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(self.config)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, segment_ids=None,
                 deterministic: bool = True) -> DiscriminatorOutput:  # fmt: skip
        hidden = self.electra(input_ids, attention_mask, token_type_ids, position_ids, segment_ids, deterministic)
        return DiscriminatorOutput(logits=self.discriminator_predictions(hidden))


class ElectraGenerator(nn.Module):
    """Hugging Face's `ElectraForMaskedLM`, `config` the generator's own (e.g. `generator_config(discriminator)`):
    `__call__(input_ids, attention_mask=None, token_type_ids=None, masked_positions=None, position_ids=None,
    segment_ids=None, deterministic=True) -> MaskedLMOutput(mlm_logits)`, [B, P, V] at `masked_positions` [B, P]
    (the last layer and the vocabulary projection run only there) or [B, T, V] without them."""

    config: ElectraConfig

    def setup(self):
        self.electra = ElectraModel(self.config)
        self.generator_predictions = ElectraGeneratorPredictions(self.config)
        self.generator_lm_head = ElectraLMHead(self.config)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, masked_positions=None, position_ids=None,
                 segment_ids=None, deterministic: bool = True) -> MaskedLMOutput:  # fmt: skip
        hidden = self.electra(
            input_ids, attention_mask, token_type_ids, position_ids, segment_ids, deterministic, masked_positions
        )
        return MaskedLMOutput(self.generator_lm_head(self.generator_predictions(hidden), self.electra.attend))


class ElectraPretrainingModel(nn.Module):
    """Generator and discriminator over one shared `Embeddings` (see the module docstring); `config` is the
    discriminator's, the generator's is `generator_config(config)`.

    Methods (`model.apply(variables, ..., method="generator")` etc.):
      generator(input_ids, attention_mask=None, token_type_ids=None, masked_positions=None, position_ids=None,
        segment_ids=None, deterministic=True) -> MaskedLMOutput(mlm_logits [B, P, V], or [B, T, V])
      discriminator(input_ids, attention_mask=None, token_type_ids=None, position_ids=None, segment_ids=None,
        deterministic=True) -> DiscriminatorOutput(logits [B, T])
      __call__(input_ids, attention_mask=None, token_type_ids=None, masked_positions=None,
        discriminator_input_ids=None, position_ids=None, segment_ids=None, deterministic=True)
        -> PretrainingOutput(mlm_logits, discriminator_logits): the generator on `input_ids`, the discriminator on
        `discriminator_input_ids` (default `input_ids`); `init` with ids alone creates every parameter.
    Dropout masks come from the `dropout` rng by module path: give separate `apply` calls separate keys, or the
    shared embedding dropout repeats its mask.
    """

    config: ElectraConfig

    def setup(self):
        c = self.config
        g = generator_config(c)
        self.electra = ElectraModel(c)
        self.discriminator_predictions = ElectraDiscriminatorPredictions(c)
        # The generator's stack reads the discriminator's Embeddings module: one set of tables and LayerNorm.
        self.generator_encoder = Transformer(g.transformer, embeddings=self.electra.embeddings)
        self.generator_predictions = ElectraGeneratorPredictions(g)
        self.generator_lm_head = ElectraLMHead(g)

    def generator(self, input_ids, attention_mask=None, token_type_ids=None, masked_positions=None, position_ids=None,
                  segment_ids=None, deterministic: bool = True) -> MaskedLMOutput:  # fmt: skip
        hidden = _run(self.generator_encoder, input_ids, attention_mask, token_type_ids, position_ids, segment_ids,
                      deterministic, masked_positions)  # fmt: skip
        return MaskedLMOutput(self.generator_lm_head(self.generator_predictions(hidden), self.electra.attend))

    def discriminator(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, segment_ids=None,
                      deterministic: bool = True) -> DiscriminatorOutput:  # fmt: skip
        hidden = self.electra(input_ids, attention_mask, token_type_ids, position_ids, segment_ids, deterministic)
        return DiscriminatorOutput(logits=self.discriminator_predictions(hidden))

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, masked_positions=None,
                 discriminator_input_ids=None, position_ids=None, segment_ids=None,
                 deterministic: bool = True) -> PretrainingOutput:  # fmt: skip
        common = (position_ids, segment_ids, deterministic)
        g = self.generator(input_ids, attention_mask, token_type_ids, masked_positions, *common)
        corrupted = input_ids if discriminator_input_ids is None else discriminator_input_ids
        d = self.discriminator(corrupted, attention_mask, token_type_ids, *common)
        return PretrainingOutput(mlm_logits=g.mlm_logits, discriminator_logits=d.logits)


class ElectraClassificationHead(nn.Module):
    """Hugging Face's: token 0 -> dropout -> dense H -> H -> gelu -> dropout -> out_proj H -> labels (no pooler)."""

    config: ElectraConfig
    num_labels: int

    @nn.compact
    def __call__(self, x: Array, deterministic: bool) -> Array:
        c = self.config
        rate = c.hidden_dropout_prob if c.classifier_dropout is None else c.classifier_dropout
        x = nn.Dropout(rate)(x, deterministic=deterministic)
        x = layers.activation("gelu")(_dense(c, c.hidden_size, ("embed", "mlp"), "dense")(x))
        x = nn.Dropout(rate)(x, deterministic=deterministic)
        return _dense(c, self.num_labels, ("embed", None), "out_proj")(x)


class ElectraForSequenceClassification(nn.Module):
    """Hugging Face's `ElectraForSequenceClassification` (`num_labels=1`: regression): `__call__(input_ids,
    attention_mask=None, token_type_ids=None, position_ids=None, segment_ids=None, deterministic=True)
    -> ClassificationOutput(logits [B, num_labels])`."""

    config: ElectraConfig
    num_labels: int = 2

    def setup(self):
        self.electra = ElectraModel(self.config)
        self.classifier = ElectraClassificationHead(self.config, self.num_labels)

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None, segment_ids=None,
                 deterministic: bool = True) -> ClassificationOutput:  # fmt: skip
        common = (position_ids, segment_ids, deterministic)
        # "cls" reads token 0 only, so the last layer computes only that row.
        rows = jnp.zeros((input_ids.shape[0], 1), jnp.int32) if self.config.pooling == "cls" else None
        hidden = self.electra(input_ids, attention_mask, token_type_ids, *common, rows)
        pooled = layers.POOLINGS[self.config.pooling](hidden, attention_mask)
        return ClassificationOutput(logits=self.classifier(pooled, deterministic))


# --- The family record (sslm_jax.models.registry) -------------------------------------------------------------

# `config.model` fields that decide the parameters' shapes or meaning.
SHAPE_FIELDS = (*bert.SHAPE_FIELDS, "generator_hidden_fraction")
# `config.model` fields passed to ElectraConfig as they are.
_SETTINGS = ("max_position_embeddings", "type_vocab_size", "hidden_act", "hidden_dropout_prob",
             "attention_probs_dropout_prob", "dtype", "param_dtype", "remat")  # fmt: skip
_DEFAULTS = {"pooling": "cls"}  # settings that older runs' configs lack


def config_from_settings(m, vocab_size: int) -> ElectraConfig:
    """The (discriminator's) ElectraConfig of a run's `config.model`; `m.vocab_size` 0 takes the vocabulary's size,
    `m.generator_hidden_fraction` 0 (or absent) the size's default (GENERATOR_FRACTIONS). ValueError (one line) when
    the fraction does not give whole generator heads. Example: size "small", vocab 8192 -> hidden 256, generator 64.
    """
    if m["vocab_size"] and m["vocab_size"] < vocab_size:
        raise ValueError(
            f"vocab_size={m['vocab_size']} is smaller than the vocabulary ({vocab_size} tokens); use 0 to take the "
            "vocabulary's size"
        )
    fraction = m.get("generator_hidden_fraction", 0.0)
    config = ElectraConfig.from_size(
        m["size"],
        vocab_size=m["vocab_size"] or vocab_size,
        attention_implementation=m["attention_implementation"] or None,
        **{k: m[k] for k in _SETTINGS},
        **{k: m.get(k, default) for k, default in _DEFAULTS.items()},
        **({"generator_hidden_fraction": fraction} if fraction else {}),
    )
    generator_config(config)  # fail at start-up, not at the first step
    return config


def settings_from_hf(d: dict) -> dict[str, Any]:
    """A Hugging Face ELECTRA config.json -> `config.model` settings (SHAPE_FIELDS), its size named from SIZES (a
    discriminator's: a generator alone is none of them); `generator_hidden_fraction` 0, the size's default."""
    hf = ElectraConfig.from_hf_dict(d)
    size = size_of(hf)
    if size is None:
        shape = {k: getattr(hf, k) for k in SIZES["base"]}
        raise ValueError(f"an ELECTRA with {shape} is none of sslm_jax's model sizes ({', '.join(SIZES)})")
    if hf.layer_norm_eps != 1e-12:
        raise ValueError(f"layer_norm_eps={hf.layer_norm_eps}; sslm_jax's ELECTRA sizes use 1e-12")
    return {**{f: getattr(hf, f) for f in bert.SHAPE_FIELDS[1:]}, "size": size, "generator_hidden_fraction": 0.0}


def _stack_flops_per_token(c: ElectraConfig, seq_len: int) -> int:
    """Per token and layer: Q, K, V, output 8·H², FFN 4·H·I, attention 4·L·H; plus a projection 2·E·H."""
    h = c.hidden_size
    project = 2 * c.embedding_size * h if c.embedding_size != h else 0
    return c.num_hidden_layers * (8 * h * h + 4 * h * c.intermediate_size + 4 * seq_len * h) + project


def train_flops_per_sequence(config: ElectraConfig, seq_len: int, num_predictions: int | None) -> float:
    """Model FLOPs of one training sequence, 3 × forward (remat not credited): the discriminator and its head
    (2·H² + 2·H) at every position, plus the generator's stack and its head (2·H_g·E + 2·E·V) at the
    `num_predictions` masked positions (None: every position). `num_predictions=0` (fine-tuning, no generator) counts
    the discriminator's stack alone."""
    if num_predictions == 0:
        return 3.0 * seq_len * _stack_flops_per_token(config, seq_len)
    g, h, e = generator_config(config), config.hidden_size, config.embedding_size
    predictions = seq_len if num_predictions is None else num_predictions
    discriminator = seq_len * (_stack_flops_per_token(config, seq_len) + 2 * h * h + 2 * h)
    generator = seq_len * _stack_flops_per_token(g, seq_len) + predictions * 2 * e * (g.hidden_size + g.vocab_size)
    return 3.0 * float(discriminator + generator)


def _is_backbone(params) -> bool:
    return "embeddings" in params and "encoder" in params


def _family():
    from sslm_jax.models.registry import ModelFamily

    return ModelFamily(
        name="electra",
        shape_fields=SHAPE_FIELDS,
        config_from_settings=config_from_settings,
        heads={
            "pretraining": lambda c, n: ElectraPretrainingModel(c),
            "discriminator": lambda c, n: ElectraDiscriminator(c),
            "generator": lambda c, n: ElectraGenerator(generator_config(c)),
            "classification": lambda c, n: ElectraForSequenceClassification(c, num_labels=n),
            "encoder": lambda c, n: ElectraModel(c),
        },
        backbone="electra",
        is_backbone=_is_backbone,
        hf_model_type="electra",
        settings_from_hf=settings_from_hf,
        train_flops=train_flops_per_sequence,
    )


FAMILY = _family()

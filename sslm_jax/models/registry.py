"""Model families by name: what the trainer, checkpoints and inference need to know about a model, in one record.

    family = registry.get("bert")                                  # config.model.family
    model_config = family.config_from_settings(config.model, vocab_size=8192)
    model = family.heads["pretraining"](model_config, num_labels=0)

Each family's module (models/bert.py, ...) defines its `FAMILY`; `BUILTIN` below names the module, so adding a
family is a new file plus one line here. Research code can also `register` a family of its own.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

import flax.linen as nn

from sslm_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """A model family (BERT, GPT, ...).

    Attributes:
      name: the `config.model.family` value.
      shape_fields: `config.model` fields that decide the parameters' shapes or meaning: a checkpoint saved with
        other values belongs to another model (dropout, dtypes and remat may change between runs).
      config_from_settings: (`config.model` mapping, vocabulary size) -> the model's config; ValueError (one
        line) on a bad setting. `settings["vocab_size"]` 0 means the vocabulary's size.
      heads: head name -> `(model_config, num_labels) -> nn.Module`; the head a run trains is saved as
        `config.model.head` so inference rebuilds the same module.
      backbone: the parameter subtree that every head shares ("bert"); a bare backbone's tree (no heads) is matched
        as that subtree when parameters are transplanted between heads.
      is_backbone: params -> whether the tree is a bare backbone (e.g. {"embeddings", "encoder", "pooler"}).
      hf_model_type: config.json's `model_type` of the Hugging Face twin.
      settings_from_hf: a Hugging Face config.json dict -> `config.model` settings (shape_fields); ValueError when
        the checkpoint is none of the family's sizes.
      train_flops: (model_config, seq_len, num_predictions or None = every position) -> model FLOPs of one training
        sequence (forward + backward), for MFU.
      init_cache: causal families: (model_config, batch, max_length) -> an empty KV cache for generation; None
        for encoders.
    """

    name: str
    shape_fields: tuple[str, ...]
    config_from_settings: Callable[[Mapping[str, Any], int], Any]
    heads: Mapping[str, Callable[[Any, int], nn.Module]]
    backbone: str
    is_backbone: Callable[[Mapping[str, Any]], bool]
    hf_model_type: str
    settings_from_hf: Callable[[dict], dict[str, Any]]
    train_flops: Callable[[Any, int, int | None], float]
    init_cache: Callable[[Any, int, int], Any] | None = None

    def config_for(self, model_settings: Mapping[str, Any], vocab_size: int):
        """`config_from_settings`, its ValueError as one ConfigError line naming `config.model`."""
        try:
            return self.config_from_settings(model_settings, vocab_size)
        except ValueError as e:
            raise ConfigError(f"config.model: {e}") from None

    def model(self, model_config, head: str, *, num_labels: int = 0) -> nn.Module:
        if head not in self.heads:
            raise ConfigError(f"model family {self.name!r} has no head {head!r}; it has {', '.join(self.heads)}")
        return self.heads[head](model_config, num_labels)


# family name -> the module that defines its FAMILY (imported on first use).
BUILTIN = {
    "bert": "sslm_jax.models.bert",
    "gpt": "sslm_jax.models.gpt",
    "electra": "sslm_jax.models.electra",
}
_FAMILIES: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    _FAMILIES[family.name] = family
    return family


def get(name: str) -> ModelFamily:
    """The family called `name`; ConfigError (one line) naming the known ones otherwise."""
    if name not in _FAMILIES and name in BUILTIN:
        register(importlib.import_module(BUILTIN[name]).FAMILY)
    if name not in _FAMILIES:
        raise ConfigError(f"config.model.family={name!r} is unknown; use one of {', '.join(names())}")
    return _FAMILIES[name]


def names() -> list[str]:
    """Every family: the built-in ones and any registered by a user."""
    return sorted(set(BUILTIN) | set(_FAMILIES))


def by_hf_model_type(model_type: str) -> ModelFamily | None:
    """The family whose Hugging Face twin has this `model_type`, or None."""
    for name in BUILTIN:
        get(name)
    return next((f for f in _FAMILIES.values() if f.hf_model_type == model_type), None)

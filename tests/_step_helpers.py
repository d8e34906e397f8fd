"""A tiny deterministic BERT and random batches in the data contract's format, for the trainer tests."""

from __future__ import annotations

import numpy as np

from sslm_jax.models.bert import BertConfig, BertForPreTraining

VOCAB = 64


def tiny_config(**overrides) -> BertConfig:
    """2 layers, hidden 32, 2 heads, dropout 0: small enough to compile fast, divisible by every test mesh."""
    fields = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return BertConfig(**{**fields, **overrides})


def tiny_model(**overrides) -> BertForPreTraining:
    return BertForPreTraining(tiny_config(**overrides))


def random_batch(batch_size=16, seq_len=16, predictions=4, *, seed=0, padded_rows=0) -> dict[str, np.ndarray]:
    """Random pretraining batch: variable lengths, two segments, 1..P real predictions per row.

    The last `padded_rows` rows are eval padding (attention_mask 0, masked_weights 0).
    """
    rng = np.random.RandomState(seed)
    lengths = rng.randint(seq_len // 2, seq_len + 1, batch_size)
    positions = np.arange(seq_len)
    attention_mask = (positions[None, :] < lengths[:, None]).astype(np.int32)
    split = lengths // 2
    token_type_ids = ((positions[None, :] >= split[:, None]) & (attention_mask > 0)).astype(np.int32)
    input_ids = np.where(attention_mask > 0, rng.randint(4, VOCAB, (batch_size, seq_len)), 0).astype(np.int32)
    masked_positions = np.zeros((batch_size, predictions), np.int32)
    masked_weights = np.zeros((batch_size, predictions), np.float32)
    for row in range(batch_size):
        count = rng.randint(1, predictions + 1)  # unequal numbers of predictions per row
        masked_positions[row, :count] = np.sort(rng.choice(np.arange(1, lengths[row]), count, replace=False))
        masked_weights[row, :count] = 1.0
    masked_ids = np.where(masked_weights > 0, rng.randint(4, VOCAB, (batch_size, predictions)), 0).astype(np.int32)
    batch = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=token_type_ids,
        segment_ids=attention_mask.copy(),
        masked_positions=masked_positions,
        masked_ids=masked_ids,
        masked_weights=masked_weights,
        nsp_label=rng.randint(0, 2, batch_size).astype(np.int32),
    )
    if padded_rows:
        for key in ("attention_mask", "segment_ids", "token_type_ids", "input_ids", "masked_weights"):
            batch[key][-padded_rows:] = 0
    return batch

"""Causal-LM batches in one tf.data graph: documents -> ids + end-of-text -> packed rows of `max_seq_len`.

    ds = create_dataset(config.data, tokenizer, split="train", per_host_batch=32, seed=0,
                        max_position_embeddings=1024)
    batch = next(PipelineIterator(ds))       # BATCH_SPEC below

The path, per host: documents (train: shuffled, repeated) -> groups of DOCUMENTS_PER_GROUP -> tokenize, each
document followed by the end-of-text id -> one token stream cut into rows of exactly `max_seq_len` tokens (the carry
between groups lives in `Dataset.scan`'s checkpointable state; a row may hold the end of one document and the start
of the next) -> (train) shuffled rows, full batches | (eval) every token once, the last row and batch padded.

Rows carry `segment_ids` (1, 2, ... per document in the row, 0 = padding) and `position_ids` that restart at 0 at
each document start: with `data.segment_attention` the model attends only within a document and positions are
per document; without it, a row is one window of the stream (GPT-2 / HF `run_clm`). The objective predicts token
t+1 from position t wherever `loss_weights[t + 1]` > 0: every real token but a row's first. Positions count within
the part of a document that is in the row: a row that starts mid-document starts it at 0 (under segment
attention the row's earlier tokens are not visible). A document's first token stays a target, predicted from the
previous document's end-of-text (which, under segment attention, sees only that document): GPT-2's stream
training learns what follows end-of-text the same way; HF's flattening collator masks that label instead.

Exact resume, per-host sharding and exact eval work as in pretraining.py: the same seeded shuffles and counters,
one `PipelineIterator`.
"""

from __future__ import annotations

import numpy as np

from sslm_jax.data.tf_setup import tf

from sslm_jax.data import packing  # noqa: E402
from sslm_jax.data.pretraining import DOCUMENT_SHUFFLE_BUFFER, DOCUMENTS_PER_GROUP, pad_rows, shuffle_seed  # noqa: E402
from sslm_jax.errors import ConfigError  # noqa: E402

MIN_SEQ_LEN = 4
BATCH_SPEC = {
    "input_ids": (np.int32, "B L"),
    "attention_mask": (np.int32, "B L"),  # 1 = real token, 0 = padding
    "segment_ids": (np.int32, "B L"),  # 1..k = document within the row, 0 = padding
    "position_ids": (np.int32, "B L"),  # position within the token's document, as far as it is in this row
    "loss_weights": (np.float32, "B L"),  # weight of token t as the target predicted at position t - 1
}
_DOC_SHUFFLE, _ROW_SHUFFLE = 3, 4


def validate_settings(data_config, *, max_position_embeddings: int) -> None:
    """ConfigError (one line naming the setting) if the causal-LM settings of `config.data` are unusable."""
    c = data_config
    if not MIN_SEQ_LEN <= c.max_seq_len <= max_position_embeddings:
        raise ConfigError(
            f"config.data.max_seq_len={c.max_seq_len} must be between {MIN_SEQ_LEN} and the model's "
            f"max_position_embeddings={max_position_embeddings}"
        )
    if c.shuffle_buffer < 1:
        raise ConfigError(f"config.data.shuffle_buffer={c.shuffle_buffer} must be at least 1")


def create_dataset(
    data_config,
    tokenizer,
    *,
    split: str,
    per_host_batch: int,
    seed: int,
    max_position_embeddings: int,
    process_index: int = 0,
    process_count: int = 1,
) -> tf.data.Dataset:
    """This host's causal-LM batches (BATCH_SPEC) for `split` "train" (infinite) or "eval" (one pass)."""
    validate_settings(data_config, max_position_embeddings=max_position_embeddings)
    from sslm_jax.data import sources

    documents = sources.documents(data_config, split=split, process_index=process_index, process_count=process_count)
    return causal_lm_dataset(
        documents,
        tokenizer,
        max_seq_len=data_config.max_seq_len,
        train=split == "train",
        per_host_batch=per_host_batch,
        seed=seed,
        shuffle_buffer=data_config.shuffle_buffer,
        process_index=process_index,
    )


def causal_lm_dataset(
    documents: tf.data.Dataset,
    tokenizer,
    *,
    max_seq_len: int,
    train: bool,
    per_host_batch: int,
    seed: int,
    shuffle_buffer: int,
    process_index: int = 0,
) -> tf.data.Dataset:
    """`create_dataset` for any dataset of scalar tf.string documents (the settings are not validated here)."""
    docs = documents
    if train:
        docs = docs.shuffle(
            DOCUMENT_SHUFFLE_BUFFER, seed=shuffle_seed(seed, process_index, _DOC_SHUFFLE), reshuffle_each_iteration=True
        ).repeat()
    streams = docs.batch(DOCUMENTS_PER_GROUP).map(
        lambda d: packing.document_stream(tokenizer.tokenize(d), sep_id=tokenizer.eot_id),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    chunks = packing.chunk_dataset(streams, chunk=max_seq_len, finite=not train)
    narrow = tf.uint16 if tokenizer.vocab_size <= 1 << 16 and max_seq_len < 1 << 16 else tf.int32
    rows = chunks.map(
        lambda ids, starts, lengths: {k: tf.cast(v, narrow) for k, v in causal_rows(ids, starts, lengths).items()},
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    ).unbatch()
    if train:
        rows = rows.shuffle(shuffle_buffer, seed=shuffle_seed(seed, process_index, _ROW_SHUFFLE))
        batches = rows.batch(per_host_batch, drop_remainder=True)
    else:
        batches = rows.batch(per_host_batch).map(lambda b: pad_rows(b, per_host_batch))
    batches = batches.map(finish_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


def causal_rows(ids: tf.Tensor, starts: tf.Tensor, lengths: tf.Tensor) -> dict[str, tf.Tensor]:
    """Chunks [n, L] of the token stream -> rows with per-document segment ids and positions.

    Example, L=6: ids [[7, 8, 50, 9, 50, 0]], starts [[F, F, F, T, F, F]] (the row begins mid-document),
    lengths [5] -> segment_ids [[1, 1, 1, 2, 2, 0]], position_ids [[0, 1, 2, 0, 1, 0]].
    """
    n, length = tf.shape(ids)[0], tf.shape(ids)[1]
    real = tf.range(length)[None, :] < lengths[:, None]
    starts = tf.logical_and(starts, real)
    doc = tf.cumsum(tf.cast(starts, tf.int32), axis=1) + 1 - tf.cast(starts[:, :1], tf.int32)
    doc = tf.where(real, doc, 0)
    # A document's first index in its row: the minimum index over its segment (rows offset so segments stay apart).
    index = tf.broadcast_to(tf.range(length)[None, :], [n, length])
    keys = doc + (length + 1) * tf.range(n)[:, None]
    first = tf.math.unsorted_segment_min(index, keys, num_segments=n * (length + 1))
    positions = tf.where(real, index - tf.gather(first, keys), 0)
    return {"input_ids": tf.where(real, ids, 0), "segment_ids": doc, "position_ids": positions}


def finish_batch(rows: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Compact rows [B, L] -> BATCH_SPEC: int32 fields, attention_mask and loss_weights from the segment ids."""
    rows = {k: tf.cast(v, tf.int32) for k, v in rows.items()}
    attention_mask = tf.cast(rows["segment_ids"] > 0, tf.int32)
    return {**rows, "attention_mask": attention_mask, "loss_weights": tf.cast(attention_mask, tf.float32)}

"""Pretraining batches, all in one tf.data graph: documents -> tokenize -> pack or pair -> shuffle -> batch -> mask.

    ds = create_dataset(config.data, tokenizer, split="train", per_host_batch=config.batch_size // process_count,
                        seed=config.seed, max_position_embeddings=config.model.max_position_embeddings)
    it = PipelineIterator(ds)
    batch = next(it)          # dict of numpy arrays, the keys and shapes of BATCH_SPEC
    it.save(workdir / "data")  # ... later, in a fresh process: it.restore(workdir / "data")

The path, per host (documents are already sharded per host by `sources.documents`):

    train: documents -> shuffle (DOCUMENT_SHUFFLE_BUFFER, reshuffled every epoch) -> repeat
    both:  -> groups of DOCUMENTS_PER_GROUP -> tokenize -> "mlm": pack (packing.py) | "nsp"/"sop": pairs (pairs.py)
    train: -> shuffle rows (config.data.shuffle_buffer) -> batch (drop remainder)
    eval:  -> batch, last batch padded with empty rows
    both:  -> mask (masking.py, seed = (seed, process, batch index)) -> prefetch

Determinism and exact resume: every random choice is either a seeded `Dataset.shuffle` or a stateless random op
keyed by (seed, process index, running group/batch index), and the running indices come from
`Dataset.enumerate`, whose counter is part of the iterator state. Training masks are therefore different in every
batch of every epoch, evaluation masks are the same on every pass, the same seed always gives the same batches,
and `PipelineIterator.save/restore` continues bit-identically. Nothing in the graph is a `py_function`.

Checkpoint cost: the saved iterator holds both shuffle buffers (rows are stored compactly, uint16 ids: about
`shuffle_buffer * max_seq_len * 5` bytes) plus up to DOCUMENT_SHUFFLE_BUFFER documents' text and a few
prefetched batches: ~7 MB at 10,000 x 128, written in about a second (BENCHMARKS.md). Keep `shuffle_buffer` in
the thousands or tens of thousands.

Evaluation is exact: the last batch is padded with empty rows (attention_mask 0, masked_weights 0; a row is real
iff `attention_mask[:, 0] == 1`, use that as the NSP example weight). Hosts may hold different numbers of eval
batches; a multi-host evaluation loop keeps feeding padding batches until every host is done.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from sslm_jax.data.tf_setup import tf

from sslm_jax.data import graph_records, masking, packing, pairs  # noqa: E402
from sslm_jax.data.masking import MASKING, Masker  # noqa: E402  (`masking` is also a setting's name below)
from sslm_jax.errors import CheckpointError, ConfigError  # noqa: E402

OBJECTIVES = ("mlm", "nsp", "sop")
# Documents tokenized (and paired) together in one op call. Per-call overhead dominates for short documents
# (one-sentence documents: 256 per call tokenize ~2x faster than 64), while a group of 256 long documents
# (Wikipedia articles) is still only a few MB. NSP draws its random next segments from the same group.
DOCUMENTS_PER_GROUP = 256
# Training documents are shuffled before grouping so that packing and random next segments differ every epoch.
DOCUMENT_SHUFFLE_BUFFER = 1024
MIN_SEQ_LEN = 8

# The batch every split yields: key -> (dtype, shape), B = per-host batch, L = max_seq_len,
# P = max_predictions_per_seq.
BATCH_SPEC = {
    "input_ids": (np.int32, "B L"),  # masked tokens already replaced (80 % [MASK] / 10 % random / 10 % same)
    "attention_mask": (np.int32, "B L"),  # 1 = real token, 0 = padding
    "token_type_ids": (np.int32, "B L"),  # segment A = 0 / B = 1 (pairs); all 0 in "mlm"
    "segment_ids": (np.int32, "B L"),  # "mlm": 1..k = document within the row, 0 = padding; pairs: attention_mask
    "masked_positions": (np.int32, "B P"),  # padded with 0
    "masked_ids": (np.int32, "B P"),  # original ids at masked_positions (labels), padded with 0
    "masked_weights": (np.float32, "B P"),  # 1.0 for real predictions
    "nsp_label": (np.int32, "B"),  # NSP: 1 = random next; SOP: 1 = swapped; 0 in "mlm"
}

# Stream numbers folded into the seed, one per independent source of randomness.
_PAIR_STREAM, _MASK_STREAM, _DOC_SHUFFLE, _ROW_SHUFFLE = 1, 2, 3, 4


def validate_settings(data_config, *, max_position_embeddings: int) -> None:
    """Raises ConfigError (one line naming the setting) if the pretraining settings of `config.data` are unusable."""
    c = data_config
    if c.objective not in OBJECTIVES:
        raise ConfigError(f"config.data.objective={c.objective!r} is unknown; use one of {', '.join(OBJECTIVES)}")
    if "whole_word_masking" in c:  # a config written before data.masking existed
        raise ConfigError(
            "config.data.whole_word_masking was replaced by config.data.masking='word' (False: 'token'); "
            "set that instead"
        )
    if c.masking not in MASKING:
        raise ConfigError(f"config.data.masking={c.masking!r} is unknown; use one of {', '.join(MASKING)}")
    if c.tokenizer != "wordpiece":  # rows are [CLS] a [SEP] (b [SEP]) with [MASK]s; word/span units are "##" pieces
        raise ConfigError(
            f"config.data.tokenizer={c.tokenizer!r}: masked-LM pretraining needs BERT's [CLS], [SEP] and [MASK] "
            f"tokens and \"##\" word pieces; use config.data.tokenizer='wordpiece' (byte-level BPE is for causal LMs)"
        )
    if c.max_seq_len < MIN_SEQ_LEN:
        raise ConfigError(f"config.data.max_seq_len={c.max_seq_len} is below {MIN_SEQ_LEN}; use 128 or 512")
    if c.max_seq_len > max_position_embeddings:
        raise ConfigError(
            f"config.data.max_seq_len={c.max_seq_len} exceeds the model's max_position_embeddings="
            f"{max_position_embeddings}; lower it or raise config.model.max_position_embeddings"
        )
    if not 1 <= c.max_predictions_per_seq <= c.max_seq_len:
        raise ConfigError(
            f"config.data.max_predictions_per_seq={c.max_predictions_per_seq} must be between 1 and "
            f"max_seq_len={c.max_seq_len} (BERT: 20 for 128, 80 for 512)"
        )
    if not 0.0 < c.mask_rate < 1.0:
        raise ConfigError(f"config.data.mask_rate={c.mask_rate} must be strictly between 0 and 1 (BERT: 0.15)")
    if not 0.0 <= c.short_seq_prob <= 1.0:
        raise ConfigError(f"config.data.short_seq_prob={c.short_seq_prob} must be between 0 and 1 (BERT: 0.1)")
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
    """This host's pretraining batches (BATCH_SPEC) for `split` "train" (infinite) or "eval" (one pass).

    Args:
      data_config: `config.data` (source, objective, max_seq_len, masking and shuffling fields; configs/base.py).
      tokenizer: a `sslm_jax.data.tokenizer.WordPieceTokenizer` (tokenize, vocab, special ids).
      split: "train" (shuffled, repeated, re-masked every epoch) or "eval" (finite, fixed masks, padded).
      per_host_batch: rows per batch on this host (global batch / process_count).
      seed: seeds shuffling, pair creation and masking.
      max_position_embeddings: the model's position table size; max_seq_len may not exceed it.
      process_index, process_count: this host's place among the hosts (documents are sharded per host).
    """
    validate_settings(data_config, max_position_embeddings=max_position_embeddings)
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    if per_host_batch < 1:
        raise ConfigError(
            f"per-host batch {per_host_batch} is below 1: config.batch_size must be at least the number of "
            f"processes ({process_count})"
        )
    from sslm_jax.data import sources  # imported here: its file readers are not needed by pretraining_dataset

    documents = sources.documents(data_config, split=split, process_index=process_index, process_count=process_count)
    c = data_config
    return pretraining_dataset(
        documents,
        tokenizer,
        objective=c.objective,
        max_seq_len=c.max_seq_len,
        max_predictions_per_seq=c.max_predictions_per_seq,
        mask_rate=c.mask_rate,
        masking=c.masking,
        short_seq_prob=c.short_seq_prob,
        train=split == "train",
        per_host_batch=per_host_batch,
        seed=seed,
        shuffle_buffer=c.shuffle_buffer,
        process_index=process_index,
    )


def pretraining_dataset(
    documents: tf.data.Dataset,
    tokenizer,
    *,
    objective: str,
    max_seq_len: int,
    max_predictions_per_seq: int,
    mask_rate: float,
    masking: str,
    short_seq_prob: float,
    train: bool,
    per_host_batch: int,
    seed: int,
    shuffle_buffer: int,
    process_index: int = 0,
) -> tf.data.Dataset:
    """`create_dataset` for any dataset of scalar tf.string documents (the settings are not validated here)."""
    key = tf.constant([seed, process_index], tf.int64)
    docs = documents
    if train:
        docs = docs.shuffle(
            DOCUMENT_SHUFFLE_BUFFER, seed=shuffle_seed(seed, process_index, _DOC_SHUFFLE), reshuffle_each_iteration=True
        ).repeat()
    groups = docs.batch(DOCUMENTS_PER_GROUP)
    if objective == "mlm":
        streams = groups.map(
            lambda d: packing.document_stream(tokenizer.tokenize(d), sep_id=tokenizer.sep_id),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        row_groups = packing.pack_dataset(
            streams, max_seq_len=max_seq_len, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, finite=not train
        )
    elif objective in ("nsp", "sop"):
        pair_key = tf.random.experimental.stateless_fold_in(key, _PAIR_STREAM)
        row_groups = groups.enumerate().map(
            lambda index, d: pairs.sentence_pairs(
                tokenize_sentences(tokenizer, d),
                max_seq_len=max_seq_len,
                objective=objective,
                short_seq_prob=short_seq_prob,
                seed=tf.random.experimental.stateless_fold_in(pair_key, index),
                cls_id=tokenizer.cls_id,
                sep_id=tokenizer.sep_id,
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    else:
        raise ValueError(f"unknown objective {objective!r}; use one of {OBJECTIVES}")

    compact, expand = _compact_codec(vocab_size=tokenizer.vocab_size, max_seq_len=max_seq_len)
    rows = row_groups.map(compact).unbatch()
    if train:
        rows = rows.shuffle(shuffle_buffer, seed=shuffle_seed(seed, process_index, _ROW_SHUFFLE))
        batches = rows.batch(per_host_batch, drop_remainder=True)
    else:
        batches = rows.batch(per_host_batch).map(lambda b: pad_rows(b, per_host_batch))

    masker = Masker.from_tokenizer(
        tokenizer, rate=mask_rate, max_predictions=max_predictions_per_seq, masking=masking
    )
    mask_key = tf.random.experimental.stateless_fold_in(key, _MASK_STREAM)
    batches = batches.enumerate().map(
        lambda index, b: finish_batch(
            expand(b), masker=masker, seed=tf.random.experimental.stateless_fold_in(mask_key, index)
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    options = tf.data.Options()
    options.deterministic = True
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


def tokenize_sentences(tokenizer, documents: tf.Tensor) -> tf.RaggedTensor:
    """tf.string [N] -> token ids ragged [N, (sentences), (pieces)] (sentences as `pairs.split_sentences`).

    Example: ["The cat sat. It slept."] -> [[[ids of "the cat sat ."], [ids of "it slept ."]]].
    """
    sentences = pairs.split_sentences(documents)
    ids = tokenizer.tokenize(sentences.flat_values)
    return tf.RaggedTensor.from_row_splits(ids, sentences.row_splits)


def finish_batch(rows: dict[str, tf.Tensor], *, masker: masking.Masker, seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """Rows [B, L] (input_ids, token_type_ids, segment_ids, nsp_label) -> the masked batch of BATCH_SPEC.

    Example: input_ids [[101, 7, 8, 102, 0]], segment_ids [[1, 1, 1, 1, 0]] -> attention_mask [[1, 1, 1, 1, 0]],
    input_ids e.g. [[101, 103, 8, 102, 0]], masked_positions [[1, 0, ...]], masked_ids [[7, 0, ...]], ...
    """
    attention_mask = tf.cast(rows["segment_ids"] > 0, tf.int32)
    masked = masker(rows["input_ids"], attention_mask, seed=seed)
    return {
        "input_ids": masked["input_ids"],
        "attention_mask": attention_mask,
        "token_type_ids": rows["token_type_ids"],
        "segment_ids": rows["segment_ids"],
        "masked_positions": masked["masked_positions"],
        "masked_ids": masked["masked_ids"],
        "masked_weights": masked["masked_weights"],
        "nsp_label": rows["nsp_label"],
    }


def pad_rows(batch: dict[str, tf.Tensor], size: int) -> dict[str, tf.Tensor]:
    """Pads every field's leading (row) axis with zeros up to `size` rows: empty rows that carry no weight."""

    def pad(x):
        padding = [[0, size - tf.shape(x)[0]]] + [[0, 0]] * (x.shape.rank - 1)
        x = tf.pad(x, padding)
        return tf.ensure_shape(x, [size] + x.shape[1:].as_list())

    return {k: pad(v) for k, v in batch.items()}


def _compact_codec(*, vocab_size: int, max_seq_len: int):
    """(compact, expand): narrow dtypes for rows waiting in the shuffle buffer (it is saved with the iterator)."""
    narrow = {
        "input_ids": tf.uint16 if vocab_size <= 1 << 16 else tf.int32,
        "segment_ids": tf.uint16 if max_seq_len < 1 << 16 else tf.int32,
        "token_type_ids": tf.uint8,
        "nsp_label": tf.uint8,
    }

    def compact(row):
        return {k: tf.cast(v, narrow[k]) for k, v in row.items()}

    def expand(row):
        return {k: tf.cast(v, tf.int32) for k, v in row.items()}

    return compact, expand


def shuffle_seed(seed: int, process_index: int, stream: int) -> int:
    """A distinct, reproducible int64 seed per (seed, process, stream) for `Dataset.shuffle`."""
    return (seed * 1_000_003 + process_index * 10_007 + stream) % (1 << 63)


class PipelineIterator(Iterator):
    """Iterates a batch dataset as dicts of numpy arrays; `save`/`restore` its exact position.

    The position (a `tf.train.Checkpoint` of the tf.data iterator: counters, scan carry, shuffle buffers) goes to
    `<directory>/data_position_process<i>.*`, one per host. Restore into a freshly built dataset of the same
    settings; the batches that follow are bit-identical to those an uninterrupted iterator would have yielded.
    """

    def __init__(self, dataset: tf.data.Dataset, *, process_index: int = 0):
        self._iterator = iter(dataset)
        self._checkpoint = tf.train.Checkpoint(iterator=self._iterator)
        self._process_index = process_index

    def __next__(self) -> dict[str, np.ndarray]:
        with graph_records.data_errors():
            return {k: v.numpy() for k, v in next(self._iterator).items()}

    def _prefix(self, directory) -> str:
        return os.path.join(os.fspath(directory), f"data_position_process{self._process_index}")

    def save(self, directory) -> str:
        """Writes the position under `directory` (created if needed; local or any tf.io.gfile path)."""
        tf.io.gfile.makedirs(os.fspath(directory))
        return self._checkpoint.write(self._prefix(directory))

    def restore(self, directory) -> None:
        """Moves to the position saved under `directory`; CheckpointError if there is none."""
        prefix = self._prefix(directory)
        if not tf.io.gfile.exists(prefix + ".index"):
            raise CheckpointError(f"no saved data position {prefix}.index; was the pipeline saved with this process?")
        try:
            self._checkpoint.read(prefix).assert_consumed()
        except (tf.errors.OpError, AssertionError) as e:
            raise CheckpointError(
                f"saved data position {prefix} does not fit this pipeline (were the data settings changed?): "
                f"{str(e).splitlines()[0]}"
            ) from e

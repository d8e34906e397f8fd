"""Fine-tuning batches: labelled examples for sentence(-pair) classification and regression, encoded for BERT.

    ds, info = create_classification_dataset(config.data, tokenizer, split="train", per_host_batch=32, seed=0)
    info.label_names   # ("negative", "positive") for glue/sst2; store them with the checkpoint
    next(iter(ds))     # input_ids, attention_mask, token_type_ids [32, max_seq_len] int32,
                       # label [32] int32 (float32 for regression), example_weight [32] float32

This module holds the tf.data path from examples to batches and the in-graph encoding (`pack_inputs`). Where the
examples come from (TFDS or files) is `sslm_jax.data.labelled_sources`'s; `TaskInfo`, label names and the held-out
eval split of files are `sslm_jax.data.labelled_files`'s. The eval split of files also has a host twin without
TensorFlow, `sslm_jax.data.host_finetuning` (what the classification task evaluates on).

The data path, one small step each:
  read    TFDS (`data.source="tfds"`, prepared data only) or tsv / csv / jsonl files (`data.source="files"`):
          `labelled_sources.open_source` -> examples {text_a, text_b (pairs only), label}; labels are ids
  shard   per host: TFDS even sub-splits; files by example (every host reads the file list, takes every n-th row)
  order   train: shuffle, repeat (infinite).  eval: one pass, then weight-0 padding examples so that every host
          yields the same number of full batches and each real example is counted exactly once
  batch   `per_host_batch` examples (static shapes)
  encode  in-graph WordPiece, [CLS] a [SEP] (b [SEP]), longest-first truncation, padding to `max_seq_len`

Every problem with the data or these settings is a `DataError` / `ConfigError` naming the file (and line) or the
setting, raised before anything is read into the pipeline.
"""

from __future__ import annotations

import math


from sslm_jax.data import host_finetuning, labelled_sources
from sslm_jax.data.labelled_files import TaskInfo
from sslm_jax.data.tf_setup import tf
from sslm_jax.errors import DataError

SPLITS = ("train", "eval")


def create_classification_dataset(
    data_config,
    tokenizer,
    *,
    split: str,
    per_host_batch: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
) -> tuple[tf.data.Dataset, TaskInfo]:
    """This host's batches of a labelled split, and what the task is.

    Args:
      data_config: the `data` block of the config (see configs/base.py and configs/glue.py): source, tfds_name /
        train_files / eval_files, format, text_field ("sentence" or "sentence1,sentence2"), label_field,
        label_names, num_labels, metrics, max_seq_len, shuffle_buffer, tfds_* settings, eval_fraction.
      tokenizer: a `sslm_jax.data.tokenizer.WordPieceTokenizer` (tokenize, cls_id, sep_id, pad_id).
      split: "train" (shuffled, infinite) or "eval" (one pass, final batch padded with example_weight 0).
      per_host_batch: examples per batch on this host.
      seed: shuffling seed (train); deterministic for a given seed.
      process_index, process_count: this host among all hosts; each reads a disjoint part of the split.

    Returns:
      (dataset of batch dicts, TaskInfo). Batches: input_ids, attention_mask, token_type_ids int32
      [per_host_batch, max_seq_len]; label [per_host_batch] int32 (float32 for regression); example_weight
      float32 [per_host_batch]. Eval: every host yields the same number of batches.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}; use one of {SPLITS}")
    host_finetuning.check_batching(
        data_config, per_host_batch=per_host_batch, process_index=process_index, process_count=process_count
    )
    source = labelled_sources.open_source(data_config, split=split)
    info = source.info
    pair = info.is_pair
    host_counts = source.host_counts(process_count)
    examples = source.examples(process_index=process_index, process_count=process_count, seed=seed)
    encode = make_encoder(tokenizer, max_seq_len=data_config.max_seq_len, batch_size=per_host_batch, pair=pair)
    if split == "train":
        if host_counts[process_index] == 0:
            raise DataError(
                f"{source.where}: {info.num_examples} train examples cannot be shared by {process_count} hosts"
            )
        ds = examples.shuffle(data_config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
        ds = ds.map(_real_example)
    else:
        # Every host must run the same number of eval steps (the step is a collective), so each pads its part to
        # the largest host's batch count with weight-0 examples.
        num_batches = math.ceil(max(host_counts) / per_host_batch)
        blank = {"text_a": "", "label": tf.zeros([], examples.element_spec["label"].dtype), "example_weight": 0.0}
        if pair:
            blank["text_b"] = ""
        padding = tf.data.Dataset.from_tensors(blank).repeat()
        ds = examples.map(_real_example).concatenate(padding).take(num_batches * per_host_batch)
    ds = ds.batch(per_host_batch, drop_remainder=True)
    ds = ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE), info


def _real_example(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {**example, "example_weight": tf.constant(1.0)}


# --- In-graph encoding ------------------------------------------------------------------------------------------


def longest_first_lengths(len_a: tf.Tensor, len_b: tf.Tensor, budget: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Segment lengths after cutting a pair down to `budget` tokens, longest segment first.

    The shorter segment keeps min(its length, max(budget - the longer's length, budget // 2)) tokens and the
    longer one the rest: the shorter is kept whole when cutting the longer suffices, else both end at about
    budget / 2, the longer one (the second on a tie) keeping the odd token. This is Hugging Face tokenizers'
    `truncation="longest_first"` (behind transformers' `BertTokenizer`); google-research/bert's loop differs only
    there, giving the odd token of a tie to the first segment.

    Example: budget 7: (2, 10) -> (2, 5); (10, 2) -> (5, 2); (9, 6) -> (4, 3); (5, 5) -> (3, 4); (3, 3) -> (3, 3).
    """
    budget = tf.cast(budget, len_a.dtype)
    a_longer = len_a > len_b
    shorter, longer = tf.where(a_longer, len_b, len_a), tf.where(a_longer, len_a, len_b)
    new_shorter = tf.minimum(shorter, tf.maximum(budget - longer, budget // 2))
    new_longer = tf.minimum(longer, budget - new_shorter)
    return tf.where(a_longer, new_longer, new_shorter), tf.where(a_longer, new_shorter, new_longer)


def pack_inputs(
    ids_a: tf.RaggedTensor,
    ids_b: tf.RaggedTensor | None = None,
    *,
    max_seq_len: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
) -> dict[str, tf.Tensor]:
    """BERT inputs from token ids: [CLS] a [SEP] (b [SEP]), truncated longest-first, padded to `max_seq_len`.

    Args:
      ids_a: [B, (n)] ids of the first segments (no special tokens).
      ids_b: [B, (m)] ids of the second segments, or None for single sentences.
      max_seq_len: output length L (special tokens included).
      cls_id, sep_id, pad_id: the vocabulary's special token ids.

    Returns:
      input_ids, attention_mask, token_type_ids: int32 [B, L]; token types are 0 up to the first [SEP], 1 after.

    Example (cls 101, sep 102, pad 0, L = 8): a = [[7, 8, 9]], b = [[5, 6, 4, 3]] ->
      input_ids      [[101, 7, 8, 102, 5, 6, 4, 102]]   (5 = 8 - 3 tokens of text: a keeps 2, b keeps 3)
      attention_mask [[1, 1, 1, 1, 1, 1, 1, 1]]
      token_type_ids [[0, 0, 0, 0, 1, 1, 1, 1]]
    and a alone -> [[101, 7, 8, 9, 102, 0, 0, 0]], mask [[1, 1, 1, 1, 1, 0, 0, 0]], types all 0.
    """
    # Each output position p is filled by arithmetic on the kept lengths na, nb: p = 0 is [CLS], 1..na come from
    # a, na + 1 is [SEP], then nb positions from b and a final [SEP]. Dense gathers instead of ragged concats keep
    # the traced graph small (ragged ops add many shape assertions).
    length = max_seq_len
    len_a = tf.cast(ids_a.row_lengths(), tf.int32)
    if ids_b is None:
        len_a, len_b = tf.minimum(len_a, length - 2), tf.zeros_like(len_a)
    else:
        len_a, len_b = longest_first_lengths(len_a, tf.cast(ids_b.row_lengths(), tf.int32), length - 3)
    pos = tf.range(length, dtype=tf.int32)[tf.newaxis, :]  # [1, L]
    na, nb = len_a[:, tf.newaxis], len_b[:, tf.newaxis]  # [B, 1]
    total = na + 2 if ids_b is None else na + nb + 3

    def take(ids, start):  # [B, L]: ids[b, p - start], clipped into range (used only where in range)
        dense = tf.cast(ids, tf.int32).to_tensor(default_value=pad_id, shape=[None, length])
        index = tf.clip_by_value(pos - start, 0, length - 1) + tf.zeros_like(dense)  # broadcast to [B, L]
        return tf.gather(dense, index, batch_dims=1)

    in_b = (pos >= na + 2) & (pos < total - 1)
    input_ids = tf.where(pos <= na, take(ids_a, 1), tf.where(pos < total, sep_id, pad_id))
    input_ids = tf.where(pos == 0, cls_id, input_ids)
    if ids_b is not None:
        input_ids = tf.where(in_b, take(ids_b, na + 2), input_ids)
    return {
        "input_ids": input_ids,
        "attention_mask": tf.cast(pos < total, tf.int32),
        "token_type_ids": tf.cast((pos >= na + 2) & (pos < total), tf.int32),
    }


def make_encoder(tokenizer, *, max_seq_len: int, batch_size: int, pair: bool):
    """A `tf.data` map function: a batch of examples {text_a, (text_b,) label, example_weight} -> model inputs.

    Example (tokenizer of bert-base-uncased, L = 6, single sentences): {"text_a": ["Hello world!"], "label": [1],
    "example_weight": [1.0]} -> input_ids [[101, 7592, 2088, 999, 102, 0]], attention_mask [[1, 1, 1, 1, 1, 0]],
    token_type_ids [[0, 0, 0, 0, 0, 0]], label [1], example_weight [1.0].
    """

    def encode(examples: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        ids_b = tokenizer.tokenize(examples["text_b"]) if pair else None
        out = pack_inputs(
            tokenizer.tokenize(examples["text_a"]),
            ids_b,
            max_seq_len=max_seq_len,
            cls_id=tokenizer.cls_id,
            sep_id=tokenizer.sep_id,
            pad_id=tokenizer.pad_id,
        )
        out = {k: tf.ensure_shape(v, [batch_size, max_seq_len]) for k, v in out.items()}
        out["label"] = tf.ensure_shape(examples["label"], [batch_size])
        out["example_weight"] = tf.ensure_shape(tf.cast(examples["example_weight"], tf.float32), [batch_size])
        return out

    return encode

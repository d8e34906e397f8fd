"""Fine-tuning inputs on the host, without TensorFlow: the eval split of labelled files as numpy batches, and the
packing of token ids into BERT inputs that `sslm predict` and `sslm serve` share.

    batches, info = create_eval_batches(config.data, tokenizer, per_host_batch=32)
    info.label_names   # ("negative", "positive")
    next(iter(batches))  # input_ids, attention_mask, token_type_ids int32 [32, max_seq_len], label [32] int32
                         # (float32 for regression), example_weight [32] float32 (0 on padding rows)

Each is the host twin of the in-graph `sslm_jax.data.finetuning`: `create_eval_batches` yields, value for value,
the batches of `finetuning.create_classification_dataset(split="eval")` for `data.source="files"`, and `pack` lays
ids out as `finetuning.pack_inputs` does (tests/test_host_finetuning.py and tests/test_classify_pack.py hold each
pair equal). The classification task evaluates files through this module, so `sslm eval` of a classifier trained
on files imports no TensorFlow: tokenizing needs only `tokenizer.encode` (Python strings -> ids), which the host
WordPiece that `sslm eval` loads and the in-graph tokenizer of a training run both offer.
"""

from __future__ import annotations

import math

import numpy as np

from sslm_jax.data import labelled_files
from sslm_jax.errors import ConfigError


def check_batching(data_config, *, per_host_batch: int, process_index: int, process_count: int) -> None:
    """The checks both fine-tuning paths make before reading any data."""
    if per_host_batch < 1:
        raise ConfigError(f"per-host batch size {per_host_batch} must be at least 1")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is not in [0, process_count={process_count})")
    if data_config.max_seq_len < 4:  # [CLS] a [SEP] b [SEP] needs at least one token of text
        raise ConfigError(f"data.max_seq_len={data_config.max_seq_len} leaves no room for text; use 4 or more")


def create_eval_batches(
    data_config, tokenizer, *, per_host_batch: int, process_index: int = 0, process_count: int = 1
) -> tuple["EvalBatches", labelled_files.TaskInfo]:
    """This host's eval batches of labelled files (`data.source="files"`), and what the task is.

    The arguments are `finetuning.create_classification_dataset`'s (see there), less `split` (always "eval") and
    `seed` (eval is read in file order).
    """
    check_batching(data_config, per_host_batch=per_host_batch, process_index=process_index, process_count=process_count)
    split = labelled_files.FileSplit(data_config, split="eval")
    batches = EvalBatches(
        split, tokenizer, max_seq_len=data_config.max_seq_len, per_host_batch=per_host_batch,
        process_index=process_index, process_count=process_count,
    )  # fmt: skip
    return batches, split.info


class EvalBatches:
    """One pass over a host's share of an eval split, each time it is iterated; `len()` batches.

    The host's rows (i, i + n, ... of the split, in file order) come first, then weight-0 padding examples (empty
    texts, label 0) up to the largest host's batch count: every host runs the same number of eval steps (the step
    is a collective) and each real example is counted once. The texts are tokenized once, on the first pass.
    """

    def __init__(self, split, tokenizer, *, max_seq_len: int, per_host_batch: int, process_index: int,
                 process_count: int):  # fmt: skip
        self._texts, self._labels = split.host_rows(process_index, process_count)
        self._width = len(split.info.text_fields)
        self._label_dtype = np.float32 if split.info.is_regression else np.int32
        self._tokenizer, self._max_seq_len, self._batch = tokenizer, max_seq_len, per_host_batch
        self._num_batches = math.ceil(max(split.host_counts(process_count)) / per_host_batch)
        self._cache: list | None = None

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self):
        tok = self._tokenizer
        columns = self._ids()
        for start in range(0, self._num_batches * self._batch, self._batch):
            labels = self._labels[start : start + self._batch]
            padding = self._batch - len(labels)
            ids = [column[start : start + self._batch] + [[]] * padding for column in columns]  # "" has no tokens
            batch = pack(*ids, max_seq_len=self._max_seq_len, cls_id=tok.cls_id, sep_id=tok.sep_id, pad_id=tok.pad_id)
            batch["label"] = np.asarray([*labels, *[0] * padding], self._label_dtype)
            batch["example_weight"] = np.asarray([1.0] * len(labels) + [0.0] * padding, np.float32)
            yield batch

    def _ids(self) -> list[list[list[int]]]:
        """Token ids per text column, computed on the first pass and kept: one `encode` call per column, as the
        in-graph tokenizer of a training run costs ~20 ms per eager call (SST-2 dev: 0.04 s at once, 0.6 s by batch)."""
        if self._cache is None:
            self._cache = [self._tokenizer.encode([t[i] for t in self._texts]) for i in range(self._width)]
        return self._cache


def pack(ids_a, ids_b=None, *, max_seq_len: int, cls_id: int, sep_id: int, pad_id: int) -> dict[str, np.ndarray]:
    """[CLS] a [SEP] (b [SEP]) per row, cut longest-first to `max_seq_len`, padded: numpy int32 [N, max_seq_len].

    The host twin of `data.finetuning.pack_inputs` (same example there): a pair keeps, of its shorter segment,
    min(its length, max(budget - the longer's length, budget // 2)) tokens and the rest of the longer, budget being
    max_seq_len - 3; a single text keeps max_seq_len - 2.
    """
    rows = len(ids_a)
    out = {k: np.zeros((rows, max_seq_len), np.int32) for k in ("input_ids", "attention_mask", "token_type_ids")}
    out["input_ids"][:] = pad_id
    for row in range(rows):
        a = list(ids_a[row])
        if ids_b is None:
            ids, types = [cls_id, *a[: max_seq_len - 2], sep_id], None
        else:
            b = list(ids_b[row])
            budget = max_seq_len - 3
            shorter, longer = sorted((len(a), len(b)))
            keep_shorter = min(shorter, max(budget - longer, budget // 2))
            keep_longer = min(longer, budget - keep_shorter)
            na, nb = (keep_longer, keep_shorter) if len(a) > len(b) else (keep_shorter, keep_longer)
            ids = [cls_id, *a[:na], sep_id, *b[:nb], sep_id]
            types = [0] * (na + 2) + [1] * (nb + 1)
        out["input_ids"][row, : len(ids)] = ids
        out["attention_mask"][row, : len(ids)] = 1
        if types is not None:
            out["token_type_ids"][row, : len(types)] = types
    return out

"""Prompt -> response batches for causal-LM fine-tuning: the loss counts response tokens only.

    ds, stats = create_dataset(config.data, tokenizer, per_host_batch=8, seed=0, max_seq_len=256)   # train
    stats   # SftStats(examples=1000, dropped=2, prompts_cut=15)
    batches, stats = create_eval_batches(config.data, tokenizer, per_host_batch=8, max_seq_len=256)

Files are JSON lines (or tsv / csv with a header) with a prompt and a response field (`data.text_field`,
"prompt,response" by default), read through `files.py` (globs, gs://, .gz). Each example becomes one row:

    ids          = prompt tokens + response tokens + end-of-text, right-padded to max_seq_len
    loss_weights = 0 on the prompt, 1 on the response and its end-of-text (the model learns to stop)

Nothing is split silently: a prompt too long for the row loses its oldest tokens (left truncation keeps what
precedes the response), and an example whose response alone does not fit is dropped; both are counted, and the
counts are logged by the task. Rows are tokenized once when the data is built (fine-tuning sets are small) and
served from memory. Train rows go through tf.data (`create_dataset`): shuffled per epoch, repeated, and resumed
exactly (the position is the iterator's index into the seeded shuffle). Eval rows are numpy batches
(`create_eval_batches`), built without TensorFlow, so that `sslm eval` of such a run never imports it: every host
yields the same number of batches, its last rows padded with empty ones (no weight).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sslm_jax.data import files
from sslm_jax.errors import ConfigError, DataError

_ROW_SHUFFLE = 5
HOLD_OUT_SEED = 1234  # the held-out split must not move with config.seed


@dataclasses.dataclass(frozen=True)
class SftStats:
    examples: int  # rows served (after dropping)
    dropped: int  # examples whose response + end-of-text is longer than max_seq_len
    prompts_cut: int  # examples whose prompt lost its oldest tokens


def fields(data_config) -> tuple[str, str]:
    names = [f.strip() for f in data_config.text_field.split(",") if f.strip()]
    if len(names) != 2:
        raise ConfigError(
            f"config.data.text_field={data_config.text_field!r} must name the prompt and the response fields, "
            "e.g. 'prompt,response'"
        )
    return names[0], names[1]


def read_pairs(patterns: str, *, fmt: str, prompt_field: str, response_field: str, setting: str):
    """[(prompt, response), ...] from every file `patterns` matches; DataError (one line) for a row without them."""
    pairs = []
    for path in files.expand(patterns, setting=setting):
        with files.reading(path, setting=setting), files.open_text(path) as f:
            for where, record in files.records(f, path, fmt):
                for field in (prompt_field, response_field):
                    if not isinstance(record.get(field), str):
                        raise DataError(f"{setting}: {where} has no text field {field!r}; each row needs "
                                        f"{prompt_field!r} and {response_field!r}")  # fmt: skip
                pairs.append((record[prompt_field], record[response_field]))
    if not pairs:
        raise DataError(f"{setting}={patterns!r}: no examples")
    return pairs


def check_eval_fraction(data_config) -> float:
    """`data.eval_fraction`, which must be in (0, 1) when no eval files are given; a ConfigError if not."""
    fraction = data_config.eval_fraction
    if not data_config.eval_files and not 0 < fraction < 1:
        raise ConfigError(f"data.eval_fraction={fraction} must be in (0, 1) when data.eval_files is empty")
    return fraction


def split_pairs(data_config, split: str):
    """The examples of `split`: the eval files, or a fixed held-out fraction of the train files."""
    prompt_field, response_field = fields(data_config)
    read = lambda patterns, setting: read_pairs(  # noqa: E731
        patterns, fmt=data_config.format, prompt_field=prompt_field, response_field=response_field, setting=setting
    )
    if not data_config.train_files:
        raise ConfigError("config.data.train_files is required: jsonl (or tsv/csv) files with prompt and response")
    if data_config.eval_files:
        return read(data_config.train_files, "data.train_files") if split == "train" else read(
            data_config.eval_files, "data.eval_files")  # fmt: skip
    fraction = check_eval_fraction(data_config)
    pairs = read(data_config.train_files, "data.train_files")
    order = np.random.default_rng(HOLD_OUT_SEED).permutation(len(pairs))
    held = max(1, math.ceil(fraction * len(pairs)))
    if held >= len(pairs):
        raise DataError(
            f"data.train_files has {len(pairs)} example(s): holding out data.eval_fraction={fraction} leaves none "
            "to train on; add examples or set data.eval_files"
        )
    chosen = order[:held] if split == "eval" else order[held:]
    return [pairs[i] for i in sorted(chosen)]


def encode(pairs, tokenizer, *, max_seq_len: int):
    """(rows {"input_ids", "attention_mask", "loss_weights"} [N, max_seq_len] numpy, SftStats): see the module
    docstring.

    Example, max_seq_len=5: prompt ids [5, 6, 7, 8], response ids [9], eot 2 -> the prompt keeps [6, 7, 8]:
    input_ids [6, 7, 8, 9, 2], attention_mask [1, 1, 1, 1, 1], loss_weights [0, 0, 0, 1, 1]. An empty prompt
    becomes the end-of-text id, as a document start.
    """
    prompts = tokenizer.encode([p for p, _ in pairs])
    responses = tokenizer.encode([r for _, r in pairs])
    ids = np.zeros((len(pairs), max_seq_len), np.int32)
    mask = np.zeros((len(pairs), max_seq_len), np.int32)  # explicit: id 0 is a real token in GPT-2's vocabulary
    weights = np.zeros((len(pairs), max_seq_len), np.float32)
    kept = cut = 0
    for prompt, response in zip(prompts, responses):
        target = list(response) + [tokenizer.eot_id]
        if len(target) > max_seq_len - 1:  # at least one prompt token must precede the response
            continue
        room = max_seq_len - len(target)
        cut += len(prompt) > room
        prompt = list(prompt)[-room:] if prompt else [tokenizer.eot_id]
        row = prompt + target
        ids[kept, : len(row)] = row
        mask[kept, : len(row)] = 1
        weights[kept, len(prompt) : len(row)] = 1.0
        kept += 1
    rows = {"input_ids": ids[:kept], "attention_mask": mask[:kept], "loss_weights": weights[:kept]}
    return rows, SftStats(kept, len(pairs) - kept, cut)


def create_dataset(
    data_config,
    tokenizer,
    *,
    per_host_batch: int,
    seed: int,
    max_seq_len: int,
    process_index: int = 0,
    process_count: int = 1,
):
    """(this host's train batches: a tf.data.Dataset with every field of data/causal_lm.py's BATCH_SPEC, shuffled
    and repeated; the split's SftStats)."""
    from sslm_jax.data.pretraining import shuffle_seed
    from sslm_jax.data.tf_setup import tf

    rows, stats = _rows(data_config, tokenizer, "train", max_seq_len)
    mine = {k: v[process_index::process_count] for k, v in rows.items()}
    ds = tf.data.Dataset.from_tensor_slices(mine)
    ds = ds.shuffle(len(mine["input_ids"]), seed=shuffle_seed(seed, process_index, _ROW_SHUFFLE))
    ds = ds.repeat().batch(per_host_batch, drop_remainder=True).map(_finish)
    options = tf.data.Options()
    options.deterministic = True
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options), stats


def create_eval_batches(
    data_config, tokenizer, *, per_host_batch: int, max_seq_len: int, process_index: int = 0, process_count: int = 1
) -> tuple[list[dict[str, np.ndarray]], SftStats]:
    """(this host's eval batches as numpy dicts, the split's SftStats): rows i, i + n, ... of the split in order,
    `per_host_batch` to a batch, padded with empty rows up to the largest host's batch count."""
    rows, stats = _rows(data_config, tokenizer, "eval", max_seq_len)
    mine = {k: v[process_index::process_count] for k, v in rows.items()}
    num_batches = math.ceil(math.ceil(stats.examples / process_count) / per_host_batch)  # host 0 holds the most
    padded = {k: _pad_rows(v, num_batches * per_host_batch) for k, v in mine.items()}
    batches = []
    for start in range(0, num_batches * per_host_batch, per_host_batch):
        batches.append(_finish({k: v[start : start + per_host_batch] for k, v in padded.items()}))
    return batches, stats


def _rows(data_config, tokenizer, split: str, max_seq_len: int):
    rows, stats = encode(split_pairs(data_config, split), tokenizer, max_seq_len=max_seq_len)
    if stats.examples == 0:
        raise DataError(f"no {split} example fits max_seq_len={max_seq_len}: every response is longer")
    return rows, stats


def _pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """`x` with zero rows added up to `size` rows: empty rows that carry no weight."""
    return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])


def _finish(rows):
    """The causal-LM batch fields: one document per row, positions from 0 (numpy rows, or tensors in tf.data)."""
    attention_mask = rows["attention_mask"]
    positions = np.arange(attention_mask.shape[1], dtype=np.int32)[None, :]
    return {
        "input_ids": rows["input_ids"],
        "attention_mask": attention_mask,
        "segment_ids": attention_mask,
        "position_ids": attention_mask * positions,  # the tensor first: a tf.data map multiplies symbolic tensors
        "loss_weights": rows["loss_weights"],
    }

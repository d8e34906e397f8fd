"""Prompt -> response batches for causal-LM fine-tuning: the loss counts response tokens only.

    ds, stats = create_dataset(config.data, tokenizer, split="train", per_host_batch=8, seed=0, max_seq_len=256)
    stats   # SftStats(examples=1000, dropped=2, prompts_cut=15)

Files are JSON lines (or tsv / csv with a header) with a prompt and a response field (`data.text_field`,
"prompt,response" by default), read through `files.py` (globs, gs://, .gz). Each example becomes one row:

    ids          = prompt tokens + response tokens + end-of-text, right-padded to max_seq_len
    loss_weights = 0 on the prompt, 1 on the response and its end-of-text (the model learns to stop)

Nothing is split silently: a prompt too long for the row loses its oldest tokens (left truncation keeps what
precedes the response), and an example whose response alone does not fit is dropped; both are counted, and the
counts are logged by the task. Rows are tokenized once when the dataset is built (fine-tuning sets are small) and
served from memory: train rows are shuffled per epoch and repeated, eval rows come once with the last batch padded.
Exact resume holds: the position is the iterator's index into the seeded shuffle.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sslm_jax.data.tf_setup import tf

from sslm_jax.data import files  # noqa: E402
from sslm_jax.data.pretraining import pad_rows, shuffle_seed  # noqa: E402
from sslm_jax.errors import ConfigError, DataError  # noqa: E402

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
    prompts = tokenizer.tokenize(tf.constant([p for p, _ in pairs])).to_list()
    responses = tokenizer.tokenize(tf.constant([r for _, r in pairs])).to_list()
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
    split: str,
    per_host_batch: int,
    seed: int,
    max_seq_len: int,
    process_index: int = 0,
    process_count: int = 1,
) -> tuple[tf.data.Dataset, SftStats]:
    """This host's batches of `split` (every field of data/causal_lm.py's BATCH_SPEC) and the split's counts."""
    rows, stats = encode(split_pairs(data_config, split), tokenizer, max_seq_len=max_seq_len)
    if stats.examples == 0:
        raise DataError(f"no {split} example fits max_seq_len={max_seq_len}: every response is longer")
    mine = {k: v[process_index::process_count] for k, v in rows.items()}
    ds = tf.data.Dataset.from_tensor_slices(mine)
    if split == "train":
        ds = ds.shuffle(len(mine["input_ids"]), seed=shuffle_seed(seed, process_index, _ROW_SHUFFLE))
        ds = ds.repeat().batch(per_host_batch, drop_remainder=True)
    else:
        ds = ds.batch(per_host_batch).map(lambda b: pad_rows(b, per_host_batch))
    options = tf.data.Options()
    options.deterministic = True
    return ds.map(_finish).prefetch(tf.data.AUTOTUNE).with_options(options), stats


def _finish(rows):
    """The causal-LM batch fields: one document per row, positions from 0."""
    attention_mask = rows["attention_mask"]
    length = tf.shape(rows["input_ids"])[1]
    positions = tf.broadcast_to(tf.range(length)[None, :], tf.shape(rows["input_ids"]))
    return {
        "input_ids": rows["input_ids"],
        "attention_mask": attention_mask,
        "segment_ids": attention_mask,
        "position_ids": positions * attention_mask,
        "loss_weights": rows["loss_weights"],
    }

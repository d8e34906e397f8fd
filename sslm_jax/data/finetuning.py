"""Labelled examples for sentence(-pair) classification and regression: GLUE through TFDS, or the user's files.

    ds, info = create_classification_dataset(config.data, tokenizer, split="train", per_host_batch=32, seed=0)
    info.label_names   # ("negative", "positive") for glue/sst2; store them with the checkpoint
    next(iter(ds))     # input_ids, attention_mask, token_type_ids [32, max_seq_len] int32,
                       # label [32] int32 (float32 for regression), example_weight [32] float32

The data path, one small step each:
  read    TFDS (`data.source="tfds"`, prepared data only) or tsv / csv / jsonl files (`data.source="files"`;
          local or gs://, .gz, recursive globs: read by `sslm_jax.data.files`, as pretraining corpora are)
          -> examples {text_a, text_b (pairs only), label}; labels become ids in the order of `label_names`
  shard   per host: TFDS even sub-splits; files by example (every host reads the file list, takes every n-th row)
  order   train: shuffle, repeat (infinite).  eval: one pass, then weight-0 padding examples so that every host
          yields the same number of full batches and each real example is counted exactly once
  batch   `per_host_batch` examples (static shapes)
  encode  in-graph WordPiece, [CLS] a [SEP] (b [SEP]), longest-first truncation, padding to `max_seq_len`

Label names: `data.label_names` when declared; else the TFDS `ClassLabel` names; else (files) the distinct labels
of the train files, sorted (numerically when all are integers: "2" before "10"). `data.num_labels` 0 takes the
size of that set (or regression for a float TFDS label); 1 means regression (labels are numbers); any other
value must equal the number of label names.

Every problem with the data or these settings is a `DataError` / `ConfigError` naming the file (and line) or the
setting, raised before anything is read into the pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Sequence

import tensorflow as tf

from sslm_jax.data import files
from sslm_jax.data.tf_setup import hide_accelerators_from_tf
from sslm_jax.errors import ConfigError, DataError
from sslm_jax.objectives import glue_metrics

hide_accelerators_from_tf()

LABELLED_FORMATS = files.RECORD_FORMATS
SPLITS = ("train", "eval")
_CLASS_METRICS = ("accuracy", "f1", "matthews_corr")  # need class ids, not scores


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What a trainer needs to know about a labelled task; the same for every split except `num_examples`.

    Attributes:
      name: "glue/sst2" (the TFDS name) or "files".
      label_names: class names in label-id order (store them with the checkpoint); () for regression.
      is_regression: one float target per example (squared-error loss; Pearson/Spearman).
      num_labels: width of the classifier head: len(label_names), or 1 for regression.
      text_fields: the one or two text columns / features read, in the order they are packed (a, then b).
      metric_names: names from `sslm_jax.objectives.glue_metrics.METRICS`, the first the headline metric.
      num_examples: real examples in this split, all hosts together (padding excluded).
    """

    name: str
    label_names: tuple[str, ...]
    is_regression: bool
    num_labels: int
    text_fields: tuple[str, ...]
    metric_names: tuple[str, ...]
    num_examples: int

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2


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
    if per_host_batch < 1:
        raise ConfigError(f"per-host batch size {per_host_batch} must be at least 1")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is not in [0, process_count={process_count})")
    if data_config.max_seq_len < 4:  # [CLS] a [SEP] b [SEP] needs at least one token of text
        raise ConfigError(f"data.max_seq_len={data_config.max_seq_len} leaves no room for text; use 4 or more")
    if data_config.source == "tfds":
        source = _TfdsSource(data_config, split=split)
    elif data_config.source == "files":
        source = _FileSource(data_config, split=split)
    else:
        raise ConfigError(
            f"data.source={data_config.source!r} has no labels; fine-tuning reads data.source 'tfds' or 'files'"
        )
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

    # Nothing here branches on tensor values, so AutoGraph's conversion (slow to trace) is not needed.
    @tf.autograph.experimental.do_not_convert
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


# --- Settings shared by both sources ----------------------------------------------------------------------------


def _text_fields(value: str, *, allow_empty: bool) -> tuple[str, ...]:
    fields = tuple(f.strip() for f in value.split(",") if f.strip())
    if not fields and allow_empty:
        return ()
    if not 1 <= len(fields) <= 2:
        raise ConfigError(
            f"data.text_field={value!r}: name one text column, or two comma-separated for sentence pairs"
        )
    if len(set(fields)) != len(fields):
        raise ConfigError(f"data.text_field={value!r} names the same column twice")
    return fields


def _regression_setting(data_config) -> bool:
    """True for data.num_labels == 1; checks that the setting is usable at all."""
    num_labels = data_config.num_labels
    if num_labels < 0:
        raise ConfigError(f"data.num_labels={num_labels}; use 0 (from the labels), 1 (regression) or the class count")
    if num_labels == 1 and tuple(data_config.label_names):
        raise ConfigError("data.num_labels=1 means regression, which has no data.label_names; clear one of them")
    return num_labels == 1


def _declared_label_names(data_config) -> tuple[str, ...]:
    names = tuple(str(n) for n in data_config.label_names)
    if len(set(names)) != len(names):
        raise ConfigError(f"data.label_names={names} repeats a name")
    return names


def _check_label_count(data_config, label_names: Sequence[str], where: str) -> None:
    if len(label_names) < 2:
        raise DataError(
            f"{where}: only the label(s) {tuple(label_names)} occur; classification needs at least two "
            "(for regression set data.num_labels=1)"
        )
    if data_config.num_labels not in (0, len(label_names)):
        raise DataError(
            f"data.num_labels={data_config.num_labels} disagrees with the {len(label_names)} labels of {where}: "
            f"{', '.join(label_names)}"
        )


def _metric_names(data_config, *, name: str, is_regression: bool) -> tuple[str, ...]:
    if data_config.metrics:
        names = glue_metrics.check_metric_names([m.strip() for m in data_config.metrics.split(",") if m.strip()])
    elif name.startswith("glue/") and name.removeprefix("glue/") in glue_metrics.GLUE_METRICS:
        names = glue_metrics.GLUE_METRICS[name.removeprefix("glue/")]
    else:
        names = ("pearson", "spearman") if is_regression else ("accuracy",)
    if is_regression and set(names) & set(_CLASS_METRICS):
        raise ConfigError(
            f"data.metrics={','.join(names)!r}: a regression task is scored by pearson and/or spearman"
        )
    return tuple(names)


# --- TFDS ---------------------------------------------------------------------------------------------------------


class _TfdsSource:
    """A prepared TFDS dataset (never downloaded): features and label names from the builder's info."""

    def __init__(self, data_config, *, split: str):
        import tensorflow_datasets as tfds  # noqa: PLC0415 (heavy; only this source needs it)

        self._tfds = tfds
        name = data_config.tfds_name
        if not name:
            raise ConfigError("data.tfds_name is empty; name a prepared TFDS dataset, e.g. glue/sst2")
        data_dir = data_config.tfds_data_dir or None
        self.where = f"TFDS dataset {name}"
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except (tfds.core.registered.DatasetNotFoundError, ValueError, KeyError) as e:
            first_line = str(e).strip().splitlines()[0]
            raise DataError(f"data.tfds_name={name!r}: {first_line}") from None
        if not builder.is_prepared():
            raise DataError(
                f"{self.where} is not prepared in {builder.data_dir}: run `tfds build {name} --data_dir=DIR` on a "
                "machine with internet access, then set data.tfds_data_dir=DIR (nothing is downloaded at run time)"
            )
        if split == "train":
            split_setting, split_name = "data.tfds_train_split", data_config.tfds_train_split
        else:
            split_setting, split_name = "data.tfds_eval_split", data_config.tfds_eval_split
        available = ", ".join(builder.info.splits.keys())
        if not split_name:
            raise ConfigError(f"{split_setting} is empty; name a labelled split of {name} ({available})")
        if split_name not in builder.info.splits:
            raise DataError(f"{split_setting}={split_name!r}: {name} has the splits {available}")
        features = builder.info.features
        text_features = [k for k, f in features.items() if isinstance(f, tfds.features.Text)]
        fields = _text_fields(data_config.text_field, allow_empty=True) or tuple(text_features)
        for field in fields:
            if field not in text_features:
                raise DataError(
                    f"data.text_field: {name} has no text feature {field!r} (its text features: "
                    f"{', '.join(text_features)})"
                )
        if not 1 <= len(fields) <= 2:
            raise ConfigError(f"{name} has the text features {', '.join(fields)}; choose one or two in data.text_field")
        # GLUE tasks are either single-sentence or pair tasks; reading one side of a pair would train nonsense.
        if builder.name == "glue" and len(fields) != len(text_features):
            kind = "sentence-pair" if len(text_features) == 2 else "single-sentence"
            raise DataError(
                f"{name} is a {kind} task with the text features {', '.join(text_features)}; "
                f"data.text_field={data_config.text_field!r} names {len(fields)}"
            )
        label_field = data_config.label_field
        if label_field not in features:
            raise DataError(f"data.label_field={label_field!r}: {name} has the features {', '.join(features)}")
        label_feature = features[label_field]
        regression_setting = _regression_setting(data_config)
        declared = _declared_label_names(data_config)
        if isinstance(label_feature, tfds.features.ClassLabel):
            label_names = tuple(label_feature.names)
            if regression_setting:
                raise DataError(f"data.num_labels=1 (regression), but {name}'s {label_field!r} is a class label")
            if declared and declared != label_names:
                raise DataError(f"data.label_names={declared} differ from the label names of {name}: {label_names}")
            _check_label_count(data_config, label_names, name)
            is_regression = False
        elif tf.as_dtype(label_feature.dtype).is_floating:
            if declared or data_config.num_labels > 1:
                raise DataError(
                    f"{name}'s {label_field!r} is a score (regression); set data.num_labels to 0 or 1 and leave "
                    "data.label_names empty"
                )
            label_names, is_regression = (), True
        else:
            raise DataError(f"{name}'s {label_field!r} is neither a ClassLabel nor a float score")
        self._builder, self._split, self._fields, self._label_field = builder, split_name, fields, label_field
        self._is_train = split == "train"
        self._check_has_labels(split_setting)
        self.info = TaskInfo(
            name=name,
            label_names=label_names,
            is_regression=is_regression,
            num_labels=1 if is_regression else len(label_names),
            text_fields=fields,
            metric_names=_metric_names(data_config, name=name, is_regression=is_regression),
            num_examples=builder.info.splits[split_name].num_examples,
        )
        if self.info.num_examples == 0:
            raise DataError(f"{split_setting}={split_name!r} of {name} has no examples")

    def _check_has_labels(self, split_setting: str) -> None:
        # GLUE's test splits carry the label -1 (the answers are secret): refuse them instead of training on it.
        first = next(iter(self._builder.as_dataset(split=f"{self._split}[:1]").take(1)), None)
        if first is not None and float(first[self._label_field]) == -1:
            raise DataError(
                f"{split_setting}={self._split!r} of {self._builder.info.full_name} has no labels (label -1); "
                "use a labelled split such as validation"
            )

    def host_counts(self, process_count: int) -> list[int]:
        parts = self._tfds.even_splits(self._split, n=process_count)
        return [self._builder.info.splits[p].num_examples for p in parts]

    def examples(self, *, process_index: int, process_count: int, seed: int) -> tf.data.Dataset:
        part = self._tfds.even_splits(self._split, n=process_count)[process_index]
        ds = self._builder.as_dataset(
            split=part,
            shuffle_files=self._is_train,
            read_config=self._tfds.ReadConfig(shuffle_seed=seed, try_autocache=False),
        )
        fields, label_field = self._fields, self._label_field
        label_dtype = tf.float32 if self.info.is_regression else tf.int32

        def select(ex):
            out = {"text_a": ex[fields[0]], "label": tf.cast(ex[label_field], label_dtype)}
            if len(fields) == 2:
                out["text_b"] = ex[fields[1]]
            return out

        return ds.map(select, num_parallel_calls=tf.data.AUTOTUNE)


# --- Files --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Rows:
    """Examples read from files: texts[i] is a tuple of 1-2 strings; where[i] is "file:line" for messages."""

    texts: list[tuple[str, ...]]
    labels: list[str]
    where: list[str]


class _FileSource:
    """tsv / csv (header row, named columns) or jsonl (named fields) files with a label column."""

    def __init__(self, data_config, *, split: str):
        fmt = data_config.format
        if fmt not in LABELLED_FORMATS:
            raise ConfigError(f"data.format={fmt!r} holds no labels; fine-tuning reads {', '.join(LABELLED_FORMATS)}")
        fields = _text_fields(data_config.text_field, allow_empty=False)
        label_field = data_config.label_field
        if not label_field:
            raise ConfigError("data.label_field is empty; name the column or field that holds the label")
        if label_field in fields:
            raise ConfigError(f"data.label_field={label_field!r} is also a text field (data.text_field)")
        is_regression = _regression_setting(data_config)
        read = lambda setting, patterns: _read_rows(  # noqa: E731
            setting, patterns, fmt=fmt, text_fields=fields, label_field=label_field
        )
        train_rows = read("data.train_files", data_config.train_files)
        train_where = f"data.train_files={data_config.train_files!r}"
        if is_regression:
            label_names = ()
        else:
            label_names = _declared_label_names(data_config) or _sorted_labels(train_rows.labels)
            _check_label_count(data_config, label_names, train_where)
        if data_config.eval_files:
            if split == "train":
                rows = train_rows
            else:
                rows = read("data.eval_files", data_config.eval_files)
        else:
            rows = _hold_out(train_rows, data_config.eval_fraction, split=split)
            if not rows.texts:
                raise DataError(
                    f"{train_where}: holding out data.eval_fraction={data_config.eval_fraction} leaves no {split} "
                    "examples; set data.eval_files or change data.eval_fraction"
                )
        self._texts = rows.texts
        self._labels = _encode_labels(rows, label_names, declared=bool(data_config.label_names))
        self.where = f"data.{'train' if split == 'train' else 'eval'}_files"
        self.info = TaskInfo(
            name="files",
            label_names=label_names,
            is_regression=is_regression,
            num_labels=1 if is_regression else len(label_names),
            text_fields=fields,
            metric_names=_metric_names(data_config, name="files", is_regression=is_regression),
            num_examples=len(rows.texts),
        )

    def host_counts(self, process_count: int) -> list[int]:
        n = len(self._texts)
        return [len(range(i, n, process_count)) for i in range(process_count)]

    def examples(self, *, process_index: int, process_count: int, seed: int) -> tf.data.Dataset:
        del seed  # the rows are read in file order; shuffling happens in the pipeline
        texts = self._texts[process_index::process_count]
        labels = self._labels[process_index::process_count]
        columns = {
            "text_a": tf.constant([t[0] for t in texts], tf.string, shape=[len(texts)]),
            "label": tf.constant(labels, tf.float32 if self.info.is_regression else tf.int32, shape=[len(texts)]),
        }
        if self.info.is_pair:
            columns["text_b"] = tf.constant([t[1] for t in texts], tf.string, shape=[len(texts)])
        return tf.data.Dataset.from_tensor_slices(columns)


def _read_rows(setting: str, patterns: str, *, fmt: str, text_fields, label_field: str) -> _Rows:
    rows = _Rows([], [], [])
    for path in files.expand(patterns, setting=setting):
        before = len(rows.texts)
        with files.reading(path, setting=setting), files.open_text(path) as f:
            for where, record in files.records(f, path, fmt):
                for field in (*text_fields, label_field):
                    if field not in record:
                        kind = "field" if fmt == "jsonl" else "column"
                        present = f" (columns: {', '.join(record)})" if fmt != "jsonl" else ""
                        raise DataError(
                            f"{where}: no {kind} {field!r}{present}; set data.text_field / data.label_field"
                        )
                texts = tuple(record[field] for field in text_fields)
                if not all(isinstance(t, str) for t in texts):
                    raise DataError(f"{where}: the text fields {', '.join(text_fields)} must hold strings")
                rows.texts.append(texts)
                rows.labels.append(_label_text(record[label_field], where))
                rows.where.append(where)
        if len(rows.texts) == before:
            raise DataError(f"{setting}: {path} has no examples")
    return rows


def _label_text(value: Any, where: str) -> str:
    """Labels are compared as text: "pos" stays "pos", JSON 1 becomes "1", true becomes "true"."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    raise DataError(f"{where}: the label {value!r} is not a string or a number")


def _sorted_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """Distinct labels, sorted numerically when all are integers ("2" < "10"), else as text."""
    distinct = set(labels)
    try:
        return tuple(sorted(distinct, key=int))
    except ValueError:
        return tuple(sorted(distinct))


def _encode_labels(rows: _Rows, label_names: tuple[str, ...], *, declared: bool) -> list[int] | list[float]:
    if not label_names:  # regression
        out = []
        for label, where in zip(rows.labels, rows.where):
            try:
                value = float(label)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(f"{where}: label {label!r} is not a finite number (data.num_labels=1: regression)")
            out.append(value)
        return out
    index = {name: i for i, name in enumerate(label_names)}
    out = []
    for label, where in zip(rows.labels, rows.where):
        if label not in index:
            known = ", ".join(label_names)
            origin = "data.label_names" if declared else "the labels of data.train_files"
            raise DataError(f"{where}: label {label!r} is not one of {origin} ({known})")
        out.append(index[label])
    return out


def _hold_out(rows: _Rows, fraction: float, *, split: str) -> _Rows:
    """The train or eval part of `rows`, chosen by a hash of each example's text (so duplicates stay together)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"data.eval_fraction={fraction} must be in (0, 1) when data.eval_files is empty")
    keep = _Rows([], [], [])
    for texts, label, where in zip(rows.texts, rows.labels, rows.where):
        digest = hashlib.sha1("\t".join(texts).encode("utf-8")).digest()
        is_eval = int.from_bytes(digest[:8], "big") < fraction * 2**64
        if is_eval == (split == "eval"):
            keep.texts.append(texts)
            keep.labels.append(label)
            keep.where.append(where)
    return keep

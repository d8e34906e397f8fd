"""Where fine-tuning's labelled examples come from: a prepared TFDS dataset or the user's tsv / csv / jsonl files.

    # data.source="files", format="tsv", text_field="sentence", train_files: 5 rows labelled "neg" / "pos"
    source = open_source(config.data, split="train")   # checks every setting; the files are read in full here
    source.info               # TaskInfo(name="files", label_names=("neg", "pos"), ..., num_examples=5)
    source.host_counts(2)     # [3, 2]: real examples per host (files: host i takes rows i, i + 2, ...)
    next(iter(source.examples(process_index=0, process_count=2, seed=0)))
                              # {"text_a": b"a dull plot", "label": 0} (and "text_b" for sentence pairs)

This module holds `TaskInfo` (what a source reports about its task), the two sources, the settings they share
(text fields, label names and count, regression, metrics) and the held-out eval split. Tokenizing, batching and
exact-eval padding are `sslm_jax.data.finetuning`'s.

  tfds   `data.source="tfds"`: a prepared TFDS dataset (never downloaded); hosts read even sub-splits.
  files  `data.source="files"`: tsv / csv / jsonl (local or gs://, .gz, recursive globs: read by
         `sslm_jax.data.files`, as pretraining corpora are); every host reads the file list, takes every n-th row.
Either yields examples {text_a, text_b (pairs only), label}; labels become ids in the order of `label_names`.

Label names: `data.label_names` when declared; else the TFDS `ClassLabel` names; else (files) the distinct labels
of the train files, sorted (numerically when all are integers: "2" before "10"). `data.num_labels` 0 takes the
size of that set (or regression for a float TFDS label); 1 means regression (labels are numbers); any other
value must equal the number of label names.

Held-out eval: with `data.eval_files` empty, a hash of each example's text puts about `data.eval_fraction` of the
train files' examples in eval (the same split on every run and host; duplicates stay together).

Every problem with the data or these settings is a `DataError` / `ConfigError` naming the file (and line) or the
setting, raised by `open_source`, before anything is read into the pipeline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Sequence


from sslm_jax.data import files
from sslm_jax.data.tf_setup import tf
from sslm_jax.errors import ConfigError, DataError, shown
from sslm_jax.objectives import glue_metrics

LABELLED_FORMATS = files.RECORD_FORMATS
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


def open_source(data_config, *, split: str):
    """The labelled source `data_config.source` names ("tfds" or "files") for `split` ("train" or "eval").

    Returns an object with `info` (TaskInfo), `where` (for messages), `host_counts(process_count)` (real examples
    per host) and `examples(process_index=, process_count=, seed=)` (this host's tf.data of examples).
    """
    if data_config.source == "tfds":
        return _TfdsSource(data_config, split=split)
    if data_config.source == "files":
        return _FileSource(data_config, split=split)
    raise ConfigError(
        f"data.source={data_config.source!r} has no labels; fine-tuning reads data.source 'tfds' or 'files'"
    )


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
    """Labels are compared as text: "pos" stays "pos", JSON 1 and 1.0 both become "1" (one class, not two), true
    becomes "true"."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    raise DataError(f"{where}: the label {shown(value)} is not a string or a number")


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

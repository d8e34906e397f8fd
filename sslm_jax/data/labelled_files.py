"""Labelled examples without TensorFlow: what a labelled task is (`TaskInfo`), the label settings every source
shares, and the examples of tsv / csv / jsonl files, read and split on the host.

    split = FileSplit(config.data, split="eval")   # checks every setting; the files are read in full here
    split.info                 # TaskInfo(name="files", label_names=("neg", "pos"), ..., num_examples=5)
    split.host_counts(2)       # [3, 2]: real examples per host (host i takes rows i, i + 2, ...)
    split.host_rows(0, 2)      # ([("a dull plot",), ...], [0, ...]): this host's texts and label ids

`sslm_jax.data.labelled_sources` turns a split into tf.data examples (and adds TFDS, which needs TensorFlow);
`sslm_jax.data.host_finetuning` turns it into eval batches on the host, so that `sslm eval` of a classifier
trained on files imports no TensorFlow.

Label names: `data.label_names` when declared; else the TFDS `ClassLabel` names; else (files) the distinct labels
of the train files, sorted (numerically when all are integers: "2" before "10"). `data.num_labels` 0 takes the
size of that set (or regression for a float TFDS label); 1 means regression (labels are numbers); any other
value must equal the number of label names.

Held-out eval: with `data.eval_files` empty, a hash of each example's text puts about `data.eval_fraction` of the
train files' examples in eval (the same split on every run and host; duplicates stay together).

Every problem with the files or these settings is a one-line `DataError` / `ConfigError` naming the file (and
line) or the setting, raised when the split is opened.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Sequence

from sslm_jax.data import files
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


# --- Settings shared by every source ----------------------------------------------------------------------------


def text_fields(value: str, *, allow_empty: bool) -> tuple[str, ...]:
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


def regression_setting(data_config) -> bool:
    """True for data.num_labels == 1; checks that the setting is usable at all."""
    num_labels = data_config.num_labels
    if num_labels < 0:
        raise ConfigError(f"data.num_labels={num_labels}; use 0 (from the labels), 1 (regression) or the class count")
    if num_labels == 1 and tuple(data_config.label_names):
        raise ConfigError("data.num_labels=1 means regression, which has no data.label_names; clear one of them")
    return num_labels == 1


def declared_label_names(data_config) -> tuple[str, ...]:
    names = tuple(str(n) for n in data_config.label_names)
    if len(set(names)) != len(names):
        raise ConfigError(f"data.label_names={names} repeats a name")
    return names


def check_label_count(data_config, label_names: Sequence[str], where: str) -> None:
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


def metric_names(data_config, *, name: str, is_regression: bool) -> tuple[str, ...]:
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


# --- Files ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Rows:
    """Examples read from files: texts[i] is a tuple of 1-2 strings; where[i] is "file:line" for messages."""

    texts: list[tuple[str, ...]]
    labels: list[str]
    where: list[str]


class FileSplit:
    """One split ("train" or "eval") of tsv / csv (header row, named columns) or jsonl (named fields) files with a
    label column, read in full: `info`, `where` (the setting, for messages), `texts` (tuples of 1-2 strings) and
    `labels` (ids in the order of `info.label_names`, or floats for regression), in file order."""

    def __init__(self, data_config, *, split: str):
        fmt = data_config.format
        if fmt not in LABELLED_FORMATS:
            raise ConfigError(f"data.format={fmt!r} holds no labels; fine-tuning reads {', '.join(LABELLED_FORMATS)}")
        fields = text_fields(data_config.text_field, allow_empty=False)
        label_field = data_config.label_field
        if not label_field:
            raise ConfigError("data.label_field is empty; name the column or field that holds the label")
        if label_field in fields:
            raise ConfigError(f"data.label_field={label_field!r} is also a text field (data.text_field)")
        is_regression = regression_setting(data_config)
        read = lambda setting, patterns: _read_rows(  # noqa: E731
            setting, patterns, fmt=fmt, fields=fields, label_field=label_field
        )
        train_rows = read("data.train_files", data_config.train_files)
        train_where = f"data.train_files={data_config.train_files!r}"
        if is_regression:
            label_names = ()
        else:
            label_names = declared_label_names(data_config) or _sorted_labels(train_rows.labels)
            check_label_count(data_config, label_names, train_where)
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
        self.texts = rows.texts
        self.labels = _encode_labels(rows, label_names, declared=bool(data_config.label_names))
        self.where = f"data.{'train' if split == 'train' else 'eval'}_files"
        self.info = TaskInfo(
            name="files",
            label_names=label_names,
            is_regression=is_regression,
            num_labels=1 if is_regression else len(label_names),
            text_fields=fields,
            metric_names=metric_names(data_config, name="files", is_regression=is_regression),
            num_examples=len(rows.texts),
        )

    def host_counts(self, process_count: int) -> list[int]:
        """Real examples per host: host i takes rows i, i + process_count, ..."""
        n = len(self.texts)
        return [len(range(i, n, process_count)) for i in range(process_count)]

    def host_rows(self, process_index: int, process_count: int) -> tuple[list[tuple[str, ...]], list]:
        """(texts, labels) of host `process_index`, in file order."""
        return self.texts[process_index::process_count], self.labels[process_index::process_count]


def _read_rows(setting: str, patterns: str, *, fmt: str, fields, label_field: str) -> _Rows:
    rows = _Rows([], [], [])
    for path in files.expand(patterns, setting=setting):
        before = len(rows.texts)
        with files.reading(path, setting=setting), files.open_text(path) as f:
            for where, record in files.records(f, path, fmt):
                for field in (*fields, label_field):
                    if field not in record:
                        kind = "field" if fmt == "jsonl" else "column"
                        present = f" (columns: {', '.join(record)})" if fmt != "jsonl" else ""
                        raise DataError(
                            f"{where}: no {kind} {field!r}{present}; set data.text_field / data.label_field"
                        )
                texts = tuple(record[field] for field in fields)
                if not all(isinstance(t, str) for t in texts):
                    raise DataError(f"{where}: the text fields {', '.join(fields)} must hold strings")
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

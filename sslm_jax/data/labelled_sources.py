"""Where fine-tuning's labelled examples come from, as tf.data: a prepared TFDS dataset or the user's tsv / csv /
jsonl files.

    # data.source="files", format="tsv", text_field="sentence", train_files: 5 rows labelled "neg" / "pos"
    source = open_source(config.data, split="train")   # checks every setting; the files are read in full here
    source.info               # TaskInfo(name="files", label_names=("neg", "pos"), ..., num_examples=5)
    source.host_counts(2)     # [3, 2]: real examples per host (files: host i takes rows i, i + 2, ...)
    next(iter(source.examples(process_index=0, process_count=2, seed=0)))
                              # {"text_a": b"a dull plot", "label": 0} (and "text_b" for sentence pairs)

  tfds   `data.source="tfds"`: a prepared TFDS dataset (never downloaded); hosts read even sub-splits.
  files  `data.source="files"`: tsv / csv / jsonl (local or gs://, .gz, recursive globs: read by
         `sslm_jax.data.files`, as pretraining corpora are); every host reads the file list, takes every n-th row.
Either yields examples {text_a, text_b (pairs only), label}; labels become ids in the order of `label_names`.

`TaskInfo`, the label settings both sources share (text fields, label names and count, regression, metrics), the
reading of files and their held-out eval split are `sslm_jax.data.labelled_files`'s, which needs no TensorFlow.
Tokenizing, batching and exact-eval padding are `sslm_jax.data.finetuning`'s.

Every problem with the data or these settings is a `DataError` / `ConfigError` naming the file (and line) or the
setting, raised by `open_source`, before anything is read into the pipeline.
"""

from __future__ import annotations

from sslm_jax.data import labelled_files
from sslm_jax.data.labelled_files import TaskInfo
from sslm_jax.data.tf_setup import tf
from sslm_jax.errors import ConfigError, DataError


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
        fields = labelled_files.text_fields(data_config.text_field, allow_empty=True) or tuple(text_features)
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
        regression_setting = labelled_files.regression_setting(data_config)
        declared = labelled_files.declared_label_names(data_config)
        if isinstance(label_feature, tfds.features.ClassLabel):
            label_names = tuple(label_feature.names)
            if regression_setting:
                raise DataError(f"data.num_labels=1 (regression), but {name}'s {label_field!r} is a class label")
            if declared and declared != label_names:
                raise DataError(f"data.label_names={declared} differ from the label names of {name}: {label_names}")
            labelled_files.check_label_count(data_config, label_names, name)
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
            metric_names=labelled_files.metric_names(data_config, name=name, is_regression=is_regression),
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


class _FileSource(labelled_files.FileSplit):
    """tsv / csv / jsonl files (read and checked by `labelled_files.FileSplit`), as tf.data examples."""

    def examples(self, *, process_index: int, process_count: int, seed: int) -> tf.data.Dataset:
        del seed  # the rows are read in file order; shuffling happens in the pipeline
        texts, labels = self.host_rows(process_index, process_count)
        columns = {
            "text_a": tf.constant([t[0] for t in texts], tf.string, shape=[len(texts)]),
            "label": tf.constant(labels, tf.float32 if self.info.is_regression else tf.int32, shape=[len(texts)]),
        }
        if self.info.is_pair:
            columns["text_b"] = tf.constant([t[1] for t in texts], tf.string, shape=[len(texts)])
        return tf.data.Dataset.from_tensor_slices(columns)

"""Classify texts with a fine-tuned model: class probabilities per label name (or a score, for regression).

    loaded = load_model("runs/sst2")
    probs = predict(loaded, [("a gripping , funny film",), ("dull and overlong",)])   # [2, num_labels]
    records(loaded, examples, probs)[0]
    # {"text": "a gripping , funny film", "label": "1", "probabilities": {"0": 0.08, "1": 0.92}}

    predict_file("runs/sst2", "reviews.tsv", "predictions.jsonl")   # `sslm predict`

Texts are encoded exactly as in fine-tuning (`sslm_jax.data.finetuning.pack_inputs`: [CLS] a [SEP] (b [SEP]),
longest-first truncation to the model's max_seq_len). Each batch is padded only to the next power of two above its
longest row, which changes no output (padding is masked) and bounds the number of compilations.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Sequence

import jax
import numpy as np

from sslm_jax.data import files
from sslm_jax.data.host_finetuning import pack
from sslm_jax.errors import DataError, SslmError
from sslm_jax.inference.loading import LoadedModel, load_model
from sslm_jax.objectives.classification import make_predict_fn

Example = tuple[str, ...]  # one text, or a sentence pair
MIN_LENGTH = 8


def predict_file(
    model_path: str | os.PathLike,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike | None = None,
    *,
    text_fields: Sequence[str] | None = None,
    batch_size: int = 32,
) -> int:
    """Writes one JSON line per example of `input_path` to `output_path` (stdout when None); returns the count.

    Args:
      model_path: a fine-tuning workdir (or checkpoint), or a Hugging Face BertForSequenceClassification directory.
      input_path: .tsv / .csv (header row), .jsonl, or any other name: plain text, one example per line; each
        may end in .gz and be a gs:// (tf.io.gfile) URL.
      output_path: the JSON-lines file, written only once every example is classified (replaced atomically).
      text_fields: the column(s) / field(s) to read; default: those the model was trained on (a Hugging Face
        directory: "text").
      batch_size: examples per forward pass.
    """
    loaded = load_model(model_path, host_tokenizer=True)  # WordPiece without TensorFlow: a one-shot call's import cost
    _check_classifier(loaded)
    fields = _text_fields(loaded, text_fields)
    examples = read_examples(input_path, text_fields=fields)
    outputs = predict(loaded, examples, batch_size=batch_size)
    lines = [json.dumps(r, ensure_ascii=False) for r in records(loaded, examples, outputs)]
    if output_path is None:
        print("\n".join(lines), flush=True)
    else:
        _write_atomically(pathlib.Path(output_path), "".join(line + "\n" for line in lines))
    return len(lines)


def predict(loaded: LoadedModel, examples: Sequence[Example], *, batch_size: int = 32) -> np.ndarray:
    """Class probabilities [N, num_labels] (softmax, float32), or scores [N] for a regression model."""
    _check_classifier(loaded)
    if batch_size < 1:
        raise SslmError(f"batch size {batch_size} must be at least 1")
    if len({len(e) for e in examples}) > 1:
        raise SslmError("examples must all be single texts or all sentence pairs, not a mix")
    logits_fn = jax.jit(make_predict_fn(loaded.model))
    outputs = []
    for start in range(0, len(examples), batch_size):
        chunk = list(examples[start : start + batch_size])
        chunk += [("",) * len(chunk[0])] * (batch_size - len(chunk))  # one batch shape: one compilation per length
        inputs = encode(loaded, chunk)
        length = _bucket(int(inputs["attention_mask"].sum(axis=1).max()), loaded.max_seq_len)
        logits = np.asarray(logits_fn(loaded.params, {k: v[:, :length] for k, v in inputs.items()}))
        outputs.append(logits[: min(batch_size, len(examples) - start)])
    logits = np.concatenate(outputs) if outputs else np.zeros((0, max(len(loaded.label_names), 1)), np.float32)
    if loaded.is_regression:
        return logits[:, 0]
    return np.asarray(jax.nn.softmax(logits, axis=-1))


def encode(loaded: LoadedModel, examples: Sequence[Example]) -> dict[str, np.ndarray]:
    """input_ids, attention_mask, token_type_ids: int32 [N, max_seq_len] for examples that are all single texts or
    all sentence pairs, packed as fine-tuning packs them (also what `sslm serve` feeds its classifier).

    The tokenizer's `encode` (the in-graph WordPiece's, or the TF-free host one of `load_model(...,
    host_tokenizer=True)`) gives the ids; `data.host_finetuning.pack` lays them out as `data.finetuning.pack_inputs`
    does in-graph (tests/test_classify_pack.py checks the two agree)."""
    widths = {len(e) for e in examples}
    if len(widths) != 1 or not widths <= {1, 2}:
        raise SslmError(f"examples must all be single texts or all sentence pairs; got widths {sorted(widths)}")
    segments = getattr(loaded.model_config, "type_vocab_size", 2)
    if widths == {2} and segments < 2:  # token type 1 would be looked up past the table (NaN, or a wrong row)
        raise SslmError(
            f"{loaded.path}: the model has type_vocab_size={segments}, no embedding for a pair's second segment; "
            "give single texts"
        )
    tok = loaded.tokenizer
    columns = [tok.encode([e[i] for e in examples]) for i in range(len(examples[0]))]
    return pack(*columns, max_seq_len=loaded.max_seq_len, cls_id=tok.cls_id, sep_id=tok.sep_id, pad_id=tok.pad_id)


def records(loaded: LoadedModel, examples: Sequence[Example], outputs: np.ndarray) -> list[dict]:
    """One dict per example: {"text": str (or [a, b]), "label": name, "probabilities": {name: p}}; regression:
    {"text": ..., "score": s}."""
    out = []
    for example, value in zip(examples, outputs):
        text = example[0] if len(example) == 1 else list(example)
        if loaded.is_regression:
            out.append({"text": text, "score": float(value)})
        else:
            probabilities = {name: float(p) for name, p in zip(loaded.label_names, value)}
            label = loaded.label_names[int(np.argmax(value))]
            out.append({"text": text, "label": label, "probabilities": probabilities})
    return out


def read_examples(path: str | os.PathLike, *, text_fields: Sequence[str]) -> list[Example]:
    """The texts of a file, by its name: .tsv / .csv (header row naming the columns), .jsonl (one object per line),
    anything else plain text (one example per non-blank line; single texts only). A further .gz is decompressed;
    the path may be a tf.io.gfile URL (read by `sslm_jax.data.files`, as fine-tuning files are).

    Example: a tsv "sentence\\tlabel\\ngood fun\\t1\\n" read with text_fields ("sentence",) -> [("good fun",)].
    """
    path = os.fspath(path)
    fields = tuple(text_fields)
    if not files.is_file(path):
        if os.path.isdir(path):
            raise DataError(f"input {path} is a folder; name a file")
        raise DataError(f"input file {path} does not exist")
    name = path.lower().removesuffix(".gz")
    fmt = next((f for f in files.RECORD_FORMATS if name.endswith("." + f)), "text")
    if fmt == "text" and len(fields) != 1:
        raise DataError(
            f"{path}: plain text holds one text per line, but the model reads sentence pairs ({', '.join(fields)}): "
            f"give a .tsv, .csv or .jsonl file with those columns"
        )
    with files.reading(path), files.open_text(path) as f:
        if fmt == "text":
            examples = [(line.rstrip("\r\n"),) for line in f if line.strip()]
        else:
            examples = [_select(record, fields, where, fmt) for where, record in files.records(f, path, fmt)]
    if not examples:
        raise DataError(f"{path} has no examples")
    return examples


def _select(record: dict, fields: tuple[str, ...], where: str, fmt: str) -> Example:
    for field in fields:
        if field not in record:
            kind = "field" if fmt == "jsonl" else "column"
            raise DataError(
                f"{where}: no {kind} {field!r} (it has {', '.join(record) or 'none'}); the model reads "
                f"{', '.join(fields)}: rename the {kind} or pass --text-field"
            )
        if not isinstance(record[field], str):
            raise DataError(f"{where}: {field!r} must hold text")
    return tuple(record[field] for field in fields)


def _text_fields(loaded: LoadedModel, given: Sequence[str] | None) -> tuple[str, ...]:
    fields = tuple(f.strip() for f in (given or ()) if f.strip()) or loaded.text_fields or ("text",)
    if loaded.text_fields and len(fields) != len(loaded.text_fields):
        kind = "sentence pairs" if len(loaded.text_fields) == 2 else "single texts"
        raise DataError(
            f"the model was trained on {kind} ({', '.join(loaded.text_fields)}); the text fields given name "
            f"{len(fields)} column(s): {', '.join(fields)}"
        )
    if not 1 <= len(fields) <= 2:
        raise DataError(f"text fields {fields}: name one column, or two for sentence pairs")
    return fields


def _check_classifier(loaded: LoadedModel) -> None:
    if loaded.head == "causal_lm":
        raise SslmError(
            f"{loaded.path} holds a causal language model, not a classifier: `sslm generate` continues text with "
            "it; classifiers are fine-tuned from BERT or ELECTRA models (`sslm finetune`)"
        )
    if loaded.head != "classification":
        raise SslmError(
            f"{loaded.path} holds a {loaded.head} model, not a classifier: fine-tune it first (`sslm finetune`)"
        )


def _bucket(longest: int, max_seq_len: int) -> int:
    """The padded length of a batch: the next power of two >= its longest row, within [MIN_LENGTH, max_seq_len]."""
    return min(max_seq_len, max(MIN_LENGTH, 1 << (max(longest, 1) - 1).bit_length()))


def _write_atomically(path: pathlib.Path, text: str) -> None:
    if path.is_dir():
        raise DataError(f"output {path} is a directory; name a file")
    if not path.parent.is_dir():
        raise DataError(f"output folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise

"""One way to load a trained model for inference: an sslm workdir (or one of its checkpoints), or a Hugging Face
directory (config.json + model.safetensors + the tokenizer's files): BERT (vocab.txt) or GPT-2 (vocab.json,
merges.txt).

    loaded = load_model("runs/sst2")       # the latest checkpoint of a fine-tuning run
    loaded.head                            # "classification" ("pretraining" for a pretraining run)
    loaded.label_names                     # ("negative", "positive"), as saved with the checkpoint
    out = loaded.model.apply({"params": loaded.params}, input_ids, attention_mask=mask, token_type_ids=types)

The parameters land on the first local device (inference is a one-host affair); the model is rebuilt from what was
saved with the checkpoint (the run's config and vocabulary, or config.json / tokenizer_config.json), so nothing has
to be repeated on the command line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import flax.linen as nn
import jax

from sslm_jax.checkpoints import layout, transplant
from sslm_jax.errors import CheckpointError
from sslm_jax.interop import huggingface
from sslm_jax.models import bert, registry


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model ready for `model.apply({"params": params}, ...)`, with what is needed to feed it text.

    Attributes:
      path: the checkpoint step directory or Hugging Face directory that was read.
      kind: "sslm" or "huggingface".
      head: "pretraining" | "masked_lm" | "classification" | "encoder" | "causal_lm" | ELECTRA's "generator" |
        "discriminator" (which outputs it has).
      model_config, model, params: the model's config (BertConfig, GPTConfig), the Flax module and its parameters
        (on one device).
      tokenizer: the model's tokenizer (WordPiece for BERT, byte-level BPE for GPT-2; `sslm_jax.data.tokenizers`).
      vocab_path: the vocabulary file.
      label_names: class names in label-id order (classification); () for regression and other heads.
      is_regression: a classification head with one output, a score.
      text_fields: the column(s) the classifier was trained on ("sentence" or "question", "sentence"); () when
        unknown (a Hugging Face directory).
      max_seq_len: texts are cut to this many tokens (special tokens included).
      run_config: the run's saved config (sslm checkpoints), else None.
      compression: for a directory written by `sslm quantize` / `sslm prune` (kind "compressed"): its record
        ({"quantization": mode or None, "pruning": {...} or None, "source": ..., "masks": {path: bool array}}).
    """

    path: pathlib.Path
    kind: str
    head: str
    model_config: Any
    model: nn.Module
    params: Any
    tokenizer: Any
    vocab_path: pathlib.Path
    label_names: tuple[str, ...]
    is_regression: bool
    text_fields: tuple[str, ...]
    max_seq_len: int
    run_config: Any = None
    compression: Any = None


def family_name(loaded: LoadedModel) -> str:
    """The model family of a loaded model: the run's `model.family`, or BERT / GPT-2 for Hugging Face directories."""
    if loaded.run_config is not None:
        return loaded.run_config.model.family
    return "gpt" if loaded.head == "causal_lm" else "bert"


def load_model(path: str | os.PathLike, *, host_tokenizer: bool = False) -> LoadedModel:
    """The model at `path`: an sslm workdir (its latest checkpoint), `checkpoints/<step>`, a Hugging Face BERT,
    ELECTRA or GPT-2 directory, or a directory written by `sslm quantize` / `sslm prune`. CheckpointError (one line)
    when `path` is none of these or is incomplete.

    host_tokenizer: give the tokenizer kind's TF-free host tokenizer (`TokenizerKind.load_host`: `encode(texts)`,
    no in-graph `tokenize`) where it has one, so that one-shot inference does not import TensorFlow."""
    path = pathlib.Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: give an sslm workdir or a Hugging Face model directory")
    if (path / "compressed.json").is_file():  # `sslm quantize` / `sslm prune` output
        from sslm_jax.inference import compressed_dir

        return compressed_dir.load(path, host_tokenizer=host_tokenizer)
    step_dir = layout.latest_checkpoint(path)
    if step_dir is not None:
        return _load_sslm(pathlib.Path(os.fspath(step_dir)), host_tokenizer)
    if (path / huggingface.CONFIG_FILE).is_file():
        return _load_huggingface(path, host_tokenizer)
    raise CheckpointError(
        f"{path} holds no sslm checkpoint (checkpoints/<step>) and no Hugging Face config.json: point at a training "
        f"run's workdir or at an exported model directory"
    )


def _load_sslm(step_dir: pathlib.Path, host_tokenizer: bool) -> LoadedModel:
    from sslm_jax.data import tokenizers

    run_config = layout.load_config(step_dir)
    family, head = registry.get(run_config.model.family), run_config.model.head
    if head not in family.heads:
        raise CheckpointError(f"{step_dir}: its config records model.head={head!r}, none of {', '.join(family.heads)}")
    kind = tokenizers.get(run_config.data.tokenizer)
    vocab_path = pathlib.Path(os.fspath(layout.vocab_dir(step_dir))) / kind.files[0]
    tok = kind.load_for(vocab_path, run_config.data, host=host_tokenizer)
    model_config = family.config_for(run_config.model, tok.vocab_size)
    label_names: tuple[str, ...] = ()
    num_labels = 2
    if head == "classification":
        num_labels = run_config.data.num_labels
        label_names = tuple(str(n) for n in run_config.data.label_names)
        if num_labels < 1 or (num_labels > 1 and len(label_names) != num_labels):
            raise CheckpointError(
                f"{step_dir}: its config records no label set (data.num_labels={num_labels}, data.label_names="
                f"{label_names}); it was not saved by `sslm finetune`"
            )
    model = family.model(model_config, head, num_labels=num_labels)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.eval_shape(lambda rng: bert.init_params(model, rng), jax.random.key(0))
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract)
    loaded = transplant.load_params(step_dir, params=abstract)
    if loaded.fresh:
        raise CheckpointError(f"{step_dir}: the checkpoint lacks {', '.join(loaded.fresh[:3])}; it is incomplete")
    text_field = run_config.data.text_field if head == "classification" else ""
    return LoadedModel(
        path=step_dir,
        kind="sslm",
        head=head,
        model_config=model_config,
        model=model,
        params=loaded.params,
        tokenizer=tok,
        vocab_path=vocab_path,
        label_names=label_names,
        is_regression=head == "classification" and num_labels == 1,
        text_fields=tuple(f.strip() for f in text_field.split(",") if f.strip()),
        max_seq_len=run_config.data.max_seq_len,
        run_config=run_config,
    )


def _load_huggingface(directory: pathlib.Path, host_tokenizer: bool) -> LoadedModel:
    model_type = _read_json(directory / huggingface.CONFIG_FILE).get("model_type")
    if model_type == "gpt2":
        return _load_hf_gpt2(directory, host_tokenizer)
    if model_type == "electra":
        from sslm_jax.interop import hf_electra

        return _load_hf_wordpiece(directory, hf_electra, host_tokenizer)
    return _load_hf_wordpiece(directory, huggingface, host_tokenizer)


def _load_hf_gpt2(directory: pathlib.Path, host_tokenizer: bool) -> LoadedModel:
    from sslm_jax.data import tokenizers
    from sslm_jax.interop import hf_gpt2

    model_config, params = hf_gpt2.load_checkpoint(directory)
    kind = tokenizers.get("bpe")
    missing = [name for name in kind.files if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(f"{directory}: no {' / '.join(missing)} beside config.json; GPT-2's BPE files are needed")
    tok = kind.load_for(directory / kind.files[0], None, host=host_tokenizer)
    return LoadedModel(
        path=directory,
        kind="huggingface",
        head="causal_lm",
        model_config=model_config,
        model=registry.get("gpt").model(model_config, "causal_lm"),
        params=jax.device_put(params, jax.local_devices()[0]),
        tokenizer=tok,
        vocab_path=directory / kind.files[0],
        label_names=(),
        is_regression=False,
        text_fields=(),
        max_seq_len=model_config.max_position_embeddings,
    )


def _load_hf_wordpiece(directory: pathlib.Path, interop, host_tokenizer: bool) -> LoadedModel:
    """A Hugging Face BERT or ELECTRA directory, `interop` being its torch-free reader (`sslm_jax.interop`)."""
    import types

    from sslm_jax.data import tokenizers

    model_config, params = interop.load_checkpoint(directory)
    head = interop.head_of(params)
    num_labels = interop.num_labels_of(params)
    hf_config = json.loads((directory / huggingface.CONFIG_FILE).read_text())
    tokenizer_config = _read_json(directory / "tokenizer_config.json")
    vocab_path = directory / "vocab.txt"
    if not vocab_path.is_file():
        raise CheckpointError(f"{directory}: no vocab.txt beside config.json; its WordPiece vocabulary is needed")
    casing = types.SimpleNamespace(lower_case=bool(tokenizer_config.get("do_lower_case", True)))
    tok = tokenizers.get("wordpiece").load_for(vocab_path, casing, host=host_tokenizer)
    if head == "classification" and hf_config.get("problem_type") == "multi_label_classification":
        raise CheckpointError(
            f"{directory} is a multi-label classifier (problem_type 'multi_label_classification': one sigmoid per "
            "label); sslm_jax classifiers pick one label with a softmax and would misread it"
        )
    label_names: tuple[str, ...] = ()
    is_regression = head == "classification" and (
        num_labels == 1 or hf_config.get("problem_type") == "regression"
    )
    if head == "classification" and not is_regression:
        id2label = hf_config.get("id2label") or {}
        label_names = tuple(str(id2label.get(str(i), f"LABEL_{i}")) for i in range(num_labels))
    # Hugging Face's tokenizers cut at model_max_length; the position table bounds it in any case.
    max_len = tokenizer_config.get("model_max_length")
    limit = model_config.max_position_embeddings
    max_seq_len = max_len if isinstance(max_len, int) and 4 <= max_len <= limit else limit
    return LoadedModel(
        path=directory,
        kind="huggingface",
        head=head,
        model_config=model_config,
        model=interop.model_for_head(model_config, head, num_labels=max(num_labels, 1)),
        params=jax.device_put(params, jax.local_devices()[0]),
        tokenizer=tok,
        vocab_path=vocab_path,
        label_names=label_names,
        is_regression=is_regression,
        text_fields=(),
        max_seq_len=max_seq_len,
    )


def _read_json(file: pathlib.Path) -> dict:
    if not file.is_file():
        return {}
    try:
        value = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file}: cannot be read as JSON ({e})") from None
    return value if isinstance(value, dict) else {}

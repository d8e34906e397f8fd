"""Hugging Face ELECTRA checkpoints ⇄ sslm_jax parameters: config.json + model.safetensors, torch-free.

    config, params = load_checkpoint("electra-small-discriminator/")   # head from config.json, else the weights
    model = model_for_head(config, head_of(params), num_labels=num_labels_of(params))
    save_checkpoint("export/", config, params, head="discriminator", vocab_file="vocab.txt")
    save_pretraining_checkpoints("run/hf", config, joint_params)       # run/hf/discriminator, run/hf/generator
    config, joint_params = load_pretraining_checkpoints("hf/discriminator", "hf/generator")
    # then, in PyTorch: transformers.ElectraForPreTraining.from_pretrained("run/hf/discriminator")

A head names a Hugging Face class and the sslm_jax module (models/electra.py) with the same parameters:

    "discriminator"   ElectraForPreTraining              electra + discriminator_predictions
    "generator"       ElectraForMaskedLM                 electra + generator_predictions + generator_lm_head (bias)
    "classification"  ElectraForSequenceClassification   electra + classifier (dense, out_proj)
    "pretraining"     (none: sslm_jax's joint model)     split into a discriminator and a generator to export

Conversion is renaming plus the torch `nn.Linear` layout (`safetensors_io.to_torch`). Hugging Face's
`embeddings_project` sits beside the encoder (electra.embeddings_project), ours inside it. The generator's output
weight is tied to the word table on both sides: it is never written and, when a checkpoint has it, must equal it.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import traverse_util

from sslm_jax.errors import CheckpointError
from sslm_jax.interop import huggingface, safetensors_io
from sslm_jax.models import electra

MODEL_TYPE = "electra"
HEADS = ("discriminator", "generator", "classification")
ARCHITECTURES = {
    "discriminator": "ElectraForPreTraining",
    "generator": "ElectraForMaskedLM",
    "classification": "ElectraForSequenceClassification",
}
# Top-level names of each head's parameter tree.
_TOPS = {
    "pretraining": {"electra", "discriminator_predictions", "generator_encoder", "generator_predictions",
                    "generator_lm_head"},
    "discriminator": {"electra", "discriminator_predictions"},
    "generator": {"electra", "generator_predictions", "generator_lm_head"},
    "classification": {"electra", "classifier"},
}  # fmt: skip
# Our module path (joined with "/") -> Hugging Face module path. Leaves: kernel/scale/embedding -> weight.
_MODULES = (
    (r"electra/embeddings/(\w+)", r"electra.embeddings.\1"),
    (r"electra/encoder/embeddings_project", "electra.embeddings_project"),
    (r"electra/encoder/layer_(\d+)/attention/(query|key|value)", r"electra.encoder.layer.\1.attention.self.\2"),
    (r"electra/encoder/layer_(\d+)/attention/output", r"electra.encoder.layer.\1.attention.output.dense"),
    (r"electra/encoder/layer_(\d+)/attention_layer_norm", r"electra.encoder.layer.\1.attention.output.LayerNorm"),
    (r"electra/encoder/layer_(\d+)/intermediate", r"electra.encoder.layer.\1.intermediate.dense"),
    (r"electra/encoder/layer_(\d+)/output", r"electra.encoder.layer.\1.output.dense"),
    (r"electra/encoder/layer_(\d+)/output_layer_norm", r"electra.encoder.layer.\1.output.LayerNorm"),
    (r"(discriminator_predictions|generator_predictions|classifier)/(\w+)", r"\1.\2"),
    (r"generator_lm_head", "generator_lm_head"),
)  # fmt: skip
_LEAVES = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}
_BUFFERS = ("electra.embeddings.position_ids", "electra.embeddings.token_type_ids")  # non-parameters some files hold
_TIED, _WORDS = "generator_lm_head.weight", "electra.embeddings.word_embeddings.weight"


# --- Heads ---------------------------------------------------------------------------------------------------


def model_for_head(config: electra.ElectraConfig, head: str, *, num_labels: int = 2) -> nn.Module:
    """The module whose parameters `head` names, `config` being that model's own (a generator's for "generator")."""
    if head == "discriminator":
        return electra.ElectraDiscriminator(config)
    if head == "generator":
        return electra.ElectraGenerator(config)
    if head == "classification":
        return electra.ElectraForSequenceClassification(config, num_labels=num_labels)
    if head == "pretraining":
        return electra.ElectraPretrainingModel(config)
    raise CheckpointError(f"head={head!r} is not one of {', '.join((*HEADS, 'pretraining'))}")


def head_of(params: Mapping[str, Any]) -> str:
    """Which head a parameter tree belongs to, from its top-level names: {electra, classifier} -> "classification"."""
    head = next((h for h, top in _TOPS.items() if set(params) == top), None)
    if head is None:
        hint = " (pass variables['params'], not the variables)" if "params" in params else ""
        raise CheckpointError(f"parameter tree with top-level names {sorted(params)} is not an ELECTRA head{hint}")
    return head


def num_labels_of(params: Mapping[str, Any]) -> int:
    """Classes of a classification tree (its out_proj bias length); 0 for other heads."""
    return int(np.shape(params["classifier"]["out_proj"]["bias"])[0]) if "classifier" in params else 0


def split_pretraining_params(params: Mapping[str, Any]) -> tuple[dict, dict]:
    """Joint pretraining params -> (ElectraDiscriminator params, ElectraGenerator params), the shared embeddings in
    both (the same arrays): {electra, discriminator_predictions, generator_encoder, generator_predictions,
    generator_lm_head} -> ({electra, discriminator_predictions}, {electra: {embeddings, encoder <- generator_encoder},
    generator_predictions, generator_lm_head})."""
    if head_of(params) != "pretraining":
        raise CheckpointError(f"parameter tree with top-level names {sorted(params)} is not ELECTRA pretraining's")
    discriminator = {k: params[k] for k in _TOPS["discriminator"]}
    embeddings = params["electra"]["embeddings"]
    heads = {k: params[k] for k in ("generator_predictions", "generator_lm_head")}
    return discriminator, {"electra": {"embeddings": embeddings, "encoder": params["generator_encoder"]}, **heads}


def join_pretraining_params(discriminator: Mapping[str, Any], generator: Mapping[str, Any]) -> dict:
    """Inverse of `split_pretraining_params`; CheckpointError unless both hold the same embeddings (the joint model
    has one set)."""
    ours, theirs = (traverse_util.flatten_dict(t["electra"]["embeddings"]) for t in (discriminator, generator))
    if ours.keys() != theirs.keys() or not all(np.array_equal(ours[k], theirs[k]) for k in ours):
        raise CheckpointError("the generator's embeddings differ from the discriminator's; the joint model shares them")
    heads = {k: generator[k] for k in ("generator_predictions", "generator_lm_head")}
    return {**discriminator, "generator_encoder": generator["electra"]["encoder"], **heads}


@functools.lru_cache(maxsize=32)
def _abstract(config: electra.ElectraConfig, head: str, num_labels: int) -> dict[tuple[str, ...], tuple[int, ...]]:
    """A head's leaf paths -> shapes (traced, never allocated)."""
    model = model_for_head(config, head, num_labels=num_labels)
    tree = jax.eval_shape(lambda rng: electra.init_params(model, rng, seq_len=1), jax.random.key(0))
    return {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(tree).items()}


def _hf_name(path: tuple[str, ...]) -> str:
    """Our path -> the transformers state-dict key: ("electra", "encoder", "layer_0", "attention", "query", "kernel")
    -> "electra.encoder.layer.0.attention.self.query.weight"."""
    module = "/".join(path[:-1])
    for pattern, replacement in _MODULES:
        if re.fullmatch(pattern, module):
            return f"{re.sub(pattern, replacement, module)}.{_LEAVES[path[-1]]}"
    raise CheckpointError(f"parameter {'/'.join(path)} has no Hugging Face counterpart")


# --- Loading -----------------------------------------------------------------------------------------------


def load_checkpoint(directory: str | os.PathLike) -> tuple[electra.ElectraConfig, dict]:
    """A Hugging Face ELECTRA directory -> (ElectraConfig, float32 numpy params of `model_for_head(config, head)`).

    The head is config.json's `architectures[0]` (ElectraForPreTraining, ElectraForMaskedLM or
    ElectraForSequenceClassification), else what the weights hold; `head_of(params)` tells which. The weights are
    model.safetensors or the shards of model.safetensors.index.json; ElectraModel's bare names are read too.

    Raises:
      CheckpointError (one line, naming the file): no directory or config.json, not ELECTRA, options our ELECTRA does
      not compute, another architecture, no safetensors file, weights missing, extra or of the wrong shape.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    file = directory / safetensors_io.CONFIG_FILE
    d = safetensors_io.read_config(file, model_type=None)
    if d.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"{directory} is not an ELECTRA checkpoint (model_type={d.get('model_type')!r})")
    config = _electra_config(d, file)
    files = safetensors_io.weight_files(directory)
    if not files:
        raise CheckpointError(f"{directory}: no {safetensors_io.SAFETENSORS_FILE} next to config.json")
    weights_file = files[0] if len(files) == 1 else directory / f"{safetensors_io.SAFETENSORS_FILE}.index.json"
    tensors: dict[str, np.ndarray] = {}
    for f in files:
        tensors.update(safetensors_io.read_safetensors(f))
    tensors = _canonical_names(tensors, weights_file)
    head = _head(d, tensors, file)
    if head == "generator" and not d.get("tie_word_embeddings", True):
        raise CheckpointError(f"{file}: tie_word_embeddings=False is not supported (sslm_jax's generator ties them)")
    num_labels = 0
    if head == "classification":
        found = tensors.get("classifier.out_proj.bias")
        num_labels = 0 if found is None else int(np.shape(found)[0])
        in_config = len(d["id2label"]) if isinstance(d.get("id2label"), dict) else d.get("num_labels")
        if num_labels and in_config is not None and num_labels != in_config:
            raise CheckpointError(f"{weights_file}: classifier has {num_labels} labels but {file} says {in_config}")
    return config, _convert(config, head, num_labels or 2, tensors, weights_file)


def _electra_config(d: dict[str, Any], file: pathlib.Path) -> electra.ElectraConfig:
    """Refuses what our ELECTRA cannot compute rather than loading it into a model that would compute otherwise."""
    unsupported = (("is_decoder", False), ("add_cross_attention", False), ("position_embedding_type", "absolute"))
    for key, supported in unsupported:
        if d.get(key, supported) != supported:
            raise CheckpointError(f"{file}: {key}={d[key]!r} is not supported (sslm_jax's ELECTRA has {supported!r})")
    try:
        return electra.ElectraConfig.from_hf_dict(d)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{file}: {e}") from None


def _canonical_names(tensors: dict[str, np.ndarray], file: pathlib.Path) -> dict[str, np.ndarray]:
    """ElectraModel's bare names -> "electra."-prefixed ones; buffers dropped; a tied output weight checked, dropped."""
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        name = "electra." + name if name.startswith(("embeddings.", "embeddings_project.", "encoder.")) else name
        if name in out:
            raise CheckpointError(f"{file}: holds {name} twice (with and without the 'electra.' prefix)")
        out[name] = value
    if _TIED in out and _WORDS in out and not np.array_equal(out[_TIED], out[_WORDS]):
        raise CheckpointError(f"{file}: {_TIED} differs from {_WORDS}; sslm_jax ties them")
    return {k: v for k, v in out.items() if k not in (*_BUFFERS, _TIED)}


def _head(d: dict[str, Any], tensors: Mapping[str, Any], file: pathlib.Path) -> str:
    architectures = d.get("architectures") or []
    if architectures:
        by_class = {cls: head for head, cls in ARCHITECTURES.items()}
        if architectures[0] not in by_class:
            raise CheckpointError(
                f"{file}: architectures={architectures} has no sslm_jax counterpart; it reads "
                f"{', '.join(ARCHITECTURES.values())}"
            )
        return by_class[architectures[0]]
    for head, probe in (("classification", "classifier."), ("generator", "generator_"), ("discriminator", "discr")):
        if any(k.startswith(probe) for k in tensors):
            return head
    raise CheckpointError(f"{file}: no architectures and no ELECTRA head in the weights (a bare ElectraModel?)")


def _convert(config, head: str, num_labels: int, tensors: Mapping[str, np.ndarray], file: pathlib.Path) -> dict:
    shapes = _abstract(config, head, num_labels)
    names = {_hf_name(p): p for p in shapes}
    strays = sorted(set(tensors) - set(names))
    if strays:
        raise CheckpointError(f"{file}: weights not of an {ARCHITECTURES[head]} as config.json describes it: "
                              f"{', '.join(strays[:4])}")  # fmt: skip
    missing = [n for n in names if n not in tensors]
    if missing:
        raise CheckpointError(f"{file}: missing weights: {', '.join(missing[:4])}")
    flat = {}
    for name, path in names.items():
        w, want = np.asarray(tensors[name]), safetensors_io.torch_shape(path, shapes[path])
        if w.shape != want:
            raise CheckpointError(f"{file}: {name} has shape {w.shape} but config.json implies {want}")
        flat[path] = np.ascontiguousarray(safetensors_io.from_torch(path, w, shapes[path]), dtype=np.float32)
    return traverse_util.unflatten_dict(flat)


def load_pretraining_checkpoints(
    discriminator_dir: str | os.PathLike, generator_dir: str | os.PathLike
) -> tuple[electra.ElectraConfig, dict]:
    """A discriminator and a generator directory (e.g. a released pair) -> (the discriminator's config, with the
    generator_hidden_fraction that derives the generator's, params of `ElectraPretrainingModel`).

    CheckpointError when they are not that pair: other heads, a generator that `generator_config` does not derive
    (other layers, embeddings, vocabulary), or embeddings that differ.
    """
    (config, discriminator), (gen_config, generator) = map(load_checkpoint, (discriminator_dir, generator_dir))
    if (head_of(discriminator), head_of(generator)) != ("discriminator", "generator"):
        raise CheckpointError(f"{discriminator_dir}, {generator_dir}: not a discriminator and a generator")
    config = config.replace(generator_hidden_fraction=gen_config.hidden_size / config.hidden_size)
    try:
        derived = electra.generator_config(config)
    except ValueError as e:
        raise CheckpointError(f"{generator_dir}: {e}") from None
    if derived != gen_config.replace(generator_hidden_fraction=config.generator_hidden_fraction):
        raise CheckpointError(f"{generator_dir}: its config.json is not the generator of {discriminator_dir}")
    return config, join_pretraining_params(discriminator, generator)


# --- Saving ------------------------------------------------------------------------------------------------


def save_checkpoint(
    directory: str | os.PathLike,
    config: electra.ElectraConfig,
    params: Mapping[str, Any],
    *,
    head: str = "auto",
    vocab_file: str | os.PathLike | None = None,
    do_lower_case: bool = True,
    id2label: Sequence[str] | None = None,
    overwrite: bool = False,
    max_length: int | None = None,
) -> pathlib.Path:
    """Write `params` as a Hugging Face ELECTRA directory that `from_pretrained` of the head's class loads whole.

    Writes config.json (model_type "electra", `architectures` from the head) and model.safetensors (float32), plus
    vocab.txt, tokenizer_config.json and special_tokens_map.json when `vocab_file` is given. Validated first, written
    into a temporary sibling renamed into place: a failed save leaves nothing behind.

    Args:
      config: the config of the model `params` belong to (for joint pretraining params, the discriminator's).
      params: unboxed or boxed parameters of one head (a process-local copy; gather sharded arrays first).
      head: "auto" (the params' own head) or, for joint pretraining params, "discriminator" or "generator" (which
        is written with `generator_config(config)`).
      id2label: class names of a classification head, index = label id (default LABEL_0, LABEL_1, ...).
      overwrite: replace an existing non-empty directory.
      max_length: the tokenizer's model_max_length (as `huggingface.save_checkpoint`).
    """
    params = nn.meta.unbox(params)
    own = head_of(params)
    if own == "pretraining":
        if head not in ("discriminator", "generator"):
            raise CheckpointError(
                "pretraining parameters hold a discriminator and a generator: pass head='discriminator' or "
                "head='generator', or write both with save_pretraining_checkpoints"
            )
        discriminator, generator = split_pretraining_params(params)
        if head == "generator":
            config, params = electra.generator_config(config), generator
        else:
            params = discriminator
    elif head not in ("auto", own):
        raise CheckpointError(f"{own} parameters cannot be exported as head={head!r}")
    head = head_of(params)
    num_labels = num_labels_of(params)
    tensors = _export_tensors(config, head, num_labels, params)
    hf_config = _export_config(config, head, num_labels, id2label)
    vocab = huggingface.read_vocab(vocab_file, config) if vocab_file is not None else None
    with safetensors_io.atomic_directory(directory, overwrite=overwrite) as tmp:
        (tmp / safetensors_io.CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
        safetensors_io.write_safetensors(tmp / safetensors_io.SAFETENSORS_FILE, tensors)
        if vocab is not None:
            huggingface.write_vocab(
                tmp, vocab, config, do_lower_case=do_lower_case, tokenizer_class="ElectraTokenizer", max_length=max_length
            )
    return pathlib.Path(directory)


def save_pretraining_checkpoints(
    directory: str | os.PathLike, config: electra.ElectraConfig, params: Mapping[str, Any], **options: Any
) -> tuple[pathlib.Path, pathlib.Path]:
    """Joint pretraining params -> `directory`/discriminator and `directory`/generator (`save_checkpoint`'s
    `vocab_file`, `do_lower_case`, `overwrite` and `max_length` apply to both); returns the two paths."""
    directory = pathlib.Path(directory)
    heads = ("discriminator", "generator")
    return tuple(save_checkpoint(directory / h, config, params, head=h, **options) for h in heads)


def _export_tensors(config, head: str, num_labels: int, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    shapes = _abstract(config, head, max(num_labels, 1))
    given = traverse_util.flatten_dict(params)
    if set(given) != set(shapes):
        extra, lacking = sorted(set(given) - set(shapes)), sorted(set(shapes) - set(given))
        detail = "; ".join(
            f"{what}: {', '.join('/'.join(p) for p in paths[:3])}"
            for what, paths in (("unexpected", extra), ("missing", lacking))
            if paths
        )
        raise CheckpointError(f"{head} parameters do not match the config ({detail})")
    out = {}
    for path, x in given.items():
        if getattr(x, "is_fully_addressable", True) is False:
            raise CheckpointError(f"parameter {'/'.join(path)} is sharded across processes: gather it first")
        if tuple(np.shape(x)) != shapes[path]:
            raise CheckpointError(
                f"parameter {'/'.join(path)} has shape {tuple(np.shape(x))} but the config implies {shapes[path]}"
            )
        out[_hf_name(path)] = safetensors_io.to_torch(path, np.asarray(jax.device_get(x), dtype=np.float32))
    return out


def _export_config(config: electra.ElectraConfig, head: str, num_labels: int, id2label) -> dict[str, Any]:
    d = {
        "architectures": [ARCHITECTURES[head]],
        "model_type": MODEL_TYPE,
        **config.to_hf_dict(),
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "is_decoder": False,
        "add_cross_attention": False,
        "dtype": "float32",
    }
    if head != "classification":
        if id2label is not None:
            raise CheckpointError(f"id2label applies to head='classification', not head={head!r}")
        return d
    names = [f"LABEL_{i}" for i in range(num_labels)] if id2label is None else [str(n) for n in id2label]
    if len(names) != num_labels or len(set(names)) != len(names):
        raise CheckpointError(f"id2label needs {num_labels} distinct names (the classifier's size), got {names}")
    return {**d, "id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}

"""Hugging Face BERT checkpoints ⇄ sslm_jax parameters: `config.json` + `model.safetensors`, torch-free.

    config, params = load_checkpoint("bert-base-uncased/")                  # head from config.json / weights
    config, params = load_checkpoint(d, head="classification", num_labels=3, init_heads=True)  # new head
    model = model_for_head(config, head_of(params), num_labels=num_labels_of(params))

    save_checkpoint("export/", config, params, vocab_file="vocab.txt", do_lower_case=True)
    # then, in PyTorch: transformers.BertForPreTraining.from_pretrained("export/")

A *head* names both a Hugging Face class and the sslm_jax module with the same parameters:

    "pretraining"     BertForPreTraining              bert (with pooler) + cls.predictions + cls.seq_relationship
    "masked_lm"       BertForMaskedLM                 bert (no pooler) + cls.predictions
    "classification"  BertForSequenceClassification  bert (with pooler) + classifier
    "encoder"         BertModel                       bert (with pooler); our tree has no "bert" level

Conversion is renaming plus reshaping: torch `Linear.weight` is [out, in], a flax kernel [in..., out...]
(the attention projections keep heads as their own axis, e.g. query [hidden, heads, head_dim]).
The output embedding is tied to the word embeddings on both sides, so `cls.predictions.decoder.*` is never
written and, when a checkpoint has it, must equal what it is tied to.

Over 500 lines, but one topic: the name table, the readers (safetensors, sharded, pickle) and the writer must change
together whenever a head or a name does.
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

from sslm_jax.errors import CheckpointError
from sslm_jax.interop import safetensors_io
from sslm_jax.models import bert

HEADS = ("pretraining", "masked_lm", "classification", "encoder")
ARCHITECTURES = {
    "pretraining": "BertForPreTraining",
    "masked_lm": "BertForMaskedLM",
    "classification": "BertForSequenceClassification",
    "encoder": "BertModel",
}
# Which heads a parameter tree can be exported as: a subset of its weights must make the other model whole.
_EXPORTABLE = {
    "pretraining": ("pretraining", "masked_lm", "encoder"),
    "masked_lm": ("masked_lm",),
    "classification": ("classification", "encoder"),
    "encoder": ("encoder",),
}
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

CONFIG_FILE = safetensors_io.CONFIG_FILE
SAFETENSORS_FILE = safetensors_io.SAFETENSORS_FILE
PICKLE_FILE = "pytorch_model.bin"

# Our module path (joined with "/") -> Hugging Face module path. Leaves: kernel/scale/embedding -> weight.
_MODULES = (
    (r"bert/embeddings/(word_embeddings|position_embeddings|token_type_embeddings|LayerNorm)", r"bert.embeddings.\1"),
    (r"bert/encoder/layer_(\d+)/attention/(query|key|value)", r"bert.encoder.layer.\1.attention.self.\2"),
    (r"bert/encoder/layer_(\d+)/attention/output", r"bert.encoder.layer.\1.attention.output.dense"),
    (r"bert/encoder/layer_(\d+)/attention_layer_norm", r"bert.encoder.layer.\1.attention.output.LayerNorm"),
    (r"bert/encoder/layer_(\d+)/intermediate", r"bert.encoder.layer.\1.intermediate.dense"),
    (r"bert/encoder/layer_(\d+)/output", r"bert.encoder.layer.\1.output.dense"),
    (r"bert/encoder/layer_(\d+)/output_layer_norm", r"bert.encoder.layer.\1.output.LayerNorm"),
    (r"bert/pooler", "bert.pooler.dense"),
    (r"predictions/transform", "cls.predictions.transform.dense"),
    (r"predictions/transform_layer_norm", "cls.predictions.transform.LayerNorm"),
    (r"predictions", "cls.predictions"),
    (r"seq_relationship", "cls.seq_relationship"),
    (r"classifier", "classifier"),
)  # fmt: skip
_LEAVES = {"kernel": "weight", "scale": "weight", "embedding": "weight", "bias": "bias"}
# Parts of the encoder that cannot be made up: a checkpoint without them is not a BERT checkpoint.
_ENCODER_PREFIXES = ("bert.embeddings.", "bert.encoder.")
# Non-parameter buffers some checkpoints carry.
_BUFFERS = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")


# --- Heads and models --------------------------------------------------------------------------------------


def model_for_head(config: bert.BertConfig, head: str, *, num_labels: int = 2) -> nn.Module:
    """The sslm_jax module whose parameters `head` names (see the module docstring)."""
    if head == "pretraining":
        return bert.BertForPreTraining(config)
    if head == "masked_lm":
        return bert.BertForMaskedLM(config)
    if head == "classification":
        return bert.BertForSequenceClassification(config, num_labels=num_labels)
    if head == "encoder":
        return bert.BertModel(config, add_pooling_layer=True)
    raise CheckpointError(f"head={head!r} is not one of {', '.join(HEADS)}")


def head_of(params: Mapping[str, Any]) -> str:
    """Which head a parameter tree belongs to, from its top-level names: {"bert", "classifier"} -> "classification"."""
    keys = set(params)
    for head, top in (
        ("pretraining", {"bert", "predictions", "seq_relationship"}),
        ("masked_lm", {"bert", "predictions"}),
        ("classification", {"bert", "classifier"}),
        ("encoder", {"embeddings", "encoder", "pooler"}),
    ):
        if keys == top:
            return head
    hint = " (pass variables['params'], not the variables)" if "params" in keys else ""
    raise CheckpointError(f"parameter tree with top-level names {sorted(keys)} is not a BERT head{hint}")


def num_labels_of(params: Mapping[str, Any]) -> int:
    """Classes of a classification tree (its classifier bias length); 0 for other heads."""
    return int(np.shape(params["classifier"]["bias"])[0]) if "classifier" in params else 0


@functools.lru_cache(maxsize=32)
def _abstract_params(config: bert.BertConfig, head: str, num_labels: int) -> dict:
    """Shapes and dtypes of a head's parameters (traced, never allocated); cached since tracing takes a while."""
    model = model_for_head(config, head, num_labels=num_labels)
    return jax.eval_shape(lambda rng: bert.init_params(model, rng), jax.random.key(0))


# --- Name and layout conversion ----------------------------------------------------------------------------


def _hf_name(path: tuple[str, ...]) -> str:
    """Our parameter path -> the transformers state-dict key, e.g. for the first layer's query kernel:

    ("bert", "encoder", "layer_0", "attention", "query", "kernel") -> "bert.encoder.layer.0.attention.self.query.weight"
    """
    module, leaf = "/".join(path[:-1]), path[-1]
    for pattern, replacement in _MODULES:
        if re.fullmatch(pattern, module):
            return f"{re.sub(pattern, replacement, module)}.{_LEAVES[leaf]}"
    raise CheckpointError(f"parameter {'/'.join(path)} has no Hugging Face counterpart")


def _leaves(tree: Mapping[str, Any], head: str) -> list[tuple[tuple[str, ...], Any]]:
    """(path, leaf) pairs, with the encoder tree put under "bert" so every head shares one naming."""
    if head == "encoder":
        tree = {"bert": tree}
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(tuple(k.key for k in keys), leaf) for keys, leaf in flat]


def _unflatten(pairs: list[tuple[tuple[str, ...], Any]], head: str) -> dict:
    tree: dict = {}
    for path, leaf in pairs:
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = leaf
    return tree["bert"] if head == "encoder" else tree


# --- Loading -----------------------------------------------------------------------------------------------


def load_checkpoint(
    path: str | os.PathLike,
    *,
    head: str = "auto",
    num_labels: int | None = None,
    init_heads: bool = False,
    seed: int = 0,
    allow_pickle: bool = False,
) -> tuple[bert.BertConfig, dict]:
    """A Hugging Face BERT directory -> (BertConfig, float32 numpy params for `model_for_head(config, head)`).

    Args:
      path: directory with `config.json` and `model.safetensors` (or `model.safetensors.index.json` shards).
        Weights may be saved from BertForPreTraining, BertForMaskedLM, BertForSequenceClassification or BertModel,
        with or without the `bert.` prefix.
      head: "pretraining" | "masked_lm" | "classification" | "encoder", or "auto": the class named in
        config.json's `architectures`, else the richest head the weights hold.
      num_labels: classification only: the number of classes; default from the weights, else config.json.
      init_heads: initialise head weights the checkpoint lacks (pooler, cls.*, classifier) from `seed`, e.g. a
        new classifier on a pretrained encoder. Without it, missing weights are an error.
      allow_pickle: read `pytorch_model.bin` when there is no safetensors file. Unpickling can run code; this
        uses `torch.load(weights_only=True)` and needs PyTorch.

    Raises:
      CheckpointError naming the file: no directory or config.json, not a BERT, weights that disagree with
      config.json or are missing, an unreadable or truncated weights file, a pickle file without allow_pickle.
    """
    directory = pathlib.Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    hf_config = safetensors_io.read_config(directory / CONFIG_FILE, model_type="bert")
    config = _bert_config(hf_config, directory / CONFIG_FILE)
    weights_file, tensors = _read_weights(directory, allow_pickle=allow_pickle)
    tensors = _canonical_names(tensors, weights_file)
    head = _resolve_head(head, hf_config, tensors, directory / CONFIG_FILE)

    config_labels = _config_num_labels(hf_config)
    if head == "classification":
        has_classifier = "classifier.bias" in tensors
        found = int(np.shape(tensors["classifier.bias"])[0]) if has_classifier else None
        if num_labels is None:
            num_labels = found or config_labels or 2
        if found is not None and found != num_labels:
            raise CheckpointError(f"{weights_file}: classifier has {found} labels, num_labels={num_labels} was asked")
        if found is not None and config_labels is not None and found != config_labels:
            raise CheckpointError(
                f"{weights_file}: classifier has {found} labels but {directory / CONFIG_FILE} says {config_labels}"
            )
    elif num_labels is not None:
        raise CheckpointError(f"num_labels applies to head='classification', not head={head!r}")

    params = _convert(config, head, num_labels or 2, tensors, weights_file, init_heads=init_heads, seed=seed)
    return config, params


def _bert_config(d: dict[str, Any], file: pathlib.Path) -> bert.BertConfig:
    """Refuses what our BERT cannot compute rather than loading it into a model that would compute otherwise."""
    unsupported = {
        "is_decoder": (d.get("is_decoder", False), False),
        "add_cross_attention": (d.get("add_cross_attention", False), False),
        "position_embedding_type": (d.get("position_embedding_type", "absolute"), "absolute"),
        "tie_word_embeddings": (d.get("tie_word_embeddings", True), True),
    }
    for key, (value, supported) in unsupported.items():
        if value != supported:
            raise CheckpointError(f"{file}: {key}={value!r} is not supported (sslm_jax's BERT has {key}={supported!r})")
    try:
        return bert.BertConfig.from_hf_dict(d)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{file}: {e}") from None


def _config_num_labels(d: dict[str, Any]) -> int | None:
    if isinstance(d.get("id2label"), dict):
        return len(d["id2label"])
    return d.get("num_labels")


def _read_weights(directory: pathlib.Path, *, allow_pickle: bool) -> tuple[pathlib.Path, dict[str, np.ndarray]]:
    """(the file named in errors, name -> array) from safetensors (preferred) or, if allowed, a torch pickle."""
    for single, reader in ((SAFETENSORS_FILE, safetensors_io.read_safetensors), (PICKLE_FILE, _read_pickle)):
        files = safetensors_io.weight_files(directory, single)
        if not files:
            continue
        if reader is _read_pickle and not allow_pickle:
            raise CheckpointError(
                f"{files[0]}: a pickle file, which can run code when loaded; pass allow_pickle=True to read it "
                "with torch.load(weights_only=True), or convert it to model.safetensors"
            )
        tensors: dict[str, np.ndarray] = {}
        for file in files:
            tensors.update(reader(file))
        return (files[0] if len(files) == 1 else directory / f"{single}.index.json"), tensors
    raise CheckpointError(f"{directory}: no {SAFETENSORS_FILE} (or {PICKLE_FILE}) next to config.json")


def _read_pickle(file: pathlib.Path) -> dict[str, np.ndarray]:
    import torch  # only for the opted-in pickle path; everything else is torch-free

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- torch raises many types for a bad or unsafe pickle
        raise CheckpointError(f"{file}: cannot be read by torch.load(weights_only=True) ({e})") from None
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{file}: holds a {type(state).__name__}, not a state dict")
    return {k: v.detach().float().numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _canonical_names(tensors: dict[str, np.ndarray], file: pathlib.Path) -> dict[str, np.ndarray]:
    """BertModel layouts (no "bert." prefix) and TF-era LayerNorm names (gamma/beta) -> BertForX names."""
    out = {}
    for name, value in tensors.items():
        if name.startswith(("embeddings.", "encoder.", "pooler.")):
            name = "bert." + name
        name = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", name)
        name = re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name)
        if name in out:
            raise CheckpointError(f"{file}: holds {name} twice (with and without the 'bert.' prefix)")
        out[name] = value
    return out


def _resolve_head(head: str, hf_config: dict[str, Any], tensors: Mapping[str, Any], file: pathlib.Path) -> str:
    if head != "auto":
        if head not in HEADS:
            raise CheckpointError(f"head={head!r} is not one of auto, {', '.join(HEADS)}")
        return head
    architectures = hf_config.get("architectures") or []
    if architectures:
        by_class = {cls: h for h, cls in ARCHITECTURES.items()}
        if architectures[0] not in by_class:
            raise CheckpointError(
                f"{file}: architectures={architectures} has no sslm_jax counterpart; pass head= one of "
                f"{', '.join(HEADS)} (e.g. 'encoder' to load the encoder alone)"
            )
        return by_class[architectures[0]]
    if "classifier.weight" in tensors:
        return "classification"
    if "cls.predictions.transform.dense.weight" in tensors:
        return "pretraining" if "cls.seq_relationship.weight" in tensors else "masked_lm"
    return "encoder"


def _convert(config, head, num_labels, tensors, file, *, init_heads: bool, seed: int) -> dict:
    abstract = _leaves(_abstract_params(config, head, num_labels), head)
    expected = {_hf_name(p): (p, tuple(leaf.shape), safetensors_io.torch_shape(p, leaf.shape)) for p, leaf in abstract}
    everything = {_hf_name(p) for h in HEADS for p, _ in _leaves(_abstract_params(config, h, 2), h)}

    # An encoder weight the config does not describe (a 13th layer, cross-attention) means config.json is wrong.
    strays = sorted(k for k in tensors if k.startswith("bert.") and k not in everything and k not in _BUFFERS)
    if strays:
        raise CheckpointError(f"{file}: weights not described by config.json: {', '.join(strays[:4])}")
    for name, (_, _, shape) in expected.items():
        if name in tensors and tuple(np.shape(tensors[name])) != shape:
            got = tuple(np.shape(tensors[name]))
            raise CheckpointError(f"{file}: {name} has shape {got} but config.json implies {shape}")
    _check_tied(tensors, file)
    if "cls.predictions.bias" not in tensors and "cls.predictions.decoder.bias" in tensors:
        tensors = {**tensors, "cls.predictions.bias": tensors["cls.predictions.decoder.bias"]}

    missing = [name for name in expected if name not in tensors]
    encoder_missing = [n for n in missing if n.startswith(_ENCODER_PREFIXES)]
    if encoder_missing:
        raise CheckpointError(f"{file}: missing encoder weights: {', '.join(encoder_missing[:4])}")
    if missing and not init_heads:
        raise CheckpointError(
            f"{file}: has no weights for head={head!r} ({', '.join(missing[:4])}); pass init_heads=True to "
            "initialise them randomly, or choose the head the checkpoint was saved with"
        )
    fresh = {}
    if missing:
        model = model_for_head(config, head, num_labels=num_labels)
        fresh = dict(_leaves(bert.init_params(model, jax.random.key(seed)), head))

    pairs = []
    for name, (p, shape, _) in expected.items():
        value = safetensors_io.from_torch(p, np.asarray(tensors[name]), shape) if name in tensors else fresh[p]
        pairs.append((p, np.asarray(value, dtype=np.float32)))
    return _unflatten(pairs, head)


def _check_tied(tensors: Mapping[str, Any], file: pathlib.Path) -> None:
    for tied, source in (
        ("cls.predictions.decoder.weight", "bert.embeddings.word_embeddings.weight"),
        ("cls.predictions.decoder.bias", "cls.predictions.bias"),
    ):
        if tied in tensors and source in tensors and not np.array_equal(tensors[tied], tensors[source]):
            raise CheckpointError(f"{file}: {tied} differs from {source}; sslm_jax ties them and cannot load it")


# --- Saving ------------------------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    config: bert.BertConfig,
    params: Mapping[str, Any],
    *,
    head: str = "auto",
    vocab_file: str | os.PathLike | None = None,
    do_lower_case: bool = True,
    id2label: Mapping[int, str] | Sequence[str] | None = None,
    overwrite: bool = False,
    max_length: int | None = None,
) -> pathlib.Path:
    """Write `params` as a Hugging Face BERT directory; returns its path.

    Writes config.json (model_type "bert", `architectures` from the head) and model.safetensors (float32), plus
    vocab.txt and tokenizer_config.json when `vocab_file` is given, so `AutoTokenizer.from_pretrained(path)`
    works. Everything is validated first and written into a temporary sibling directory that is renamed into
    place, so a failed save leaves nothing behind.

    Args:
      params: unboxed or boxed parameters of one head (a process-local copy; gather sharded arrays first).
      head: "auto" (the head of `params`) or a head those params contain, e.g. "masked_lm" from pretraining
        params drops the pooler and NSP weights so `BertForMaskedLM.from_pretrained` finds nothing unexpected.
      id2label: class names for a classification head (a list, index = label id, or {id: name}).
      overwrite: replace an existing non-empty directory at `path`.
      max_length: the tokenizer's `model_max_length`, the tokens a text is cut to (a run's data.max_seq_len, so that
        the export classifies long texts as the run does); None: the model's max_position_embeddings.
    """
    path = pathlib.Path(path)
    params = nn.meta.unbox(params)
    own_head = head_of(params)
    head = own_head if head == "auto" else head
    if head not in _EXPORTABLE[own_head]:
        raise CheckpointError(
            f"{own_head} parameters cannot be exported as head={head!r}; choose one of {_EXPORTABLE[own_head]}"
        )
    num_labels = num_labels_of(params)
    tensors = _export_tensors(config, params, own_head, head, num_labels)
    hf_config = _export_config(config, head, num_labels, id2label)
    vocab = read_vocab(vocab_file, config) if vocab_file is not None else None
    with safetensors_io.atomic_directory(path, overwrite=overwrite) as tmp:
        (tmp / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
        safetensors_io.write_safetensors(tmp / SAFETENSORS_FILE, tensors)
        if vocab is not None:
            write_vocab(tmp, vocab, config, do_lower_case=do_lower_case, max_length=max_length)
    return path


def _export_tensors(config, params, own_head: str, head: str, num_labels: int) -> dict[str, np.ndarray]:
    abstract = dict(_leaves(_abstract_params(config, own_head, max(num_labels, 1)), own_head))
    given = _leaves(params, own_head)
    got_paths = {p for p, _ in given}
    if got_paths != set(abstract):
        extra, lacking = sorted(got_paths - set(abstract)), sorted(set(abstract) - got_paths)
        detail = "; ".join(
            f"{what}: {', '.join('/'.join(p) for p in paths[:3])}"
            for what, paths in (("unexpected", extra), ("missing", lacking))
            if paths
        )
        raise CheckpointError(f"{own_head} parameters do not match the config ({detail})")
    # Exporting a smaller head (pretraining -> masked_lm) keeps the leaves that head has; paths agree because
    # `_leaves` puts every encoder under "bert".
    keep = {p for p, _ in _leaves(_abstract_params(config, head, max(num_labels, 1)), head)}
    out = {}
    for p, x in given:
        if getattr(x, "is_fully_addressable", True) is False:
            raise CheckpointError(f"parameter {'/'.join(p)} is sharded across processes; gather it to one host first")
        if tuple(np.shape(x)) != tuple(abstract[p].shape):
            raise CheckpointError(
                f"parameter {'/'.join(p)} has shape {tuple(np.shape(x))} but the config implies {abstract[p].shape}"
            )
        if p in keep:
            name = _hf_name(p)
            # BertModel's own checkpoints have no "bert." prefix (it is the base model, not a submodule).
            out[name.removeprefix("bert.") if head == "encoder" else name] = safetensors_io.to_torch(
                p, np.asarray(jax.device_get(x), dtype=np.float32)
            )
    return out


def _export_config(config: bert.BertConfig, head: str, num_labels: int, id2label) -> dict[str, Any]:
    d = {
        "architectures": [ARCHITECTURES[head]],
        "model_type": "bert",
        **config.to_hf_dict(),
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "is_decoder": False,
        "add_cross_attention": False,
        "dtype": "float32",
    }
    if head == "classification":
        if id2label is None:
            names = [f"LABEL_{i}" for i in range(num_labels)]
        elif isinstance(id2label, Mapping):
            if sorted(int(i) for i in id2label) != list(range(num_labels)):
                raise CheckpointError(f"id2label keys {sorted(id2label)} must be exactly 0..{num_labels - 1}")
            names = [str(id2label[i]) for i in sorted(id2label, key=int)]
        else:
            names = [str(n) for n in id2label]
        if len(names) != num_labels or len(set(names)) != len(names):
            raise CheckpointError(f"id2label needs {num_labels} distinct names (the classifier's size), got {names}")
        d["id2label"] = {str(i): n for i, n in enumerate(names)}
        d["label2id"] = {n: i for i, n in enumerate(names)}
    elif id2label is not None:
        raise CheckpointError(f"id2label applies to head='classification', not head={head!r}")
    return d


def read_vocab(vocab_file: str | os.PathLike, config) -> list[str]:
    """A WordPiece vocab.txt (BERT's and ELECTRA's tokenizer) as a token list; CheckpointError (one line) when it is
    unreadable, larger than `config.vocab_size` or lacks a special token."""
    file = pathlib.Path(vocab_file)
    try:
        vocab = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: cannot read the vocabulary ({e})") from None
    if len(vocab) > config.vocab_size:
        raise CheckpointError(f"{file}: {len(vocab)} tokens but the model's vocab_size is {config.vocab_size}")
    lacking = [t for t in SPECIAL_TOKENS if t not in vocab]
    if lacking:
        raise CheckpointError(f"{file}: lacks the special token(s) {', '.join(lacking)} a BERT tokenizer needs")
    return vocab


def write_vocab(
    directory: pathlib.Path,
    vocab: list[str],
    config,
    *,
    do_lower_case: bool,
    tokenizer_class: str = "BertTokenizer",
    max_length: int | None = None,
) -> None:
    """vocab.txt, tokenizer_config.json and special_tokens_map.json, so `AutoTokenizer.from_pretrained` works;
    `max_length` (default: the model's max_position_embeddings) is the tokenizer's model_max_length."""
    (directory / "vocab.txt").write_text("".join(token + "\n" for token in vocab), encoding="utf-8")
    tokenizer_config = {
        "tokenizer_class": tokenizer_class,
        "do_lower_case": do_lower_case,
        # Uncased BERT strips accents along with lower-casing; cased keeps both (tokenizers' default behaviour).
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "model_max_length": max_length or config.max_position_embeddings,
        **{f"{t.strip('[]').lower()}_token": t for t in SPECIAL_TOKENS},
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    specials = {f"{t.strip('[]').lower()}_token": t for t in SPECIAL_TOKENS}
    (directory / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))

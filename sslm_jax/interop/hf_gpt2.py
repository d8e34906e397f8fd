"""Hugging Face GPT-2 checkpoints ⇄ sslm_jax `GPTLMHeadModel` parameters: config.json + model.safetensors, torch-free.

    config, params = load_checkpoint("gpt2/")         # GPT2LMHeadModel or GPT2Model weights, one file or shards
    out = gpt.GPTLMHeadModel(config).apply({"params": params}, ids)

    save_checkpoint("export/", config, params, tokenizer_dir="bpe/")   # + vocab.json, merges.txt
    # then, in PyTorch: transformers.GPT2LMHeadModel.from_pretrained("export/")

Hugging Face's GPT-2 keeps OpenAI's `Conv1D` layers, whose weights are [in, out] (a flax kernel's order, so no
transpose), and fuses the query, key and value projections into one `c_attn` [H, 3H] (bias [3H]) in that order.
Each Hugging Face tensor is therefore the concatenation, along its last axis, of one or more of our leaves
flattened to [in, out] (or [n]); `_NAMES` lists which. The output embedding (`lm_head.weight`) is tied to `wte` on
both sides: it is never written and, when a checkpoint has it, must equal `wte`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import re
import shutil
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from sslm_jax.errors import CheckpointError
from sslm_jax.interop import safetensors_io
from sslm_jax.models import gpt

ARCHITECTURE = "GPT2LMHeadModel"
MODEL_TYPE = "gpt2"
PREFIX = "transformer."  # GPT2LMHeadModel's name for the GPT2Model inside it
END_OF_TEXT = "<|endoftext|>"  # GPT-2's document separator, in its vocabulary and in those sslm trains
# Tokenizer files copied from `tokenizer_dir` when present; vocab.json + merges.txt (or tokenizer.json) must be.
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json")  # fmt: skip
# Non-parameter buffers older checkpoints carry (the causal mask), ignored on load.
_BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")

_LAYER_NAMES = (  # (Hugging Face name under h.{i}., our leaves under decoder/layer_{i}/ concatenated in order)
    ("ln_1.weight", ("attention_layer_norm/scale",)),
    ("ln_1.bias", ("attention_layer_norm/bias",)),
    ("attn.c_attn.weight", ("attention/query/kernel", "attention/key/kernel", "attention/value/kernel")),
    ("attn.c_attn.bias", ("attention/query/bias", "attention/key/bias", "attention/value/bias")),
    ("attn.c_proj.weight", ("attention/output/kernel",)),
    ("attn.c_proj.bias", ("attention/output/bias",)),
    ("ln_2.weight", ("output_layer_norm/scale",)),
    ("ln_2.bias", ("output_layer_norm/bias",)),
    ("mlp.c_fc.weight", ("intermediate/kernel",)),
    ("mlp.c_fc.bias", ("intermediate/bias",)),
    ("mlp.c_proj.weight", ("output/kernel",)),
    ("mlp.c_proj.bias", ("output/bias",)),
)


def _names(config: gpt.GPTConfig) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Hugging Face name (without "transformer.") -> our leaf paths under `transformer`, concatenated in order."""
    names = {
        "wte.weight": ("embeddings/word_embeddings/embedding",),
        "wpe.weight": ("embeddings/position_embeddings/embedding",),
    }
    for i in range(config.num_hidden_layers):
        names.update({f"h.{i}.{hf}": tuple(f"decoder/layer_{i}/{p}" for p in ours) for hf, ours in _LAYER_NAMES})
    names.update({"ln_f.weight": ("decoder/final_layer_norm/scale",), "ln_f.bias": ("decoder/final_layer_norm/bias",)})
    return {hf: tuple(tuple(p.split("/")) for p in ours) for hf, ours in names.items()}


def _flat_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """Our leaf's shape in Conv1D layout: kernels [in, out] (the attention output reads [heads, head_dim]),
    biases and LayerNorm [n], embeddings unchanged.

    Example: query kernel [H, N, D] -> [H, N·D]; attention output kernel [N, D, H] -> [N·D, H].
    """
    if path[-1] == "kernel":
        n_in = 2 if path[-3:-1] == ("attention", "output") else 1
        return (math.prod(shape[:n_in]), math.prod(shape[n_in:]))
    return tuple(shape) if path[-1] == "embedding" else (math.prod(shape),)


@functools.lru_cache(maxsize=16)
def _abstract(config: gpt.GPTConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Our backbone's leaf paths -> shapes (traced, never allocated)."""
    tree = jax.eval_shape(lambda rng: gpt.init_params(gpt.GPTLMHeadModel(config), rng, seq_len=1), jax.random.key(0))
    flat = jax.tree_util.tree_flatten_with_path(tree["transformer"])[0]
    return {tuple(k.key for k in keys): tuple(leaf.shape) for keys, leaf in flat}


def _hf_shape(paths, shapes) -> tuple[int, ...]:
    parts = [_flat_shape(p, shapes[p]) for p in paths]
    return (*parts[0][:-1], sum(s[-1] for s in parts))


# --- Loading -----------------------------------------------------------------------------------------------


def load_checkpoint(directory: str | os.PathLike) -> tuple[gpt.GPTConfig, dict]:
    """A Hugging Face GPT-2 directory -> (GPTConfig, float32 numpy params of `gpt.GPTLMHeadModel(config)`).

    Reads config.json and model.safetensors (or the shards of model.safetensors.index.json), saved from
    GPT2LMHeadModel ("transformer." names) or GPT2Model (bare names); bfloat16 weights come back as float32.

    Raises:
      CheckpointError (one line, naming the file): no directory or config.json, model_type other than "gpt2",
      options our GPT-2 does not compute, no safetensors file, weights missing, extra or of the wrong shape.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    config_file = directory / safetensors_io.CONFIG_FILE
    config = _gpt_config(safetensors_io.read_config(config_file, model_type=MODEL_TYPE), config_file)
    files = safetensors_io.weight_files(directory)
    if not files:
        raise CheckpointError(
            f"{directory}: no {safetensors_io.SAFETENSORS_FILE} next to config.json (pickled pytorch_model.bin files "
            "are not read for GPT-2; convert them with transformers' save_pretrained)"
        )
    weights_file = files[0] if len(files) == 1 else directory / f"{safetensors_io.SAFETENSORS_FILE}.index.json"
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        tensors.update(safetensors_io.read_safetensors(file))
    return config, _convert(config, _canonical_names(tensors, weights_file), weights_file)


def _gpt_config(d: dict[str, Any], file: pathlib.Path) -> gpt.GPTConfig:
    """Refuses what our GPT-2 cannot compute rather than loading it into a model that would compute otherwise."""
    unsupported = {
        "scale_attn_weights": (d.get("scale_attn_weights", True), True),
        "scale_attn_by_inverse_layer_idx": (d.get("scale_attn_by_inverse_layer_idx", False), False),
        "add_cross_attention": (d.get("add_cross_attention", False), False),
        "tie_word_embeddings": (d.get("tie_word_embeddings", True), True),
    }
    for key, (value, supported) in unsupported.items():
        if value != supported:
            raise CheckpointError(f"{file}: {key}={value!r} is not supported (sslm_jax's GPT has {key}={supported!r})")
    try:
        return gpt.GPTConfig.from_hf_dict(d)
    except (TypeError, ValueError) as e:
        message = str(e)
        for ours, theirs in gpt.HF_NAMES.items():  # the message names config.json's keys (activation_function=...)
            message = message.replace(f"{ours}=", f"{theirs}=")
        raise CheckpointError(f"{file}: {message}") from None


def _canonical_names(tensors: dict[str, np.ndarray], file: pathlib.Path) -> dict[str, np.ndarray]:
    """GPT2LMHeadModel and GPT2Model names -> GPT2Model's; mask buffers dropped; a tied lm_head checked, dropped."""
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        bare = name.removeprefix(PREFIX)
        if _BUFFER.fullmatch(bare) or name == "lm_head.weight":
            continue
        if bare in out:
            raise CheckpointError(f"{file}: holds {bare} twice (with and without the {PREFIX!r} prefix)")
        out[bare] = value
    head = tensors.get("lm_head.weight")
    if head is not None and "wte.weight" in out and not np.array_equal(head, out["wte.weight"]):
        raise CheckpointError(f"{file}: lm_head.weight differs from transformer.wte.weight; sslm_jax ties them")
    return out


def _convert(config: gpt.GPTConfig, tensors: Mapping[str, np.ndarray], file: pathlib.Path) -> dict:
    shapes = _abstract(config)
    names = _names(config)
    strays = sorted(set(tensors) - set(names))
    if strays:
        raise CheckpointError(f"{file}: weights not described by config.json: {', '.join(strays[:4])}")
    missing = [n for n in names if n not in tensors]
    if missing:
        raise CheckpointError(f"{file}: missing weights: {', '.join(missing[:4])}")
    tree: dict = {}
    for name, paths in names.items():
        w, want = np.asarray(tensors[name]), _hf_shape(paths, shapes)
        if w.shape != want:
            raise CheckpointError(f"{file}: {name} has shape {w.shape} but config.json implies {want}")
        for path, part in zip(paths, np.split(w, len(paths), axis=-1)):
            node = tree
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = np.ascontiguousarray(part.reshape(shapes[path]), dtype=np.float32)
    return {"transformer": tree}


# --- Saving ------------------------------------------------------------------------------------------------


def save_checkpoint(
    directory: str | os.PathLike,
    config: gpt.GPTConfig,
    params: Mapping[str, Any],
    *,
    tokenizer_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write `params` as a Hugging Face GPT-2 directory that `GPT2LMHeadModel.from_pretrained` loads whole.

    Writes config.json (architectures ["GPT2LMHeadModel"], model_type "gpt2") and model.safetensors (float32), plus
    the tokenizer files of `tokenizer_dir` (vocab.json + merges.txt and/or tokenizer.json; tokenizer_config.json,
    special_tokens_map.json, added_tokens.json when present), so `AutoTokenizer.from_pretrained` works too.
    Everything is validated first and written into a temporary sibling renamed into place: a failed save leaves
    nothing behind.

    Args:
      params: unboxed or boxed parameters of `GPTLMHeadModel` ({"transformer": ...}) or of the bare `GPTModel`
        (a process-local copy; gather sharded arrays first).
      overwrite: replace an existing non-empty directory.
    """
    params = nn.meta.unbox(params)
    backbone = params["transformer"] if set(params) == {"transformer"} else params
    if not gpt.FAMILY.is_backbone(backbone):
        hint = " (pass variables['params'], not the variables)" if "params" in params else ""
        raise CheckpointError(f"parameter tree with top-level names {sorted(params)} is not a GPT-2{hint}")
    tensors = _export_tensors(config, backbone)
    tokenizer = _tokenizer_files(pathlib.Path(tokenizer_dir), config) if tokenizer_dir is not None else {}
    # transformers' generate stops at config.json's eos_token_id: it must be the id of this tokenizer's end-of-text
    # (0 in a vocabulary sslm trained, 50256 in GPT-2's), not GPT-2's id, which may be an ordinary token here.
    end_of_text = _end_of_text_id(tokenizer)
    special = {} if end_of_text is None else {"bos_token_id": end_of_text, "eos_token_id": end_of_text}
    hf_config = {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        **config.to_hf_dict(),
        **special,
        "n_ctx": config.max_position_embeddings,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "dtype": "float32",
    }
    with safetensors_io.atomic_directory(directory, overwrite=overwrite) as tmp:
        (tmp / safetensors_io.CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
        safetensors_io.write_safetensors(tmp / safetensors_io.SAFETENSORS_FILE, tensors)
        for name, source in tokenizer.items():
            shutil.copyfile(source, tmp / name)
        if tokenizer and "tokenizer_config.json" not in tokenizer:
            tokenizer_config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": config.max_position_embeddings}
            (tmp / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return pathlib.Path(directory)


def _export_tensors(config: gpt.GPTConfig, backbone: Mapping[str, Any]) -> dict[str, np.ndarray]:
    shapes = _abstract(config)
    given = {tuple(k.key for k in keys): x for keys, x in jax.tree_util.tree_flatten_with_path(backbone)[0]}
    if set(given) != set(shapes):
        extra, lacking = sorted(set(given) - set(shapes)), sorted(set(shapes) - set(given))
        detail = "; ".join(
            f"{what}: {', '.join('/'.join(p) for p in paths[:3])}"
            for what, paths in (("unexpected", extra), ("missing", lacking))
            if paths
        )
        raise CheckpointError(f"GPT-2 parameters do not match the config ({detail})")
    for p, x in given.items():
        if getattr(x, "is_fully_addressable", True) is False:
            raise CheckpointError(f"parameter {'/'.join(p)} is sharded across processes; gather it to one host first")
        if tuple(np.shape(x)) != shapes[p]:
            raise CheckpointError(
                f"parameter {'/'.join(p)} has shape {tuple(np.shape(x))} but the config implies {shapes[p]}"
            )
    out = {}
    for name, paths in _names(config).items():
        parts = [np.asarray(jax.device_get(given[p]), np.float32).reshape(_flat_shape(p, shapes[p])) for p in paths]
        out[PREFIX + name] = np.ascontiguousarray(np.concatenate(parts, axis=-1))
    return out


def _end_of_text_id(tokenizer: Mapping[str, pathlib.Path]) -> int | None:
    """The id of "<|endoftext|>" in the tokenizer files being exported (vocab.json, else tokenizer.json's model
    vocabulary or added tokens); None when there are none or it has no such token."""
    if "vocab.json" in tokenizer:
        vocab = json.loads(tokenizer["vocab.json"].read_text(encoding="utf-8"))
    elif "tokenizer.json" in tokenizer:
        spec = json.loads(tokenizer["tokenizer.json"].read_text(encoding="utf-8"))
        vocab = dict((spec.get("model") or {}).get("vocab") or {})
        vocab.update({t["content"]: t["id"] for t in spec.get("added_tokens") or () if "content" in t})
    else:
        return None
    found = vocab.get(END_OF_TEXT)
    return int(found) if found is not None else None


def _tokenizer_files(source: pathlib.Path, config: gpt.GPTConfig) -> dict[str, pathlib.Path]:
    """name -> file to copy; CheckpointError when `source` holds no GPT-2 tokenizer or one too big for the model."""
    found = {name: source / name for name in TOKENIZER_FILES if (source / name).is_file()}
    if not ({"vocab.json", "merges.txt"} <= set(found) or "tokenizer.json" in found):
        raise CheckpointError(f"{source}: no GPT-2 tokenizer (vocab.json + merges.txt, or tokenizer.json)")
    if "vocab.json" in found:
        try:
            vocab = json.loads(found["vocab.json"].read_text(encoding="utf-8"))
            top = max(int(i) for i in vocab.values())
        except (OSError, UnicodeDecodeError, ValueError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{found['vocab.json']}: not a token -> id JSON object ({e})") from None
        if top >= config.vocab_size:
            vocab_file = found["vocab.json"]
            raise CheckpointError(f"{vocab_file}: has id {top} but the model's vocab_size is {config.vocab_size}")
    return found

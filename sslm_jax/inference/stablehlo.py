"""`sslm export --format=stablehlo`: a model as serialized `jax.export` functions plus weights, for `portable.load`.

    export_portable("runs/sst2", "export/sst2")          # classify(input_ids, attention_mask, token_type_ids)
    export_portable("runs/bert_tiny", "export/mlm")      # fill_mask(...) -> MLM logits [batch, length, vocab]
    export_portable("runs/gpt", "export/gpt")            # prefill(...) and decode_step(...) over an explicit KV cache
    model = portable.load("export/sst2"); model.classify(ids, mask, types)

Each entry point is `jax.export.export(jax.jit(f))` of f(weights, *inputs), with the batch, length and cache
dimensions symbolic (each at most the position table), so one artifact serves every shape. The weights are
arguments, not constants baked into the program: the program stays small, the weights file keeps int8 as int8, and
the same weights are shared by every entry point. The source can be an sslm run, a Hugging Face BERT or GPT-2
directory or a quantized / pruned directory (a quantized model is traced inside its int8 interceptor, so the
exported program holds the int8 matmuls).

A causal LM exports its two decoding functions, with the KV cache as plain arrays (keys and values of every layer
stacked: [layers, batch, cache, heads, head_dim]; `cache` is the caller's choice of slots):
    prefill(input_ids [batch, length], prompt_lengths [batch], cache_key, cache_value)
        -> (logits [batch, vocab] at each row's last prompt token, cache_key, cache_value, cache_index [batch])
    decode_step(ids [batch], cache_key, cache_value, cache_index) -> (logits [batch, vocab], cache_key, ...)
The loop that samples and feeds tokens runs on the host (`portable.PortableModel.generate`), so the exported
programs carry no sampling policy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from sslm_jax.errors import SslmError
from sslm_jax.inference import compressed_dir, portable
from sslm_jax.inference.loading import LoadedModel, family_name, load_model
from sslm_jax.models import registry
from sslm_jax.models.attention import KVCache

# An input or output: (name, dtype, shape), a shape entry being an int or a symbolic dimension's name.
Spec = tuple[str, str, list]
SYMBOLS = ("batch", "length", "cache")  # the symbolic dimensions; length and cache at most the position table


@dataclasses.dataclass(frozen=True)
class EntryPoint:
    """One exported function: its inputs and outputs, and the computation (loaded, params, *inputs) -> output(s)."""

    name: str
    inputs: Callable[[LoadedModel], list[Spec]]
    outputs: Callable[[LoadedModel], list[Spec]]
    body: Callable[..., Any]


def _encoder_inputs(loaded: LoadedModel) -> list[Spec]:
    return [(n, "int32", ["batch", "length"]) for n in ("input_ids", "attention_mask", "token_type_ids")]


def _encoder(output: Callable[[Any], jax.Array]) -> Callable[..., jax.Array]:
    def body(loaded, params, input_ids, attention_mask, token_type_ids):
        out = loaded.model.apply(
            {"params": params}, input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return output(out).astype(jnp.float32)

    return body


CLASSIFY = EntryPoint(
    "classify", _encoder_inputs, lambda m: [("logits", "float32", ["batch", max(len(m.label_names), 1)])],
    _encoder(lambda out: out.logits),
)  # fmt: skip
FILL_MASK = EntryPoint(
    "fill_mask", _encoder_inputs, lambda m: [("mlm_logits", "float32", ["batch", "length", m.model_config.vocab_size])],
    _encoder(lambda out: out.mlm_logits),
)  # fmt: skip


def _empty_cache(loaded: LoadedModel) -> tuple[KVCache, int]:
    """One layer's cache as shapes (batch 1, one slot) and the number of layers, without allocating anything."""
    layers = jax.eval_shape(lambda: registry.get(family_name(loaded)).init_cache(loaded.model_config, 1, 1))
    return layers[0], len(layers)


def _cache_specs(loaded: LoadedModel) -> list[Spec]:
    one, num_layers = _empty_cache(loaded)
    shape = [num_layers, "batch", "cache", *one.key.shape[2:]]
    return [("cache_key", str(one.key.dtype), shape), ("cache_value", str(one.value.dtype), shape)]


def _causal_outputs(loaded: LoadedModel) -> list[Spec]:
    logits = ("logits", "float32", ["batch", loaded.model_config.vocab_size])
    return [logits, *_cache_specs(loaded), ("cache_index", "int32", ["batch"])]


def _run_cached(loaded, params, ids, mask, key, value, index):
    """The model on `ids` [B, T] continuing the cache (stacked arrays) at `index`; (logits, stacked cache)."""
    cache = tuple(KVCache(key=k, value=v, index=index) for k, v in zip(key, value))
    out = loaded.model.apply({"params": params}, ids, attention_mask=mask, deterministic=True, cache=cache)
    stacked = tuple(jnp.stack([getattr(c, f) for c in out.cache]) for f in ("key", "value"))
    return out.logits.astype(jnp.float32), stacked, out.cache[0].index


def _prefill(loaded, params, input_ids, prompt_lengths, cache_key, cache_value):
    # Right-padded prompts: the mask says which tokens are real, and each row's index ends at its length.
    real = (jnp.arange(input_ids.shape[1], dtype=jnp.int32)[None, :] < prompt_lengths[:, None]).astype(jnp.int32)
    start = jnp.zeros_like(prompt_lengths)
    logits, (key, value), index = _run_cached(loaded, params, input_ids, real, cache_key, cache_value, start)
    last = jnp.take_along_axis(logits, (prompt_lengths - 1)[:, None, None], axis=1)[:, 0]
    return last, key, value, index


def _decode_step(loaded, params, ids, cache_key, cache_value, cache_index):
    step = ids[:, None]
    logits, (key, value), index = _run_cached(loaded, params, step, jnp.ones_like(step), cache_key, cache_value,
                                              cache_index)  # fmt: skip
    return logits[:, 0], key, value, index


PREFILL = EntryPoint(
    "prefill",
    lambda m: [("input_ids", "int32", ["batch", "length"]), ("prompt_lengths", "int32", ["batch"]), *_cache_specs(m)],
    _causal_outputs, _prefill,
)  # fmt: skip
DECODE_STEP = EntryPoint(
    "decode_step",
    lambda m: [("ids", "int32", ["batch"]), *_cache_specs(m), ("cache_index", "int32", ["batch"])],
    _causal_outputs, _decode_step,
)  # fmt: skip
# head -> the entry points its export has.
ENTRY_POINTS: dict[str, tuple[EntryPoint, ...]] = {
    "classification": (CLASSIFY,),
    "pretraining": (FILL_MASK,),
    "masked_lm": (FILL_MASK,),
    "causal_lm": (PREFILL, DECODE_STEP),
}
FORMATS = ("stablehlo",)


def _names(params) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    return ["/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path) for path, _ in paths]


def _input_specs(loaded: LoadedModel, entry: EntryPoint) -> list[jax.ShapeDtypeStruct]:
    """The entry point's inputs with its symbolic dimensions (one scope, each at most the position table)."""
    specs = entry.inputs(loaded)
    used = [name for name in SYMBOLS if any(name in shape for _, _, shape in specs)]
    limit = loaded.model_config.max_position_embeddings
    constraints = [f"{n} <= {limit}" for n in used if n != "batch"]
    if {"length", "cache"} <= set(used):
        constraints.append("length <= cache")  # prefill writes every (padded) prompt slot into the cache
    dims = dict(zip(used, export.symbolic_shape(", ".join(used), constraints=constraints)))
    return [jax.ShapeDtypeStruct(tuple(dims.get(d, d) for d in shape), dtype) for _, dtype, shape in specs]


def export_functions(loaded: LoadedModel, *, platforms: tuple[str, ...] = ("cpu",)) -> dict[str, export.Exported]:
    """{entry point: Exported} of `loaded` (weights as the first argument, a flat list)."""
    if loaded.head not in ENTRY_POINTS:
        raise SslmError(f"{loaded.path} holds a {loaded.head} model; portable export has {', '.join(ENTRY_POINTS)}")
    leaves, treedef = jax.tree.flatten(loaded.params)
    weight_specs = [jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in leaves]
    functions = {}
    for entry in ENTRY_POINTS[loaded.head]:

        def f(weights, *inputs, entry=entry):
            return entry.body(loaded, jax.tree.unflatten(treedef, weights), *inputs)

        functions[entry.name] = export.export(jax.jit(f), platforms=platforms)(
            weight_specs, *_input_specs(loaded, entry)
        )
    return functions


def _manifest(loaded: LoadedModel, functions: dict[str, export.Exported], platforms) -> dict[str, Any]:
    version = {e.calling_convention_version for e in functions.values()}.pop()
    leaves = jax.tree.leaves(loaded.params)
    tok = loaded.tokenizer
    record = {k: v for k, v in (loaded.compression or {}).items() if k != "masks"}
    return {
        "format": portable.FORMAT,
        "format_version": portable.FORMAT_VERSION,
        "jax_version": jax.__version__,
        "calling_convention_version": version,
        "compatibility": (
            f"jax.export: a jax released within 6 months after {jax.__version__} runs this artifact (backward "
            f"compatibility); an older jax runs it only if it supports calling convention {version} (this one "
            f"supports {export.minimum_supported_calling_convention_version}.."
            f"{export.maximum_supported_calling_convention_version})"
        ),
        "platforms": list(platforms),
        "max_length": loaded.model_config.max_position_embeddings,
        "text_length": loaded.max_seq_len,  # encode() cuts texts here, as `sslm predict` / fill-mask do
        "entry_points": {
            entry.name: {
                "file": entry.name + portable.SUFFIX,
                "inputs": [{"name": n, "dtype": d, "shape": shape} for n, d, shape in entry.inputs(loaded)],
                "outputs": [{"name": n, "dtype": d, "shape": shape} for n, d, shape in entry.outputs(loaded)],
            }
            for entry in ENTRY_POINTS[loaded.head]
        },
        "weights": [
            {"name": n, "dtype": str(np.asarray(x).dtype), "shape": list(np.shape(x))}
            for n, x in zip(_names(loaded.params), leaves)
        ],
        "label_names": list(loaded.label_names),
        "is_regression": loaded.is_regression,
        "text_fields": list(loaded.text_fields),
        "tokenizer": {
            "kind": "bpe" if loaded.head == "causal_lm" else "wordpiece",
            "files": [loaded.vocab_path.name, *sorted(set(tok.files) - {loaded.vocab_path.name})],
            "lower_case": bool(getattr(tok, "lower_case", False)),
            **{k: int(getattr(tok, k)) for k in ("pad_id", "cls_id", "sep_id", "mask_id", "eot_id") if hasattr(tok, k)},
        },
        "source": str(loaded.path),
        "compression": record or None,
    }


def export_portable(
    path: str | os.PathLike, out: str | os.PathLike, *, format: str = "stablehlo", platforms=("cpu",)
) -> pathlib.Path:
    """Writes the portable export of `path`'s model to the new directory `out`; returns `out`.

    Args:
      path: an sslm run (latest checkpoint), a Hugging Face BERT or GPT-2 directory, or a quantized / pruned
        directory.
      out: a new (or empty) directory; it appears only once complete.
      format: "stablehlo" (jax.export's serialization), the one format so far.
      platforms: what the functions are lowered for ("cpu", "cuda", "tpu").
    """
    if format not in FORMATS:
        raise SslmError(f"--format={format} is unknown for export; use one of {', '.join(FORMATS)}")
    compressed_dir.check_out_dir(out)
    loaded = load_model(path, host_tokenizer=True)  # copies the tokenizer's files, never runs it: no TF
    functions = export_functions(loaded, platforms=tuple(platforms))
    manifest = _manifest(loaded, functions, platforms)

    def fill(tmp: pathlib.Path):
        for name, exported in functions.items():
            (tmp / (name + portable.SUFFIX)).write_bytes(exported.serialize())
        with (tmp / portable.WEIGHTS).open("wb") as f:
            np.savez(f, **{f"{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(loaded.params))})
        for name in manifest["tokenizer"]["files"]:
            shutil.copyfile(loaded.tokenizer.files[name], tmp / name)
        (tmp / portable.MANIFEST).write_text(json.dumps(manifest, indent=2))

    return compressed_dir.write_atomically(pathlib.Path(out), fill)

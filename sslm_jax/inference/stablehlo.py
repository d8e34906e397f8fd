"""`sslm export --format=stablehlo`: a model as serialized `jax.export` functions plus weights, for `portable.load`.

    export_portable("runs/sst2", "export/sst2")          # classify(input_ids, attention_mask, token_type_ids)
    export_portable("runs/bert_tiny", "export/mlm")      # fill_mask(...) -> MLM logits [batch, length, vocab]
    model = portable.load("export/sst2"); model.classify(ids, mask, types)

Each entry point is `jax.export.export(jax.jit(f))` of f(weights, *inputs), with the batch and length dimensions
symbolic (length <= the position table), so one artifact serves every shape. The weights are arguments, not
constants baked into the program: the program stays small, the weights file keeps int8 as int8, and the same
weights are shared by every entry point. The source can be an sslm run, a Hugging Face BERT directory or a
quantized / pruned directory (a quantized model is traced inside its int8 interceptor, so the exported program
holds the int8 matmuls).
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
from sslm_jax.inference.loading import LoadedModel, load_model

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclasses.dataclass(frozen=True)
class EntryPoint:
    """One exported function: its name, the model output it returns, and that output's symbolic shape."""

    name: str
    output: Callable[[Any], jax.Array]  # the model's output -> the returned array
    output_name: str
    output_shape: Callable[[LoadedModel], list]


CLASSIFY = EntryPoint(
    "classify", lambda out: out.logits, "logits", lambda m: ["batch", max(len(m.label_names), 1)]
)
FILL_MASK = EntryPoint(
    "fill_mask", lambda out: out.mlm_logits, "mlm_logits", lambda m: ["batch", "length", m.model_config.vocab_size]
)
# head -> the entry points its export has. (Causal LMs' prefill / decode step are not exported yet.)
ENTRY_POINTS: dict[str, tuple[EntryPoint, ...]] = {
    "classification": (CLASSIFY,),
    "pretraining": (FILL_MASK,),
    "masked_lm": (FILL_MASK,),
}
FORMATS = ("stablehlo",)


def _names(params) -> list[str]:
    paths = jax.tree_util.tree_flatten_with_path(params)[0]
    return ["/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path) for path, _ in paths]


def export_functions(loaded: LoadedModel, *, platforms: tuple[str, ...] = ("cpu",)) -> dict[str, export.Exported]:
    """{entry point: Exported} of `loaded` (weights as the first argument, a flat list)."""
    if loaded.head not in ENTRY_POINTS:
        raise SslmError(f"{loaded.path} holds a {loaded.head} model; portable export has {', '.join(ENTRY_POINTS)}")
    leaves, treedef = jax.tree.flatten(loaded.params)
    batch, length = export.symbolic_shape(
        "batch, length", constraints=(f"length <= {loaded.model_config.max_position_embeddings}",)
    )
    token_spec = jax.ShapeDtypeStruct((batch, length), jnp.int32)
    weight_specs = [jax.ShapeDtypeStruct(np.shape(x), x.dtype) for x in leaves]
    functions = {}
    for entry in ENTRY_POINTS[loaded.head]:

        def f(weights, input_ids, attention_mask, token_type_ids, entry=entry):
            out = loaded.model.apply(
                {"params": jax.tree.unflatten(treedef, weights)},
                input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
            )
            return entry.output(out).astype(jnp.float32)

        functions[entry.name] = export.export(jax.jit(f), platforms=platforms)(weight_specs, *[token_spec] * 3)
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
        "entry_points": {
            entry.name: {
                "file": entry.name + portable.SUFFIX,
                "inputs": [{"name": n, "dtype": "int32", "shape": ["batch", "length"]} for n in INPUTS],
                "output": {"name": entry.output_name, "dtype": "float32", "shape": entry.output_shape(loaded)},
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
            "files": [loaded.vocab_path.name],
            "lower_case": bool(getattr(tok, "lower_case", True)),
            **{k: int(getattr(tok, k)) for k in ("pad_id", "cls_id", "sep_id", "mask_id") if hasattr(tok, k)},
        },
        "source": str(loaded.path),
        "compression": record or None,
    }


def export_portable(
    path: str | os.PathLike, out: str | os.PathLike, *, format: str = "stablehlo", platforms=("cpu",)
) -> pathlib.Path:
    """Writes the portable export of `path`'s model to the new directory `out`; returns `out`.

    Args:
      path: an sslm run (latest checkpoint), a Hugging Face BERT directory, or a quantized / pruned directory.
      out: a new (or empty) directory; it appears only once complete.
      format: "stablehlo" (jax.export's serialization), the one format so far.
      platforms: what the functions are lowered for ("cpu", "cuda", "tpu").
    """
    if format not in FORMATS:
        raise SslmError(f"--format={format} is unknown for export; use one of {', '.join(FORMATS)}")
    compressed_dir.check_out_dir(out)
    loaded = load_model(path)
    if loaded.vocab_path.name != "vocab.txt":
        raise SslmError(f"{loaded.path}: portable export needs a WordPiece vocabulary (vocab.txt)")
    functions = export_functions(loaded, platforms=tuple(platforms))
    manifest = _manifest(loaded, functions, platforms)

    def fill(tmp: pathlib.Path):
        for name, exported in functions.items():
            (tmp / (name + portable.SUFFIX)).write_bytes(exported.serialize())
        with (tmp / portable.WEIGHTS).open("wb") as f:
            np.savez(f, **{f"{i:05d}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(loaded.params))})
        shutil.copyfile(loaded.vocab_path, tmp / loaded.vocab_path.name)
        (tmp / portable.MANIFEST).write_text(json.dumps(manifest, indent=2))

    return compressed_dir.write_atomically(pathlib.Path(out), fill)

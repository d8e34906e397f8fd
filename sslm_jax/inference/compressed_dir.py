"""The directory `sslm quantize` and `sslm prune` write, and reading it back as a `LoadedModel`.

    OUT/
      compressed.json   what was done (quantization mode; pruning method, sparsity, per-layer sparsity), the model
                        (family, config fields, head, labels, max_seq_len, tokenizer), and each array's encoding
      params.npz        the parameters, uncompressed numpy arrays named by parameter path:
                          float      "bert/pooler/dense/kernel"                    the array as it is
                          int8       ":int8" values + ":scale"                      a QTensor (quantize.py)
                          sparse-*   ":bitmask" (np.packbits of the kept entries) + only the kept values
                                     (float, or int8 + ":scale"): a pruned leaf, its mask stored once
      config.json       the source run's config (sslm runs): what `sslm eval` rebuilds the task from
      vocab/            the tokenizer's files

    write(out, loaded, params, record={"quantization": "dynamic"}, masks=None)
    loaded = load("OUT")        # loaded.params holds QTensors; loaded.model runs them (QuantizedModel)
    loaded.compression["pruning"]["per_layer"]

A pruned kernel costs one bit per entry plus its kept values, so `params.npz`'s size is the "size on disk" the
benchmarks report; a dense matmul still does every multiply (pruning here is compression, not speed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
import types
import zipfile
from typing import Any, Mapping

import jax
import ml_collections
import numpy as np

from sslm_jax.errors import CheckpointError, SslmError
from sslm_jax.inference import quantize
from sslm_jax.inference.loading import LoadedModel
from sslm_jax.models import bert, gpt, registry
from sslm_jax.output_paths import check_new_directory

MANIFEST, PARAMS, RUN_CONFIG, VOCAB = "compressed.json", "params.npz", "config.json", "vocab"
FORMAT, VERSION = "sslm-compressed", 1
# family name -> its config dataclass (rebuilt from the saved fields).
CONFIG_CLASSES = {"bert": bert.BertConfig, "gpt": gpt.GPTConfig}


def is_compressed(path: str | os.PathLike) -> bool:
    return (pathlib.Path(path) / MANIFEST).is_file()


def check_out_dir(out: str | os.PathLike) -> pathlib.Path:
    """`out` as a Path, refused (one line) when it exists and is not an empty directory: nothing is overwritten."""
    return check_new_directory(out, setting="--out")


def write_atomically(out: pathlib.Path, fill) -> pathlib.Path:
    """Calls `fill(tmp_dir)` on a fresh sibling of `out`, then renames it to `out`: a failure leaves nothing."""
    check_out_dir(out)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the result private
    try:
        fill(tmp)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def describe(loaded: LoadedModel) -> dict[str, Any]:
    """What rebuilds `loaded`'s module and tokenizer without its source directory."""
    family = next((name for name, cls in CONFIG_CLASSES.items() if isinstance(loaded.model_config, cls)), None)
    if family is None:
        raise SslmError(f"{loaded.path}: a {type(loaded.model_config).__name__} model cannot be compressed yet")
    module = getattr(loaded.model, "module", loaded.model)
    return {
        "family": family,
        "config": dataclasses.asdict(loaded.model_config),
        "head": loaded.head,
        "num_labels": getattr(module, "num_labels", 0),
        "label_names": list(loaded.label_names),
        "is_regression": loaded.is_regression,
        "text_fields": list(loaded.text_fields),
        "max_seq_len": loaded.max_seq_len,
        "tokenizer": {
            "kind": "bpe" if loaded.vocab_path.name == "vocab.json" else "wordpiece",
            "files": sorted(p.name for p in _tokenizer_files(loaded)),
            "lower_case": bool(getattr(loaded.tokenizer, "lower_case", False)),
        },
    }


def _tokenizer_files(loaded: LoadedModel) -> list[pathlib.Path]:
    names = ("vocab.json", "merges.txt") if loaded.vocab_path.name == "vocab.json" else ("vocab.txt",)
    return [loaded.vocab_path.parent / name for name in names]


def write(
    out: str | os.PathLike,
    loaded: LoadedModel,
    params,
    *,
    record: Mapping[str, Any],
    masks: Mapping[str, np.ndarray] | None = None,
) -> pathlib.Path:
    """Writes `params` (float or QTensor leaves; `masks`: {path: bool array} of pruned leaves) as a new directory.

    `record` says what was done ({"quantization": mode} / {"pruning": {...}}); it is merged over the source's own
    record when `loaded` was itself compressed (pruned, then quantized).
    """
    masks = dict(masks or {})
    arrays, encodings = _encode(params, masks)
    prior = {k: v for k, v in (loaded.compression or {}).items() if k != "masks"}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "source": str(loaded.path),
        "quantization": None,
        "pruning": None,
        **prior,
        **record,
        "model": describe(loaded),
        "arrays": encodings,
    }

    def fill(tmp: pathlib.Path):
        with (tmp / PARAMS).open("wb") as f:
            np.savez(f, **arrays)
        (tmp / VOCAB).mkdir()
        for file in _tokenizer_files(loaded):
            shutil.copyfile(file, tmp / VOCAB / file.name)
        if loaded.run_config is not None:
            (tmp / RUN_CONFIG).write_text(loaded.run_config.to_json(indent=2))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))

    return write_atomically(pathlib.Path(out), fill)


def _key(path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)


def _encode(params, masks: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    arrays: dict[str, np.ndarray] = {}
    encodings: dict[str, dict] = {}
    is_q = lambda x: isinstance(x, quantize.QTensor)  # noqa: E731
    for path, leaf in jax.tree_util.tree_flatten_with_path(params, is_leaf=is_q)[0]:
        name = _key(path)
        values = np.asarray(leaf.values if is_q(leaf) else leaf)
        kind = "int8" if is_q(leaf) else "float"
        if is_q(leaf):
            arrays[f"{name}:scale"] = np.asarray(leaf.scale)
        if name in masks:
            mask = np.asarray(masks[name], bool)
            arrays[f"{name}:bitmask"] = np.packbits(mask.ravel())
            values, kind = values[mask], f"sparse-{kind}"
        arrays[f"{name}:int8" if is_q(leaf) else name] = values
        encodings[name] = {"encoding": kind, "shape": list(np.shape(leaf.values if is_q(leaf) else leaf))}
    return arrays, encodings


def _decode(arrays, encodings: Mapping[str, dict]) -> tuple[dict, dict[str, np.ndarray]]:
    """(nested params dict, {path: mask} of the sparse leaves)."""
    params: dict = {}
    masks: dict[str, np.ndarray] = {}
    for name, info in encodings.items():
        shape, kind = tuple(info["shape"]), info["encoding"]
        stored = arrays[f"{name}:int8" if kind.endswith("int8") else name]
        if kind.startswith("sparse-"):
            mask = np.unpackbits(arrays[f"{name}:bitmask"], count=int(np.prod(shape))).astype(bool).reshape(shape)
            dense = np.zeros(shape, stored.dtype)
            dense[mask] = stored
            stored, masks[name] = dense, mask
        leaf = quantize.QTensor(values=stored, scale=arrays[f"{name}:scale"]) if kind.endswith("int8") else stored
        node = params
        *parents, last = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = leaf
    return params, masks


def load(path: str | os.PathLike, *, host_tokenizer: bool = False) -> LoadedModel:
    """A compressed directory as a LoadedModel (`kind="compressed"`); its masks are in `compression["masks"]`.
    host_tokenizer: as for `loading.load_model`."""
    from sslm_jax.data import tokenizers

    path = pathlib.Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise CheckpointError(
                f"{path / MANIFEST}: format {manifest.get('format')!r} version {manifest.get('version')!r}; this "
                f"sslm_jax reads {FORMAT!r} version {VERSION}"
            )
        described = manifest["model"]
        with np.load(path / PARAMS) as f:
            params, masks = _decode(f, manifest["arrays"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # a truncated params.npz: BadZipFile
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: not a readable compressed model ({type(e).__name__}: {e})") from None
    config = CONFIG_CLASSES[described["family"]](**described["config"])
    module = registry.get(described["family"]).model(config, described["head"], num_labels=described["num_labels"])
    mode = manifest.get("quantization")
    tok_info = described["tokenizer"]
    kind = tokenizers.get(tok_info["kind"])
    vocab_path = path / VOCAB / kind.files[0]
    tok = kind.load_for(vocab_path, types.SimpleNamespace(lower_case=tok_info["lower_case"]), host=host_tokenizer)
    run_config = None
    if (path / RUN_CONFIG).is_file():
        run_config = ml_collections.ConfigDict(json.loads((path / RUN_CONFIG).read_text()))
    record = {k: manifest[k] for k in ("source", "quantization", "pruning")}
    return LoadedModel(
        path=path,
        kind="compressed",
        head=described["head"],
        model_config=config,
        model=quantize.QuantizedModel(module, mode) if mode else module,
        params=jax.device_put(params, jax.local_devices()[0]),
        tokenizer=tok,
        vocab_path=vocab_path,
        label_names=tuple(described["label_names"]),
        is_regression=described["is_regression"],
        text_fields=tuple(described["text_fields"]),
        max_seq_len=described["max_seq_len"],
        run_config=run_config,
        compression={**record, "masks": masks},
    )


def size_on_disk(path: str | os.PathLike) -> int:
    """Bytes of a compressed directory's parameters (params.npz)."""
    return (pathlib.Path(path) / PARAMS).stat().st_size

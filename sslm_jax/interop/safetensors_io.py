"""Files of a Hugging Face checkpoint directory, whatever the model: config.json, (sharded) safetensors, atomic saves,
and the torch `nn.Linear` layout of BERT-like kernels (BERT, ELECTRA).

    d = read_config(directory / CONFIG_FILE, model_type="gpt2")     # CheckpointError unless model_type matches
    files = weight_files(directory)                                 # [model.safetensors] or the index's shards
    tensors = read_safetensors(files[0])                            # name -> numpy array (bf16 read as float32)
    with atomic_directory(out, overwrite=False) as tmp:             # written to a sibling, renamed into place
        write_safetensors(tmp / SAFETENSORS_FILE, tensors)
    w = to_torch(("encoder", "layer_0", "intermediate", "kernel"), kernel)   # flax [in, out] -> torch Linear [out, in]

Every failure is a one-line `CheckpointError` naming the file.
"""

from __future__ import annotations

import contextlib
import math
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np

from sslm_jax.errors import CheckpointError

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"


def read_config(file: pathlib.Path, *, model_type: str | None) -> dict[str, Any]:
    """config.json as a dict; CheckpointError when it is missing, not a JSON object or of another `model_type`
    (None: any, for a caller that words that error itself)."""
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; a Hugging Face checkpoint directory needs config.json")
    try:
        d = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{file}: cannot be read as JSON ({e})") from None
    if not isinstance(d, dict):
        raise CheckpointError(f"{file}: expected a JSON object, found {type(d).__name__}")
    if model_type is not None and d.get("model_type") != model_type:
        raise CheckpointError(
            f"{file}: model_type={d.get('model_type')!r}; only {model_type!r} checkpoints can be loaded here"
        )
    return d


def index_files(index: pathlib.Path) -> list[pathlib.Path]:
    """The shard files a `*.index.json` lists (sorted), or [] when there is no index."""
    if not index.is_file():
        return []
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{index}: not a shard index with a 'weight_map' ({e})") from None
    missing = [f for f in files if not (index.parent / f).is_file()]
    if missing:
        raise CheckpointError(f"{index}: lists shard(s) that do not exist: {', '.join(missing)}")
    return [index.parent / f for f in files]


def weight_files(directory: pathlib.Path, single: str = SAFETENSORS_FILE) -> list[pathlib.Path]:
    """[directory/single] when it exists, else the shards of `single.index.json`, else []."""
    if (directory / single).is_file():
        return [directory / single]
    return index_files(directory / f"{single}.index.json")


def read_safetensors(file: pathlib.Path) -> dict[str, np.ndarray]:
    """name -> numpy array; bfloat16 tensors come back as float32 (numpy has no bfloat16 of its own)."""
    from safetensors import SafetensorError, safe_open

    try:
        tensors = {}
        with safe_open(file, framework="numpy") as f:
            bf16 = [k for k in f.keys() if f.get_slice(k).get_dtype() == "BF16"]
            tensors.update({k: f.get_tensor(k) for k in f.keys() if k not in bf16})
        if bf16:
            # safetensors' numpy reader refuses bfloat16; read those through jax, on the host so a large
            # checkpoint does not land on accelerator 0.
            with jax.default_device(jax.devices("cpu")[0]), safe_open(file, framework="flax") as f:
                tensors.update({k: np.asarray(f.get_tensor(k), np.float32) for k in bf16})
        return tensors
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{file}: unreadable or truncated safetensors file ({e})") from None


def write_safetensors(file: pathlib.Path, tensors: Mapping[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    # transformers checks the "format" metadata to know the tensors are in torch layout.
    save_file(dict(tensors), str(file), metadata={"format": "pt"})


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool) -> Iterator[pathlib.Path]:
    """A temporary sibling of `path` to write into, renamed to `path` when the block succeeds, removed if it fails.

    CheckpointError before anything is written when `path` is a file, or a non-empty directory without `overwrite`.
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} is a file, not a directory: choose another output directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        # The CLI has no overwrite flag (replacing an export by accident is worse than choosing a name); the library's
        # `overwrite=True` is documented on the export functions.
        raise CheckpointError(f"{path} exists and is not empty: choose a new output directory, or empty this one")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:  # a parent that is a file, a read-only place, /proc/...: nothing was written
        why = e.strerror or type(e).__name__
        raise CheckpointError(f"cannot create {path} ({why}): choose another output directory") from None
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Move the finished `tmp` to `path`; an existing directory is moved aside first and removed last."""
    if not path.exists():
        tmp.rename(path)
        return
    old = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    old.rmdir()
    path.rename(old)
    try:
        tmp.rename(path)
    except BaseException:
        old.rename(path)
        raise
    shutil.rmtree(old)


# --- torch `nn.Linear` layout <-> our kernels (BERT-like encoders: BERT, ELECTRA) ---------------------------------


def _kernel_in_dims(path: tuple[str, ...]) -> int:
    # The attention output projection reads [heads, head_dim]; every other kernel reads one axis.
    return 2 if path[-3:-1] == ("attention", "output") else 1


def to_torch(path: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    """Our layout -> torch layout: kernel [in..., out...] -> weight [out, in]; bias [heads, head_dim] -> [hidden].

    `path` is the leaf's parameter path; its last name (kernel, bias, scale, embedding) decides, and a kernel under
    .../attention/output reads two axes. Example: query kernel [H, N, D] -> weight [N·D, H].
    """
    if path[-1] == "kernel":
        n_in = _kernel_in_dims(path)
        return np.ascontiguousarray(x.reshape(math.prod(x.shape[:n_in]), -1).T)
    return x.reshape(-1) if path[-1] == "bias" else x


def torch_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The torch shape `to_torch` gives a leaf of `shape`."""
    if path[-1] == "kernel":
        n_in = _kernel_in_dims(path)
        return (math.prod(shape[n_in:]), math.prod(shape[:n_in]))
    return (math.prod(shape),) if path[-1] == "bias" else tuple(shape)


def from_torch(path: tuple[str, ...], w: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `to_torch`: a torch tensor -> our leaf of `shape`."""
    return (w.T if path[-1] == "kernel" else w).reshape(shape)

"""`sslm quantize` and `sslm prune`: a model in (an sslm run, a Hugging Face BERT directory, or a directory one of
these commands wrote), a new compressed directory out (`compressed_dir.py`).

    quantize_model("runs/sst2", "runs/sst2-int8", mode="dynamic")
    prune_model("runs/sst2", "runs/sst2-p70", sparsity=0.7, method="magnitude", scope="global")
    prune_model(...) then quantize_model(...)   # int8 values + bitmask: the smallest form of a pruned model

Everything is checked before the model is read, and the directory appears only when complete.
"""

from __future__ import annotations

import os
import pathlib

import jax.numpy as jnp

from sslm_jax.errors import SslmError
from sslm_jax.inference import compressed_dir, prune, quantize
from sslm_jax.inference.loading import LoadedModel, load_model

# One sequence of ids is enough to trace which kernels and tables the model uses (the shapes do not matter).
_PROBE = jnp.zeros((1, 8), jnp.int32)


def layouts(loaded: LoadedModel):
    module = getattr(loaded.model, "module", loaded.model)
    return quantize.dense_layouts(module, loaded.params, _PROBE)


def quantize_model(path: str | os.PathLike, out: str | os.PathLike, *, mode: str = "weights") -> pathlib.Path:
    """Writes `path`'s model with int8 kernels and embedding tables (per-channel scales) to `out`.

    Args:
      path: an sslm run (its latest checkpoint), a Hugging Face BERT directory, or a pruned directory (its masks are
        kept: pruned entries are stored as a bitmask beside the int8 values).
      out: a new (or empty) directory.
      mode: "weights" (dequantize into the matmul dtype) or "dynamic" (int8 x int8 matmuls); see quantize.py.
    """
    if mode not in quantize.MATMULS:
        raise SslmError(f"--mode={mode} is unknown; use one of {', '.join(quantize.MATMULS)}")
    compressed_dir.check_out_dir(out)
    loaded = load_model(path, host_tokenizer=True)  # copies the tokenizer's files, never runs it: no TF
    if loaded.compression and loaded.compression.get("quantization"):
        raise SslmError(f"{path} is already quantized ({loaded.compression['quantization']}); quantize its source")
    qparams = quantize.quantize_params(loaded.params, layouts(loaded))
    masks = loaded.compression["masks"] if loaded.compression else None
    return compressed_dir.write(out, loaded, qparams, record={"quantization": mode}, masks=masks)


def _magnitude(loaded: LoadedModel, names: list[str], sparsity: float, scope: str):
    return prune.magnitude_masks(loaded.params, names, sparsity, scope=scope)


# method -> (loaded, prunable names, sparsity, scope) -> masks. Movement pruning learns its scores while fine-tuning
# (sslm_jax.training), so it is not a one-shot method of this table.
METHODS = {"magnitude": _magnitude}


def prune_model(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    sparsity: float,
    method: str = "magnitude",
    scope: str = "global",
) -> tuple[pathlib.Path, dict[str, float]]:
    """Writes `path`'s model with the transformer layers' kernels pruned to `sparsity`; returns (out, per-layer
    sparsity incl. "total"). The masks are saved with the parameters (a bitmask per kernel)."""
    prune.check_sparsity(sparsity)
    if method not in METHODS:
        raise SslmError(f"--method={method} is unknown; use one of {', '.join(METHODS)}")
    if scope not in prune.SCOPES:
        raise SslmError(f"--scope={scope} is unknown; use one of {', '.join(prune.SCOPES)}")
    compressed_dir.check_out_dir(out)
    loaded = load_model(path, host_tokenizer=True)  # copies the tokenizer's files, never runs it: no TF
    if loaded.compression and loaded.compression.get("quantization"):
        raise SslmError(f"{path} is quantized: prune the float model, then quantize the pruned one")
    masks = METHODS[method](loaded, prune.prunable(layouts(loaded)), sparsity, scope)
    report = prune.per_layer_sparsity(masks)
    record = {"pruning": {"method": method, "scope": scope, "sparsity": sparsity, "per_layer": report}}
    params = prune.apply_masks(loaded.params, masks)
    return compressed_dir.write(out, loaded, params, record=record, masks=masks), report

"""Magnitude pruning: masks over the transformer layers' dense kernels, and the sparsity they leave per layer.

    layouts = quantize.dense_layouts(model, params, ids)          # every kernel the model uses
    masks = magnitude_masks(params, prunable(layouts), 0.7, scope="global")   # {"bert/encoder/layer_0/...": bool}
    params = apply_masks(params, masks)
    per_layer_sparsity(masks)                                     # {"bert/encoder/layer_0/attention/query/kernel": 0.71}

Only the kernels inside the transformer layers (`layer_<i>`: attention projections, intermediate, output) are
pruned; embeddings, pooler and heads stay dense, as in the movement-pruning paper (Sanh et al., 2020). Masks are
numpy bool arrays (True = kept) keyed by the parameter path, the form a compressed directory stores as bitmasks.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import jax
import numpy as np

from sslm_jax.errors import SslmError

Path = tuple[str, ...]


def prunable(layouts: Mapping[Path, int]) -> list[str]:
    """The paths ("a/b/kernel") of the dense kernels inside transformer layers, from `quantize.dense_layouts`."""
    return sorted(
        "/".join(path)
        for path, n_in in layouts.items()
        if n_in > 0 and any(part.startswith("layer_") for part in path)
    )


def leaf(params, name: str) -> np.ndarray:
    node = params
    for part in name.split("/"):
        node = node[part]
    return np.asarray(node)


def _prune_smallest(magnitudes: np.ndarray, count: int) -> np.ndarray:
    """A keep-mask of `magnitudes` without its `count` smallest entries (exactly `count`, ties broken by position)."""
    keep = np.ones(magnitudes.size, bool)
    if count > 0:
        keep[np.argpartition(magnitudes.ravel(), count - 1)[:count]] = False
    return keep.reshape(magnitudes.shape)


def _global(params, names: Iterable[str], sparsity: float) -> dict[str, np.ndarray]:
    """One threshold for all kernels: the smallest |w| of the whole set go, wherever they are."""
    names = list(names)
    arrays = [np.abs(leaf(params, n)).astype(np.float32) for n in names]
    flat = np.concatenate([a.ravel() for a in arrays])
    keep = _prune_smallest(flat, int(sparsity * flat.size))
    masks, start = {}, 0
    for name, a in zip(names, arrays):
        masks[name] = keep[start : start + a.size].reshape(a.shape)
        start += a.size
    return masks


def _per_layer(params, names: Iterable[str], sparsity: float) -> dict[str, np.ndarray]:
    """Each kernel loses the same fraction of its own smallest |w|."""
    masks = {}
    for name in names:
        a = np.abs(leaf(params, name)).astype(np.float32)
        masks[name] = _prune_smallest(a, int(sparsity * a.size))
    return masks


SCOPES: dict[str, Callable[..., dict[str, np.ndarray]]] = {"global": _global, "layer": _per_layer}


def check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise SslmError(f"--sparsity={sparsity} must be in [0, 1): the fraction of weights to remove")


def magnitude_masks(params, names: Iterable[str], sparsity: float, *, scope: str = "global") -> dict[str, np.ndarray]:
    """Keep-masks removing the `sparsity` fraction of smallest-magnitude weights of `names` (globally or per layer).

    Example: one kernel [[0.1, -3], [2, 0.01]] at sparsity 0.5 -> [[False, True], [True, False]].
    """
    check_sparsity(sparsity)
    if scope not in SCOPES:
        raise SslmError(f"pruning scope {scope!r} is unknown; use one of {', '.join(SCOPES)}")
    return SCOPES[scope](params, names, sparsity)


def apply_masks(params, masks: Mapping[str, np.ndarray]):
    """`params` with the pruned entries of each masked leaf set to zero (other leaves unchanged)."""

    def zero(path, value):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        return value * masks[name].astype(value.dtype) if name in masks else value

    return jax.tree_util.tree_map_with_path(zero, params)


def per_layer_sparsity(masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """{path: fraction of entries pruned}, plus "total" over all masked kernels."""
    report = {name: float(1.0 - m.mean()) for name, m in sorted(masks.items())}
    total = sum(m.size for m in masks.values())
    report["total"] = float(sum((~m).sum() for m in masks.values()) / total) if total else 0.0
    return report

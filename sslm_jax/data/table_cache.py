"""An on-disk cache for tables the library derives, slowly but deterministically, from what is installed.

    values, splits = cached_arrays("wordpiece_chars", {"lower_case": True}, compute=lambda: ...)

Why: `tokenizer._char_table` and `bpe_ops.code_point_classes` run HF's normaliser / pre-tokeniser over all
1.1 M code points (5-7 s each), `tokenizer._pre_tokenizer_classes` the pre-tokeniser alone (~2 s), and the offline
corpus (`sources._docstrings`) parses the standard library's sources (~8 s). Every process that loads a tokenizer,
trains a vocabulary or reads that corpus paid this: each `sslm fill-mask`, demo run, notebook cell and subprocess
test. The result only depends on the table's recipe and its inputs, so it is computed once per (name, arguments,
`RECIPE_VERSION`, sslm_jax version, tokenizers version) and read back afterwards (milliseconds).

Where: `$SSLM_CACHE_DIR`, else `$XDG_CACHE_HOME/sslm_jax`, else `~/.cache/sslm_jax` - never inside the package, so a
read-only install works. A cache that cannot be written is not an error: the table is computed in memory, as
before, with one warning.

Verified: each file stores a SHA-256 of its key and arrays; a file that is truncated, corrupt or written for
another key is recomputed and replaced. Files are written to a temporary name and renamed, so concurrent processes
(parallel tests, several hosts on a shared home) never read a half-written table.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pathlib
import tempfile
from typing import Callable, Mapping

import numpy as np

# Bump when a table's recipe changes without a change of sslm_jax's or tokenizers' version.
RECIPE_VERSION = 1

_DIGEST = "__sha256__"


def cache_dir() -> pathlib.Path:
    """The folder of the cached tables (see the module docstring)."""
    if os.environ.get("SSLM_CACHE_DIR"):
        return pathlib.Path(os.environ["SSLM_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "sslm_jax"


def _key(name: str, args: Mapping[str, object]) -> str:
    from importlib import metadata

    import tokenizers

    try:
        ours = metadata.version("sslm_jax")
    except metadata.PackageNotFoundError:  # a source tree on PYTHONPATH, not installed
        ours = "source"
    return json.dumps(
        {
            "name": name,
            "args": dict(args),
            "recipe": RECIPE_VERSION,
            "sslm_jax": ours,
            "tokenizers": tokenizers.__version__,
        },
        sort_keys=True,
    )


def _digest(key: str, arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256(key.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cached_arrays(
    name: str, args: Mapping[str, object], compute: Callable[[], Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """`compute()` (a dict of numpy arrays), read from the cache when a verified copy for this key is there.

    Args:
      name: the table's name (part of the file name).
      args: the arguments the table depends on (JSON-serialisable), e.g. {"lower_case": True}.
      compute: builds the table; called on a cache miss, a failed verification, or an unusable cache folder.
    """
    key = _key(name, args)
    path = cache_dir() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    cached = _read(path, key)
    if cached is not None:
        return cached
    arrays = {k: np.asarray(v) for k, v in compute().items()}
    _write(path, key, arrays)
    return arrays


def _read(path: pathlib.Path, key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        return None
    except Exception as e:  # noqa: BLE001 - any unreadable file is a cache miss; it is rewritten below
        logging.warning("sslm_jax: ignoring unreadable cached table %s (%s); recomputing it", path, e)
        return None
    stored = arrays.pop(_DIGEST, None)
    if stored is None or str(stored) != _digest(key, arrays):
        logging.warning("sslm_jax: cached table %s failed verification; recomputing it", path)
        return None
    return arrays


def _write(path: pathlib.Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{_DIGEST: np.array(_digest(key, arrays))})
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getvalue())
            os.replace(tmp, path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        logging.warning(
            "sslm_jax: cannot cache a table in %s (%s); it is recomputed in every process (set SSLM_CACHE_DIR to a "
            "writable folder)",
            path.parent,
            e,
        )

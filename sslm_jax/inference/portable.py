"""Run a portable exported model (`sslm export --format=stablehlo`) with jax + numpy only: no Flax, no sslm models.

    model = load("export/sst2")
    model.entry_points                       # ("classify",)   or ("fill_mask",) for a masked-LM
    logits = model.classify(input_ids, attention_mask, token_type_ids)   # numpy [batch, num_labels]
    model.label_names                        # ("negative", "positive")
    ids, mask, types = model.encode(["a gripping , funny film"])         # with the Hugging Face `tokenizers` package

The directory:
    manifest.json          format / version, jax version and calling-convention window, platforms, entry points
                           (input names, dtypes, symbolic shapes; output), label names, tokenizer settings
    <entry>.jax_exported   `jax.export.Exported.serialize()` of (weights, *inputs) -> output, symbolic in batch
                           and length (length <= the model's position table)
    weights.npz            the weights, in the order the functions take them (int8 stays int8)
    vocab.txt              the WordPiece vocabulary

Anything that cannot be read (a missing or corrupt file, another format version, an artifact serialized with a
calling convention this jax does not run) raises `PortableError` with one line naming the file and the reason.

This module imports only the standard library, numpy, jax and `sslm_jax.errors` (tests/test_portable.py checks
`sys.modules` in a fresh process), so a serving process does not pay for (or depend on) the training code.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Sequence

import jax
import numpy as np
from jax import export

from sslm_jax.errors import SslmError

FORMAT, FORMAT_VERSION = "sslm-portable", 1
MANIFEST, WEIGHTS, SUFFIX = "manifest.json", "weights.npz", ".jax_exported"


class PortableError(SslmError):
    """A portable artifact that cannot be loaded or run as given."""


class PortableModel:
    """Exported entry points over one set of weights; each entry point is also a method (`model.classify(...)`)."""

    def __init__(self, directory: pathlib.Path, manifest: dict, functions: dict[str, export.Exported], weights):
        self.directory, self.manifest = directory, manifest
        self._functions, self._weights = functions, weights
        self.entry_points = tuple(functions)
        self.label_names = tuple(manifest.get("label_names", ()))
        self.max_length = int(manifest["max_length"])

    def __call__(self, entry_point: str, *inputs) -> np.ndarray:
        """The entry point's output (numpy) for `inputs` in the manifest's order (int32 arrays [batch, length])."""
        if entry_point not in self._functions:
            raise PortableError(f"{self.directory} has no entry point {entry_point!r}; it has {self.entry_points}")
        spec = self.manifest["entry_points"][entry_point]["inputs"]
        if len(inputs) != len(spec):
            names = ", ".join(s["name"] for s in spec)
            raise PortableError(f"{entry_point} takes {len(spec)} inputs ({names}); got {len(inputs)}")
        arrays = [np.asarray(x, dtype=s["dtype"]) for x, s in zip(inputs, spec)]
        if arrays[0].ndim != 2 or any(a.shape != arrays[0].shape for a in arrays):
            raise PortableError(f"{entry_point}: inputs must all be [batch, length]; got {[a.shape for a in arrays]}")
        if not 1 <= arrays[0].shape[1] <= self.max_length:
            raise PortableError(f"{entry_point}: length {arrays[0].shape[1]} is outside 1..{self.max_length}")
        return np.asarray(self._functions[entry_point].call(self._weights, *arrays))

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self.__dict__.get("_functions", {}):
            raise AttributeError(name)
        return lambda *inputs: self(name, *inputs)

    def encode(self, texts: Sequence[str], *, max_length: int | None = None):
        """(input_ids, attention_mask, token_type_ids) int32 [len(texts), longest] with the saved WordPiece
        vocabulary ([CLS] text [SEP], cut to `max_length`). Needs the `tokenizers` package (Hugging Face)."""
        try:
            from tokenizers import BertWordPieceTokenizer
        except ImportError:
            raise PortableError("encode() needs the `tokenizers` package: pip install tokenizers") from None
        info = self.manifest["tokenizer"]
        tok = BertWordPieceTokenizer(str(self.directory / info["files"][0]), lowercase=info["lower_case"])
        limit = min(max_length or self.max_length, self.max_length)
        tok.enable_truncation(limit)
        encoded = tok.encode_batch(list(texts))
        length = max(len(e.ids) for e in encoded)
        ids = np.full((len(texts), length), info["pad_id"], np.int32)
        mask = np.zeros((len(texts), length), np.int32)
        for row, e in enumerate(encoded):
            ids[row, : len(e.ids)], mask[row, : len(e.ids)] = e.ids, 1
        return ids, mask, np.zeros_like(ids)


def _read_manifest(directory: pathlib.Path) -> dict:
    file = directory / MANIFEST
    if not file.is_file():
        raise PortableError(f"{directory} holds no {MANIFEST}: it is not a portable export (`sslm export`)")
    try:
        manifest = json.loads(file.read_text())
    except ValueError as e:
        raise PortableError(f"{file} is not valid JSON ({e}); the export is corrupt") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PortableError(f"{file} is not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PortableError(
            f"{file}: format version {manifest.get('format_version')!r}; this loader reads version {FORMAT_VERSION}"
        )
    return manifest


def _check_calling_convention(file: pathlib.Path, manifest: dict) -> None:
    version = manifest.get("calling_convention_version")
    low = export.minimum_supported_calling_convention_version
    high = export.maximum_supported_calling_convention_version
    if not isinstance(version, int) or not low <= version <= high:
        raise PortableError(
            f"{file}: serialized with jax {manifest.get('jax_version')} (calling convention {version}); jax "
            f"{jax.__version__} runs conventions {low}..{high}: re-export with this jax or run it with that one"
        )


def _deserialize(file: pathlib.Path) -> export.Exported:
    try:
        return export.deserialize(bytearray(file.read_bytes()))
    except OSError as e:
        raise PortableError(f"{file} cannot be read ({e.strerror})") from None
    except Exception as e:  # flatbuffers / MLIR raise assorted types on damaged bytes
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PortableError(f"{file} is corrupt or from an incompatible jax ({first})") from None


def load(directory: str | os.PathLike) -> PortableModel:
    """The exported model in `directory`, its weights on the default device. PortableError (one line) otherwise."""
    directory = pathlib.Path(directory)
    manifest = _read_manifest(directory)
    _check_calling_convention(directory / MANIFEST, manifest)
    platform = jax.default_backend()
    runs_here = {"gpu": {"cuda", "rocm"}}.get(platform, {platform})  # jax says "gpu"; export names the kind
    if not runs_here & set(manifest.get("platforms", ())):
        raise PortableError(
            f"{directory} was exported for {', '.join(manifest.get('platforms', ()))}; this jax runs on {platform}"
        )
    functions = {}
    for name, entry in manifest["entry_points"].items():
        functions[name] = _deserialize(directory / entry["file"])
    try:
        with np.load(directory / WEIGHTS) as f:
            weights = [f[f"{i:05d}"] for i in range(len(manifest["weights"]))]
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise PortableError(f"{directory / WEIGHTS} cannot be read ({type(e).__name__}: {e})") from None
    for spec, array in zip(manifest["weights"], weights):
        if list(array.shape) != spec["shape"] or str(array.dtype) != spec["dtype"]:
            raise PortableError(f"{directory / WEIGHTS}: {spec['name']} is {array.dtype}{list(array.shape)}, "
                                f"the manifest says {spec['dtype']}{spec['shape']}")  # fmt: skip
    return PortableModel(directory, manifest, functions, jax.device_put(weights))


def describe(model: PortableModel) -> dict[str, Any]:
    """The manifest's summary: entry points with their inputs and output, labels, jax version."""
    return {k: model.manifest[k] for k in ("entry_points", "label_names", "jax_version", "platforms")}

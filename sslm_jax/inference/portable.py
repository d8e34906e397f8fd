"""Run a portable exported model (`sslm export --format=stablehlo`) with jax + numpy only: no Flax, no sslm models.

    model = load("export/sst2")
    model.entry_points                       # ("classify",); ("fill_mask",) for a masked-LM
    logits = model.classify(input_ids, attention_mask, token_type_ids)   # numpy [batch, num_labels]
    model.label_names                        # ("negative", "positive")
    ids, mask, types = model.encode(["a gripping , funny film"])         # with the Hugging Face `tokenizers` package

    gpt = load("export/gpt")                 # a causal LM: ("prefill", "decode_step")
    gpt.generate(["def read_file(path):"], max_new_tokens=16)            # greedy; temperature/top_k/top_p/seed

The directory:
    manifest.json          format / version, jax version and calling-convention window, platforms, entry points
                           (input names, dtypes, symbolic shapes; output), label names, tokenizer settings
    <entry>.jax_exported   `jax.export.Exported.serialize()` of (weights, *inputs) -> output(s), symbolic in batch,
                           length and cache slots (each at most the model's position table)
    weights.npz            the weights, in the order the functions take them (int8 stays int8)
    vocab.txt              the WordPiece vocabulary; a causal LM's byte-level BPE is vocab.json + merges.txt

Anything that cannot be read (a missing or corrupt file, another format version, an artifact serialized with a
calling convention this jax does not run) raises `PortableError` with one line naming the file and the reason.

This module imports only the standard library, numpy, jax, `sslm_jax.errors` and `sslm_jax.inference.sampling`
(tests/test_portable.py checks `sys.modules` in a fresh process), so a serving process does not pay for (or depend
on) the training code.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
from typing import Any, Sequence

import jax
import numpy as np
from jax import export

from sslm_jax.errors import SslmError
from sslm_jax.inference import sampling

FORMAT, FORMAT_VERSION = "sslm-portable", 2  # 2: several outputs per entry point, the cache
MANIFEST, WEIGHTS, SUFFIX = "manifest.json", "weights.npz", ".jax_exported"
END_OF_TEXT = "<|endoftext|>"  # the byte-level BPE's document separator (GPT-2's and those sslm trains)


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
        self.text_length = int(manifest.get("text_length", self.max_length))  # older manifests: the positions
        self._tok = None

    def __call__(self, entry_point: str, *inputs):
        """The entry point's output (numpy; a tuple when it has several) for `inputs` in the manifest's order."""
        if entry_point not in self._functions:
            raise PortableError(f"{self.directory} has no entry point {entry_point!r}; it has {self.entry_points}")
        spec = self.manifest["entry_points"][entry_point]["inputs"]
        if len(inputs) != len(spec):
            names = ", ".join(s["name"] for s in spec)
            raise PortableError(f"{entry_point} takes {len(spec)} inputs ({names}); got {len(inputs)}")
        arrays = [np.asarray(x, dtype=s["dtype"]) for x, s in zip(inputs, spec)]
        self._check_shapes(entry_point, spec, arrays)
        out = self._functions[entry_point].call(self._weights, *arrays)
        return tuple(np.asarray(x) for x in out) if isinstance(out, (tuple, list)) else np.asarray(out)

    def _check_shapes(self, entry_point: str, spec: list[dict], arrays: list[np.ndarray]) -> None:
        """Each input has its manifest shape: fixed sizes equal, a symbolic name the same size everywhere, and every
        symbolic size but the batch within 1..max_length."""
        sizes: dict[str, int] = {}
        for s, a in zip(spec, arrays):
            if a.ndim != len(s["shape"]):
                raise PortableError(f"{entry_point}: {s['name']} must be {s['shape']}; got shape {list(a.shape)}")
            for dim, size in zip(s["shape"], a.shape):
                if isinstance(dim, int) and dim != size or sizes.setdefault(dim, size) != size:
                    raise PortableError(f"{entry_point}: {s['name']} has shape {list(a.shape)}, not {s['shape']} "
                                        f"(sizes so far: {sizes})")  # fmt: skip
        for dim, size in sizes.items():
            if isinstance(dim, str) and dim != "batch" and not 1 <= size <= self.max_length:
                raise PortableError(f"{entry_point}: {dim} {size} is outside 1..{self.max_length}")
        if sizes.get("batch", 1) < 1:  # jax.export's own message for it is a multi-line shape-polymorphism error
            raise PortableError(f"{entry_point}: the batch is empty; give at least one row")
        if sizes.get("length", 0) > sizes.get("cache", self.max_length):
            raise PortableError(f"{entry_point}: the cache has {sizes['cache']} slots, fewer than the {sizes['length']} "
                                "tokens to write")  # fmt: skip

    def __getattr__(self, name: str):
        if name.startswith("_") or name not in self.__dict__.get("_functions", {}):
            raise AttributeError(name)
        return lambda *inputs: self(name, *inputs)

    def _tokenizer(self):
        """The saved tokenizer, through Hugging Face's `tokenizers` (its WordPiece and byte-level BPE give our ids)."""
        if self._tok is None:
            try:
                import tokenizers
            except ImportError:
                raise PortableError("encoding text needs the `tokenizers` package: pip install tokenizers") from None
            info = self.manifest["tokenizer"]
            files = [str(self.directory / name) for name in info["files"]]
            if info.get("kind", "wordpiece") == "bpe":
                self._tok = tokenizers.ByteLevelBPETokenizer(*files)
                # A literal "<|endoftext|>" in a prompt is the one token, as in GPT2TokenizerFast and sslm's own
                # tokenizer, not its 13 bytes (the vocabulary already holds it: its id is unchanged).
                self._tok.add_special_tokens([END_OF_TEXT])
            else:
                self._tok = tokenizers.BertWordPieceTokenizer(files[0], lowercase=info["lower_case"])
        return self._tok

    def encode(self, texts: Sequence[str], *, max_length: int | None = None):
        """(input_ids, attention_mask, token_type_ids) int32 [len(texts), longest] with the saved WordPiece
        vocabulary ([CLS] text [SEP], cut to `max_length`; default the length the model was run at, manifest's
        `text_length`, as `sslm predict` cuts). Needs the `tokenizers` package (Hugging Face)."""
        if self.manifest["tokenizer"].get("kind", "wordpiece") != "wordpiece":
            raise PortableError(f"{self.directory}: encode() is for encoders; a causal LM uses generate()")
        info, tok = self.manifest["tokenizer"], self._tokenizer()
        tok.enable_truncation(min(max_length or self.text_length, self.max_length))
        encoded = tok.encode_batch(list(texts))
        length = max(len(e.ids) for e in encoded)
        ids = np.full((len(texts), length), info["pad_id"], np.int32)
        mask = np.zeros((len(texts), length), np.int32)
        for row, e in enumerate(encoded):
            ids[row, : len(e.ids)], mask[row, : len(e.ids)] = e.ids, 1
        return ids, mask, np.zeros_like(ids)

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 32, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int = 0) -> list[str]:  # fmt: skip
        """The continuation of each prompt (the text after it, up to end-of-text), from a causal-LM export.

        One `prefill` over the right-padded prompts (padded to `sampling.bucket_length`, so prompt batches of one
        bucket share a compilation), then one `decode_step` per new token. Tokens are chosen by the live decoder's
        own `sampling.sample_logits` (greedy at temperature 0, else temperature, top-k, top-p, then a draw with
        the key `fold_in(key(seed), step)`), so the text equals `sslm generate --seed=SEED` on the exported run
        for the same settings, sampled as well as greedy. An empty prompt starts from end-of-text, as there.
        """
        if "prefill" not in self._functions:
            raise PortableError(f"{self.directory} is not a causal-LM export: it has {', '.join(self.entry_points)}")
        if not prompts or max_new_tokens < 1:
            raise PortableError("generate() needs at least one prompt and max_new_tokens >= 1")
        problem = sampling.settings_problem(top_k=top_k, top_p=top_p)
        if problem:
            raise PortableError(problem)
        eot, tok = self.manifest["tokenizer"]["eot_id"], self._tokenizer()
        rows = [e.ids or [eot] for e in tok.encode_batch(list(prompts))]
        longest = max(len(r) for r in rows)
        if longest + max_new_tokens > self.max_length:
            raise PortableError(f"a prompt of {longest} tokens + max_new_tokens={max_new_tokens} passes the model's "
                                f"{self.max_length} positions: shorten the prompt or ask for fewer tokens")  # fmt: skip
        length = sampling.bucket_length(longest, context=self.max_length)
        ids = np.full((len(rows), length), eot, np.int32)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = row
        lengths = np.array([len(r) for r in rows], np.int32)
        _, _, key_spec, value_spec = self.manifest["entry_points"]["prefill"]["inputs"]
        cache_shape = [len(rows) if d == "batch" else d for d in key_spec["shape"]]
        cache_shape[cache_shape.index("cache")] = min(length + max_new_tokens, self.max_length)
        key, value = np.zeros(cache_shape, key_spec["dtype"]), np.zeros(cache_shape, value_spec["dtype"])
        logits, key, value, index = self.prefill(ids, lengths, key, value)
        choose, rng = _chooser(float(temperature), int(top_k), float(top_p)), jax.random.key(seed)
        new, done = [[] for _ in rows], np.zeros(len(rows), bool)
        for step in range(max_new_tokens):
            token = np.asarray(choose(logits, jax.random.fold_in(rng, step)))
            for b in np.flatnonzero(~done):
                new[b].append(int(token[b]))
            done |= token == eot
            if done.all() or step == max_new_tokens - 1:
                break
            logits, key, value, index = self.decode_step(token, key, value, index)
        return [tok.decode([t for t in row if t != eot]) for row in new]


@functools.lru_cache(maxsize=16)
def _chooser(temperature: float, top_k: int, top_p: float):
    """The jitted `(logits [B, V], key) -> token ids [B]` for these settings (one compilation per batch size)."""
    return jax.jit(functools.partial(sampling.sample_logits, temperature=temperature, top_k=top_k, top_p=top_p))


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

"""Tokenizer kinds by name (`config.data.tokenizer`): how each is trained, which files it is, how it loads.

    kind = get("wordpiece")
    path = kind.train(documents, data_config, out_dir)   # writes kind.files into out_dir; returns the first
    tok = kind.load(path, data_config)                    # tok.tokenize(strings) -> ragged ids; tok.files

Every loaded tokenizer offers `tokenize` (in-graph), `encode` (Python strings -> ids per string), `decode`,
`vocab_size`, `pad_id` and `files` ({name: path}, what a checkpoint copies). A kind's `load_host` tokenizer (no
TensorFlow, for one-shot inference) offers all of these but `tokenize`.
A new kind is a module that builds a `TokenizerKind` and one line in BUILTIN.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pathlib
from typing import Any, Callable

from sslm_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class TokenizerKind:
    """Attributes:
    name: the `config.data.tokenizer` value.
    files: the file names of a trained tokenizer, in one folder; the first is the one `data.vocab_path` names.
    train: (documents, data_config, out_dir) -> the path of the first file, after writing all of them.
    load: (path of the first file, data_config) -> the tokenizer.
    settings: the `config.data` fields `train` reads; a vocabulary trained into a workdir records them, and a later
      run that asks for other values is refused instead of silently reusing it (training/vocab.py).
    load_host: like `load`, but a tokenizer for one-shot inference that imports no TensorFlow and offers
      `encode(texts) -> ids per text` instead of in-graph `tokenize`; None: the kind has none.
    """

    name: str
    files: tuple[str, ...]
    train: Callable[[Any, Any, pathlib.Path], pathlib.Path]
    load: Callable[[os.PathLike, Any], Any]
    settings: tuple[str, ...] = ("vocab_size",)
    load_host: Callable[[os.PathLike, Any], Any] | None = None

    def load_for(self, path: os.PathLike, data_config, *, host: bool):
        """`load_host` when `host` is asked for and this kind has one (no TensorFlow import), else `load`."""
        return (self.load_host if host and self.load_host else self.load)(path, data_config)


def _train_wordpiece(documents, data_config, out_dir: pathlib.Path) -> pathlib.Path:
    from sslm_jax.data import tokenizer

    return tokenizer.train_wordpiece(
        documents, vocab_size=data_config.vocab_size, out_dir=out_dir, lower_case=data_config.lower_case
    )


def _load_wordpiece(path, data_config):
    from sslm_jax.data import tokenizer

    return tokenizer.load_tokenizer(path, lower_case=data_config.lower_case)


def _load_host_wordpiece(path, data_config):
    from sslm_jax.data import host_wordpiece

    return host_wordpiece.HostWordPiece(path, lower_case=data_config.lower_case)


WORDPIECE = TokenizerKind(
    "wordpiece", ("vocab.txt",), _train_wordpiece, _load_wordpiece, ("vocab_size", "lower_case"), _load_host_wordpiece
)


def _train_bpe(documents, data_config, out_dir: pathlib.Path) -> pathlib.Path:
    from sslm_jax.data import bpe_vocab

    return bpe_vocab.train_bpe(documents, vocab_size=data_config.vocab_size, out_dir=out_dir) / bpe_vocab.VOCAB_FILE


def _bpe_dir(path) -> pathlib.Path:
    """The BPE folder: `path` itself, or the folder of its vocab.json."""
    path = pathlib.Path(path)
    return path if path.is_dir() else path.parent


def _load_bpe(path, data_config):
    from sslm_jax.data import bpe

    del data_config  # byte-level BPE has no settings: casing and all bytes are kept
    return bpe.load_bpe(_bpe_dir(path))


def _load_host_bpe(path, data_config):
    from sslm_jax.data import host_bpe

    del data_config
    return host_bpe.HostBPE(_bpe_dir(path))


# GPT-2's byte-level BPE (data/bpe.py); `data.vocab_path` names its vocab.json (merges.txt beside it) or the folder.
BPE = TokenizerKind("bpe", ("vocab.json", "merges.txt"), _train_bpe, _load_bpe, load_host=_load_host_bpe)

# kind name -> "module:attribute" of its TokenizerKind (imported on first use).
BUILTIN = {"wordpiece": "sslm_jax.data.tokenizers:WORDPIECE", "bpe": "sslm_jax.data.tokenizers:BPE"}


def get(name: str) -> TokenizerKind:
    if name not in BUILTIN:
        raise ConfigError(f"config.data.tokenizer={name!r} is unknown; use one of {', '.join(BUILTIN)}")
    module, attribute = BUILTIN[name].split(":")
    return getattr(importlib.import_module(module), attribute)


def load(data_config, path: os.PathLike):
    """The tokenizer of kind `data_config.tokenizer` whose first file is `path`."""
    return get(data_config.tokenizer).load(path, data_config)

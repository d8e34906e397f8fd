"""GPT-2's byte-level BPE files, without TensorFlow: training them, reading and checking them, and what a token's
characters stand for. The in-graph tokenizer (`bpe.BPETokenizer`) and the host one (`host_bpe.HostBPE`) both read
their files here, so both refuse the same broken files with the same message.

    train_bpe(texts, vocab_size=8192, out_dir="bpe")   # -> bpe/vocab.json + bpe/merges.txt
    vocab, merges = read_files("bpe")                  # {token: id}, [(left, right), ...] by rank; DataError if bad
    vocab_size = check(vocab, merges, where="bpe")     # largest id + 1; DataError naming what is missing
    token_bytes(vocab)[id]                             # b"Hello" for "Hello", b" world" for "Ġworld"
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
from typing import Iterable, Mapping, Sequence

from sslm_jax.data import graph_records
from sslm_jax.errors import ConfigError, DataError, shown

EOT = "<|endoftext|>"
VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"
# GPT-2's pre-tokeniser (HF `pre_tokenizers.ByteLevel(use_regex=True)`), for reference; see bpe.py's docstring.
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def byte_alphabet() -> dict[int, str]:
    """GPT-2's `bytes_to_unicode`: byte -> the printable character that stands for it in vocab.json.

    Printable Latin-1 bytes stand for themselves; the other 68 take U+0100.. in byte order: 0x20 (space) -> "Ġ",
    0x0A -> "Ċ", b"\\xc3\\xa9" ("é") -> "Ã©".
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(rest)}}


def token_bytes(vocab: Mapping[str, int]) -> dict[int, bytes]:
    """id -> the bytes its token stands for. A token spelled outside the byte alphabet (an added token of some other
    vocabulary) stands for its own UTF-8 text, as in HF's ByteLevel decoder."""
    byte_of_char = {c: b for b, c in byte_alphabet().items()}
    return {
        i: bytes(byte_of_char[c] for c in t) if all(c in byte_of_char for c in t) else t.encode("utf-8")
        for t, i in vocab.items()
    }


class Decoding:
    """`decode_bytes` and `decode` over `self._token_bytes` (`token_bytes(vocab)`), for both BPE tokenizers."""

    _token_bytes: dict[int, bytes]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Python ids -> the bytes they stand for, "<|endoftext|>" written out: [15496, 995] -> b"Hello world"."""
        try:
            return b"".join(self._token_bytes[int(i)] for i in ids)
        except KeyError as e:
            raise ValueError(f"id {e.args[0]} is not in the vocabulary") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Python ids -> text (UTF-8; invalid bytes, only possible from non-UTF-8 input, become U+FFFD)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


# --- Training -------------------------------------------------------------------------------------------------


def train_bpe(documents: Iterable[str | bytes], *, vocab_size: int, out_dir: str | os.PathLike) -> pathlib.Path:
    """Trains a GPT-2-style byte-level BPE and writes `out_dir/vocab.json` and `out_dir/merges.txt`.

    Args:
      documents: an iterable of `str` (or UTF-8 `bytes`, invalid bytes read as U+FFFD) or a `tf.data.Dataset` of
        scalar strings; read once.
      vocab_size: tokens in the vocabulary: "<|endoftext|>" (id 0), the 256 byte tokens (ids 1..256), then merges
        until vocab_size or until no pair is left to merge.
      out_dir: created if needed; each file is written to a temporary name and renamed, after training succeeded.

    Returns:
      `out_dir`, loadable by `bpe.load_bpe`, `host_bpe.HostBPE` and `transformers.GPT2TokenizerFast.from_pretrained`.

    Example: `train_bpe(["low lower lowest"] * 10, vocab_size=260, out_dir="v")` learns the merges "l o",
    "lo w", "Ġ lo" (ids 257-259); "low lower" then tokenizes to ["low", "Ġlow", "e", "r"].

    The result is the same in every run for the same corpus (HF's BPE trainer breaks count ties by token id).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    min_size = 256 + 1
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < min_size:
        raise ConfigError(
            f"vocab_size={vocab_size!r} is too small: a byte-level BPE needs an integer >= {min_size} "
            f"(256 byte tokens plus {EOT})"
        )
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"tokenizer output directory {out_dir} exists and is not a directory")
    tf = sys.modules.get("tensorflow")  # a tf.data.Dataset can only exist once TensorFlow is imported
    if tf is not None and isinstance(documents, tf.data.Dataset):
        documents = graph_records.elements(documents)
    seen_chars = [0]

    def texts():
        for doc in documents:
            if isinstance(doc, bytes):
                doc = doc.decode("utf-8", errors="replace")  # the project's policy for files
            elif not isinstance(doc, str):
                raise TypeError(f"train_bpe: documents must be str or bytes, got {type(doc).__name__}: {doc!r:.80}")
            seen_chars[0] += len(doc)
            yield doc

    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not: any text can be encoded
        show_progress=False,
    )
    model.train_from_iterator(texts(), trainer=trainer)
    if seen_chars[0] == 0:
        raise DataError("no text to train a BPE vocabulary on: the documents are empty")

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".train_bpe.") as tmp:
        model.model.save(tmp)  # writes vocab.json and merges.txt
        for name in (VOCAB_FILE, MERGES_FILE):
            os.replace(os.path.join(tmp, name), out_dir / name)
    return out_dir


# --- Reading --------------------------------------------------------------------------------------------------


def read_files(directory: str | os.PathLike) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """`directory/vocab.json` (token -> id) and `directory/merges.txt` ("left right" per line, by rank).

    Raises DataError (one line, naming the file) when a file is missing, unreadable or malformed.
    """
    directory = pathlib.Path(directory)
    paths = {name: directory / name for name in (VOCAB_FILE, MERGES_FILE)}
    for name, path in paths.items():
        if not path.is_file():
            raise DataError(
                f"BPE file {path} does not exist: a byte-level BPE directory needs {VOCAB_FILE} and {MERGES_FILE} "
                f"(train one with sslm_jax.data.bpe.train_bpe, or copy both from a Hugging Face GPT-2 directory)"
            )
    try:
        vocab = json.loads(paths[VOCAB_FILE].read_text(encoding="utf-8"))
        lines = paths[MERGES_FILE].read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read BPE files in {directory}: {e}") from e
    if not isinstance(vocab, dict) or not all(isinstance(i, int) and i >= 0 for i in vocab.values()):
        raise DataError(f"{paths[VOCAB_FILE]} must be a JSON object mapping each token to an id >= 0")
    merges = []
    for number, line in enumerate(lines, start=1):
        if line.startswith("#version") or not line:  # HF's reader skips the version header
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise DataError(
                f"{paths[MERGES_FILE]} line {number}: expected two tokens separated by one space: {shown(line)}"
            )
        merges.append((parts[0], parts[1]))
    return vocab, merges


def check(vocab: Mapping[str, int], merges: Sequence[tuple[str, str]], *, where: str) -> int:
    """The vocabulary size (largest id + 1) of files that a tokenizer can use. DataError (naming `where`) when the
    vocabulary lacks "<|endoftext|>", a byte token, or a token that a merge uses or makes."""
    if EOT not in vocab:
        raise DataError(f"{where}: {VOCAB_FILE} has no {EOT} token")
    missing = [c for c in byte_alphabet().values() if c not in vocab]
    if missing:
        raise DataError(f"{where}: {VOCAB_FILE} lacks {len(missing)} of the 256 byte tokens, e.g. {missing[0]!r}")
    for rank, (left, right) in enumerate(merges):
        if left not in vocab or right not in vocab or left + right not in vocab:
            raise DataError(f"{where}: merge {rank + 1} {left!r} {right!r} uses or makes a token not in {VOCAB_FILE}")
    return max(vocab.values()) + 1

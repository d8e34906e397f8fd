"""A BERT vocab.txt: its special tokens, how it is read and checked. No TensorFlow, so the in-graph tokenizer
(`tokenizer.py`) and the host one for one-shot inference (`host_wordpiece.py`) read vocabularies the same way.

    vocab = read_vocab("vocab/vocab.txt")        # ["[PAD]", "[unused0]", ..., "[UNK]", "[CLS]", ...]
    ids = special_ids(vocab, "vocab/vocab.txt")  # {"[PAD]": 0, "[UNK]": 100, ...}; DataError if one is missing
    join_pieces(vocab, [7592, 2088])             # "hello world" (bert-base-uncased): how ids are shown
"""

from __future__ import annotations

import os
import pathlib
from typing import Iterable

from sslm_jax.errors import DataError

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
# google-research/bert's layout, so checkpoints and vocabularies line up with the published BERT models.
BERT_RESERVED_TOKENS = (PAD, *(f"[unused{i}]" for i in range(99)), UNK, CLS, SEP, MASK)
SUFFIX_INDICATOR = "##"
MAX_CHARS_PER_WORD = 100  # HF's WordPiece `max_input_chars_per_word`: a longer word is a single [UNK].


def read_vocab(vocab_path: str | os.PathLike) -> list[str]:
    """The tokens of a BERT vocab.txt, one per line, id = line number (lines end in \\n, \\r\\n or \\r, as for HF).

    Raises DataError when the file is missing or is not UTF-8 text.
    """
    path = pathlib.Path(vocab_path)
    if not path.is_file():
        raise DataError(f"vocabulary file {path} does not exist (train one with `sslm train-tokenizer`)")
    try:
        text = path.read_text(encoding="utf-8")  # text mode turns \r\n and \r into \n, as HF's reader does
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read vocabulary file {path} as UTF-8 text: {e}") from e
    vocab = text.split("\n")
    if vocab and vocab[-1] == "":  # the newline that ends the last line
        vocab.pop()
    return vocab


def special_ids(vocab: list[str], where: str) -> dict[str, int]:
    """{token: id} of the whole vocabulary, after checking it. DataError when a line is empty, a token repeats (HF
    would give it the later id, tf_text the earlier) or a special token is missing."""
    ids: dict[str, int] = {}
    for i, token in enumerate(vocab):
        if not token:
            raise DataError(f"{where}: line {i + 1} is empty; every line must hold one token")
        if token in ids:
            raise DataError(f"{where}: token {token!r} appears on lines {ids[token] + 1} and {i + 1}")
        ids[token] = i
    for token in SPECIAL_TOKENS:
        if token not in ids:
            raise DataError(f"{where} has no {token} token; a BERT vocabulary needs {', '.join(SPECIAL_TOKENS)}")
    return ids


def join_pieces(vocab: list[str], ids: Iterable[int]) -> str:
    """Ids -> text for display, "##" pieces glued to the previous piece: ids of ["hello", "una", "##ffa"] ->
    "hello unaffa". The `decode` of both WordPiece tokenizers (in-graph and host)."""
    return " ".join(vocab[int(i)] for i in ids).replace(" " + SUFFIX_INDICATOR, "")

"""BERT WordPiece on the host, without TensorFlow: for one-shot inference (`sslm fill-mask`), where importing TF
would cost more than the whole prediction (BENCHMARKS.md, "Cold start").

    tok = HostWordPiece("run/checkpoints/100/vocab/vocab.txt", lower_case=True)
    tok.encode(["Héllo, unaffable wörld!", "the [MASK] sat"])   # [[ids of hello , una ##ffa ##ble world !], ...]

It is Hugging Face's `tokenizers` set up as `transformers.BertTokenizer` sets it up (BertNormalizer with
clean_text, CJK spacing, lower-casing and accent stripping as `lower_case` says; BertPreTokenizer; WordPiece with
"##" and a 100-character word limit; the special tokens matched in the raw text). That is the reference the
in-graph tokenizer (`tokenizer.WordPieceTokenizer`) is tested against, so both give the same ids
(tests/test_tokenizer.py checks all three on the shared data and on adversarial strings). It offers what
inference reads of a tokenizer: `encode`, `decode`, `vocab`, `vocab_size`, the special ids, `files`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Iterable, Sequence

from sslm_jax.data.wordpiece_vocab import (
    MAX_CHARS_PER_WORD,
    SPECIAL_TOKENS,
    SUFFIX_INDICATOR,
    UNK,
    join_pieces,
    read_vocab,
    special_ids,
)


class HostWordPiece:
    """WordPiece ids of Python strings; see the module docstring. Same attributes as `WordPieceTokenizer`."""

    def __init__(self, vocab_path: str | os.PathLike, *, lower_case: bool = True):
        from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers

        self.vocab_path = pathlib.Path(vocab_path)
        self.vocab = read_vocab(self.vocab_path)
        self.vocab_size = len(self.vocab)
        self.lower_case = bool(lower_case)
        ids = special_ids(self.vocab, f"vocabulary file {self.vocab_path}")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (ids[t] for t in SPECIAL_TOKENS)
        self.special_ids = tuple(sorted({self.pad_id, self.cls_id, self.sep_id, self.mask_id}))
        tok = Tokenizer(
            models.WordPiece(
                ids, unk_token=UNK, continuing_subword_prefix=SUFFIX_INDICATOR,
                max_input_chars_per_word=MAX_CHARS_PER_WORD,
            )
        )  # fmt: skip
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=self.lower_case
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        # Written in the text, "[MASK]" stays one token and skips normalisation (case-sensitive), as in HF.
        tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
        self._tokenizer = tok

    @property
    def eot_id(self) -> int:
        return self.sep_id

    @property
    def files(self) -> dict[str, pathlib.Path]:
        return {"vocab.txt": self.vocab_path}

    def __repr__(self) -> str:
        return f"HostWordPiece({self.vocab_path}, lower_case={self.lower_case})"

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Strings -> WordPiece ids per string, no [CLS]/[SEP] added."""
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text for display, "##" pieces glued to the previous piece (as `WordPieceTokenizer.decode`)."""
        return join_pieces(self.vocab, ids)

"""GPT-2's byte-level BPE on the host, without TensorFlow: for one-shot inference (`sslm generate`, `sslm serve`,
exports), where importing TF and building the in-graph tokenizer would cost more than the generation itself.

    tok = HostBPE("run/checkpoints/100/vocab")   # or a Hugging Face GPT-2 directory (vocab.json + merges.txt)
    tok.encode(["Hello world", "a<|endoftext|>b"])   # [[15496, 995], [64, 50256, 65]] with GPT-2's files
    tok.decode([15496, 995])                         # "Hello world"

It is Hugging Face's `tokenizers` set up as `transformers.GPT2TokenizerFast` sets it up (byte-level BPE with
GPT-2's regex, no prefix space, "<|endoftext|>" matched in the raw text). That is the reference the in-graph
tokenizer (`bpe.BPETokenizer`) is tested against, so both give the same ids (tests/test_bpe.py checks all three).
The files are read and checked by `bpe_vocab`, as for the in-graph tokenizer: the same files are refused with the
same message. It offers what inference reads of a tokenizer: `encode`, `decode`, `decode_bytes`, `vocab`,
`vocab_size`, `eot_id`, `files`.
"""

from __future__ import annotations

import os
import pathlib
from typing import Sequence

from sslm_jax.data.bpe_vocab import EOT, MERGES_FILE, VOCAB_FILE, Decoding, check, read_files, token_bytes


class HostBPE(Decoding):
    """BPE ids of Python strings; see the module docstring. Same attributes as `bpe.BPETokenizer` (no `tokenize`)."""

    def __init__(self, directory: str | os.PathLike):
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        self.directory = pathlib.Path(directory)
        self.vocab, merges = read_files(self.directory)
        self.vocab_size = check(self.vocab, merges, where=str(self.directory))
        self.num_merges = len(merges)
        self.eot_id = self.vocab[EOT]
        self._token_bytes = token_bytes(self.vocab)
        tok = Tokenizer(models.BPE(self.vocab, merges))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([AddedToken(EOT, special=True)])  # written in a text, it is the one token
        self._tokenizer = tok

    @property
    def files(self) -> dict[str, pathlib.Path]:
        """{name: path} of the files a checkpoint keeps with the model: vocab.json and merges.txt."""
        return {name: self.directory / name for name in (VOCAB_FILE, MERGES_FILE)}

    def __repr__(self) -> str:
        return f"HostBPE({self.directory}, {self.num_merges} merges)"

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Strings -> BPE ids per string; nothing is added around them."""
        return [e.ids for e in self._tokenizer.encode_batch(list(texts), add_special_tokens=False)]

"""GPT-2's byte-level BPE: train with Hugging Face `tokenizers`, tokenize in-graph with plain TensorFlow ops. (Training
and reading the files are in `bpe_vocab`, TF-free; `host_bpe` tokenizes on the host for one-shot inference.)

    out = train_bpe(texts, vocab_size=8192, out_dir="bpe")   # -> bpe/ with vocab.json + merges.txt
    tok = load_bpe(out)                    # also a Hugging Face GPT-2 directory (its vocab.json + merges.txt)
    tok.tokenize(["Hello world", " it's"])  # RaggedTensor: ids of [["Hello", "Ġworld"], ["Ġit", "'s"]]
    ds.map(tok.tokenize)                    # inside tf.data: no py_function, so iterator checkpoints resume exactly
    tok.decode(ids)                         # -> the exact text back; tok.eot_id, tok.vocab_size

Parity: the ids equal `transformers.GPT2TokenizerFast.from_pretrained(out)(text)["input_ids"]` (or the
constructor with `vocab=vocab.json path, merges=merges.txt path`; with transformers 5 `vocab_file=`/`merges_file=`
are silently ignored by the constructor, giving an empty vocabulary). HF's pipeline, and how we follow it:

1. "<|endoftext|>" written in the text is cut out and becomes `eot_id` (HF's added-token split):
   `tf.strings.split(text, sep=EOT)`; each piece is then tokenized alone, as in HF.
2. Pre-tokenisation by GPT-2's regex (`GPT2_PATTERN`). RE2 has no lookahead and its \\p{L}, \\p{N}, \\s follow
   another Unicode version than HF's Oniguruma, so we do not run that regex on the text. Each code point is
   mapped to a one-letter class (letter, number, space, other whitespace, other; the letters of the
   contractions and the apostrophe stay themselves), the classes having been read once per process from HF's
   own pre-tokeniser over every code point (`bpe_ops.code_point_classes`, ~5 s). `\\s+(?!\\S)` needs to know
   whether the next character is whitespace: a whitespace character followed by whitespace (or by the end) becomes
   class "I", one followed by anything else " " (a space) or "W" (other whitespace). Then the lookahead-free
   `bpe_ops.CLASS_PATTERN` over this class string (one class byte per text byte) matches exactly where GPT-2's
   regex matches over the text, so the lengths of its matches cut the text into words.
3. Each word's UTF-8 bytes map to the 256 one-byte tokens (GPT-2's `byte_alphabet` spells them in vocab.json).
4. BPE: every round merges, in every word, all occurrences (left to right, non-overlapping) of the adjacent pair
   with the lowest merge rank; a word is done when no adjacent pair has a rank. This equals HF's
   one-merge-at-a-time heap whenever a merge's result only takes part in later merges (true of any trained
   merges.txt: a pair can only be learned after its parts exist). For other files (a token made by two merges,
   one after a merge that uses it) rounds merge only the leftmost lowest pair of each word: HF's order exactly,
   in more rounds (`Merges.one_at_a_time`, checked at load). Pairs are int64 keys `left_id * V + right_id`
   looked up by binary search in a sorted constant (no hash-table resource in the graph). HF caches words;
   in-graph, (a) words repeated in a batch are merged once (`tf.unique`), and (b) a word whose bytes are a token
   that BPE rebuilds whole (found once at load by running BPE on every token) is looked up, not merged. So
   larger batches are faster, and common words never enter the merge loop.

Invalid UTF-8 (only reachable from tf.string, never from a Python str) is kept byte for byte: each invalid
sequence is classed like U+FFFD (other), so `decode_bytes` still gives the input back exactly.
"""

from __future__ import annotations

import os
import pathlib
from typing import Mapping, Sequence


from sslm_jax.data.tf_setup import tf

from sslm_jax.data import bpe_ops  # noqa: E402
from sslm_jax.data.bpe_vocab import (  # noqa: E402,F401  (train_bpe, byte_alphabet and the names: this module's API)
    EOT,
    GPT2_PATTERN,
    MERGES_FILE,
    VOCAB_FILE,
    Decoding,
    byte_alphabet,
    read_files,
    token_bytes,
    train_bpe,
)


# --- Loading --------------------------------------------------------------------------------------------------


def load_bpe(directory: str | os.PathLike) -> "BPETokenizer":
    """The in-graph tokenizer of `directory/vocab.json` and `directory/merges.txt` (`bpe_vocab.read_files`).

    Raises DataError (one line, naming the file) when a file is missing or unreadable, or when the vocabulary
    lacks a byte token, "<|endoftext|>", or a token a merge uses or makes.
    """
    vocab, merges = read_files(directory)
    return BPETokenizer(vocab, merges, directory=directory)


# --- The tokenizer --------------------------------------------------------------------------------------------


class BPETokenizer(Decoding):
    """In-graph GPT-2 byte-level BPE over a fixed vocabulary and merge list (module docstring: parity rules).

    Attributes:
      vocab: token -> id.  vocab_size: largest id + 1.  eot_id: the id of "<|endoftext|>".
      num_merges: lines of merges.txt.  directory: where the files were read from (None when built from a dict).
    """

    def __init__(self, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]], *, directory=None):
        self.vocab = dict(vocab)
        self.directory = pathlib.Path(directory) if directory is not None else None
        where = str(self.directory) if self.directory else "the BPE vocabulary"
        self._merges = bpe_ops.Merges(self.vocab, merges, where=where)  # checks the files (`bpe_vocab.check`) first
        self.eot_id = self.vocab[EOT]
        self.vocab_size = self._merges.vocab_size
        self.num_merges = self._merges.num_merges
        self._token_bytes = token_bytes(self.vocab)
        self._classes = tf.constant(bpe_ops.code_point_classes())
        self._tokenize = tf.function(
            self._tokenize_vector, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
        )

    @property
    def files(self) -> dict[str, pathlib.Path]:
        """{name: path} of the files a checkpoint keeps with the model: vocab.json and merges.txt."""
        if self.directory is None:
            raise ValueError("a BPETokenizer built from a dict has no files")
        return {name: self.directory / name for name in (VOCAB_FILE, MERGES_FILE)}

    def __repr__(self) -> str:
        source = self.directory or f"{len(self.vocab)} tokens"
        return f"BPETokenizer({source}, {self.num_merges} merges)"

    def tokenize(self, strings) -> tf.RaggedTensor | tf.Tensor:
        """Strings [N] -> ids [N, (tokens)] int32; a scalar string -> ids [tokens]. Nothing is added around them.

        Example (GPT-2's files): ["Hello world", "a<|endoftext|>b"] -> [[15496, 995], [64, 50256, 65]].
        """
        strings = tf.convert_to_tensor(strings, tf.string)
        if strings.shape.rank not in (0, 1):
            raise ValueError(f"the tokenizer takes a scalar or a vector of strings, got shape {strings.shape}")
        # Eagerly, a tf.function runs the merge loop as a graph; inside tf.data (a graph already) the ops go
        # inline, since a call of a tf.function would be a stateful op that blocks saving the iterator.
        tokenize = self._tokenize if tf.executing_eagerly() else self._tokenize_vector
        return tokenize(strings[tf.newaxis])[0] if strings.shape.rank == 0 else tokenize(strings)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Python strings -> BPE ids per string (`tokenize` as lists): the host-side call every tokenizer offers."""
        return [list(map(int, row)) for row in self.tokenize(list(texts)).to_list()]

    def split_words(self, strings) -> tf.RaggedTensor:
        """Strings [N] -> GPT-2's pre-tokenised words [N, (words)] (bytes, "<|endoftext|>" pieces dropped).

        Example: ["it's  a\\n\\nb "] -> [[b"it", b"'s", b" ", b" a", b"\\n", b"\\n", b"b", b" "]].
        """
        strings = tf.convert_to_tensor(strings, tf.string)
        segments = tf.strings.split(strings, sep=EOT)
        texts = segments.flat_values
        lengths = bpe_ops.word_lengths(texts, self._classes)
        begin = (tf.cumsum(lengths, axis=1) - lengths).flat_values
        words = tf.strings.substr(tf.gather(texts, lengths.value_rowids()), begin, lengths.flat_values)
        return tf.RaggedTensor.from_row_splits(lengths.with_flat_values(words), segments.row_splits).merge_dims(1, 2)

    def _tokenize_vector(self, strings: tf.Tensor) -> tf.RaggedTensor:
        """Strings [N] -> ids [N, (tokens)], via M segments between "<|endoftext|>" holding P words."""
        segments = tf.strings.split(strings, sep=EOT)  # [N, (M)]
        words = bpe_ops.word_bytes(segments.flat_values, self._classes)  # [M, (words), (bytes)]
        ids = words.with_values(self._merges.apply(words.values)).merge_dims(1, 2)  # [M, (tokens)]
        # Every segment but the last of its string is followed by "<|endoftext|>".
        followed = tf.cast(~bpe_ops.last_in_row(segments), tf.int64)
        eot = tf.RaggedTensor.from_row_lengths(tf.fill([tf.reduce_sum(followed)], self.eot_id), followed)
        return segments.with_values(tf.concat([ids, eot], axis=1)).merge_dims(1, 2)

"""GPT-2's byte-level BPE: train with Hugging Face `tokenizers`, tokenize in-graph with plain TensorFlow ops.

    out = train_bpe(texts, vocab_size=8192, out_dir="bpe")   # -> bpe/ with vocab.json + merges.txt
    tok = load_bpe(out)                    # also a Hugging Face GPT-2 directory (its vocab.json + merges.txt)
    tok.tokenize(["Hello world", " it's"])  # RaggedTensor of ids, e.g. [[ids of "Hello" "Ġworld"], [ids of "Ġit" "'s"]]
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
   own pre-tokeniser over every code point (`_code_point_classes`, ~4 s). `\\s+(?!\\S)` needs to know whether
   the next character is whitespace: a whitespace character followed by whitespace (or by the end) becomes
   class "I", one followed by anything else " " (a space) or "W" (other whitespace). Then the lookahead-free
   `_CLASS_PATTERN` over this class string (one class byte per text byte) matches exactly where GPT-2's regex
   matches over the text, and its byte offsets cut the text.
3. Each word's UTF-8 bytes map to GPT-2's byte alphabet (`byte_alphabet`), i.e. to the 256 one-byte token ids.
4. BPE: every round merges, in every word, all occurrences (left to right, non-overlapping) of the adjacent pair
   with the lowest merge rank; a word is done when no adjacent pair has a rank. This equals HF's
   one-merge-at-a-time heap whenever a merge's result only takes part in later merges (true of any trained
   merges.txt: a pair can only be learned after its parts exist). Pairs are int64 keys `left_id * V + right_id`
   looked up by binary search in a sorted constant (no hash-table resource in the graph). Words repeated in a
   batch are merged once (`tf.unique`): the in-graph stand-in for HF's word cache, so batches of many documents
   are much faster than one document at a time.

Invalid UTF-8 (only reachable from tf.string, never from a Python str) is kept byte for byte: each invalid
sequence is classed like U+FFFD (other), so `decode_bytes` still gives the input back exactly.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import tempfile
from typing import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from sslm_jax.data.tf_setup import hide_accelerators_from_tf
from sslm_jax.errors import ConfigError, DataError

hide_accelerators_from_tf()

EOT = "<|endoftext|>"
VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"
# GPT-2's pre-tokeniser (HF `pre_tokenizers.ByteLevel(use_regex=True)`), for reference; see step 2 above.
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# Classes: L letter (the contraction letters s t r e v m l d stay themselves), N number, O other ("'" stays
# itself), I whitespace followed by whitespace or the end, " " / W a space / other whitespace followed by
# anything else. `I+` is `\s+(?!\S)`; `W+` (one code point, maybe several bytes) is the final `\s+`.
_CLASS_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?[Lstrevmld]+| ?N+| ?[O']+|I+|W+| "
_LETTER, _NUMBER, _OTHER, _SPACE, _WHITESPACE = b"L", b"N", b"O", b" ", b"\t"  # _WHITESPACE: before the I/W step
_INF = np.iinfo(np.int32).max  # the rank of a pair that is not a merge


def byte_alphabet() -> dict[int, str]:
    """GPT-2's `bytes_to_unicode`: byte -> the printable character that stands for it in vocab.json.

    Printable Latin-1 bytes stand for themselves; the other 68 take U+0100.. in byte order: 0x20 (space) -> "Ġ",
    0x0A -> "Ċ", b"\\xc3\\xa9" ("é") -> "Ã©".
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(rest)}}


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
      `out_dir`, loadable by `load_bpe` and by `transformers.GPT2TokenizerFast.from_pretrained`.

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
    if isinstance(documents, tf.data.Dataset):
        documents = documents.as_numpy_iterator()
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


# --- Loading --------------------------------------------------------------------------------------------------


def load_bpe(directory: str | os.PathLike) -> "BPETokenizer":
    """Reads `directory/vocab.json` (token -> id) and `directory/merges.txt` ("left right" per line, by rank).

    Raises DataError (one line, naming the file) when a file is missing or unreadable, or when the vocabulary
    lacks a byte token, "<|endoftext|>", or a token a merge uses or makes.
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
            raise DataError(f"{paths[MERGES_FILE]} line {number}: expected two tokens separated by one space: {line!r}")
        merges.append((parts[0], parts[1]))
    return BPETokenizer(vocab, merges, directory=directory)


# --- The tokenizer --------------------------------------------------------------------------------------------


class BPETokenizer:
    """In-graph GPT-2 byte-level BPE over a fixed vocabulary and merge list (module docstring: parity rules).

    Attributes:
      vocab: token -> id.  vocab_size: largest id + 1.  eot_id: the id of "<|endoftext|>".
      directory: where the files were read from (None when built from a dict and a list).
    """

    def __init__(self, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]], *, directory=None):
        self.vocab = dict(vocab)
        self.directory = pathlib.Path(directory) if directory is not None else None
        where = str(self.directory) if self.directory else "the BPE vocabulary"
        if EOT not in self.vocab:
            raise DataError(f"{where}: {VOCAB_FILE} has no {EOT} token")
        self.eot_id = self.vocab[EOT]
        self.vocab_size = max(self.vocab.values()) + 1
        alphabet = byte_alphabet()
        missing = [c for c in alphabet.values() if c not in self.vocab]
        if missing:
            raise DataError(f"{where}: {VOCAB_FILE} lacks {len(missing)} of the 256 byte tokens, e.g. {missing[0]!r}")
        self._id_to_token = {i: t for t, i in self.vocab.items()}
        self._byte_of_char = {c: b for b, c in alphabet.items()}

        # Merge table: key left * V + right -> rank (later duplicates win, as in HF's map) and the merged id.
        table = {}
        for rank, (left, right) in enumerate(merges):
            ids = [self.vocab.get(t) for t in (left, right, left + right)]
            if None in ids:
                raise DataError(f"{where}: merge {rank + 1} {left!r} {right!r} uses or makes a token not in {VOCAB_FILE}")
            table[ids[0] * self.vocab_size + ids[1]] = (rank, ids[2])
        keys = np.array(sorted(table), np.int64)
        self.num_merges = len(merges)
        self._merge_keys = tf.constant(keys)
        self._merge_ranks = tf.constant(np.array([table[k][0] for k in keys], np.int32))
        merged = np.zeros(max(len(merges), 1), np.int32)
        for rank, new_id in table.values():
            merged[rank] = new_id
        self._merged_id = tf.constant(merged)  # rank -> id of the merged token
        self._byte_ids = tf.constant([self.vocab[alphabet[b]] for b in range(256)], tf.int32)
        self._classes = tf.constant(_code_point_classes())
        self._tokenize = tf.function(
            self._tokenize_vector, input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
        )

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
        if strings.shape.rank == 0:
            return self._tokenize(strings[tf.newaxis])[0]
        return self._tokenize(strings)

    def split_words(self, strings) -> tf.RaggedTensor:
        """Strings [N] -> GPT-2's pre-tokenised words [N, (words)] (bytes, "<|endoftext|>" pieces dropped).

        Example: ["it's  a\\n\\nb "] -> [[b"it", b"'s", b" ", b" a", b"\\n", b"\\n", b"b", b" "]].
        """
        strings = tf.convert_to_tensor(strings, tf.string)
        segments = tf.strings.split(strings, sep=EOT)
        words = self._split_words(segments.flat_values)
        return tf.RaggedTensor.from_row_splits(words, segments.row_splits).merge_dims(1, 2)

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Python ids -> the bytes they stand for; "<|endoftext|>" is written out. Example: [15496, 995] -> b"Hello world"."""
        try:
            text = "".join(self._id_to_token[int(i)] for i in ids)
        except KeyError as e:
            raise ValueError(f"id {e.args[0]} is not in the vocabulary") from None
        return bytes(self._byte_of_char[c] for c in text)

    def decode(self, ids: Iterable[int]) -> str:
        """Python ids -> text (UTF-8; invalid bytes, only possible from non-UTF-8 input, become U+FFFD)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # In-graph pieces. Shapes: N strings, M segments between "<|endoftext|>", P words, U distinct words.

    def _tokenize_vector(self, strings: tf.Tensor) -> tf.RaggedTensor:
        segments = tf.strings.split(strings, sep=EOT)  # [N, (segments)]
        words = self._split_words(segments.flat_values)  # [M, (words)]
        unique, index = tf.unique(words.flat_values)
        ids = tf.gather(self._merge(unique), index)  # [P, (tokens)]
        ids = tf.RaggedTensor.from_row_splits(ids, words.row_splits).merge_dims(1, 2)  # [M, (tokens)]
        # Every segment but the last of its string is followed by "<|endoftext|>".
        is_last = _is_last_in_row(segments)
        eot = tf.RaggedTensor.from_row_lengths(
            tf.fill([tf.reduce_sum(tf.cast(~is_last, tf.int32))], self.eot_id), tf.cast(~is_last, tf.int64)
        )
        ids = tf.concat([ids, eot], axis=1)
        return tf.RaggedTensor.from_row_splits(ids, segments.row_splits).merge_dims(1, 2)

    def _split_words(self, texts: tf.Tensor) -> tf.RaggedTensor:
        """Texts [M] -> words [M, (words)]: byte strings that tile each text (step 2 of the module docstring)."""
        code_points, starts = tf.strings.unicode_decode_with_offsets(texts, "UTF-8", errors="replace")
        lengths = tf.cast(tf.strings.length(texts), tf.int64)
        last = _is_last_in_row(starts)
        ends = tf.where(last, tf.gather(lengths, starts.value_rowids()), _shift_left(starts.flat_values, 0))
        classes = tf.cast(tf.gather(self._classes, code_points.flat_values), tf.int32)
        is_space = (classes == ord(_SPACE)) | (classes == ord(_WHITESPACE))
        # The next code point is whitespace, or there is none (the last of each text).
        next_space = _shift_left(is_space, True) | last
        classes = tf.where(is_space & next_space, ord("I"), tf.where(classes == ord(_WHITESPACE), ord("W"), classes))
        # One class byte per text byte, so that offsets in the class string are offsets in the text.
        class_bytes = tf.repeat(classes, ends - starts.flat_values)
        class_text = tf.strings.unicode_encode(tf.RaggedTensor.from_row_lengths(class_bytes, lengths), "UTF-8")
        _, begin, end = tf_text.regex_split_with_offsets(class_text, _CLASS_PATTERN, _CLASS_PATTERN)
        flat_texts = tf.gather(texts, begin.value_rowids())
        return begin.with_flat_values(tf.strings.substr(flat_texts, begin.flat_values, end.flat_values - begin.flat_values))

    def _merge(self, words: tf.Tensor) -> tf.RaggedTensor:
        """Words [U] (bytes) -> BPE ids [U, (tokens)] (step 4 of the module docstring)."""
        byte_values = tf.strings.unicode_decode(words, "ISO-8859-1")  # one code point per byte, = the byte value
        ids = tf.gather(self._byte_ids, byte_values.flat_values)
        rows = byte_values.value_rowids()
        num_words = tf.size(words, out_type=tf.int64)
        if self.num_merges == 0:
            return tf.RaggedTensor.from_value_rowids(ids, rows, nrows=num_words)
        done_ids = tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False, element_shape=[None])
        done_rows = tf.TensorArray(tf.int64, size=0, dynamic_size=True, infer_shape=False, element_shape=[None])

        def merge_round(step, ids, rows, done_ids, done_rows):
            ranks = self._pair_ranks(ids, rows)
            word_min = tf.math.unsorted_segment_min(ranks, rows, num_words)
            token_min = tf.gather(word_min, rows)
            # Words without a mergeable pair are final: set them aside, keep merging the others.
            final = token_min == _INF
            done_ids = done_ids.write(step, tf.boolean_mask(ids, final))
            done_rows = done_rows.write(step, tf.boolean_mask(rows, final))
            ids, rows, ranks, token_min = (tf.boolean_mask(t, ~final) for t in (ids, rows, ranks, token_min))
            ids, rows = self._merge_lowest(ids, rows, ranks, token_min)
            return step + 1, ids, rows, done_ids, done_rows

        _, _, _, done_ids, done_rows = tf.while_loop(
            lambda step, ids, *_: tf.size(ids) > 0,
            merge_round,
            (tf.constant(0), ids, rows, done_ids, done_rows),
        )
        ids, rows = done_ids.concat(), done_rows.concat()
        order = tf.argsort(rows, stable=True)  # words left in different rounds; each word's tokens stay in order
        return tf.RaggedTensor.from_value_rowids(tf.gather(ids, order), tf.gather(rows, order), nrows=num_words)

    def _pair_ranks(self, ids: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
        """[T] ids -> [T] the merge rank of (ids[t], ids[t + 1]), _INF if not a merge or t ends its word."""
        last = _shift_left(rows, -1) != rows
        next_ids = _shift_left(ids, 0)
        keys = tf.cast(ids, tf.int64) * self.vocab_size + tf.cast(next_ids, tf.int64)
        at = tf.minimum(tf.searchsorted(self._merge_keys, keys), tf.size(self._merge_keys) - 1)
        found = (tf.gather(self._merge_keys, at) == keys) & ~last
        return tf.where(found, tf.gather(self._merge_ranks, at), _INF)

    def _merge_lowest(self, ids, rows, ranks, token_min):
        """Merges, in each word, every occurrence of its lowest-rank pair, left to right without overlap.

        Example: symbols [a a a b] with the pair (a a) lowest: candidates at 0 and 1 overlap; within a run of
        consecutive candidates only every other one (0, 2, ...) merges -> [aa a b].
        """
        candidate = ranks == token_min  # never at a word's last token: its rank is _INF there
        run_start = candidate & ~_shift_right(candidate, False)
        run = tf.maximum(tf.cumsum(tf.cast(run_start, tf.int32)) - 1, 0)
        start_position = tf.cast(tf.where(run_start)[:, 0], tf.int32)
        offset = tf.range(tf.size(ids)) - tf.gather(start_position, run)
        merge_at = candidate & (offset % 2 == 0)
        merged = tf.where(merge_at, tf.gather(self._merged_id, tf.where(merge_at, ranks, 0)), ids)
        keep = ~_shift_right(merge_at, False)  # the right half of a merged pair goes
        return tf.boolean_mask(merged, keep), tf.boolean_mask(rows, keep)


def _shift_left(x: tf.Tensor, fill) -> tf.Tensor:
    """[T] -> [T]: x[t + 1], `fill` at the end ([1, 2, 3] -> [2, 3, fill]; [] -> [])."""
    return tf.concat([x[1:], [fill]], axis=0)[: tf.size(x)]


def _shift_right(x: tf.Tensor, fill) -> tf.Tensor:
    """[T] -> [T]: x[t - 1], `fill` at the start ([1, 2, 3] -> [fill, 1, 2]; [] -> [])."""
    return tf.concat([[fill], x], axis=0)[: tf.size(x)]


def _is_last_in_row(ragged: tf.RaggedTensor) -> tf.Tensor:
    """[rows, (k)] -> [flat] bool, True at each row's last value ([[a, b], [], [c]] -> [False, True, True])."""
    position = tf.range(tf.size(ragged.flat_values, out_type=tf.int64))
    return position + 1 == tf.gather(ragged.row_splits[1:], ragged.value_rowids())


# --- The per-code-point classes -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _code_point_classes() -> np.ndarray:
    """[0x110000] uint8: for every code point, its class as GPT-2's regex in HF sees it (_LETTER, _NUMBER, ...).

    Read from HF's own pre-tokeniser: in " x" + c + c + "0" the pieces show c's class. A letter joins " x"; a
    number joins "0" (and its twin); other characters form "cc"; whitespace c is cut between its two copies
    (`\\s+(?!\\S)` takes the first, `\\s+` or " ?\\p{N}+" the second). Surrogates (never decoded) are "other".
    """
    from tokenizers import pre_tokenizers

    pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    classes = np.full(0x110000, ord(_OTHER), np.uint8)
    code_points = np.array([c for c in range(0x110000) if not 0xD800 <= c < 0xE000])
    chunk = 8192  # the pre-tokeniser's cost grows faster than linearly with the string length
    for start in range(0, len(code_points), chunk):
        part = code_points[start : start + chunk]
        text = "".join(f" x{chr(c)}{chr(c)}0" for c in part)
        boundaries = np.zeros(len(text) + 1, bool)
        boundaries[[begin for _, (begin, _) in pre_tokenizer.pre_tokenize_str(text)]] = True
        first = np.arange(len(part)) * 5 + 2  # offset of the first copy of c
        letter = ~boundaries[first]
        whitespace = boundaries[first + 1]
        number = ~letter & ~whitespace & ~boundaries[first + 2]
        classes[part[letter]] = ord(_LETTER)
        classes[part[number]] = ord(_NUMBER)
        classes[part[whitespace]] = ord(_WHITESPACE)
    classes[0x20] = ord(_SPACE)
    for c in "'strevmld":  # the contractions are matched literally (ASCII, case-sensitive)
        classes[ord(c)] = ord(c)
    return classes

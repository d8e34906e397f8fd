"""The in-graph pieces of `sslm_jax.data.bpe`: GPT-2's pre-tokeniser and the BPE merge loop as plain TF ops.

    classes = tf.constant(code_point_classes())           # ~5 s once, then cached on disk
    words = word_bytes(tf.constant(["it's  a"]), classes)  # [[[105, 116], [39, 115], [32], [32, 97]]]
    merges = Merges(vocab, [("Ġ", "a"), ...])               # validates; tensors only, no lookup-table resource
    merges.apply(words.values)                             # ids of [["it"], ["'s"], ["Ġ"], ["Ġa"]]

Nothing here is a py_function or a stateful op (no TensorArray, no hash table, no tf.function call), so a
tf.data pipeline built on it can save and restore its iterator exactly. See bpe.py's docstring for the parity
argument; the comments here say how each step stays vectorised.
"""

from __future__ import annotations

import functools
from typing import Mapping, Sequence

import numpy as np

from sslm_jax.data import table_cache
from sslm_jax.data.bpe_vocab import byte_alphabet, check
from sslm_jax.data.tf_setup import tf

# Classes: L letter (the contraction letters s t r e v m l d stay themselves), N number, O other ("'" stays
# itself), I whitespace followed by whitespace or the end, " " / W a space / other whitespace followed by
# anything else. `I+` is GPT-2's `\s+(?!\S)`; `W+` (one code point, maybe several bytes) is its final `\s+`.
CLASS_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?[Lstrevmld]+| ?N+| ?[O']+|I+|W+| "
_LETTER, _NUMBER, _OTHER, _SPACE, _WHITESPACE = "L", "N", "O", " ", "\t"  # _WHITESPACE: before the I/W step
_INF = np.iinfo(np.int32).max  # the rank of a pair that is not a merge
_FINGERPRINT_BUCKETS = 1 << 62


# --- Pre-tokenisation -----------------------------------------------------------------------------------------


def word_lengths(texts: tf.Tensor, classes: tf.Tensor) -> tf.RaggedTensor:
    """Texts [M] -> the byte lengths [M, (words)] int64 of GPT-2's words, which tile each text.

    `classes` is `code_point_classes()` as a tensor. Example: "it's  a" has the class string "Lt'sI L";
    `CLASS_PATTERN` matches "Lt", "'s", "I", " L", so the words are "it", "'s", " ", " a": lengths [[2, 2, 1, 2]].
    """
    code_points, starts = tf.strings.unicode_decode_with_offsets(texts, "UTF-8", errors="replace")
    lengths = tf.cast(tf.strings.length(texts), tf.int64)
    last = last_in_row(starts)
    # A code point ends where the next one starts; the last one of a text where the text ends.
    text_ends = tf.boolean_mask(lengths, lengths > 0)
    ends = tf.tensor_scatter_nd_update(_shift_left(starts.flat_values, 0), _last_positions(starts)[:, None], text_ends)
    cls = tf.cast(tf.gather(classes, code_points.flat_values), tf.int32)
    is_space = (cls == ord(_SPACE)) | (cls == ord(_WHITESPACE))
    next_space = _shift_left(is_space, True) | last  # the next code point is whitespace, or there is none
    cls = tf.where(is_space & next_space, ord("I"), tf.where(cls == ord(_WHITESPACE), ord("W"), cls))
    # One class byte per text byte, so that lengths in the class string are lengths in the text.
    class_bytes = tf.repeat(cls, ends - starts.flat_values)
    class_text = tf.strings.unicode_encode(tf.RaggedTensor.from_row_lengths(class_bytes, lengths), "UTF-8")
    # Mark the end of every match and split there: twice as fast as tf_text.regex_split_with_offsets, which
    # also builds each word's string. "\x01" is no class letter; the piece after the last mark (only that
    # piece) is empty.
    pieces = tf.strings.split(tf.strings.regex_replace(class_text, CLASS_PATTERN, "\\0\x01"), sep="\x01")
    piece_lengths = tf.cast(tf.strings.length(pieces.flat_values), tf.int64)
    return tf.RaggedTensor.from_row_lengths(tf.boolean_mask(piece_lengths, piece_lengths > 0), pieces.row_lengths() - 1)


def word_bytes(texts: tf.Tensor, classes: tf.Tensor) -> tf.RaggedTensor:
    """Texts [M] -> the words' bytes [M, (words), (bytes)] int32 (["it's"] -> [[[105, 116], [39, 115]]])."""
    lengths = word_lengths(texts, classes)
    text_bytes = tf.strings.unicode_decode(texts, "ISO-8859-1")  # one code point per byte, = the byte value
    # The words tile the texts, so their lengths split the texts' flat bytes (substr would copy whole texts).
    splits = tf.concat([[0], tf.cumsum(lengths.flat_values)], axis=0)
    return lengths.with_flat_values(tf.RaggedTensor.from_row_splits(text_bytes.flat_values, splits, validate=False))


@functools.lru_cache(maxsize=1)
def code_point_classes() -> np.ndarray:
    """[0x110000] uint8: for every code point, its class as GPT-2's regex in HF sees it (ASCII letters above).

    Computed once per library version, then read from the on-disk cache (`table_cache`).
    """
    return table_cache.cached_arrays("bpe_classes", {}, lambda: {"classes": _compute_code_point_classes()})["classes"]


def _compute_code_point_classes() -> np.ndarray:
    """`code_point_classes`, computed (~5 s).

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


# --- Merging --------------------------------------------------------------------------------------------------


class Merges:
    """A merge list as constant tensors; `apply` runs BPE on words' bytes in-graph.

    Pairs are int64 keys `left_id * vocab_size + right_id`, found by binary search in a sorted constant.
    Raises DataError (`bpe_vocab.check`) when the files cannot be used.
    """

    def __init__(self, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]], *, where: str):
        alphabet = byte_alphabet()
        self.vocab_size = check(vocab, merges, where=where)
        table = {}  # key -> (rank, merged id); a repeated pair keeps its later rank, as in HF's map
        for rank, (left, right) in enumerate(merges):
            ids = [vocab[t] for t in (left, right, left + right)]
            table[ids[0] * self.vocab_size + ids[1]] = (rank, ids[2])
        keys = sorted(table)
        self.num_merges = len(merges)
        self._keys = tf.constant(np.array(keys, np.int64).reshape(-1))
        self._ranks = tf.constant(np.array([table[k][0] for k in keys], np.int32).reshape(-1))
        merged = np.zeros(max(len(merges), 1), np.int32)
        made_at = {}  # token id -> the last rank that makes it
        for rank, new_id in table.values():
            merged[rank] = new_id
            made_at[new_id] = max(made_at.get(new_id, -1), rank)
        # Merging every occurrence of a word's lowest pair in one round is HF's order only if no merge uses a token
        # that a later merge makes too (true of trained files); otherwise merge one pair per word per round.
        self.one_at_a_time = any(
            max(made_at.get(key // self.vocab_size, -1), made_at.get(key % self.vocab_size, -1)) > rank
            for key, (rank, _) in table.items()
        )
        self._merged_id = tf.constant(merged)  # rank -> id of the merged token
        self._byte_ids = tf.constant([vocab[alphabet[b]] for b in range(256)], tf.int32)
        self._whole = self._whole_words(vocab)

    def apply(self, words: tf.RaggedTensor) -> tf.RaggedTensor:
        """Words' bytes [P, (bytes)] -> BPE ids [P, (tokens)]. Each distinct word is merged once.

        A word whose bytes are a token that BPE rebuilds whole (`_whole_words`) is looked up instead: with GPT-2's
        files that is most running text, and it needs no merge round at all.
        """
        # The key of a word: its bytes as code points 0..255, UTF-8 encoded (no TF op writes raw bytes).
        unique, index = tf.unique(tf.strings.unicode_encode(words, "UTF-8"))
        whole_keys, whole_fingerprints, whole_ids = self._whole
        fingerprints = tf.strings.to_hash_bucket_fast(unique, _FINGERPRINT_BUCKETS)
        at = tf.minimum(tf.searchsorted(whole_fingerprints, fingerprints), tf.size(whole_fingerprints) - 1)
        whole = tf.gather(whole_keys, at) == unique  # the string itself, so a fingerprint collision costs no error
        found, rest = tf.where(whole)[:, 0], tf.where(~whole)[:, 0]
        found_ids = tf.RaggedTensor.from_row_lengths(tf.gather(tf.gather(whole_ids, at), found), tf.ones_like(found))
        rest_ids = self._merge(tf.strings.unicode_decode(tf.gather(unique, rest), "UTF-8"))
        ids = tf.concat([found_ids, rest_ids], axis=0)  # unique words in the order found + rest
        return tf.gather(ids, tf.gather(tf.math.invert_permutation(tf.concat([found, rest], axis=0)), index))

    def _whole_words(self, vocab: Mapping[str, int]):
        """(keys, fingerprints, ids) of the tokens that BPE of their own bytes gives back as one token, sorted by
        fingerprint. Derived from the files once at load (~1 s for GPT-2's 50k tokens), not from any input."""
        byte_of_char = {c: b for b, c in byte_alphabet().items()}
        tokens = [t for t in vocab if t and all(c in byte_of_char for c in t)]
        keys = [bytes(byte_of_char[c] for c in t).decode("latin-1").encode("utf-8") for t in tokens]
        merge = tf.function(self._merge, autograph=False)
        ids = merge(tf.strings.unicode_decode(tf.constant(keys, tf.string), "UTF-8"))
        single = (ids.row_lengths() == 1).numpy()
        first = ids.flat_values.numpy()[ids.row_splits.numpy()[:-1]]  # every token has at least one byte
        whole = single & (first == np.array([vocab[t] for t in tokens]))
        keys = tf.constant([k for k, w in zip(keys, whole) if w], tf.string)
        fingerprints = tf.strings.to_hash_bucket_fast(keys, _FINGERPRINT_BUCKETS)
        order = tf.argsort(fingerprints)
        return tf.gather(keys, order), tf.gather(fingerprints, order), tf.gather(first[whole], order)

    def _merge(self, words: tf.RaggedTensor) -> tf.RaggedTensor:
        """Words' bytes [U, (bytes)] -> BPE ids [U, (tokens)]: rounds of `_merge_lowest` until no pair merges."""
        ids = tf.gather(self._byte_ids, words.flat_values)
        rows = words.value_rowids()
        num_words = words.nrows()
        if self.num_merges == 0:
            return tf.RaggedTensor.from_value_rowids(ids, rows, nrows=num_words)

        # Every round handles every word: the tensors are small (only words not found whole), so the cost of a
        # round is its number of ops, and setting finished words aside would add more ops than it saves.
        def merge_round(ids, rows, ranks):
            token_min = tf.gather(tf.math.unsorted_segment_min(ranks, rows, num_words), rows)
            ids, rows = self._merge_lowest(ids, rows, ranks, token_min, num_words)
            return ids, rows, self._pair_ranks(ids, rows)

        ids, rows, _ = tf.while_loop(
            lambda ids, rows, ranks: tf.reduce_any(ranks < _INF),
            merge_round,
            (ids, rows, self._pair_ranks(ids, rows)),
            shape_invariants=(tf.TensorShape([None]),) * 3,
        )
        return tf.RaggedTensor.from_value_rowids(ids, rows, nrows=num_words)

    def _pair_ranks(self, ids: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
        """[T] ids -> [T] the merge rank of (ids[t], ids[t + 1]), _INF if not a merge or t ends its word."""
        last = _shift_left(rows, -1) != rows
        keys = tf.cast(ids, tf.int64) * self.vocab_size + tf.cast(_shift_left(ids, 0), tf.int64)
        at = tf.minimum(tf.searchsorted(self._keys, keys), tf.size(self._keys) - 1)
        found = (tf.gather(self._keys, at) == keys) & ~last
        return tf.where(found, tf.gather(self._ranks, at), _INF)

    def _merge_lowest(self, ids, rows, ranks, token_min, num_words):
        """Merges, in each word, every occurrence of its lowest-rank pair, left to right without overlap (only
        the leftmost one if `one_at_a_time`).

        Example: symbols [a a a b] with the pair (a a) lowest: candidates at 0 and 1 overlap; within a run of
        consecutive candidates only every other one (0, 2, ...) merges -> [aa a b].
        """
        candidate = (ranks == token_min) & (ranks < _INF)  # never at a word's last token: its rank is _INF there
        position = tf.range(tf.size(ids))
        if self.one_at_a_time:
            first = tf.math.unsorted_segment_min(tf.where(candidate, position, _INF), rows, num_words)
            merge_at = candidate & (position == tf.gather(first, rows))
        else:
            run_start = candidate & ~_shift_right(candidate, False)
            run = tf.maximum(tf.cumsum(tf.cast(run_start, tf.int32)) - 1, 0)
            start_position = tf.cast(tf.where(run_start)[:, 0], tf.int32)
            merge_at = candidate & ((position - tf.gather(start_position, run)) % 2 == 0)
        merged = tf.where(merge_at, tf.gather(self._merged_id, tf.where(merge_at, ranks, 0)), ids)
        keep = ~_shift_right(merge_at, False)  # the right half of a merged pair goes
        return tf.boolean_mask(merged, keep), tf.boolean_mask(rows, keep)


def _shift_left(x: tf.Tensor, fill) -> tf.Tensor:
    """[T] -> [T]: x[t + 1], `fill` at the end ([1, 2, 3] -> [2, 3, fill]; [] -> [])."""
    return tf.concat([x[1:], [fill]], axis=0)[: tf.size(x)]


def _shift_right(x: tf.Tensor, fill) -> tf.Tensor:
    """[T] -> [T]: x[t - 1], `fill` at the start ([1, 2, 3] -> [fill, 1, 2]; [] -> [])."""
    return tf.concat([[fill], x], axis=0)[: tf.size(x)]


def last_in_row(ragged: tf.RaggedTensor) -> tf.Tensor:
    """[rows, (k)] -> [flat] bool, True at each row's last value ([[a, b], [], [c]] -> [False, True, True]).

    A scatter at the rows' ends: `value_rowids()` would cost as much as decoding the text.
    """
    last = _last_positions(ragged)
    size = tf.shape(ragged.flat_values, out_type=tf.int64)
    return tf.scatter_nd(last[:, tf.newaxis], tf.ones_like(last, tf.bool), size)


def _last_positions(ragged: tf.RaggedTensor) -> tf.Tensor:
    """Flat positions of the non-empty rows' last values ([[a, b], [], [c]] -> [1, 2])."""
    limits = ragged.row_splits[1:]
    return tf.boolean_mask(limits, limits > ragged.row_splits[:-1]) - 1

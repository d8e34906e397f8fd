"""BERT WordPiece: train a vocabulary with Hugging Face `tokenizers`, tokenize in-graph with TensorFlow Text.

    path = train_wordpiece("corpus/*.txt", vocab_size=8192, out_dir="vocab")   # -> vocab/vocab.txt
    tok = load_tokenizer(path)                       # also any BERT vocab.txt, e.g. bert-base-uncased's
    tok.tokenize(["Héllo, unaffable wörld!"])        # RaggedTensor: ids of [[hello , una ##ffa ##ble world !]]
    tok.tokenize_words(["Héllo, unaffable wörld!"])  # grouped by word: [[[hello] [,] [una ##ffa ##ble] ...]]
    ds.map(lambda doc: tok.tokenize(doc))            # works inside tf.data (a scalar gives a 1-D tensor)

Parity: the ids equal `transformers.BertTokenizer(vocab_file, do_lower_case=lower_case)` without special tokens
around them. HF's BERT pipeline is (1) split the text on the special tokens written in it ("[MASK]", case-sensitive),
(2) a normaliser that works character by character (drop NUL, U+FFFD, control and format characters; map
whitespace to a space; put spaces around CJK ideographs; when lower-casing, also NFD, drop non-spacing marks and
lower-case), (3) split words at whitespace and around punctuation, (4) greedy longest-match WordPiece, a word of
more than 100 characters being one [UNK]. tf_text's own BERT normaliser differs from HF's on many characters
(no-break and zero-width spaces, C0/C1 controls, Unicode-version-dependent categories, CJK extension blocks,
accents), so we do not use it: steps (2)+(3) are evaluated once per code point *with HF's own normaliser and
pre-tokeniser* (`_char_table`, a few seconds once per casing and library version, then cached on disk) and
applied in-graph as a gather over code points; step (4) is tf_text's `FastWordpieceTokenizer` on the resulting words. The one known divergence:
when lower-casing, HF's NFD puts runs of two or more combining marks into canonical order, which a per-character
table cannot. Accent stripping removes almost all such marks first; the rest (spacing marks with a combining
class, marks newer than HF's Unicode tables) would have to appear out of canonical order; nothing in the shared
test data does.

Invalid UTF-8 bytes are decoded as U+FFFD, which the normaliser then drops (as HF drops it from a Python string
decoded with errors="replace").

Special token ids come from the vocabulary file (any BERT vocab.txt works); `train_wordpiece` writes them at BERT's
ids: [PAD]=0, [unused0..98]=1..99, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103.
"""

from __future__ import annotations

import collections
import functools
import os
import pathlib
import tempfile
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from sslm_jax.data import graph_records, sources, table_cache
from sslm_jax.data.tf_setup import tf  # before tensorflow_text, which imports TensorFlow

import tensorflow_text as tf_text  # noqa: E402

from sslm_jax.data.wordpiece_vocab import (  # noqa: E402, F401 (re-exported: this module's public names)
    BERT_RESERVED_TOKENS,
    CLS,
    MASK,
    MAX_CHARS_PER_WORD,
    PAD,
    SEP,
    SPECIAL_TOKENS,
    SUFFIX_INDICATOR,
    UNK,
    join_pieces,
    read_vocab,
    special_ids,
)
from sslm_jax.errors import ConfigError, DataError  # noqa: E402

MAX_ALPHABET = 1000  # single characters kept by training (HF's BertWordPieceTokenizer and Google's default).
_NUM_CODE_POINTS = 0x110000


# --- Training -------------------------------------------------------------------------------------------------


def train_wordpiece(
    files_or_dataset,
    *,
    vocab_size: int,
    out_dir: str | os.PathLike,
    lower_case: bool = True,
) -> pathlib.Path:
    """Trains a BERT WordPiece vocabulary and writes `out_dir/vocab.txt` (one token per line, id = line number).

    Args:
      files_or_dataset: text files -- a glob, comma-separated globs, a path, or a list/tuple of those (read as
        blank-line-separated documents by `sources.file_documents`) -- or documents: a `tf.data.Dataset` of
        scalar strings or any other iterable of `str` (or UTF-8 `bytes`; a one-shot iterator is read into
        memory, since training reads the documents twice).
      vocab_size: tokens in the vocabulary, the 104 reserved BERT tokens included. Characters beyond the most
        frequent min(1000, (vocab_size - 104) // 2) become [UNK], so every kept character and its "##" form fit.
      out_dir: created if needed; only vocab.txt is written, atomically, after training succeeded.
      lower_case: lower-case and strip accents (an "uncased" vocabulary); must match `load_tokenizer`'s.

    Returns:
      The path of the written vocab.txt.

    Example: `train_wordpiece(iter(["the cat sat .", "the dog sat ."]), vocab_size=140, out_dir="v")` writes the
    104 reserved tokens, then ".", "a", "c", "d", ..., "t", their "##" forms, then the merges "##at", "sat",
    "th", "the", "cat", "do", "dog" (131 tokens: the corpus has no more pairs to merge).

    The vocabulary is the same for the same corpus and settings in every run: HF's trainer alone breaks ties by
    hash order (huggingface/tokenizers#1794), so we fix the alphabet and the ids of its "##" forms ourselves.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    min_size = len(BERT_RESERVED_TOKENS) + 2
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < min_size:
        raise ConfigError(
            f"vocab_size={vocab_size!r} is too small: it must be an integer >= {min_size} (the "
            f"{len(BERT_RESERVED_TOKENS)} reserved BERT tokens plus at least one character and its ## form)"
        )
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"tokenizer output directory {out_dir} exists and is not a directory")
    documents = _document_source(files_or_dataset)

    normalizer = normalizers.BertNormalizer(lowercase=lower_case)
    limit = min(MAX_ALPHABET, (vocab_size - len(BERT_RESERVED_TOKENS)) // 2)
    alphabet = _alphabet(documents(), normalizer, limit=limit)
    if not alphabet:
        raise DataError(f"no text to train a vocabulary on in {_describe(files_or_dataset)}")
    # The alphabet and its "##" forms go in as "special tokens": this only places them in the vocabulary first,
    # in a fixed order, so that the trainer's tie-breaking (by token id) no longer depends on hash order.
    reserved = [*BERT_RESERVED_TOKENS, *alphabet, *(SUFFIX_INDICATOR + c for c in alphabet)]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=reserved,
        limit_alphabet=0,  # nothing beyond `reserved`: characters outside it are dropped from words.
        continuing_subword_prefix=SUFFIX_INDICATOR,
        show_progress=False,
    )
    model = Tokenizer(models.WordPiece(unk_token=UNK, continuing_subword_prefix=SUFFIX_INDICATOR))
    model.normalizer = normalizer
    model.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    model.train_from_iterator(documents(), trainer=trainer)

    vocab = sorted(model.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    tokens = [token for token, _ in vocab]
    # Invariants of the construction above; a failure is a bug (or an incompatible `tokenizers`), not bad input.
    assert [i for _, i in vocab] == list(range(len(vocab))), "trained vocabulary ids are not contiguous"
    assert tuple(tokens[: len(reserved)]) == tuple(reserved), "reserved tokens did not keep their ids"
    assert len(tokens) <= vocab_size, f"trained {len(tokens)} tokens for vocab_size={vocab_size}"
    return _write_atomically(out_dir / "vocab.txt", "".join(token + "\n" for token in tokens))


def _document_source(files_or_dataset):
    """A function returning a fresh iterator over the documents (as `str`) each time it is called."""
    if isinstance(files_or_dataset, (str, os.PathLike)) or (
        isinstance(files_or_dataset, (list, tuple))
        and all(isinstance(p, (str, os.PathLike)) for p in files_or_dataset)
    ):
        files_or_dataset = sources.file_documents(files_or_dataset)
    if isinstance(files_or_dataset, tf.data.Dataset):
        dataset = files_or_dataset
        return lambda: (doc.decode("utf-8", errors="replace") for doc in graph_records.elements(dataset))
    if not isinstance(files_or_dataset, Iterable):
        raise TypeError(
            f"train_wordpiece takes file globs, a tf.data.Dataset or an iterable of str, not {files_or_dataset!r}"
        )
    if iter(files_or_dataset) is files_or_dataset:  # one-shot iterator: keep it to read it twice.
        files_or_dataset = list(files_or_dataset)
    documents = files_or_dataset
    return lambda: (_as_text(doc) for doc in documents)


def _as_text(doc) -> str:
    if isinstance(doc, bytes):
        return doc.decode("utf-8", errors="replace")  # the same policy as the file readers
    if not isinstance(doc, str):
        raise TypeError(f"train_wordpiece: documents must be str or bytes, got {type(doc).__name__}: {doc!r:.80}")
    return doc


def _describe(files_or_dataset) -> str:
    if isinstance(files_or_dataset, os.PathLike):
        files_or_dataset = os.fspath(files_or_dataset)
    if isinstance(files_or_dataset, (str, list, tuple)):
        return repr(files_or_dataset)
    return f"the given {type(files_or_dataset).__name__}"


def _alphabet(documents: Iterator[str], normalizer, *, limit: int) -> list[str]:
    """The `limit` most frequent characters of the normalised words, ties broken by code point, sorted.

    Example: documents ["Aa b", "c"] with lower-casing and limit=2 -> counts {a: 2, b: 1, c: 1} -> ["a", "b"].
    """
    counts: collections.Counter[str] = collections.Counter()
    for doc in documents:
        counts.update(normalizer.normalize_str(doc))
    whitespace = _pre_tokenizer_classes().whitespace
    counts = {c: n for c, n in counts.items() if c not in whitespace}
    kept = sorted(counts, key=lambda c: (-counts[c], ord(c)))[:limit]
    return sorted(kept, key=ord)


def _write_atomically(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


# --- The per-code-point normalisation table -------------------------------------------------------------------


class _PreTokenizerClasses(NamedTuple):
    """Which characters HF's `BertPreTokenizer` treats as whitespace (split) and as punctuation (isolated)."""

    whitespace: frozenset[str]
    punctuation: frozenset[str]


@functools.lru_cache(maxsize=1)
def _pre_tokenizer_classes() -> _PreTokenizerClasses:
    """Which characters HF's `BertPreTokenizer` splits at and isolates: computed once per library version
    (`_compute_pre_tokenizer_classes`, ~2 s), then read from the on-disk cache (`table_cache`)."""
    table = table_cache.cached_arrays("bert_pre_tokenizer_classes", {}, _compute_pre_tokenizer_classes)
    return _PreTokenizerClasses(*(frozenset(map(chr, table[name].tolist())) for name in _PreTokenizerClasses._fields))


def _compute_pre_tokenizer_classes() -> dict[str, np.ndarray]:
    """Runs HF's pre-tokeniser over every code point, each between two copies of a separator that is neither.

    In "☃c☃" a punctuation character c comes back as a piece of its own, a whitespace character is missing from
    all pieces, and any other character is glued to its separators. Returns the sorted code points of each class.
    """
    from tokenizers import pre_tokenizers

    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    sep = "\u2603"  # SNOWMAN: a symbol (So), neither punctuation nor whitespace for BERT.
    assert pre_tokenizer.pre_tokenize_str(sep * 2) == [(sep * 2, (0, 2))], "BERT splits at the separator"
    whitespace, punctuation = set(), set()
    chars = [chr(c) for c in range(_NUM_CODE_POINTS) if not 0xD800 <= c < 0xE000 and chr(c) != sep]
    chunk = 8192  # the pre-tokeniser's cost grows faster than linearly with the string length.
    for start in range(0, len(chars), chunk):
        part = chars[start : start + chunk]
        text = sep + sep.join(part) + sep
        covered = np.zeros(len(text), bool)
        for piece, (begin, end) in pre_tokenizer.pre_tokenize_str(text):
            covered[begin:end] = True
            if end - begin == 1 and piece != sep:
                punctuation.add(piece)
        # part[i] sits at offset 2 * i + 1 of `text`.
        whitespace.update(c for i, c in enumerate(part) if not covered[2 * i + 1])
    code_points = lambda chars: np.array(sorted(map(ord, chars)), np.int32)  # noqa: E731
    return {"whitespace": code_points(whitespace), "punctuation": code_points(punctuation)}


@functools.lru_cache(maxsize=2)
def _char_table(lower_case: bool) -> tuple[np.ndarray, np.ndarray]:
    """For every code point c, the code points of `HF-normalise(c)` with word boundaries marked by spaces.

    Returns `(values, row_splits)` of a ragged [0x110000, (k)] int32 table: row c is what c becomes. Examples
    (lower_case=True): "A" -> "a"; "é" -> "e"; "," -> " , "; "中" -> " 中 "; NBSP -> " "; ZWSP, U+0007 -> "".
    Surrogates (never produced by UTF-8 decoding) map to "".

    Computed once per casing and library version, then read from the on-disk cache (`table_cache`).
    """
    table = table_cache.cached_arrays(
        "wordpiece_chars", {"lower_case": bool(lower_case)}, lambda: _compute_char_table(lower_case)
    )
    return table["values"], table["row_splits"]


def _compute_char_table(lower_case: bool) -> dict[str, np.ndarray]:
    """`_char_table`, computed: walks every code point through HF's normaliser and pre-tokeniser (~6 s)."""
    from tokenizers import normalizers

    normalize = normalizers.BertNormalizer(lowercase=lower_case).normalize_str
    classes = _pre_tokenizer_classes()
    boundaries = classes.whitespace | classes.punctuation

    def row(normalized: str) -> list[int]:
        out = []
        for c in normalized:
            if c in classes.whitespace:
                out.append(0x20)
            elif c in classes.punctuation:
                out += [0x20, ord(c), 0x20]
            else:
                out.append(ord(c))
        return out

    chars = [chr(c) if not 0xD800 <= c < 0xE000 else "" for c in range(_NUM_CODE_POINTS)]
    normalized = map(lambda c: normalize(c) if c else "", chars)  # lone surrogates cannot cross into Rust
    rows = [[ord(c)] if c and n == c and c not in boundaries else row(n) for c, n in zip(chars, normalized)]
    lengths = np.fromiter(map(len, rows), np.int32, _NUM_CODE_POINTS)
    row_splits = np.zeros(_NUM_CODE_POINTS + 1, np.int32)
    np.cumsum(lengths, out=row_splits[1:])
    values = np.fromiter((v for r in rows for v in r), np.int32, int(row_splits[-1]))
    return {"values": values, "row_splits": row_splits}


# --- The tokenizer --------------------------------------------------------------------------------------------


def load_tokenizer(vocab_path: str | os.PathLike, *, lower_case: bool = True) -> "WordPieceTokenizer":
    """Reads a BERT vocab.txt (`wordpiece_vocab.read_vocab`): one token per line, id = line number.

    Raises DataError when the file is missing or unreadable, a special token is missing, a token repeats (HF
    would give it the later id, tf_text the earlier) or a line is empty.
    """
    return WordPieceTokenizer(read_vocab(vocab_path), lower_case=lower_case, vocab_path=vocab_path)


class WordPieceTokenizer:
    """In-graph BERT WordPiece tokenizer over a fixed vocabulary (see the module docstring for the parity rules).

    Attributes:
      vocab: the tokens, `vocab[id]`.  vocab_size: `len(vocab)`.  lower_case: uncased normalisation.
      vocab_path: the file it was read from (None when built from a list).
      pad_id, unk_id, cls_id, sep_id, mask_id: ids of the special tokens in this vocabulary.
      special_ids: ids that masking must never select: [PAD], [CLS], [SEP], [MASK]. [UNK] is not among them: it
        stands for real text and is masked like any token, as in google-research/bert and HF's data collator.
    """

    def __init__(self, vocab: Sequence[str], *, lower_case: bool = True, vocab_path: str | os.PathLike | None = None):
        self.vocab = list(vocab)
        self.vocab_size = len(self.vocab)
        self.lower_case = bool(lower_case)
        self.vocab_path = pathlib.Path(vocab_path) if vocab_path is not None else None
        where = f"vocabulary file {self.vocab_path}" if self.vocab_path else "vocabulary"
        ids = special_ids(self.vocab, where)
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (ids[t] for t in SPECIAL_TOKENS)
        self.special_ids = tuple(sorted({self.pad_id, self.cls_id, self.sep_id, self.mask_id}))

        values, row_splits = _char_table(self.lower_case)
        self._char_table = tf.RaggedTensor.from_row_splits(
            tf.constant(values), tf.constant(row_splits), validate=False
        )
        self._special_tokens = tf.constant(SPECIAL_TOKENS)
        self._special_pattern = "|".join(_re2_escape(t) for t in SPECIAL_TOKENS)
        self._vocab_tensor = tf.constant(self.vocab)
        try:
            self._wordpiece = tf_text.FastWordpieceTokenizer(
                vocab=self.vocab,
                suffix_indicator=SUFFIX_INDICATOR,
                # Words are cut at MAX_CHARS_PER_WORD characters below, so the byte limit never applies.
                max_bytes_per_word=4 * MAX_CHARS_PER_WORD,
                token_out_type=tf.int32,
                unknown_token=UNK,
                no_pretokenization=True,  # our input is already one word per string
            )
        except RuntimeError as e:  # tf_text refuses tokens over 256 UTF-8 bytes (transformers accepts them)
            raise DataError(f"{where}: {str(e).splitlines()[0][:200]}") from None

    @property
    def eot_id(self) -> int:
        """The id that ends a document in a causal-LM token stream: [SEP], as between packed MLM documents."""
        return self.sep_id

    @property
    def files(self) -> dict[str, pathlib.Path]:
        """{name: path} of the files a checkpoint keeps with the model: {"vocab.txt": vocab_path}."""
        if self.vocab_path is None:
            raise ValueError("a WordPieceTokenizer built from a list has no vocabulary file")
        return {"vocab.txt": self.vocab_path}

    def __repr__(self) -> str:
        source = self.vocab_path or f"{self.vocab_size} tokens"
        return f"WordPieceTokenizer({source}, lower_case={self.lower_case})"

    def tokenize(self, strings) -> tf.RaggedTensor | tf.Tensor:
        """Strings [N] -> WordPiece ids [N, (pieces)] int32, no [CLS]/[SEP] added; a scalar string -> ids [pieces].

        Example: ["Hello, world!", ""] -> [ids of ["hello", ",", "world", "!"], []]; "the [MASK] sat" -> ids of
        ["the", "[MASK]", "sat"] (special tokens written in the text are recognised, as by HF).
        """
        strings, scalar = _as_vector(strings)
        ids = self._tokenize_words(strings).merge_dims(1, 2)
        return ids[0] if scalar else ids

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Python strings -> WordPiece ids per string (`tokenize` as lists), as `host_wordpiece.HostWordPiece`."""
        return [list(map(int, row)) for row in self.tokenize(list(texts)).to_list()]

    def tokenize_words(self, strings) -> tf.RaggedTensor:
        """Strings [N] -> ids [N, (words), (pieces)] int32, grouped by word (for whole-word masking).

        A scalar string gives [(words), (pieces)]. Example (bert-base-uncased's vocab): ["unaffable !"] ->
        [[ids of ["una", "##ffa", "##ble"], [id of "!"]]].
        """
        strings, scalar = _as_vector(strings)
        ids = self._tokenize_words(strings)
        return ids[0] if scalar else ids

    def split_words(self, strings) -> tf.RaggedTensor | tf.Tensor:
        """Strings [N] -> the normalised words [N, (words)] tf.string that WordPiece then splits; scalar -> [words].

        Example (lower_case=True): ["Héllo,\\u00a0wörld [MASK]!"] -> [[b"hello", b",", b"world", b"[MASK]", b"!"]].
        """
        strings, scalar = _as_vector(strings)
        words = self._split_words(strings)
        return words[0] if scalar else words

    def _tokenize_words(self, strings: tf.Tensor) -> tf.RaggedTensor:
        words = self._split_words(strings)
        # A word longer than HF's limit becomes [UNK] as a whole: the [UNK] token itself is in the vocabulary.
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        flat_words = tf.where(too_long, tf.constant(UNK), words.flat_values)
        return words.with_flat_values(self._wordpiece.tokenize(flat_words))

    def _split_words(self, strings: tf.Tensor) -> tf.RaggedTensor:
        # 1. Special tokens written in the text ("[MASK]") stand alone and skip normalisation, as in HF.
        # regex_split stops at a NUL byte; U+FFFD is dropped by normalisation just like NUL, and like NUL it
        # cannot be part of a special token.
        strings = tf.strings.regex_replace(strings, "\\x00", "\ufffd")
        segments = tf_text.regex_split(strings, self._special_pattern, self._special_pattern)  # [N, (segments)]
        flat = segments.flat_values
        is_special = tf.reduce_any(tf.equal(flat[:, tf.newaxis], self._special_tokens[tf.newaxis, :]), axis=1)
        text = tf.where(is_special, flat, self._normalize(flat))
        # 2. Words are what lies between spaces after normalisation (which spaced out punctuation and CJK).
        return segments.with_flat_values(tf.strings.split(text)).merge_dims(1, 2)

    def _normalize(self, strings: tf.Tensor) -> tf.Tensor:
        """[M] strings -> [M] strings, each code point replaced by its `_char_table` row ("Héllo," -> "hello , ")."""
        code_points = tf.strings.unicode_decode(strings, "UTF-8", errors="replace", replacement_char=0xFFFD)
        replaced = tf.gather(self._char_table, code_points.flat_values).with_row_splits_dtype(tf.int64)
        return tf.strings.unicode_encode(code_points.with_flat_values(replaced).merge_dims(1, 2), "UTF-8")

    def detokenize(self, ids) -> tf.Tensor:
        """Ids [N, (pieces)] (ragged or dense) -> [N] strings, "##" pieces glued to the previous piece.

        Example: [ids of ["hello", ",", "una", "##ffa", "##ble"]] -> [b"hello , unaffable"].
        """
        tokens = tf.gather(self._vocab_tensor, ids)
        text = tf.strings.reduce_join(tokens, axis=-1, separator=" ")
        return tf.strings.regex_replace(text, " " + _re2_escape(SUFFIX_INDICATOR), "")

    def decode(self, ids: Iterable[int]) -> str:
        """Python ids -> text for display, like `detokenize`: ids of ["hello", "una", "##ffa"] -> "hello unaffa"."""
        return join_pieces(self.vocab, ids)


def _as_vector(strings) -> tuple[tf.Tensor, bool]:
    """(strings as a [N] tf.string tensor, whether the input was a scalar)."""
    strings = tf.convert_to_tensor(strings, tf.string)
    if strings.shape.rank not in (0, 1):
        raise ValueError(f"the tokenizer takes a scalar or a vector of strings, got shape {strings.shape}")
    return (strings[tf.newaxis], True) if strings.shape.rank == 0 else (strings, False)


def _re2_escape(text: str) -> str:
    return "".join("\\" + c if not c.isalnum() else c for c in text)

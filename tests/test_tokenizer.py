"""sslm_jax.data.tokenizer: training, loading errors, and id-for-id parity with Hugging Face's BertTokenizer."""

import collections
import csv
import pathlib

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
transformers = pytest.importorskip("transformers")
from tokenizers import normalizers, pre_tokenizers  # noqa: E402

from sslm_jax.data import tokenizer as tokenization  # noqa: E402
from sslm_jax.data.host_wordpiece import HostWordPiece  # noqa: E402
from sslm_jax.errors import ConfigError, DataError  # noqa: E402

CASINGS = [pytest.param(True, id="uncased"), pytest.param(False, id="cased")]

# Strings on which tf_text's own BERT tokenizer and naive re-implementations disagree with HF.
ADVERSARIAL = [
    "no\u00a0break and\u202fnarrow\u3000ideographic space",
    "zero\u200bwidth\u2060joiner\ufeffbom \u200d\u200c",
    "bell\x07esc\x1bdel\x7f c1\x85\x80\x9f",
    "tab\tnew\nline\rcr\x0bvt\x0cff\x1cfs\x1f",
    "x" * 150,
    "x" * 100 + " " + "x" * 101,
    "é" * 100 + " " + "é" * 101,
    "Ä" * 60,
    "naïve café Ærøskøbing İstanbul ǅ ǆ ß ẞ ﬁ ℌ ① Ⅻ",
    "ΟΔΟΣ σοφός Σ ς",
    "e\u0301 é a\u0301\u0316b \u0345 o\u0308\u0304",
    "中文字符 and 日本語の文 한국어 text 𠀀𪜀𫠠",
    "🙂🥰👍🏽 👨\u200d👩\u200d👧 ☃",
    "!!!???...--- (a)[b]{c} $5+3=8 ^_^ `~| «q» „x“ ‘y’ ¿¡ § ¶ † ‰ ‽ ⁂",
    "[MASK] [mask] [MASK][SEP]x[CLS]y [UNK] [PAD] [unused0] [MA\x00SK] [[MASK]]",
    "a\x00b\ufffdc",
    "",
    "   ",
    "\x00",
    "Hello, World! It's 3:45pm -- e-mail me@example.com",
]


def _shared_sentences(shared_data: pathlib.Path) -> list[str]:
    """Every `sentence` of SST-2 train/dev and every line of WikiText-2 valid."""
    sentences = []
    for name in ("train.tsv", "dev.tsv"):
        with open(shared_data / "sst2" / name, encoding="utf-8", newline="") as f:
            sentences += [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    sentences += (shared_data / "wikitext2" / "valid.txt").read_text(encoding="utf-8").split("\n")
    return sentences


@pytest.fixture(scope="session")
def shared_sentences(shared_data):
    return _shared_sentences(shared_data)


@pytest.fixture(scope="session")
def shared_vocab(tmp_path_factory, shared_sentences):
    """casing -> vocab.txt (8k tokens) trained with train_wordpiece on the shared data."""
    root = tmp_path_factory.mktemp("shared_vocab")
    return {
        lower: tokenization.train_wordpiece(
            iter(shared_sentences), vocab_size=8000, out_dir=root / ("uncased" if lower else "cased"), lower_case=lower
        )
        for lower in (True, False)
    }


@pytest.fixture(scope="session")
def tricky_vocab(tmp_path_factory):
    """A vocabulary holding every character (and its ## form) of the adversarial strings, as HF normalises them.

    So the ids show normalisation differences instead of hiding them behind [UNK]. Special tokens are placed
    at HF's default ids (not BERT's) to check that ids are read from the file.
    """
    chars, words = set(), set()
    for lower in (True, False):
        normalize = normalizers.BertNormalizer(lowercase=lower).normalize_str
        for text in ADVERSARIAL:
            for word, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(normalize(text)):
                chars.update(word)
                words.add(word[:20])
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += sorted(chars) + sorted("##" + c for c in chars) + sorted(words - chars) + ["##xx", "##éé", "##ab"]
    path = tmp_path_factory.mktemp("tricky") / "vocab.txt"
    path.write_text("".join(t + "\n" for t in dict.fromkeys(tokens)), encoding="utf-8")
    return path


def _hf(vocab_path, lower_case):
    return transformers.BertTokenizer(str(vocab_path), do_lower_case=lower_case)


def _hf_ids(vocab_path, lower_case, texts):
    return _hf(vocab_path, lower_case)(list(texts), add_special_tokens=False)["input_ids"]


def _assert_same_ids(ours: list, reference: list, texts: list[str], tok):
    assert len(ours) == len(reference)
    bad = [i for i, (a, b) in enumerate(zip(ours, reference)) if list(a) != list(b)]
    assert not bad, "\n".join(
        f"{texts[i][:60]!r}: ours {[tok.vocab[j] for j in ours[i]][:12]} HF {[tok.vocab[j] for j in reference[i]][:12]}"
        for i in bad[:10]
    ) + f"\n({len(bad)} of {len(texts)} differ)"


# --- Parity with Hugging Face --------------------------------------------------------------------------------


def _vocab(kind, lower_case, shared_vocab, tricky_vocab):
    return shared_vocab[lower_case] if kind == "trained" else tricky_vocab


@pytest.mark.parametrize("vocab_kind", ["trained", "tricky"])
@pytest.mark.parametrize("lower_case", CASINGS)
def test_ids_equal_hf_on_every_shared_sentence(shared_vocab, tricky_vocab, shared_sentences, vocab_kind, lower_case):
    vocab = _vocab(vocab_kind, lower_case, shared_vocab, tricky_vocab)
    tok = tokenization.load_tokenizer(vocab, lower_case=lower_case)
    ours = tok.tokenize(shared_sentences).to_list()
    reference = _hf_ids(vocab, lower_case, shared_sentences)
    _assert_same_ids(ours, reference, shared_sentences, tok)
    # The host tokenizer of one-shot inference (no TensorFlow) gives the same ids.
    host = HostWordPiece(vocab, lower_case=lower_case).encode(shared_sentences)
    _assert_same_ids(host, reference, shared_sentences, tok)


@pytest.mark.parametrize("vocab_kind", ["trained", "tricky"])
@pytest.mark.parametrize("lower_case", CASINGS)
def test_ids_equal_hf_on_adversarial_strings(shared_vocab, tricky_vocab, vocab_kind, lower_case):
    vocab = _vocab(vocab_kind, lower_case, shared_vocab, tricky_vocab)
    tok = tokenization.load_tokenizer(vocab, lower_case=lower_case)
    ours = tok.tokenize(ADVERSARIAL).to_list()
    reference = _hf_ids(vocab, lower_case, ADVERSARIAL)
    _assert_same_ids(ours, reference, ADVERSARIAL, tok)
    _assert_same_ids(HostWordPiece(vocab, lower_case=lower_case).encode(ADVERSARIAL), reference, ADVERSARIAL, tok)
    assert tok.encode(ADVERSARIAL) == ours
    if vocab_kind == "tricky":  # rich enough that the comparison is about normalisation, not [UNK]s
        assert sum(i != tok.unk_id for row in ours for i in row) > 100


@pytest.mark.parametrize("lower_case", CASINGS)
def test_words_equal_hf_for_every_code_point(tricky_vocab, lower_case):
    """HF's string-level normaliser + pre-tokeniser vs our per-code-point table applied in-graph, in context.

    Every code point of planes 0-3 and 14 (and every 97th elsewhere), each between two letters, 32 per string.
    """
    code_points = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    code_points = [c for c in code_points if c < 0x40000 or 0xE0000 <= c < 0xF0000 or c % 97 == 0]
    texts = ["".join("a" + chr(c) for c in code_points[i : i + 32]) + "a" for i in range(0, len(code_points), 32)]
    normalize = normalizers.BertNormalizer(lowercase=lower_case).normalize_str
    pre_tokenize = pre_tokenizers.BertPreTokenizer().pre_tokenize_str
    reference = [[w for w, _ in pre_tokenize(normalize(t))] for t in texts]
    tok = tokenization.load_tokenizer(tricky_vocab, lower_case=lower_case)
    ours = [[w.decode("utf-8") for w in row] for row in tok.split_words(texts).to_list()]
    bad = [i for i in range(len(texts)) if ours[i] != reference[i]]
    assert not bad, f"{len(bad)} strings differ, e.g. {texts[bad[0]]!r}: {ours[bad[0]]} vs {reference[bad[0]]}"


def test_invalid_utf8_is_read_as_replacement_characters(tricky_vocab):
    tok = tokenization.load_tokenizer(tricky_vocab)
    raw = [b"caf\xe9 na\xc3\xafve", b"\xff\xfe ab \xed\xa0\x80cd", b"trunc\xe2\x82"]
    reference = _hf_ids(tricky_vocab, True, [r.decode("utf-8", errors="replace") for r in raw])
    assert tok.tokenize(tf.constant(raw)).to_list() == reference


@pytest.mark.slow
@pytest.mark.parametrize("lower_case", CASINGS)
def test_hf_reference_equals_python_bert_tokenizer(shared_vocab, shared_sentences, lower_case):
    """transformers' BertTokenizer (Rust-backed since v5) is the reference; it agrees with the pure-Python one here."""
    legacy_cls = getattr(transformers, "BertTokenizerLegacy", None)
    if legacy_cls is None:  # transformers < 5: BertTokenizer is the pure-Python one already.
        pytest.skip("no separate pure-Python BERT tokenizer in this transformers version")
    legacy = legacy_cls(str(shared_vocab[lower_case]), do_lower_case=lower_case)
    reference = _hf_ids(shared_vocab[lower_case], lower_case, shared_sentences)
    assert legacy(shared_sentences, add_special_tokens=False)["input_ids"] == reference


# --- The tokenizer's API ---------------------------------------------------------------------------------------


def test_works_inside_tf_data_map(shared_vocab):
    tok = tokenization.load_tokenizer(shared_vocab[True])
    texts = ["The cat sat on the mat.", "", "Naïve [MASK] text, 中文!"]
    eager = tok.tokenize(texts).to_list()
    per_doc = tf.data.Dataset.from_tensor_slices(texts).map(tok.tokenize)
    assert [ids.tolist() for ids in per_doc.as_numpy_iterator()] == eager
    batched = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tok.tokenize_words)
    words = [row for batch in batched for row in batch.to_list()]
    assert [sum(row, []) for row in words] == eager
    assert tf.data.Dataset.from_tensor_slices(texts).map(tok.tokenize).element_spec.dtype == tf.int32


def test_tokenize_words_groups_the_pieces_of_each_word(shared_vocab):
    tok = tokenization.load_tokenizer(shared_vocab[True])
    words = tok.tokenize_words(["Unbelievably good , [MASK] !"]).to_list()[0]
    assert words[-2:] == [[tok.mask_id], [tok.vocab.index("!")]]
    assert all(len(w) >= 1 for w in words)
    assert all(not tok.vocab[w[0]].startswith("##") for w in words)
    assert all(tok.vocab[p].startswith("##") for w in words for p in w[1:])
    assert [p for w in words for p in w] == tok.tokenize("Unbelievably good , [MASK] !").numpy().tolist()


def test_scalar_input_gives_a_vector(shared_vocab):
    tok = tokenization.load_tokenizer(shared_vocab[True])
    ids = tok.tokenize(tf.constant("the movie was great"))
    assert isinstance(ids, tf.Tensor) and ids.shape.rank == 1 and ids.dtype == tf.int32
    assert ids.numpy().tolist() == tok.tokenize(["the movie was great"]).to_list()[0]


def test_detokenize_and_decode_join_pieces(shared_vocab):
    tok = tokenization.load_tokenizer(shared_vocab[True])
    text = "the movie was surprisingly good , but too long ."
    ids = tok.tokenize([text])
    assert tok.detokenize(ids).numpy().tolist() == [text.encode()]
    assert tok.decode(ids.to_list()[0]) == text


def test_attributes_and_special_ids(shared_vocab):
    tok = tokenization.load_tokenizer(shared_vocab[False], lower_case=False)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102, 103)
    assert tok.special_ids == (0, 101, 102, 103)  # [UNK] may be masked
    assert tok.vocab_size == len(tok.vocab) == 8000 and tok.lower_case is False
    assert tok.vocab_path == shared_vocab[False]


def test_windows_line_ends_load_like_hf(tmp_path, tricky_vocab):
    crlf = tmp_path / "vocab.txt"
    crlf.write_bytes(tricky_vocab.read_bytes().replace(b"\n", b"\r\n"))
    assert tokenization.load_tokenizer(crlf).vocab == tokenization.load_tokenizer(tricky_vocab).vocab
    text = ["naïve café, 中文!"]
    assert tokenization.load_tokenizer(crlf).tokenize(text).to_list() == _hf_ids(crlf, True, text)


def test_special_ids_come_from_the_file(tricky_vocab):
    tok = tokenization.load_tokenizer(tricky_vocab)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)


# --- Training ------------------------------------------------------------------------------------------------


def test_trained_vocab_has_bert_layout(shared_vocab):
    for path in shared_vocab.values():
        lines = path.read_text(encoding="utf-8").split("\n")
        assert lines[-1] == "" and len(lines) - 1 == 8000
        assert lines[:104] == list(tokenization.BERT_RESERVED_TOKENS)
        assert len(set(lines[:-1])) == 8000
    assert "the" in shared_vocab[True].read_text().split("\n")
    assert "The" in shared_vocab[False].read_text().split("\n")


def test_training_is_deterministic(tmp_path, shared_data):
    """HF's trainer alone gives different vocabularies from run to run on this corpus (tokenizers#1794)."""
    text = (shared_data / "wikitext2" / "valid.txt").read_text(encoding="utf-8").split("\n")
    first = tokenization.train_wordpiece(iter(text), vocab_size=2000, out_dir=tmp_path / "a")
    second = tokenization.train_wordpiece(iter(text), vocab_size=2000, out_dir=tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()


def test_training_from_a_dataset_and_alphabet_limit(tmp_path):
    docs = ["the cat sat on the mat .", "the dog sat on the log !", "ünïcödé 中文"] * 5
    path = tokenization.train_wordpiece(tf.data.Dataset.from_tensor_slices(docs), vocab_size=120, out_dir=tmp_path)
    vocab = path.read_text(encoding="utf-8").split("\n")[:-1]
    assert len(vocab) <= 120 and vocab[:104] == list(tokenization.BERT_RESERVED_TOKENS)
    # (120 - 104) // 2 = 8 characters fit with their ## forms: the 8 most frequent ones (ties: lower code point).
    counts = collections.Counter("".join(docs).replace(" ", ""))
    assert vocab[104:112] == sorted(sorted(counts, key=lambda c: (-counts[c], c))[:8])
    assert vocab[112:120] == ["##" + c for c in vocab[104:112]]


def test_training_from_file_globs_equals_training_from_their_documents(tmp_path):
    docs = ["The cat sat on the mat.", "A dog sat on a log!", "Ünïcödé and 中文 text."]
    (tmp_path / "a.txt").write_text(docs[0] + "\n\n" + docs[1] + "\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text(docs[2] + "\n", encoding="utf-8")
    from_files = tokenization.train_wordpiece(str(tmp_path / "*.txt"), vocab_size=150, out_dir=tmp_path / "files")
    from_docs = tokenization.train_wordpiece(iter(docs), vocab_size=150, out_dir=tmp_path / "docs")
    assert from_files.read_bytes() == from_docs.read_bytes()
    with pytest.raises(DataError, match="matches no file"):
        tokenization.train_wordpiece([tmp_path / "nothing.txt"], vocab_size=150, out_dir=tmp_path / "none")


def test_too_small_vocab_size_is_refused_before_writing(tmp_path):
    with pytest.raises(ConfigError, match="vocab_size=104"):
        tokenization.train_wordpiece(iter(["some text"]), vocab_size=104, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_corpus_leaves_no_vocab(tmp_path):
    with pytest.raises(DataError, match="no text"):
        tokenization.train_wordpiece(iter(["", "  \n "]), vocab_size=200, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_training_keeps_the_previous_vocab(tmp_path):
    path = tokenization.train_wordpiece(iter(["first corpus"]), vocab_size=200, out_dir=tmp_path)
    before = path.read_bytes()

    def broken():
        yield "second corpus"
        raise RuntimeError("reader failed")

    with pytest.raises(RuntimeError, match="reader failed"):
        tokenization.train_wordpiece(broken(), vocab_size=200, out_dir=tmp_path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["vocab.txt"]


# --- Loading errors ------------------------------------------------------------------------------------------


def test_missing_vocab_file(tmp_path):
    with pytest.raises(DataError, match="nope/vocab.txt does not exist"):
        tokenization.load_tokenizer(tmp_path / "nope" / "vocab.txt")


@pytest.mark.parametrize("missing", tokenization.SPECIAL_TOKENS)
def test_vocab_missing_a_special_token(tmp_path, missing):
    path = tmp_path / "vocab.txt"
    path.write_text("".join(t + "\n" for t in [*tokenization.SPECIAL_TOKENS, "a", "##b"] if t != missing))
    for load in (tokenization.load_tokenizer, HostWordPiece):  # both read vocabularies alike (wordpiece_vocab)
        with pytest.raises(DataError) as e:
            load(path)
        assert str(path) in str(e.value) and missing in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "content, message",
    [
        ("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\na\n", "'a' appears on lines 6 and 7"),
        ("[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n[MASK]\n", "line 3 is empty"),
    ],
)
def test_malformed_vocab(tmp_path, content, message):
    path = tmp_path / "vocab.txt"
    path.write_bytes(content.encode())
    for load in (tokenization.load_tokenizer, HostWordPiece):
        with pytest.raises(DataError, match=message):
            load(path)


def test_alphabet_ties_are_broken_by_code_point():
    normalizer = normalizers.BertNormalizer(lowercase=True)
    assert tokenization._alphabet(iter(["Aa b", "c"]), normalizer, limit=2) == ["a", "b"]
    assert tokenization._alphabet(iter(["zy yz"]), normalizer, limit=1) == ["y"]


def test_character_table_covers_every_code_point():
    values, row_splits = tokenization._char_table(True)
    assert row_splits.shape == (0x110001,) and row_splits[-1] == values.size
    row = lambda c: values[row_splits[c] : row_splits[c + 1]].tolist()  # noqa: E731
    assert row(ord("A")) == [ord("a")] and row(ord(",")) == [32, ord(","), 32]
    assert row(0x00A0) == [32] and row(0x200B) == [] and row(0xD800) == []
    assert np.all(values >= 0) and np.all(values < 0x110000)


def test_a_vocabulary_token_too_long_for_tf_text_is_one_line(tmp_path):
    """tf_text refuses tokens over 256 UTF-8 bytes with a RuntimeError; load_tokenizer promises DataErrors."""
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join([*tokenization.SPECIAL_TOKENS, "a", "##a", "ẞ" * 100]) + "\n")
    with pytest.raises(DataError, match=rf"^vocabulary file {path}: Vocab token utf8 length"):
        tokenization.load_tokenizer(path)

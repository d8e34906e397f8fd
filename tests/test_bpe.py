"""sslm_jax.data.bpe: training, loading errors, id-for-id parity with GPT2TokenizerFast, tf.data use, decoding; the
host tokenizer (sslm_jax.data.host_bpe, no TensorFlow) is held to the same ids and errors."""

import csv
import json
import pathlib
import random

import pytest

tf = pytest.importorskip("tensorflow")
transformers = pytest.importorskip("transformers")
from tokenizers import pre_tokenizers  # noqa: E402

from sslm_jax.data import bpe  # noqa: E402
from sslm_jax.data.host_bpe import HostBPE  # noqa: E402
from sslm_jax.errors import ConfigError, DataError  # noqa: E402

# Where a naive port of GPT-2's pre-tokeniser (RE2, no lookahead, ASCII \s) or of its BPE goes wrong.
ADVERSARIAL = [
    "it's  a\n\nb ",
    "I'M it'S we're they've I'll he'd 'm 's' ''s don't ’s",
    "a  b   c    d \t e\t\tf\n g \n\n h \r\n i",
    "   ",
    " ",
    "trailing spaces   ",
    "\n\n\nnewlines\n",
    "no\u00a0break narrow\u202fnbsp ideographic\u3000\u3000space ogham\u1680x line\u2028para\u2029 nel\x85x",
    "vt\x0bff\x0c\x1cfs\x1dgs\x1ers\x1fus \x0b\x0bx",
    "123 4567 3.14 1,000,000 ½ ① Ⅻ ٣ ४५",
    "🙂🥰👍🏽 👨\u200d👩\u200d👧 ☃ 🏳️\u200d🌈",
    "e\u0301 café naïve Ærøskøbing İstanbul ǅ ß ẞ ﬁ",
    "中文字符 日本語の文 한국어 𠀀𪜀𫠠",
    "!!!???...--- (a)[b]{c} $5+3=8 ^_^ `~| «q» „x“ ¿¡",
    "zero\u200bwidth\u2060joiner\ufeffbom \u200d\u200c",
    "\x00a\x00 \x00\x00",
    "\ufffd\uffff\U0010ffff\ue000\U000e0001 \ufdd0",
    "a<|endoftext|>b",
    "<|endoftext|>",
    "  <|endoftext|>  x <|endoftext|><|endoftext|>",
    "<|endoftext|  <|endoftext|>|> <|ENDOFTEXT|>",
    "x" * 300,
    "aaaa aaaaa aaaaaaa llll 0000000",
    "",
]
# Characters for random strings: every class the pre-tokeniser knows, the contraction pieces, the separator.
FUZZ_ALPHABET = [*"sStTrevmldxX'’0 9", " ", " ", "\t", "\n", "\r", "\u3000", "\u00a0", "é", "中", "🙂", "\u0301",
                 "½", "!", ".", "<|endoftext|>", "\x00", "\u200b"]


def _shared_texts(shared_data: pathlib.Path) -> list[str]:
    """Every `sentence` of SST-2 train/dev and every line of WikiText-2 valid (with its leading space)."""
    texts = []
    for name in ("train.tsv", "dev.tsv"):
        with open(shared_data / "sst2" / name, encoding="utf-8", newline="") as f:
            texts += [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return texts + (shared_data / "wikitext2" / "valid.txt").read_text(encoding="utf-8").split("\n")


def _fuzz_texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(FUZZ_ALPHABET, k=rng.randint(0, 24))) for _ in range(count)]


@pytest.fixture(scope="session")
def shared_texts(shared_data):
    return _shared_texts(shared_data)


@pytest.fixture(scope="session")
def vocabs(tmp_path_factory, shared_texts):
    """name -> a directory: "trained" (8k, on the shared text), "tiny" (300: most words stay in pieces),
    "adversarial" (trained on ADVERSARIAL and fuzz strings, so multi-byte characters and odd spaces merge too)."""
    root = tmp_path_factory.mktemp("bpe")
    adversarial = ADVERSARIAL * 3 + _fuzz_texts(2000, seed=1)
    return {
        "trained": bpe.train_bpe(iter(shared_texts), vocab_size=8000, out_dir=root / "trained"),
        "tiny": bpe.train_bpe(iter(shared_texts), vocab_size=300, out_dir=root / "tiny"),
        "adversarial": bpe.train_bpe(adversarial, vocab_size=1000, out_dir=root / "adversarial"),
    }


@pytest.fixture(scope="session")
def toks(vocabs):
    """name -> the loaded BPETokenizer (loading runs BPE over every token once, so share it)."""
    return {name: bpe.load_bpe(directory) for name, directory in vocabs.items()}


def _hf(directory):
    return transformers.GPT2TokenizerFast.from_pretrained(str(directory))


def _assert_same_ids(tok, texts: list[str], reference_dir=None):
    """The in-graph tokenizer's ids, and the host tokenizer's on the same files, equal GPT2TokenizerFast's."""
    reference = _hf(reference_dir or tok.directory)(texts)["input_ids"]
    for name, ours in [("in-graph", tok.tokenize(tf.constant(texts)).to_list()),
                       ("host", HostBPE(tok.directory).encode(texts))]:  # fmt: skip
        bad = [i for i in range(len(texts)) if ours[i] != reference[i]]
        assert not bad, f"{name}:\n" + "\n".join(
            f"{texts[i][:60]!r}: ours {ours[i][:12]} HF {reference[i][:12]}" for i in bad[:10]
        ) + f"\n({len(bad)} of {len(texts)} differ)"


# --- Parity with Hugging Face --------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab", ["trained", "tiny"])
def test_ids_equal_hf_on_every_shared_text(toks, shared_texts, vocab):
    _assert_same_ids(toks[vocab], shared_texts)


@pytest.mark.parametrize("vocab", ["trained", "tiny", "adversarial"])
def test_ids_equal_hf_on_adversarial_and_random_strings(toks, vocab):
    tok = toks[vocab]
    _assert_same_ids(tok, ADVERSARIAL + _fuzz_texts(3000))
    if vocab == "adversarial":  # its merges cover the odd characters, so the BPE itself is exercised on them
        ids = tok.tokenize(ADVERSARIAL).flat_values.numpy()
        assert (ids > 256).mean() > 0.5


def test_words_equal_hf_pre_tokeniser_for_every_code_point(toks):
    """Each code point between letters, doubled, beside spaces and digits: our split equals HF's ByteLevel one."""
    code_points = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    code_points = [c for c in code_points if c < 0x20000 or 0xE0000 <= c < 0xE1000 or c % 97 == 0]
    pieces = ["a{0}b{0}{0} {0}1 {0}  {0}'s".format(chr(c)) for c in code_points]
    texts = ["".join(pieces[i : i + 16]) for i in range(0, len(pieces), 16)]
    alphabet = {c: b for b, c in bpe.byte_alphabet().items()}
    hf_split = pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str
    reference = [[bytes(alphabet[c] for c in word) for word, _ in hf_split(t)] for t in texts]
    ours = toks["tiny"].split_words(texts).to_list()
    bad = [i for i in range(len(texts)) if ours[i] != reference[i]]
    assert not bad, f"{len(bad)} strings differ, e.g. {texts[bad[0]]!r}: {ours[bad[0]]} vs {reference[bad[0]]}"


def test_gpt2_layout_directory_from_hugging_face(vocabs, tmp_path):
    """A directory laid out like HF's gpt2 (bytes first, merges, <|endoftext|> last, plus HF's own files)."""
    vocab = json.loads((vocabs["trained"] / "vocab.json").read_text(encoding="utf-8"))
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t != bpe.EOT]
    gpt2_like = {**{t: i for i, t in enumerate(tokens)}, bpe.EOT: len(tokens)}
    (tmp_path / "vocab.json").write_text(json.dumps(gpt2_like, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "merges.txt").write_bytes((vocabs["trained"] / "merges.txt").read_bytes())
    _hf(tmp_path).save_pretrained(str(tmp_path))  # adds tokenizer.json and tokenizer_config.json, as on the Hub
    tok = bpe.load_bpe(tmp_path)
    assert tok.eot_id == tok.vocab_size - 1 == len(tokens)
    _assert_same_ids(tok, ADVERSARIAL + ["Hello world<|endoftext|>"])


# --- The tokenizer's API ---------------------------------------------------------------------------------------


def _graph_ops(dataset) -> set[str]:
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    functions = [node for f in graph.library.function for node in f.node_def]
    return {node.op for node in [*graph.node, *functions]}


def test_works_inside_tf_data_map_without_py_function(toks):
    tok = toks["trained"]
    texts = ["The cat sat on the mat.", "", " it's  <|endoftext|> 中文!\n"]
    eager = tok.tokenize(texts).to_list()
    per_doc = tf.data.Dataset.from_tensor_slices(texts).map(tok.tokenize)
    assert [ids.tolist() for ids in per_doc.as_numpy_iterator()] == eager
    batched = tf.data.Dataset.from_tensor_slices(texts).batch(2).map(tok.tokenize)
    assert [row for batch in batched for row in batch.to_list()] == eager
    assert per_doc.element_spec.dtype == tf.int32
    ops = _graph_ops(batched)
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}, ops


def test_tf_data_iterator_checkpoint_resumes_exactly(toks, tmp_path):
    tok = toks["trained"]
    texts = [f"document {i}: it's {'word ' * (i % 7)}done" for i in range(40)]

    def make():
        ds = tf.data.Dataset.from_tensor_slices(texts).shuffle(16, seed=3).batch(4).map(tok.tokenize)
        return iter(ds.map(lambda ids: ids.to_tensor()))

    iterator = make()
    for _ in range(3):
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "pos"))
    expected = [b.numpy().tolist() for b in iterator]
    restored = make()
    tf.train.Checkpoint(iterator=restored).read(path).assert_consumed()
    assert [b.numpy().tolist() for b in restored] == expected


def test_scalar_input_gives_a_vector_and_bad_rank_is_refused(toks):
    tok = toks["trained"]
    ids = tok.tokenize(tf.constant("the movie was great"))
    assert ids.shape.rank == 1 and ids.numpy().tolist() == tok.tokenize(["the movie was great"]).to_list()[0]
    with pytest.raises(ValueError, match="scalar or a vector"):
        tok.tokenize([["a"]])


def test_decode_gives_the_exact_text_back(toks, shared_texts):
    tok = toks["tiny"]
    host = HostBPE(tok.directory)
    texts = ADVERSARIAL + shared_texts[::500]
    for text, ids in zip(texts, tok.tokenize(texts).to_list()):
        assert tok.decode(ids) == host.decode(ids) == text
    assert tok.decode([tok.eot_id]) == host.decode([host.eot_id]) == bpe.EOT


def test_invalid_utf8_is_kept_byte_for_byte(toks):
    tok = toks["trained"]
    raw = [b"caf\xe9 na\xc3\xafve", b"\xff\xfe ab \xed\xa0\x80cd", b"trunc\xe2\x82", b"\x80 \x80\x80  x"]
    for text, ids in zip(raw, tok.tokenize(tf.constant(raw)).to_list()):
        assert tok.decode_bytes(ids) == text
    assert tok.decode(tok.tokenize(raw[0]).numpy()) == "caf\ufffd naïve"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.decode([tok.vocab_size])


def test_attributes(toks, vocabs):
    tok, host = toks["trained"], HostBPE(vocabs["trained"])
    assert (tok.vocab_size, tok.eot_id, tok.num_merges) == (host.vocab_size, host.eot_id, host.num_merges) == (
        8000, 0, 8000 - 257)  # fmt: skip
    assert tok.vocab_size == len(_hf(vocabs["trained"]))
    assert str(vocabs["trained"]) in repr(tok) and str(vocabs["trained"]) in repr(host)
    assert tok.files == host.files and tok.vocab == host.vocab
    with pytest.raises(ValueError, match="not in the vocabulary"):
        host.decode([host.vocab_size])


# --- Training --------------------------------------------------------------------------------------------------


def test_trained_files_load_in_transformers(vocabs):
    directory = vocabs["trained"]
    assert sorted(p.name for p in directory.iterdir()) == ["merges.txt", "vocab.json"]  # no temporary files left
    vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
    assert vocab[bpe.EOT] == 0 and all(vocab[c] == 1 + i for i, c in enumerate(sorted(bpe.byte_alphabet().values())))
    by_constructor = transformers.GPT2TokenizerFast(
        vocab=str(directory / "vocab.json"), merges=str(directory / "merges.txt")
    )
    text = "Hello world, it's 2024!<|endoftext|>"
    assert by_constructor(text)["input_ids"] == _hf(directory)(text)["input_ids"]
    assert _hf(directory)(text)["input_ids"][-1] == 0


def test_training_example_from_the_docstring(tmp_path):
    out = bpe.train_bpe(["low lower lowest"] * 10, vocab_size=260, out_dir=tmp_path)
    merges = (out / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    assert merges == ["l o", "lo w", "Ġ low"]
    tok = bpe.load_bpe(out)
    assert [tok.decode([i]) for i in tok.tokenize("low lower").numpy()] == ["low", " low", "e", "r"]


def test_training_is_deterministic_and_takes_bytes_or_a_dataset(tmp_path, shared_texts):
    texts = shared_texts[:3000]
    a = bpe.train_bpe(texts, vocab_size=600, out_dir=tmp_path / "a")
    b = bpe.train_bpe((t.encode() for t in texts), vocab_size=600, out_dir=tmp_path / "b")
    c = bpe.train_bpe(tf.data.Dataset.from_tensor_slices(texts), vocab_size=600, out_dir=tmp_path / "c")
    for name in ("vocab.json", "merges.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes() == (c / name).read_bytes()


@pytest.mark.parametrize("vocab_size", [256, 0, 300.0, True])
def test_too_small_vocab_size_is_a_config_error(tmp_path, vocab_size):
    with pytest.raises(ConfigError, match=r"too small.*>= 257"):
        bpe.train_bpe(["text"], vocab_size=vocab_size, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("documents", [[], ["", ""], iter([])])
def test_empty_corpus_is_a_data_error_and_writes_nothing(tmp_path, documents):
    with pytest.raises(DataError, match="no text to train"):
        bpe.train_bpe(documents, vocab_size=300, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_output_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        bpe.train_bpe(["text"], vocab_size=300, out_dir=tmp_path / "file")


# --- Loading errors --------------------------------------------------------------------------------------------


def _write(directory: pathlib.Path, vocab, merges: str | None) -> pathlib.Path:
    directory.mkdir(exist_ok=True)
    (directory / "vocab.json").write_text(vocab if isinstance(vocab, str) else json.dumps(vocab), encoding="utf-8")
    if merges is not None:
        (directory / "merges.txt").write_text(merges, encoding="utf-8")
    return directory


def _byte_vocab(**extra) -> dict:
    return {**{c: i for i, c in enumerate(bpe.byte_alphabet().values())}, bpe.EOT: 256, **extra}


LOADERS = pytest.mark.parametrize("load", [bpe.load_bpe, HostBPE], ids=["in_graph", "host"])


@LOADERS
def test_missing_merges_file_is_one_clear_line(tmp_path, load):
    _write(tmp_path, _byte_vocab(), merges=None)
    with pytest.raises(DataError) as info:
        load(tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "merges.txt") in message
    assert "train_bpe" in message and "Hugging Face" in message


@pytest.mark.parametrize(
    "vocab, merges, message",
    [
        ("{not json", "", "cannot read"),
        ('["a", "b"]', "", "JSON object"),
        ({"a": 0}, "", "has no <|endoftext|>"),
        ({bpe.EOT: 0, "a": 1}, "", "lacks 255 of the 256 byte tokens"),
        (_byte_vocab(), "#version: 0.2\na b c\n", "line 2: expected two tokens"),
        (_byte_vocab(), "a b\n", "merge 1 'a' 'b' uses or makes a token not in vocab.json"),
    ],
)
@LOADERS
def test_malformed_files_are_data_errors(tmp_path, vocab, merges, message, load):
    _write(tmp_path, vocab, merges)
    with pytest.raises(DataError, match=message.replace("|", r"\|")):
        load(tmp_path)


@LOADERS
def test_missing_directory_names_the_vocab_file(tmp_path, load):
    with pytest.raises(DataError, match="vocab.json does not exist"):
        load(tmp_path / "nowhere")


def test_byte_only_vocabulary_needs_no_merges(tmp_path):
    tok = bpe.load_bpe(_write(tmp_path, _byte_vocab(**{"<pad> token": 257}), merges="#version: 0.2\n"))
    assert tok.tokenize(["hé!"]).to_list() == [[tok.vocab[c] for c in "hÃ©!"]]
    assert tok.decode([257, tok.vocab["Ġ"], tok.vocab["Ã"], tok.vocab["©"]]) == "<pad> token é"


def test_merges_that_remake_a_used_token_follow_hf_order(tmp_path):
    """"abc" is made by merge 2 and again by merge 4, after merge 3 uses it: merging every lowest pair of a word
    at once would give [abc, abc] for "abcabc"; HF's heap (and we) give [abca, bc]."""
    vocab = _byte_vocab(bc=257, ab=258, abc=259, abca=260)
    merges = "#version: 0.2\nb c\na b\nab c\nabc a\na bc\n"
    tok = bpe.load_bpe(_write(tmp_path, vocab, merges))
    assert tok._merges.one_at_a_time
    texts = ["abcabc", "abcabcabc abc abca bcabc", "aabbcc abab"]
    assert tok.tokenize("abcabc").numpy().tolist() == [260, 257]
    _assert_same_ids(tok, texts)


def test_trained_merges_merge_all_occurrences_at_once(toks):
    assert not any(tok._merges.one_at_a_time for tok in toks.values())

"""sslm_jax.data.sources: file formats, per-host sharding, TFDS (prepared only), the stdlib corpus, config dispatch."""

import csv
import gzip
import json
import os
import pathlib
import random
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from sslm_jax.data import graph_records, sources  # noqa: E402
from sslm_jax.errors import ConfigError, DataError  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


def _docs(dataset) -> list[str]:
    return [d.decode("utf-8") for d in dataset.as_numpy_iterator()]


def _write(path: pathlib.Path, text: str | bytes) -> pathlib.Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


# --- Formats ---------------------------------------------------------------------------------------------------


def test_text_format_splits_on_blank_lines(tmp_path):
    _write(tmp_path / "a.txt", "Title\n\nFirst line.\nSecond line.\n \t \n\n\nLast doc")
    _write(tmp_path / "b.txt.gz", "gz doc\r\nline two\r\n\r\nsecond gz doc\r\n")
    _write(tmp_path / "c.txt", "\n\n")
    docs = _docs(sources.file_documents(str(tmp_path / "*")))
    assert docs == ["Title", "First line.\nSecond line.", "Last doc", "gz doc\nline two", "second gz doc"]


def test_lines_format_and_comma_separated_globs(tmp_path):
    _write(tmp_path / "a.txt", "one\n\n  \ntwo\n")
    _write(tmp_path / "b.txt.gz", "three\n")
    docs = _docs(sources.file_documents(f"{tmp_path}/a.txt, {tmp_path}/*.gz", format="lines"))
    assert docs == ["one", "two", "three"]
    # A list is read in its own order (each glob's matches sorted).
    listed = sources.file_documents([tmp_path / "b.txt.gz", tmp_path / "a.txt"], format="lines")
    assert _docs(listed) == ["three", "one", "two"]


def test_jsonl_field_matches_json_loads(tmp_path):
    rng = random.Random(0)
    alphabet = "ab é中😀\"\\/\n\t\u2028\x01<>'"
    records = []
    for i in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        record = {"id": i, "meta": {"text": "nested decoy", "list": [1, {"text": "deeper"}]}, "text": text}
        if i % 3 == 0:
            record = {"text": text, "title": '"text": "decoy in a string"'}
        records.append(record)
    lines = [json.dumps(r, ensure_ascii=bool(i % 2)) for i, r in enumerate(records)]
    _write(tmp_path / "a.jsonl", "\n".join(lines[:150]) + "\n\n")
    _write(tmp_path / "b.jsonl.gz", "\n".join(lines[150:]))
    docs = _docs(sources.file_documents(str(tmp_path / "*.jsonl*"), format="jsonl"))
    assert docs == [r["text"] for r in records]


def test_json_string_field_edge_cases():
    lines = [
        '{"text":"dup1", "text": "dup2"}',  # json.loads keeps the last
        '{ "text" :  "spaced"  , "x": null}',
        '{"text": "\\ud83d\\ude00 pair, lone \\udc00"}',
        '{"text": 5}',
        '{"meta": {"text": "only nested"}}',
        "[1, 2]",
        "",
        '{"text": ""}',
    ]
    values, found = graph_records.json_string_field(lines, "text")
    assert found.numpy().tolist() == [True, True, True, False, False, False, False, True]
    assert [v.decode() for v in values.numpy()] == ["dup2", "spaced", "😀 pair, lone \ufffd", "", "", "", "", ""]


def test_tsv_column_equals_csv_module_on_sst2(shared_data):
    path = shared_data / "sst2" / "dev.tsv"
    with open(path, encoding="utf-8", newline="") as f:
        expected = [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    assert _docs(sources.file_documents(str(path), format="tsv", text_field="sentence")) == expected


def test_csv_with_quotes(tmp_path):
    rows = [["id", "review"], ["1", 'He said "hi", then left'], ["2", "plain"], ["3", "comma, inside"]]
    with open(tmp_path / "r.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    assert _docs(sources.file_documents(str(tmp_path / "r.csv"), format="csv", text_field="review")) == [
        r[1] for r in rows[1:]
    ]


def test_remote_filesystems_through_gfile():
    """gs:// and other URLs go through tf.io.gfile; TF's in-memory ram:// filesystem stands in for them here."""
    with tf.io.gfile.GFile("ram://sslm_sources/a.txt", "w") as f:
        f.write("hello\nworld\n\nsecond doc\n")
    with tf.io.gfile.GFile("ram://sslm_sources/b.txt.gz", "wb") as f:
        f.write(gzip.compress(b"zipped doc\n"))
    assert _docs(sources.file_documents("ram://sslm_sources/*")) == ["hello\nworld", "second doc", "zipped doc"]
    with pytest.raises(DataError, match="glob 'ram://sslm_sources/none-\\*' matches no file"):
        sources.file_documents("ram://sslm_sources/none-*")


def test_invalid_utf8_becomes_replacement_characters(tmp_path):
    _write(tmp_path / "bad.txt", b"caf\xe9 ok\n\nsecond \xff\xfe doc\n\ntrunc\xe2\x82")
    docs = list(sources.file_documents(str(tmp_path / "bad.txt")).as_numpy_iterator())
    assert [d.decode("utf-8") for d in docs] == ["caf\ufffd ok", "second \ufffd\ufffd doc", "trunc\ufffd"]


# --- Errors found before training ------------------------------------------------------------------------------


def test_glob_matching_nothing(tmp_path):
    _write(tmp_path / "a.txt", "text")
    with pytest.raises(DataError, match="glob '.*/nothing-\\*.txt' matches no file"):
        sources.file_documents(f"{tmp_path}/a.txt,{tmp_path}/nothing-*.txt")


@pytest.mark.parametrize("content", ["", "\n\n  \n\t\n"])
def test_empty_corpus(tmp_path, content):
    _write(tmp_path / "a.txt", content)
    _write(tmp_path / "b.txt.gz", content)
    with pytest.raises(DataError, match="is empty"):
        sources.file_documents(str(tmp_path / "*"))


def test_binary_file(tmp_path):
    _write(tmp_path / "a.txt", "fine text\n")
    _write(tmp_path / "weights.txt.gz", b"PK\x03\x04\x00\x00binary")
    with pytest.raises(DataError, match="weights.txt.gz looks binary"):
        sources.file_documents(str(tmp_path / "*"))
    _write(tmp_path / "utf16.txt", "hello".encode("utf-16"))
    with pytest.raises(DataError, match="utf16.txt looks binary"):
        sources.file_documents(str(tmp_path / "utf16.txt"))


def test_broken_gzip(tmp_path):
    (tmp_path / "a.txt.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read .*a.txt.gz"):
        sources.file_documents(str(tmp_path / "a.txt.gz"))


def test_jsonl_without_the_field(tmp_path):
    _write(tmp_path / "a.jsonl", '\n{"body": "x", "id": 1}\n')
    with pytest.raises(DataError, match=r"a.jsonl:2 has no string field 'text' \(fields: \['body', 'id'\]\)"):
        sources.file_documents(str(tmp_path / "a.jsonl"), format="jsonl")
    _write(tmp_path / "a.jsonl", "not json\n")
    with pytest.raises(DataError, match="a.jsonl:1 is not a JSON object"):
        sources.file_documents(str(tmp_path / "a.jsonl"), format="jsonl")


def test_jsonl_field_missing_further_down_stops_the_pipeline(tmp_path):
    _write(tmp_path / "a.jsonl", '{"text": "ok"}\n{"body": "no text here"}\n')
    docs = sources.file_documents(str(tmp_path / "a.jsonl"), format="jsonl")
    with pytest.raises(DataError, match=r'^jsonl line without a string field text in .*a.jsonl: \{"body": "no text h'):
        list(graph_records.numpy_batches(docs))


@pytest.mark.parametrize(
    "fmt, bad, shown",
    [
        ("tsv", "b\t2\t3", r"a tsv line of .*/a.tsv is not 2 fields as its header has: b\\t2\\t3$"),
        ("csv", 'he said "hi" twice,1', r'a csv line of .*/a.csv is not 2 fields as its header has \(quotes only around '
                                        r'a whole field\): he said "hi" twice,1$'),
        ("csv", '"a quoted field that spans', r"a csv line of .*/a.csv is not 2 fields .*: \"a quoted field that spans$"),
        ("csv", "1,2,3", r"a csv line of .*/a.csv is not 2 fields"),
    ],
    ids=["tsv-extra-field", "csv-bare-quotes", "csv-two-lines", "csv-extra-field"],
)
def test_a_bad_table_line_further_down_is_one_line_naming_the_file(tmp_path, fmt, bad, shown):
    """tf.io.decode_csv's own errors named neither the file nor the line ("Expect 2 fields but have 3 in record 87",
    the index inside a vector of lines)."""
    sep = "," if fmt == "csv" else "\t"
    good = [f"fine{sep}1", f'"quoted, with "" inside"{sep}2' if fmt == "csv" else f'bare "quotes"{sep}2']
    _write(tmp_path / f"a.{fmt}", f"text{sep}label\n" + "\n".join(good * 300 + [bad, "two lines\"" + sep + "0"]) + "\n")
    docs = sources.file_documents(str(tmp_path / f"a.{fmt}"), format=fmt)
    with pytest.raises(DataError, match=shown) as e:
        list(graph_records.numpy_batches(docs))
    assert "\n" not in str(e.value)
    _write(tmp_path / f"a.{fmt}", f"text{sep}label\n" + "\n".join(good * 3) + "\n")  # valid rows pass the check
    expected = ["fine", 'quoted, with " inside' if fmt == "csv" else 'bare "quotes"'] * 3
    docs = sources.file_documents(str(tmp_path / f"a.{fmt}"), format=fmt)
    assert [d.decode() for d in graph_records.numpy_batches(docs)] == expected


def test_tsv_without_the_column(tmp_path):
    _write(tmp_path / "a.tsv", "sentence\tlabel\nhi\t1\n")
    with pytest.raises(DataError, match=r"a.tsv has no column 'text' in its header \['sentence', 'label'\]"):
        sources.file_documents(str(tmp_path / "a.tsv"), format="tsv")
    _write(tmp_path / "header_only.tsv", "text\tlabel\n")
    with pytest.raises(DataError, match="is empty"):
        sources.file_documents(str(tmp_path / "header_only.tsv"), format="tsv")


def test_tsv_files_must_share_their_header(tmp_path):
    _write(tmp_path / "a.tsv", "text\tlabel\nhi\t1\n")
    _write(tmp_path / "b.tsv", "label\ttext\n1\tho\n")
    with pytest.raises(DataError, match="b.tsv has columns"):
        sources.file_documents(str(tmp_path / "*.tsv"), format="tsv")


def test_unknown_format(tmp_path):
    with pytest.raises(ConfigError, match="'parquet'"):
        sources.file_documents(str(tmp_path / "*"), format="parquet")


# --- Sharding and checkpointing --------------------------------------------------------------------------------


@pytest.mark.parametrize("num_files, process_count", [(4, 2), (5, 2), (2, 3), (1, 4)])
def test_hosts_partition_the_documents(tmp_path, num_files, process_count):
    everything = []
    for f in range(num_files):
        docs = [f"file {f} doc {d}" for d in range(7)]
        _write(tmp_path / f"part-{f}.txt", "\n\n".join(docs))
        everything += docs
    per_host = [
        _docs(sources.file_documents(str(tmp_path / "*.txt"), process_index=i, process_count=process_count))
        for i in range(process_count)
    ]
    assert sorted(sum(per_host, [])) == sorted(everything)
    assert all(per_host)


def test_one_host_with_only_blank_files_is_an_error(tmp_path):
    _write(tmp_path / "a.txt", "text\n")
    _write(tmp_path / "b.txt", "\n")
    assert _docs(sources.file_documents(str(tmp_path / "*.txt"), process_index=0, process_count=2)) == ["text"]
    with pytest.raises(DataError, match="this host's files .* is empty"):
        sources.file_documents(str(tmp_path / "*.txt"), process_index=1, process_count=2)


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_iterator_checkpoint_resumes_exactly(tmp_path, fmt):
    docs = [f"document {i}\nwith two lines" for i in range(20)]
    if fmt == "text":
        _write(tmp_path / "a.txt", "\n\n".join(docs[:10]))
        _write(tmp_path / "b.txt", "\n\n".join(docs[10:]))
    else:
        _write(tmp_path / "a.jsonl", "\n".join(json.dumps({"text": d}) for d in docs[:10]))
        _write(tmp_path / "b.jsonl", "\n".join(json.dumps({"text": d}) for d in docs[10:]))
    dataset = sources.file_documents(str(tmp_path / "*"), format=fmt)
    iterator = iter(dataset)
    assert [next(iterator).numpy().decode() for _ in range(7)] == docs[:7]
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    path = checkpoint.save(str(tmp_path / "ckpt" / "it"))
    assert [next(iterator).numpy().decode() for _ in range(5)] == docs[7:12]
    restored = iter(dataset)
    tf.train.Checkpoint(iterator=restored).restore(path)
    assert [d.numpy().decode() for d in restored] == docs[7:]


# --- TFDS -------------------------------------------------------------------------------------------------------


class SslmTinyCorpus(tfds.core.GeneratorBasedBuilder):
    """A local TFDS dataset over `corpus.txt` (one example per line) in the manual directory."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put corpus.txt in the manual directory."

    def _info(self):
        features = tfds.features.FeaturesDict({"text": tfds.features.Text(), "stars": np.int32})
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        lines = (dl_manager.manual_dir / "corpus.txt").read_text(encoding="utf-8").splitlines()
        return {"train": self._generate_examples(lines[:-2]), "test": self._generate_examples(lines[-2:])}

    def _generate_examples(self, lines):
        for i, line in enumerate(lines):
            yield i, {"text": line, "stars": i % 5}


TINY_TEXTS = [f"review number {i}: {'great' if i % 2 else 'poor'} film" for i in range(9)]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    manual = tmp_path_factory.mktemp("manual")
    (manual / "corpus.txt").write_text("\n".join(TINY_TEXTS) + "\n", encoding="utf-8")
    data_dir = tmp_path_factory.mktemp("tfds")
    config = tfds.download.DownloadConfig(manual_dir=str(manual))
    SslmTinyCorpus(data_dir=str(data_dir)).download_and_prepare(download_config=config)
    return str(data_dir)


def test_tfds_documents(tfds_dir):
    docs = _docs(sources.tfds_documents("sslm_tiny_corpus", split="train", text_field="text", data_dir=tfds_dir))
    # TFDS stores examples in the (fixed) order of their keys' hashes; reading never shuffles files.
    assert sorted(docs) == sorted(TINY_TEXTS[:-2])
    again = sources.tfds_documents("sslm_tiny_corpus", split="train", text_field="text", data_dir=tfds_dir)
    assert _docs(again) == docs
    per_host = [
        _docs(sources.tfds_documents(
            "sslm_tiny_corpus", split="train", text_field="text", data_dir=tfds_dir, process_index=i, process_count=3
        ))
        for i in range(3)
    ]
    assert sum(per_host, []) == docs and all(per_host)


def test_tfds_errors(tfds_dir, tmp_path):
    kwargs = dict(split="train", text_field="text", data_dir=tfds_dir)
    with pytest.raises(DataError, match="no dataset named 'no_such_corpus_xyz'"):
        sources.tfds_documents("no_such_corpus_xyz", **kwargs)
    with pytest.raises(DataError, match=f"'sslm_tiny_corpus' is not prepared in {tmp_path}.*tfds build"):
        sources.tfds_documents("sslm_tiny_corpus", **{**kwargs, "data_dir": str(tmp_path)})
    with pytest.raises(DataError, match=r"no feature 'body' \(features: \['stars', 'text'\]\)"):
        sources.tfds_documents("sslm_tiny_corpus", **{**kwargs, "text_field": "body"})
    with pytest.raises(DataError, match="stars is int32"):
        sources.tfds_documents("sslm_tiny_corpus", **{**kwargs, "text_field": "stars"})
    with pytest.raises(DataError, match="cannot read split 'validation'"):
        sources.tfds_documents("sslm_tiny_corpus", **{**kwargs, "split": "validation"})
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded or prepared


# --- The embedded corpus ----------------------------------------------------------------------------------------


def test_stdlib_documents_are_real_text_without_imports():
    before = set(sys.modules)
    docs = sources.stdlib_documents()
    texts = _docs(docs)
    assert len(texts) > 3000 and sum(map(len, texts)) > 1_500_000
    assert len(set(texts)) == len(texts)
    # Walking the stdlib with ast imports none of it (`antigravity` would open a web browser).
    assert not {"antigravity", "this", "tkinter", "turtle", "idlelib"} & (set(sys.modules) - before)
    import inspect
    import textwrap

    assert inspect.getdoc(textwrap.dedent) in texts
    assert _docs(sources.stdlib_documents()) == texts  # fixed order
    halves = [_docs(sources.stdlib_documents(process_index=i, process_count=2)) for i in range(2)]
    assert sorted(halves[0] + halves[1]) == sorted(texts)


def test_the_parsed_corpus_is_cached_and_reparsed_when_a_source_changes(tmp_path, monkeypatch):
    """`sources._docstrings` parses a standard library once per installation: read back, it gives exactly the parsed
    texts (non-ASCII and an escaped lone surrogate included); an edited file means a new parse."""
    monkeypatch.setenv("SSLM_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    (root / "os.py").write_text('"""' + "The operating system, naïvely: « ünïcode » and 中文 words. " * 3 + '"""\n')
    surrogate = "A lone surrogate spelled as an escape: \\udc80, kept as it is, long enough to be a document."
    (root / "pkg" / "mod.py").write_text(f'def f():\n    """{surrogate}"""\n')
    parses = []
    real = sources._parse_docstrings
    monkeypatch.setattr(sources, "_parse_docstrings", lambda *a: parses.append(1) or real(*a))
    first = sources._docstrings(root)
    assert len(first) == 2 and "\udc80" in first[1] and "中文" in first[0]
    assert sources._docstrings(root) == first and len(parses) == 1
    edited_doc = "An edited docstring, long enough to be kept. " * 3
    (root / "pkg" / "mod.py").write_text(f'def f():\n    """{edited_doc}"""\n')
    edited = sources._docstrings(root)
    assert len(parses) == 2 and edited[0] == first[0] and edited[1].startswith("An edited docstring")


# --- documents(config) ------------------------------------------------------------------------------------------


def _data_config(**fields) -> ml_collections.ConfigDict:
    sys.path.insert(0, str(REPO))
    try:
        from configs import base
    finally:
        sys.path.remove(str(REPO))
    c = base.get_config().data
    c.update(fields)
    return c


def test_held_out_split_is_deterministic_and_disjoint():
    c = _data_config(source="stdlib", eval_fraction=0.1)
    train, held_out = _docs(sources.documents(c, split="train")), _docs(sources.documents(c, split="eval"))
    assert not set(train) & set(held_out)
    everything = _docs(sources.stdlib_documents())
    assert set(train) <= set(everything)
    assert 0.07 < len(held_out) / len(everything) < 0.13
    # Held-out text shares no sentence with training text, and every held-out sentence is from a held-out document.
    seen = {s.lower() for doc in train for s in sources.sentences(doc)}
    held_out_sentences = [s for doc in held_out for s in sources.sentences(doc)]
    assert held_out_sentences and not any(s.lower() in seen for s in held_out_sentences)
    left_out = "\n".join(doc for doc in everything if doc not in set(train))
    assert all(s in " ".join(left_out.split()) for s in held_out_sentences[:50])
    assert _docs(sources.documents(c, split="eval")) == held_out
    on_two_hosts = [_docs(sources.documents(c, split="eval", process_index=i, process_count=2)) for i in range(2)]
    assert sorted(sum(on_two_hosts, [])) == sorted(held_out)


def test_documents_from_files(tmp_path):
    _write(tmp_path / "train.txt", "\n\n".join(f"train doc {i}" for i in range(50)))
    _write(tmp_path / "eval.txt", "eval doc")
    c = _data_config(source="files", train_files=str(tmp_path / "train.txt"), eval_files=str(tmp_path / "eval.txt"))
    assert _docs(sources.documents(c, split="eval")) == ["eval doc"]
    assert len(_docs(sources.documents(c, split="train"))) == 50
    c.eval_files, c.eval_fraction = "", 0.3
    train, held_out = _docs(sources.documents(c, split="train")), _docs(sources.documents(c, split="eval"))
    assert sorted(train + held_out) == sorted(f"train doc {i}" for i in range(50)) and held_out and train


def test_documents_from_tfds(tfds_dir):
    c = _data_config(source="tfds", tfds_name="sslm_tiny_corpus", tfds_data_dir=tfds_dir, tfds_eval_split="test")
    assert sorted(_docs(sources.documents(c, split="eval"))) == TINY_TEXTS[-2:]
    assert sorted(_docs(sources.documents(c, split="train"))) == sorted(TINY_TEXTS[:-2])
    c.tfds_eval_split, c.eval_fraction = "", 0.5
    train, held_out = _docs(sources.documents(c, split="train")), _docs(sources.documents(c, split="eval"))
    assert sorted(train + held_out) == sorted(TINY_TEXTS[:-2]) and not set(train) & set(held_out)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(source="hub"), "data.source='hub'"),
        (dict(source="files", train_files=""), "data.train_files"),
        (dict(source="tfds", tfds_name=""), "data.tfds_name"),
        (dict(source="stdlib", eval_fraction=0.0), "no eval data"),
        (dict(source="stdlib", eval_fraction=1.5), "eval_fraction=1.5"),
    ],
)
def test_documents_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        sources.documents(_data_config(**fields), split="eval")


# --- The train-tokenizer command ---------------------------------------------------------------------------------


def _cli(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "sslm_jax", "train-tokenizer", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_cli_trains_a_vocabulary(tmp_path):
    _write(tmp_path / "a.txt", "\n\n".join(f"The quick brown fox {i} jumps over the lazy dog." for i in range(50)))
    _write(tmp_path / "b.txt.gz", "Pack my box with five dozen liquor jugs.\n")
    result = _cli(f"--input={tmp_path}/*.txt*", "--vocab-size=250", f"--out={tmp_path}/vocab", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    vocab = (tmp_path / "vocab" / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert vocab[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] and 104 < len(vocab) <= 250
    assert "the" in vocab and "The" not in vocab  # lower-cased by default


def test_cli_glob_matching_nothing_is_one_line(tmp_path):
    pattern = f"{tmp_path}/missing-*.txt"
    result = _cli(f"--input={pattern}", f"--out={tmp_path}/vocab", cwd=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and pattern in lines[0], result.stderr
    assert not (tmp_path / "vocab").exists()

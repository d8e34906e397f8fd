"""Labelled data for fine-tuning: packing, TFDS GLUE (a tiny locally prepared stand-in), files, exact eval, errors."""

import csv
import gzip
import json
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import base
from sslm_jax.config_loading import config_dir_on_path, load_config
from sslm_jax.data import finetuning as ft
from sslm_jax.data.tokenizer import BERT_RESERVED_TOKENS, load_tokenizer
from sslm_jax.errors import ConfigError, DataError
from sslm_jax.objectives import glue_metrics

WORDS = "the a movie film was is good bad great not very fun dull plot actors and but it i liked hated".split()


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    """A hand-written BERT vocabulary: special tokens, the words above, every letter and digit (so no [UNK])."""
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    tokens = [*BERT_RESERVED_TOKENS, *WORDS, *chars, *(f"##{c}" for c in chars), *".,!'?_"]
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(tokens)) + "\n")
    return path


@pytest.fixture(scope="module")
def tok(vocab_file):
    return load_tokenizer(vocab_file)


def _data_config(**changes):
    c = base.get_config().data
    c.update({"max_seq_len": 16, "shuffle_buffer": 1000, **changes})
    return c


def _batches(ds):
    return list(ds.as_numpy_iterator())


def _real_rows(batches, tok, field="input_ids"):
    """The real (weight 1) rows of eval batches, decoded back to text for identification."""
    rows = []
    for b in batches:
        for ids, w, label in zip(b[field], b["example_weight"], b["label"]):
            if w > 0:
                rows.append((tok.decode(i for i in ids if i != tok.pad_id), label.item()))
    return rows


# --- Packing -----------------------------------------------------------------------------------------------------


def _reference_longest_first(la, lb, budget):
    """One token at a time from the longer segment; on a tie, from the one that started shorter (or the first)."""
    first_is_shorter = la <= lb
    while la + lb > budget:
        if la > lb or (la == lb and first_is_shorter):
            la -= 1
        else:
            lb -= 1
    return la, lb


def test_longest_first_lengths_match_the_reference_loop():
    grid = np.array([(a, b) for a in range(0, 14) for b in range(0, 14)], np.int64)
    for budget in (1, 2, 7, 8, 13):
        new_a, new_b = ft.longest_first_lengths(tf.constant(grid[:, 0]), tf.constant(grid[:, 1]), budget)
        expected = np.array([_reference_longest_first(a, b, budget) for a, b in grid])
        np.testing.assert_array_equal(np.stack([new_a, new_b], 1), expected, err_msg=f"budget {budget}")
    docstring = {(2, 10): (2, 5), (10, 2): (5, 2), (9, 6): (4, 3), (5, 5): (3, 4), (3, 3): (3, 3)}
    for (a, b), expected in docstring.items():
        assert tuple(int(x) for x in ft.longest_first_lengths(tf.constant(a), tf.constant(b), 7)) == expected


def test_pack_inputs_docstring_example_eagerly_and_in_tf_data():
    a = tf.ragged.constant([[7, 8, 9], [4]], tf.int32)
    b = tf.ragged.constant([[5, 6, 4, 3], []], tf.int32)
    kw = dict(max_seq_len=8, cls_id=101, sep_id=102, pad_id=0)
    expected = {
        "input_ids": [[101, 7, 8, 102, 5, 6, 4, 102], [101, 4, 102, 102, 0, 0, 0, 0]],
        "attention_mask": [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0]],
        "token_type_ids": [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 0, 0, 0, 0]],
    }
    eager = ft.pack_inputs(a, b, **kw)
    ds = tf.data.Dataset.from_tensor_slices({"a": a, "b": b}).batch(2)
    in_graph = next(iter(ds.map(lambda x: ft.pack_inputs(x["a"], x["b"], **kw))))
    for out in (eager, in_graph):
        for key, value in expected.items():
            np.testing.assert_array_equal(out[key], value, err_msg=key)
            assert out[key].dtype == tf.int32
    single = ft.pack_inputs(tf.ragged.constant([[7, 8, 9, 1, 2, 3, 4, 5, 6]]), **kw)
    np.testing.assert_array_equal(single["input_ids"], [[101, 7, 8, 9, 1, 2, 3, 102]])  # truncated to L - 2
    np.testing.assert_array_equal(single["token_type_ids"], [[0] * 8])


def test_encoding_matches_hugging_face(vocab_file, tok):
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertTokenizer(str(vocab_file), do_lower_case=True)
    rng = np.random.default_rng(0)
    # Every pair of lengths 1..13 ("a" is one token), then real sentences. (HF reads an empty second text as
    # no second segment at all; we keep [SEP] [SEP], so empty segments are left out here.)
    firsts = [" ".join(["a"] * i) for i in range(1, 14) for _ in range(1, 14)]
    seconds = [" ".join(["a"] * j) for _ in range(1, 14) for j in range(1, 14)]
    sentences = [" ".join(rng.choice(WORDS, rng.integers(1, 14))) for _ in range(48)]
    firsts, seconds = firsts + sentences[:24], seconds + sentences[24:]
    n = len(firsts)
    batch = {"text_a": firsts, "text_b": seconds, "label": tf.zeros([n], tf.int32), "example_weight": tf.ones([n])}
    for length in (8, 11):
        ours = ft.make_encoder(tok, max_seq_len=length, batch_size=n, pair=True)(batch)
        theirs = hf(firsts, seconds, truncation="longest_first", max_length=length, padding="max_length")
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{key}, max_seq_len {length}")
    ours = ft.make_encoder(tok, max_seq_len=8, batch_size=n, pair=False)(batch)
    theirs = hf(firsts, truncation=True, max_length=8, padding="max_length")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


# --- Files ---------------------------------------------------------------------------------------------------------


def _write_tsv(path, header, rows):
    path.write_text("\n".join("\t".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


def _reviews(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"{' '.join(rng.choice(WORDS, 4))} {i}", ("pos", "neg")[i % 2]) for i in range(n)]


def test_sst2_tsv_eval_is_exact_and_in_file_order(shared_data, tok):
    dev = shared_data / "sst2" / "dev.tsv"
    with open(dev, newline="") as f:
        labels = [int(r["label"]) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    c = _data_config(source="files", format="tsv", text_field="sentence", train_files=str(dev), eval_files=str(dev))
    ds, info = ft.create_classification_dataset(c, tok, split="eval", per_host_batch=100, seed=0)
    assert info == ft.TaskInfo(
        name="files", label_names=("0", "1"), is_regression=False, num_labels=2, text_fields=("sentence",),
        metric_names=("accuracy",), num_examples=len(labels),
    )  # fmt: skip
    batches = _batches(ds)
    assert len(batches) == 9  # ceil(872 / 100)
    weights = np.concatenate([b["example_weight"] for b in batches])
    assert weights.sum() == len(labels) == 872 and not weights[872:].any()
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches])[:872], labels)
    ids = np.concatenate([b["input_ids"] for b in batches])
    assert (ids[:, 0] == tok.cls_id).all()
    assert ((ids == tok.sep_id).sum(1) == 1).all()  # one segment: one [SEP]


def test_train_is_shuffled_repeated_and_deterministic(tmp_path, tok):
    rows = _reviews(12)
    path = _write_tsv(tmp_path / "train.tsv", ["review", "stars"], rows)
    c = _data_config(source="files", format="tsv", text_field="review", label_field="stars", train_files=str(path),
                     eval_files=str(path))  # fmt: skip
    ds, info = ft.create_classification_dataset(c, tok, split="train", per_host_batch=4, seed=3)
    assert info.label_names == ("neg", "pos") and info.num_examples == 12
    first_epochs = _batches(ds.take(6))  # 2 epochs of 3 batches
    again = _batches(ft.create_classification_dataset(c, tok, split="train", per_host_batch=4, seed=3)[0].take(6))
    other = _batches(ft.create_classification_dataset(c, tok, split="train", per_host_batch=4, seed=4)[0].take(6))
    ids = lambda bs: np.concatenate([b["input_ids"] for b in bs])  # noqa: E731
    np.testing.assert_array_equal(ids(first_epochs), ids(again))
    assert not np.array_equal(ids(first_epochs), ids(other))
    # Each epoch holds every example once; the two epochs are in different orders.
    decoded = [tok.decode(i for i in row if i not in (0, 101, 102)) for row in ids(first_epochs)]
    expected = sorted(text for text, _ in rows)
    assert sorted(decoded[:12]) == expected and sorted(decoded[12:]) == expected
    assert decoded[:12] != decoded[12:]
    # Labels travel with their text.
    label_of = {text: ("neg", "pos").index(label) for text, label in rows}
    assert [label_of[d] for d in decoded] == np.concatenate([b["label"] for b in first_epochs]).tolist()
    assert all((b["example_weight"] == 1).all() for b in first_epochs)


def test_train_position_resumes_exactly(tmp_path, tok):
    from sslm_jax.data.pretraining import PipelineIterator

    path = _write_tsv(tmp_path / "train.tsv", ["text", "label"], _reviews(10))
    c = _data_config(source="files", format="tsv", train_files=str(path), eval_files=str(path))
    make = lambda: ft.create_classification_dataset(c, tok, split="train", per_host_batch=3, seed=0)[0]  # noqa: E731
    it = PipelineIterator(make())
    for _ in range(4):  # past the first epoch boundary (10 examples) into a reshuffled epoch
        next(it)
    it.save(tmp_path / "position")
    expected = [next(it) for _ in range(4)]
    resumed = PipelineIterator(make())
    resumed.restore(tmp_path / "position")
    for want, got in zip(expected, (next(resumed) for _ in range(4))):
        for key in want:
            np.testing.assert_array_equal(want[key], got[key], err_msg=key)


def test_eval_on_several_hosts_counts_every_example_once(tmp_path, tok):
    process_count = 3
    rows = _reviews(10)
    path = _write_tsv(tmp_path / "dev.tsv", ["text", "label"], rows)
    c = _data_config(source="files", format="tsv", train_files=str(path), eval_files=str(path))
    seen, lengths = [], set()
    for index in range(process_count):
        ds, _ = ft.create_classification_dataset(
            c, tok, split="eval", per_host_batch=3, seed=0, process_index=index, process_count=process_count
        )
        batches = _batches(ds)
        lengths.add(len(batches))
        seen += _real_rows(batches, tok)
    assert len(lengths) == 1  # every host runs the same number of eval steps
    names = ("neg", "pos")
    assert sorted(seen) == sorted((f"[CLS] {t} [SEP]", names.index(y)) for t, y in rows)


def test_jsonl_pairs_declared_labels_and_gzip(tmp_path, tok):
    records = [
        {"premise": "the movie was good", "hypothesis": "i liked it", "gold": "entailment"},
        {"premise": "the plot was dull", "hypothesis": "it was great fun", "gold": "contradiction"},
        {"premise": "a film", "hypothesis": "actors", "gold": "neutral"},
    ]
    path = tmp_path / "nli.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in records) + "\n\n")
    names = ("entailment", "neutral", "contradiction")
    c = _data_config(source="files", format="jsonl", text_field="premise,hypothesis", label_field="gold",
                     label_names=names, train_files=str(path), eval_files=str(path), num_labels=3)  # fmt: skip
    ds, info = ft.create_classification_dataset(c, tok, split="eval", per_host_batch=2, seed=0)
    assert info.label_names == names and info.text_fields == ("premise", "hypothesis") and info.is_pair
    b = _batches(ds)[0]
    np.testing.assert_array_equal(b["label"], [0, 2])
    first = b["input_ids"][0][b["attention_mask"][0] == 1]
    assert tok.decode(first) == "[CLS] the movie was good [SEP] i liked it [SEP]"
    np.testing.assert_array_equal(b["token_type_ids"][0][: len(first)], [0] * 6 + [1] * 4)


def test_files_through_gfile_urls_gz_and_recursive_globs(tmp_path, tok):
    """Fine-tuning files are read like pretraining corpora: gs:// and other tf.io.gfile URLs (TF's in-memory ram://
    and file:// stand in here), .gz, comma-separated and recursive (**) globs."""
    rows = _reviews(9)
    with tf.io.gfile.GFile("ram://sslm_finetuning/train.tsv.gz", "wb") as f:
        f.write(gzip.compress("".join(f"{t}\t{y}\n" for t, y in [("review", "stars"), *rows[:5]]).encode()))
    with tf.io.gfile.GFile("ram://sslm_finetuning/more.tsv", "w") as f:
        f.write("".join(f"{t}\t{y}\n" for t, y in [("review", "stars"), *rows[5:]]))
    nested = tmp_path / "dev" / "2024" / "part"
    nested.mkdir(parents=True)
    with gzip.open(nested / "a.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps({"review": t, "stars": y}) + "\n" for t, y in rows[:4]))
    _write_tsv(tmp_path / "dev" / "b.tsv", ["review", "stars"], rows[4:6])  # not matched: the eval glob is jsonl

    train = "ram://sslm_finetuning/*.gz, ram://sslm_finetuning/more.tsv"
    kw = dict(source="files", text_field="review", label_field="stars")
    c = _data_config(format="tsv", train_files=train, eval_files=train, **kw)
    ds, info = ft.create_classification_dataset(c, tok, split="eval", per_host_batch=4, seed=0)
    assert info.label_names == ("neg", "pos") and info.num_examples == 9
    assert _real_rows(_batches(ds), tok) == [(f"[CLS] {t} [SEP]", ("neg", "pos").index(y)) for t, y in rows]

    for dev in (f"{tmp_path}/**/*.jsonl.gz", f"file://{tmp_path}/dev/**/*.jsonl.gz"):
        c = _data_config(format="jsonl", train_files=dev, eval_files=dev, **kw)
        ds, info = ft.create_classification_dataset(c, tok, split="eval", per_host_batch=4, seed=0)
        assert _real_rows(_batches(ds), tok) == [(f"[CLS] {t} [SEP]", ("neg", "pos").index(y)) for t, y in rows[:4]]

    kind, msg = _error(_data_config(format="tsv", train_files=train, eval_files="ram://sslm_finetuning/x*", **kw), tok)
    assert kind is DataError and msg == "data.eval_files: glob 'ram://sslm_finetuning/x*' matches no file"


def test_csv_regression_and_held_out_split(tmp_path, tok):
    rng = np.random.default_rng(0)
    rows = [(f'"{w}, {v}"', f"{s:.2f}") for (w, v), s in
            zip(rng.choice(WORDS, (60, 2)), rng.uniform(0, 5, 60))]  # fmt: skip
    path = tmp_path / "scores.csv"
    path.write_text("sentence,score\n" + "\n".join(",".join(r) for r in rows) + "\n")
    c = _data_config(source="files", format="csv", text_field="sentence", label_field="score", num_labels=1,
                     train_files=str(path), eval_fraction=0.25)  # fmt: skip
    train_ds, info = ft.create_classification_dataset(c, tok, split="train", per_host_batch=4, seed=0)
    eval_ds, eval_info = ft.create_classification_dataset(c, tok, split="eval", per_host_batch=4, seed=0)
    assert info.is_regression and info.num_labels == 1 and info.label_names == ()
    assert info.metric_names == ("pearson", "spearman")
    assert info.num_examples + eval_info.num_examples == 60 and 0 < eval_info.num_examples < 30
    eval_batches = _batches(eval_ds)
    assert eval_batches[0]["label"].dtype == np.float32
    assert next(iter(train_ds))["label"].dtype == tf.float32
    scores = sorted(np.concatenate([b["label"] for b in eval_batches])[: eval_info.num_examples].tolist())
    # Held-out rows are a subset of the file's rows, and the quoted comma stayed inside the text.
    assert set(np.round(scores, 2)) <= {round(float(s), 2) for _, s in rows}
    assert "," in tok.decode(eval_batches[0]["input_ids"][0])


def test_collected_labels_sort_numerically(tmp_path, tok):
    path = _write_tsv(tmp_path / "t.tsv", ["text", "label"], [(w, n) for w, n in zip(WORDS, [10, 2, 0, 2, 10])])
    c = _data_config(source="files", format="tsv", train_files=str(path), eval_files=str(path))
    _, info = ft.create_classification_dataset(c, tok, split="train", per_host_batch=2, seed=0)
    assert info.label_names == ("0", "2", "10")


def test_json_labels_1_and_1_point_0_are_one_class(tmp_path, tok):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": w, "label": n}) + "\n" for w, n in zip(WORDS, [1, 1.0, 0, 0.0, 2])))
    c = _data_config(source="files", format="jsonl", train_files=str(path), eval_files=str(path))
    _, info = ft.create_classification_dataset(c, tok, split="train", per_host_batch=2, seed=0)
    assert info.label_names == ("0", "1", "2")


# --- Bad input -------------------------------------------------------------------------------------------------------


def _error(c, tok, split="eval"):
    with pytest.raises((DataError, ConfigError)) as e:
        ft.create_classification_dataset(c, tok, split=split, per_host_batch=2, seed=0)
    message = str(e.value)
    assert "\n" not in message
    return e.type, message


def test_bad_files_are_one_line_errors_naming_file_and_setting(tmp_path, tok):
    good = _write_tsv(tmp_path / "train.tsv", ["text", "label"], [("a good film", "pos"), ("dull", "neg")])
    files = lambda **kw: _data_config(**{"source": "files", "format": "tsv", "train_files": str(good),  # noqa: E731
                                         "eval_files": str(good), **kw})  # fmt: skip

    unseen = _write_tsv(tmp_path / "dev.tsv", ["text", "label"], [("fun", "pos"), ("hm", "meh")])
    kind, msg = _error(files(eval_files=str(unseen)), tok)
    assert kind is DataError and f"{unseen}:3" in msg and "'meh'" in msg and "data.train_files" in msg
    kind, msg = _error(files(label_names=("neg", "pos"), eval_files=str(unseen)), tok)
    assert f"{unseen}:3" in msg and "data.label_names" in msg

    undeclared = _write_tsv(tmp_path / "t2.tsv", ["text", "label"], [("fun", "pos"), ("bad", "negative")])
    kind, msg = _error(files(label_names=("neg", "pos"), train_files=str(undeclared)), tok, split="train")
    assert f"{undeclared}:3" in msg and "'negative'" in msg

    kind, msg = _error(files(text_field="review"), tok)
    assert f"{good}:2" in msg and "no column 'review'" in msg and "text, label" in msg
    kind, msg = _error(files(label_field="stars"), tok)
    assert "no column 'stars'" in msg

    empty = tmp_path / "empty.tsv"
    empty.write_text("text\tlabel\n")
    kind, msg = _error(files(eval_files=str(empty)), tok)
    assert kind is DataError and "data.eval_files" in msg and str(empty) in msg and "no examples" in msg

    kind, msg = _error(files(num_labels=3), tok)
    assert "data.num_labels=3" in msg and "neg, pos" in msg
    kind, msg = _error(files(num_labels=1), tok)  # regression on class names
    assert f"{good}:2" in msg and "'pos'" in msg and "not a finite number" in msg

    kind, msg = _error(files(eval_files=str(tmp_path / "nope*.tsv")), tok)
    assert "data.eval_files" in msg and "matches no file" in msg
    kind, msg = _error(files(format="text"), tok)
    assert kind is ConfigError and "data.format='text'" in msg
    kind, msg = _error(files(text_field="a,b,c"), tok)
    assert kind is ConfigError and "data.text_field" in msg
    kind, msg = _error(_data_config(source="stdlib"), tok)
    assert "data.source='stdlib'" in msg
    kind, msg = _error(files(max_seq_len=3), tok)
    assert kind is ConfigError and "data.max_seq_len=3" in msg

    ragged = tmp_path / "ragged.tsv"
    ragged.write_text("text\tlabel\nfine\tpos\nan extra\ttab\tneg\n")
    kind, msg = _error(files(eval_files=str(ragged)), tok)
    assert f"{ragged}:3" in msg and "3 tsv fields" in msg

    binary = tmp_path / "binary.tsv"
    binary.write_bytes(b"text\tlabel\n\xff\xfe\x00\x81\tpos\n")
    kind, msg = _error(files(eval_files=str(binary)), tok)
    assert "not UTF-8" in msg and str(binary) in msg

    one_label = _write_tsv(tmp_path / "one.tsv", ["text", "label"], [("fun", "pos"), ("good", "pos")])
    kind, msg = _error(files(train_files=str(one_label)), tok, split="train")
    assert "at least two" in msg and "data.num_labels=1" in msg


def test_bad_jsonl(tmp_path, tok):
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "fun", "label": 1}\n{"text": "dull"}\n')
    c = _data_config(source="files", format="jsonl", train_files=str(path), eval_files=str(path))
    _, msg = _error(c, tok, split="train")
    assert f"{path}:2" in msg and "no field 'label'" in msg
    path.write_text('{"text": "fun", "label": 1}\n[1, 2]\n')
    _, msg = _error(c, tok, split="train")
    assert f"{path}:2" in msg and "not a JSON object" in msg


# --- The host eval path (data/host_finetuning.py): `sslm eval` of files without TensorFlow ------------------------


@pytest.fixture(scope="module")
def host_tok(vocab_file):
    from sslm_jax.data.host_wordpiece import HostWordPiece

    return HostWordPiece(vocab_file)


def _assert_host_batches_equal_the_pipeline(c, tok, host_tok, *, per_host_batch, process_count=1):
    """For every host: the same TaskInfo, batch count, keys, dtypes and values; and a second pass is the first."""
    from sslm_jax.data import host_finetuning

    for index in range(process_count):
        where = dict(per_host_batch=per_host_batch, process_index=index, process_count=process_count)
        ds, info = ft.create_classification_dataset(c, tok, split="eval", seed=0, **where)
        batches, host_info = host_finetuning.create_eval_batches(c, host_tok, **where)
        assert host_info == info
        want, got = _batches(ds), list(batches)
        assert len(got) == len(want) == len(batches) and list(batches)[-1].keys() == got[-1].keys()
        for step, (w, g) in enumerate(zip(want, got)):
            assert g.keys() == w.keys(), step
            for key in w:
                assert g[key].dtype == w[key].dtype, (step, key)
                np.testing.assert_array_equal(g[key], w[key], err_msg=f"host {index}, batch {step}, {key}")
        for w, g in zip(got, batches):  # iterable again, for the loop's next evaluation
            np.testing.assert_array_equal(g["input_ids"], w["input_ids"])


@pytest.mark.parametrize("process_count, per_host_batch", [(1, 100), (3, 145)])
def test_host_eval_batches_of_sst2_equal_the_pipeline(shared_data, tok, host_tok, process_count, per_host_batch):
    """Real text, cut at 16 tokens, 872 rows: 100 per batch on one host (the last padded); or hosts of 291/291/290
    rows, 145 per batch: the third host's rows fill 2 batches, and it runs a third one of padding only."""
    dev = shared_data / "sst2" / "dev.tsv"
    c = _data_config(source="files", format="tsv", text_field="sentence", train_files=str(dev), eval_files=str(dev))
    _assert_host_batches_equal_the_pipeline(c, tok, host_tok, per_host_batch=per_host_batch,
                                            process_count=process_count)  # fmt: skip


def test_host_eval_batches_of_pairs_regression_and_held_out_rows_equal_the_pipeline(tmp_path, tok, host_tok):
    rng = np.random.default_rng(1)
    text = lambda: " ".join(rng.choice(WORDS, rng.integers(0, 9)))  # noqa: E731 (0-8 words: empty, fits, cut)
    records = [{"a": text(), "b": text(), "gold": str(rng.choice(["yes", "no", "maybe"]))} for _ in range(23)]
    path = tmp_path / "pairs.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
    pairs = _data_config(source="files", format="jsonl", text_field="a,b", label_field="gold", train_files=str(path),
                         eval_files=str(path), max_seq_len=8)  # fmt: skip (8: every truncation case of a pair)
    _assert_host_batches_equal_the_pipeline(pairs, tok, host_tok, per_host_batch=4, process_count=2)
    scores = tmp_path / "scores.csv"
    rows = "".join(f'"{r["a"]}, {r["b"]}",{i / 7:.3f}\n' for i, r in enumerate(records))
    scores.write_text("sentence,score\n" + rows)
    regression = _data_config(source="files", format="csv", text_field="sentence", label_field="score", num_labels=1,
                              train_files=str(scores), eval_fraction=0.4)  # fmt: skip
    _assert_host_batches_equal_the_pipeline(regression, tok, host_tok, per_host_batch=3, process_count=2)


def test_host_eval_batches_with_fewer_examples_than_hosts_equal_the_pipeline(tmp_path, tok, host_tok):
    path = _write_tsv(tmp_path / "dev.tsv", ["text", "label"], _reviews(2))  # the third host holds no row
    c = _data_config(source="files", format="tsv", train_files=str(path), eval_files=str(path))
    _assert_host_batches_equal_the_pipeline(c, tok, host_tok, per_host_batch=2, process_count=3)


def test_host_eval_refuses_what_the_pipeline_refuses(tmp_path, tok, host_tok):
    from sslm_jax.data import host_finetuning

    good = _write_tsv(tmp_path / "train.tsv", ["text", "label"], [("a good film", "pos"), ("dull", "neg")])
    unseen = _write_tsv(tmp_path / "dev.tsv", ["text", "label"], [("fun", "pos"), ("hm", "meh")])
    files = dict(source="files", format="tsv", train_files=str(good))
    for c, batch in [(_data_config(**files, eval_files=str(unseen)), 2), (_data_config(**files, max_seq_len=3), 2),
                     (_data_config(**files, eval_files=str(good)), 0)]:  # fmt: skip
        with pytest.raises((DataError, ConfigError)) as want:
            ft.create_classification_dataset(c, tok, split="eval", per_host_batch=batch, seed=0)
        with pytest.raises(want.type, match=re.escape(str(want.value))):
            host_finetuning.create_eval_batches(c, host_tok, per_host_batch=batch)


# --- TFDS: a tiny GLUE prepared locally ---------------------------------------------------------------------------

# Features of TFDS's own `glue` builder (tensorflow_datasets/text/glue.py), version 2.0.0.
_GLUE_FEATURES = {
    "sst2": (("sentence",), ["negative", "positive"]),
    "mrpc": (("sentence1", "sentence2"), ["not_equivalent", "equivalent"]),
    "stsb": (("sentence1", "sentence2"), None),
    "mnli": (("premise", "hypothesis"), ["entailment", "neutral", "contradiction"]),
}
_GLUE_SPLITS = {"mnli": {"train": 7, "validation_matched": 5, "test_matched": 3}}


class Glue(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Stands in for TFDS's `glue` builder: same name, version, configs and features, a few made-up rows.

    Prepared into a temporary data_dir, it is then read through the real `tfds.builder("glue/...")`.
    """

    VERSION = tfds.core.Version("2.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in _GLUE_FEATURES]

    def _info(self):
        texts, labels = _GLUE_FEATURES[self.builder_config.name]
        features = {t: tfds.features.Text() for t in texts}
        features["label"] = tfds.features.ClassLabel(names=labels) if labels else np.float32
        features["idx"] = np.int32
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        splits = _GLUE_SPLITS.get(self.builder_config.name, {"train": 7, "validation": 5, "test": 3})
        return {name: self._generate_examples(name, n) for name, n in splits.items()}

    def _generate_examples(self, split, n):
        texts, labels = _GLUE_FEATURES[self.builder_config.name]
        for i in range(n):
            example = {t: f"{WORDS[(i + k) % len(WORDS)]} {split} {i}" for k, t in enumerate(texts)}
            if split.startswith("test"):
                example["label"] = -1  # GLUE's test labels are secret
            else:
                example["label"] = i % len(labels) if labels else np.float32(i * 0.5)
            example["idx"] = i
            yield i, example


@pytest.fixture(scope="module")
def glue_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    for name in _GLUE_FEATURES:
        Glue(config=name, data_dir=str(data_dir)).download_and_prepare()
    return str(data_dir)


def _glue(task, glue_dir, **changes):
    texts, _ = _GLUE_FEATURES[task]
    eval_split = "validation_matched" if task == "mnli" else "validation"
    settings = dict(source="tfds", tfds_name=f"glue/{task}", tfds_data_dir=glue_dir, text_field=",".join(texts),
                    tfds_eval_split=eval_split, max_seq_len=32)  # fmt: skip
    return _data_config(**{**settings, **changes})


def test_glue_single_sentence_task(glue_dir, tok):
    ds, info = ft.create_classification_dataset(_glue("sst2", glue_dir), tok, split="eval", per_host_batch=2, seed=0)
    assert info == ft.TaskInfo(
        name="glue/sst2", label_names=("negative", "positive"), is_regression=False, num_labels=2,
        text_fields=("sentence",), metric_names=("accuracy",), num_examples=5,
    )  # fmt: skip
    rows = _real_rows(_batches(ds), tok)
    assert sorted(rows) == sorted((f"[CLS] {WORDS[i]} validation {i} [SEP]", i % 2) for i in range(5))
    train, _ = ft.create_classification_dataset(_glue("sst2", glue_dir), tok, split="train", per_host_batch=4, seed=0)
    batches = _batches(train.take(7))  # 4 epochs of 7 examples
    decoded = [t for t, _ in _real_rows(batches, tok)]
    assert sorted(decoded[:7]) == sorted(f"[CLS] {WORDS[i]} train {i} [SEP]" for i in range(7))


def test_glue_pair_tasks_and_regression(glue_dir, tok):
    c = _glue("mnli", glue_dir, max_seq_len=64)
    ds, info = ft.create_classification_dataset(c, tok, split="eval", per_host_batch=8, seed=0)
    assert info.text_fields == ("premise", "hypothesis") and info.num_labels == 3 and info.num_examples == 5
    rows = _real_rows(_batches(ds), tok)
    expected = (f"[CLS] {WORDS[i]} validation _ matched {i} [SEP] {WORDS[i + 1]} validation _ matched {i} [SEP]"
                for i in range(5))  # fmt: skip
    assert sorted(t for t, _ in rows) == sorted(expected)

    c = _glue("mrpc", glue_dir, text_field="")  # "" reads the task's text features in their order
    _, info = ft.create_classification_dataset(c, tok, split="eval", per_host_batch=2, seed=0)
    assert info.text_fields == ("sentence1", "sentence2") and info.metric_names == ("f1", "accuracy")

    ds, info = ft.create_classification_dataset(_glue("stsb", glue_dir), tok, split="eval", per_host_batch=2, seed=0)
    assert info.is_regression and info.num_labels == 1 and info.metric_names == ("pearson", "spearman")
    labels = [label for _, label in _real_rows(_batches(ds), tok)]
    assert sorted(labels) == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_glue_eval_on_several_hosts(glue_dir, tok):
    seen, counts = [], set()
    for index in range(2):
        ds, _ = ft.create_classification_dataset(
            _glue("sst2", glue_dir), tok, split="eval", per_host_batch=2, seed=0, process_index=index, process_count=2
        )
        batches = _batches(ds)
        counts.add(len(batches))
        seen += _real_rows(batches, tok)
    assert counts == {2} and len(seen) == len(set(seen)) == 5


def test_glue_errors(glue_dir, tok):
    _, msg = _error(_glue("mrpc", glue_dir, text_field="sentence1"), tok)
    assert "glue/mrpc is a sentence-pair task" in msg and "sentence1, sentence2" in msg
    _, msg = _error(_glue("sst2", glue_dir, num_labels=3), tok)
    assert "data.num_labels=3" in msg and "negative, positive" in msg
    _, msg = _error(_glue("sst2", glue_dir, label_names=("neg", "pos")), tok)
    assert "data.label_names" in msg
    _, msg = _error(_glue("sst2", glue_dir, tfds_eval_split="test"), tok)
    assert "data.tfds_eval_split='test'" in msg and "no labels" in msg
    _, msg = _error(_glue("sst2", glue_dir, tfds_eval_split="dev"), tok)
    assert "data.tfds_eval_split='dev'" in msg and "validation" in msg
    kind, msg = _error(_glue("sst2", glue_dir, tfds_eval_split=""), tok)
    assert kind is ConfigError and "data.tfds_eval_split is empty" in msg
    _, msg = _error(_glue("sst2", glue_dir, text_field="sentence2"), tok)
    assert "no text feature 'sentence2'" in msg
    _, msg = _error(_glue("sst2", glue_dir, label_field="score"), tok)
    assert "data.label_field='score'" in msg
    _, msg = _error(_glue("sst2", glue_dir, tfds_name="glue/rte"), tok)
    assert re.search(r"glue/rte is not prepared in .*tfds build glue/rte", msg)
    _, msg = _error(_glue("sst2", glue_dir, tfds_name="glue_nonexistent/x"), tok)
    assert "data.tfds_name='glue_nonexistent/x'" in msg
    kind, msg = _error(_glue("stsb", glue_dir, metrics="accuracy"), tok)
    assert kind is ConfigError and "regression" in msg


# --- configs/glue.py -------------------------------------------------------------------------------------------------

GLUE_CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "glue.py"


@pytest.mark.parametrize("task", ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"])
def test_glue_config_per_task(task):
    c = load_config(f"{GLUE_CONFIG}:{task}")
    assert c.task == "classify" and c.data.source == "tfds" and c.data.tfds_name == f"glue/{task}"
    assert c.data.metrics.split(",") == list(glue_metrics.GLUE_METRICS[task])
    assert c.data.tfds_eval_split == ("validation_matched" if task == "mnli" else "validation")
    assert c.learning_rate == 2e-5 and c.batch_size == 32 and c.data.max_seq_len == 128
    assert c.total_steps == 3 * c.eval_every_steps and c.warmup_steps == c.total_steps // 10
    with pytest.raises(AttributeError):  # locked: a typo is an error, not a new field
        c.data.labels_names = ("a",)


def test_glue_config_variants_and_cli_loading():
    smoke = load_config(f"{GLUE_CONFIG}:mrpc,smoke")
    assert smoke.model.size == "tiny" and smoke.total_steps < 10 and smoke.data.text_field == "sentence1,sentence2"
    files = load_config(f"{GLUE_CONFIG}:files")
    assert files.data.source == "files" and files.data.format == "tsv"
    for bad in ("", "smoke", "sst2,mrpc", "sst3"):
        with pytest.raises(ValueError, match="name one task"):
            load_config(f"{GLUE_CONFIG}:{bad}")
    # As `sslm finetune --config=configs/glue.py:stsb,smoke --config.data.max_seq_len=64` parses it.
    from absl import flags
    from ml_collections import config_flags

    config_dir_on_path(str(GLUE_CONFIG))
    argv = ["sslm", f"--config={GLUE_CONFIG}:stsb,smoke", "--config.data.max_seq_len=64"]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True, sys_argv=argv)
    values(argv)
    assert values.config.data.tfds_name == "glue/stsb" and values.config.data.max_seq_len == 64


def test_glue_config_reads_the_prepared_task(glue_dir, tok):
    c = load_config(f"{GLUE_CONFIG}:mnli,smoke", lock=False)
    c.data.tfds_data_dir = glue_dir
    ds, info = ft.create_classification_dataset(c.data, tok, split="eval", per_host_batch=c.batch_size, seed=0)
    assert info.text_fields == ("premise", "hypothesis") and info.metric_names == ("accuracy",)
    assert next(iter(ds))["input_ids"].shape == (8, 32)

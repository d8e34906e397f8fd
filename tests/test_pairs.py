"""Sentence pairs (NSP/SOP): worked examples eagerly and inside tf.data, layout, provenance and label statistics."""

import numpy as np
import pytest
import tensorflow as tf

from sslm_jax.data import pairs

CLS, SEP = 101, 102


def numpy_tree(x):
    return tf.nest.map_structure(lambda t: t.numpy(), x)


def in_dataset(fn, *args):
    return numpy_tree(next(iter(tf.data.Dataset.from_tensors(args).map(fn))))


def test_split_sentences_example():
    docs = tf.constant(
        ["It rained. Then it stopped!\nNext line", "e.g. this one", 'He said "Go." Then (he left.) Mr. Smith ran', ""]
    )
    expected = [
        [b"It rained.", b"Then it stopped!", b"Next line"],
        [b"e.g. this one"],
        [b'He said "Go."', b"Then (he left.)", b"Mr.", b"Smith ran"],  # regex splitting has no abbreviation list
        [],
    ]
    assert pairs.split_sentences(docs).to_list() == expected
    out = next(iter(tf.data.Dataset.from_tensors(docs).map(pairs.split_sentences)))
    assert out.to_list() == expected


def bert_truncate(len_a, len_b, max_tokens):
    """google-research/bert's truncate_seq_pair loop, on lengths."""
    while len_a + len_b > max_tokens:
        if len_a > len_b:
            len_a -= 1
        else:
            len_b -= 1
    return len_a, len_b


def test_truncate_pair_lengths_matches_bert_loop():
    rng = np.random.default_rng(0)
    a, b = rng.integers(1, 60, size=500), rng.integers(1, 60, size=500)
    for max_tokens in (15, 16, 61):
        got = numpy_tree(pairs.truncate_pair_lengths(tf.constant(a), tf.constant(b), max_tokens))
        expected = np.array([bert_truncate(x, y, max_tokens) for x, y in zip(a, b)]).T
        np.testing.assert_array_equal(got, expected)
    example = (tf.constant([3, 20, 10, 4]), tf.constant([20, 3, 10, 5]))
    for got in (
        numpy_tree(pairs.truncate_pair_lengths(*example, 15)),
        in_dataset(lambda a, b: pairs.truncate_pair_lengths(a, b, 15), *example),
    ):
        np.testing.assert_array_equal(got, [[3, 12, 8, 4], [12, 3, 7, 5]])


def test_sentence_pairs_example():
    # One document of three sentences; SOP keeps it whole as A + B (max_seq_len 9 leaves room for 6 tokens).
    doc = tf.ragged.constant([[[5, 6], [7], [8, 9]]], ragged_rank=2)
    seed = tf.constant([0, 0], tf.int64)

    def fn(d):
        return pairs.sentence_pairs(
            d, max_seq_len=9, objective="sop", short_seq_prob=0.0, seed=seed, cls_id=CLS, sep_id=SEP
        )

    eager, graph = numpy_tree(fn(doc)), in_dataset(fn, doc)
    tf.nest.map_structure(np.testing.assert_array_equal, eager, graph)
    ids = eager["input_ids"][0]
    a_end = int(np.argmax(ids == SEP))
    seg_a, seg_b = ids[1:a_end], ids[a_end + 1 : 7]
    first, second = (seg_b, seg_a) if eager["nsp_label"][0] else (seg_a, seg_b)
    assert np.concatenate([first, second]).tolist() == [5, 6, 7, 8, 9]
    assert first.tolist() in ([5, 6], [5, 6, 7])  # A ends at a sentence boundary
    np.testing.assert_array_equal(eager["token_type_ids"][0], [0] * (a_end + 1) + [1] * (7 - a_end) + [0])
    np.testing.assert_array_equal(eager["segment_ids"][0], [1] * 8 + [0])


def random_group(rng, docs=12, first_id=1000):
    """Documents of sentences of unique, consecutive ids (an id tells its document and position)."""
    group, owner, next_id = [], {}, first_id
    for d in range(docs):
        doc = []
        for _ in range(int(rng.choice([0, 1, 1, 2, 4, 8]))):
            n = int(rng.choice([1, 2, 5, 12, 40]))
            doc.append(list(range(next_id, next_id + n)))
            owner.update({i: d for i in range(next_id, next_id + n)})
            next_id += n
        group.append(doc)
    return group, owner


@pytest.mark.parametrize("objective", ["nsp", "sop"])
def test_sentence_pairs_layout_provenance_and_labels(objective):
    rng = np.random.default_rng(1)
    max_seq_len = 32
    fn = tf.function(
        lambda sentences, seed: pairs.sentence_pairs(
            sentences, max_seq_len=max_seq_len, objective=objective, short_seq_prob=0.1, seed=seed, cls_id=CLS,
            sep_id=SEP,
        )  # fmt: skip
    )
    labels, lengths = [], []
    for g in range(150):
        group, owner = random_group(rng, first_id=1000 + 10_000 * g)
        sentences = tf.ragged.constant(group, dtype=tf.int32, ragged_rank=2) if any(group) else None
        if sentences is None:
            continue
        out = numpy_tree(fn(sentences, tf.constant([7, g], tf.int64)))
        for ids, types, seg, label in zip(out["input_ids"], out["token_type_ids"], out["segment_ids"], out["nsp_label"]):
            n = int(seg.sum())
            assert n <= max_seq_len and np.all(seg[:n] == 1) and np.all(ids[n:] == 0)
            seps = np.flatnonzero(ids == SEP)
            assert ids[0] == CLS and len(seps) == 2 and seps[1] == n - 1
            np.testing.assert_array_equal(types, [0] * (seps[0] + 1) + [1] * (n - seps[0] - 1) + [0] * (max_seq_len - n))
            seg_a, seg_b = ids[1 : seps[0]], ids[seps[0] + 1 : n - 1]
            assert len(seg_a) >= 1 and len(seg_b) >= 1
            # Each segment is a contiguous run of one document (truncation trims only the ends).
            for s in (seg_a, seg_b):
                assert np.all(np.diff(s) == 1) and len({owner[i] for i in s}) == 1
            same_doc = owner[seg_a[0]] == owner[seg_b[0]]
            if objective == "sop":  # always one document; label 1 = B comes before A
                assert same_doc and (seg_b[-1] < seg_a[0]) == bool(label) and (seg_a[-1] < seg_b[0]) != bool(label)
            else:  # label 1 = B from another document of the group
                assert same_doc != bool(label)
                if not label:
                    assert seg_a[-1] < seg_b[0]
            labels.append(label)
            lengths.append(n)
    labels = np.array(labels)
    sigma = np.sqrt(0.25 / len(labels))
    assert len(labels) > 1000 and abs(labels.mean() - 0.5) < 3 * sigma
    assert max(lengths) == max_seq_len  # long documents fill the rows


def test_short_seq_prob_shortens_pairs():
    rng = np.random.default_rng(2)
    group, _ = random_group(rng, docs=40)
    sentences = tf.ragged.constant([d for d in group if d], dtype=tf.int32, ragged_rank=2)
    mean_len = {}
    for p in (0.0, 1.0):
        out = pairs.sentence_pairs(
            sentences, max_seq_len=64, objective="sop", short_seq_prob=p, seed=tf.constant([1, 1], tf.int64),
            cls_id=CLS, sep_id=SEP,
        )  # fmt: skip
        mean_len[p] = out["segment_ids"].numpy().sum(1).mean()
    assert mean_len[1.0] < mean_len[0.0]

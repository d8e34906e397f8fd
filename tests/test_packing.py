"""Packing ops (mlm rows): worked examples eagerly and inside tf.data, and no token lost or duplicated."""

import numpy as np
import tensorflow as tf

from sslm_jax.data import packing

CLS, SEP = 101, 102


def numpy_tree(x):
    return tf.nest.map_structure(lambda t: t.numpy(), x)


def in_dataset(fn, *args):
    ds = tf.data.Dataset.from_tensors(args).map(fn)
    return numpy_tree(next(iter(ds)))


def test_document_stream_example():
    docs = tf.ragged.constant([[5, 6], [], [7]])
    for out in (
        numpy_tree(packing.document_stream(docs, sep_id=SEP)),
        in_dataset(lambda d: packing.document_stream(d, sep_id=SEP), docs),
    ):
        np.testing.assert_array_equal(out[0], [5, 6, SEP, 7, SEP])
        np.testing.assert_array_equal(out[1], [True, False, False, True, False])


def test_cut_stream_example():
    args = (tf.constant([5]), tf.constant([True]), tf.constant([6, SEP, 7, SEP]), tf.constant([False, False, True, False]))
    for flush in (False, True):
        eager = numpy_tree(packing.cut_stream(*args, chunk=3, flush=flush))
        graph = in_dataset(lambda *a: packing.cut_stream(*a, chunk=3, flush=flush), *args)
        tf.nest.map_structure(np.testing.assert_array_equal, eager, graph)
        (carry, carry_starts), (ids, starts, lengths) = eager
        if flush:
            assert carry.size == 0 and carry_starts.size == 0
            np.testing.assert_array_equal(ids, [[5, 6, SEP], [7, SEP, 0]])
            np.testing.assert_array_equal(lengths, [3, 2])
            np.testing.assert_array_equal(starts, [[True, False, False], [True, False, False]])
        else:
            np.testing.assert_array_equal(carry, [7, SEP])
            np.testing.assert_array_equal(carry_starts, [True, False])
            np.testing.assert_array_equal(ids, [[5, 6, SEP]])
            np.testing.assert_array_equal(lengths, [3])


def test_packed_rows_example():
    args = (tf.constant([[5, 6, SEP, 7, 0]]), tf.constant([[True, False, False, True, False]]), tf.constant([4]))
    eager = numpy_tree(packing.packed_rows(*args, max_seq_len=7, cls_id=CLS, sep_id=SEP))
    graph = in_dataset(lambda *a: packing.packed_rows(*a, max_seq_len=7, cls_id=CLS, sep_id=SEP), *args)
    tf.nest.map_structure(np.testing.assert_array_equal, eager, graph)
    np.testing.assert_array_equal(eager["input_ids"], [[CLS, 5, 6, SEP, 7, SEP, 0]])
    np.testing.assert_array_equal(eager["segment_ids"], [[1, 1, 1, 1, 2, 2, 0]])
    np.testing.assert_array_equal(eager["token_type_ids"], np.zeros([1, 7]))
    np.testing.assert_array_equal(eager["nsp_label"], [0])


def test_pack_dataset_keeps_every_token_once():
    rng = np.random.default_rng(0)
    max_seq_len = 16
    # Documents of unique ids (some empty, some longer than a row), in groups as the pipeline tokenizes them.
    docs, next_id = [], 1000
    for _ in range(57):
        n = int(rng.choice([0, 1, 3, 9, 30]))
        docs.append(list(range(next_id, next_id + n)))
        next_id += n
    groups = [docs[i : i + 8] for i in range(0, len(docs), 8)]
    streams = tf.data.Dataset.from_generator(
        lambda: (tf.ragged.constant(g, dtype=tf.int32, ragged_rank=1) for g in groups),
        output_signature=tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1),
    ).map(lambda g: packing.document_stream(g, sep_id=SEP))
    row_groups = packing.pack_dataset(streams, max_seq_len=max_seq_len, cls_id=CLS, sep_id=SEP, finite=True)
    rows = list(row_groups.unbatch())
    content, segments = [], []
    for row in rows:
        ids, seg = row["input_ids"].numpy(), row["segment_ids"].numpy()
        n = int((seg > 0).sum())
        assert ids[0] == CLS and ids[n - 1] == SEP and np.all(ids[n:] == 0) and np.all(seg[n:] == 0)
        assert n == max_seq_len or row is rows[-1]  # only the flushed last row is short
        content.extend(ids[1 : n - 1])
        segments.append(seg[:n])
    expected = [t for d in docs if d for t in d + [SEP]]
    assert content == expected
    # Segment ids start at 1 and go up by one exactly where a new document starts inside the row.
    for seg in segments:
        assert seg[0] == 1 and np.all(np.diff(seg) >= 0) and np.all(np.diff(seg) <= 1)
    first_ids = {d[0] for d in docs if d}
    for row in rows:
        ids, seg = row["input_ids"].numpy(), row["segment_ids"].numpy()
        for k in range(2, int((seg > 0).sum()) - 1):
            assert (seg[k] == seg[k - 1] + 1) == (ids[k] in first_ids)

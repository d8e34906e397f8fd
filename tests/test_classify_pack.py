"""`data.host_finetuning.pack` (the host packing of `sslm predict`, `serve` and `eval` of files) lays ids out as
the in-graph `data.finetuning.pack_inputs` of fine-tuning does: single texts and pairs, every truncation case."""

import numpy as np
import pytest
import tensorflow as tf

from sslm_jax.data import finetuning
from sslm_jax.data.host_finetuning import pack

SPECIAL = dict(cls_id=101, sep_id=102, pad_id=0)


def _rows(rng, count, longest):
    return [list(rng.integers(1000, 2000, rng.integers(0, longest + 1))) for _ in range(count)]


@pytest.mark.parametrize("max_seq_len", [5, 8, 16])
@pytest.mark.parametrize("pair", [False, True])
def test_host_packing_equals_the_in_graph_one(max_seq_len, pair):
    rng = np.random.default_rng(max_seq_len + pair)
    a = _rows(rng, 300, 2 * max_seq_len)  # empty rows, rows that fit, rows cut short, ties
    b = _rows(rng, 300, 2 * max_seq_len) if pair else None
    want = finetuning.pack_inputs(
        tf.ragged.constant(a, tf.int32, ragged_rank=1, row_splits_dtype=tf.int64),
        tf.ragged.constant(b, tf.int32, ragged_rank=1, row_splits_dtype=tf.int64) if pair else None,
        max_seq_len=max_seq_len, **SPECIAL,
    )  # fmt: skip
    got = pack(a, b, max_seq_len=max_seq_len, **SPECIAL)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value.numpy(), err_msg=key)


def test_worked_example():
    got = pack([[7, 8, 9]], [[5, 6, 4, 3]], max_seq_len=8, **SPECIAL)  # pack_inputs' docstring example
    assert got["input_ids"].tolist() == [[101, 7, 8, 102, 5, 6, 4, 102]]
    assert got["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]]
    assert pack([[7, 8, 9]], max_seq_len=8, **SPECIAL)["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0, 0, 0]]

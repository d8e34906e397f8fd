"""Causal-LM rows and the next-token objective: every token once in eval, documents kept apart, exact resume,
and exact sums against a numpy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from configs import base
from sslm_jax.data import causal_lm
from sslm_jax.data.pretraining import PipelineIterator
from sslm_jax.data.tokenizer import BERT_RESERVED_TOKENS, WordPieceTokenizer
from sslm_jax.errors import ConfigError
from sslm_jax.objectives.causal_lm import make_causal_lm_loss, next_token_loss_and_metrics

N_TOKENS = 2000
OFFSET = len(BERT_RESERVED_TOKENS)  # word t<k> has id k + OFFSET


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer(list(BERT_RESERVED_TOKENS) + [f"t{i}" for i in range(N_TOKENS)])


def corpus(num_docs=40, seed=0):
    rng = np.random.default_rng(seed)
    docs, k = [], 0
    for _ in range(num_docs):
        n = int(rng.integers(1, 30))
        docs.append(" ".join(f"t{k + i}" for i in range(n)))
        k += n
    return docs


def build(docs, tokenizer, *, train, seed=0, rows=4, max_seq_len=16):
    return causal_lm.causal_lm_dataset(
        tf.data.Dataset.from_tensor_slices(docs), tokenizer, max_seq_len=max_seq_len, train=train,
        per_host_batch=rows, seed=seed, shuffle_buffer=20,
    )  # fmt: skip


def test_causal_rows_worked_example():
    out = causal_lm.causal_rows(
        tf.constant([[7, 8, 50, 9, 50, 0], [5, 50, 6, 6, 6, 6]]),
        tf.constant([[False, False, False, True, False, False], [True, False, True, False, False, False]]),
        tf.constant([5, 6]),
    )
    assert out["segment_ids"].numpy().tolist() == [[1, 1, 1, 2, 2, 0], [1, 1, 2, 2, 2, 2]]
    assert out["position_ids"].numpy().tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 0, 1, 2, 3]]
    assert out["input_ids"].numpy().tolist() == [[7, 8, 50, 9, 50, 0], [5, 50, 6, 6, 6, 6]]


def test_eval_sees_every_token_once_in_order_with_end_of_text(tokenizer):
    docs = corpus()
    batches = list(PipelineIterator(build(docs, tokenizer, train=False)))
    ids = np.concatenate([b["input_ids"] for b in batches])
    mask = np.concatenate([b["attention_mask"] for b in batches]).astype(bool)
    expected = []
    for doc in docs:
        expected += [int(w[1:]) + OFFSET for w in doc.split()] + [tokenizer.eot_id]
    assert ids[mask].tolist() == expected
    weights = np.concatenate([b["loss_weights"] for b in batches])
    np.testing.assert_array_equal(weights, mask.astype(np.float32))
    for b in batches:
        assert set(b) == set(causal_lm.BATCH_SPEC)
        for key, (dtype, _) in causal_lm.BATCH_SPEC.items():
            assert b[key].dtype == dtype and b[key].shape[:1] == (4,)


def test_positions_restart_at_each_document(tokenizer):
    for b in PipelineIterator(build(corpus(), tokenizer, train=False)):
        for ids, seg, pos in zip(b["input_ids"], b["segment_ids"], b["position_ids"]):
            for s in set(seg.tolist()) - {0}:
                where = np.flatnonzero(seg == s)
                assert np.all(np.diff(where) == 1)  # a document is contiguous in its row
                first = where[0]
                # A document that starts inside the row starts at position 0; one continuing from the row before
                # (segment 1 at index 0) may start anywhere, but counts up by one.
                if first > 0:
                    assert pos[first] == 0 and ids[first - 1] == tokenizer.eot_id
                assert np.all(np.diff(pos[where]) == 1)


def test_training_batches_are_full_deterministic_and_resume_exactly(tokenizer, tmp_path):
    docs = corpus()
    first = PipelineIterator(build(docs, tokenizer, train=True, seed=3))
    a = [next(first) for _ in range(10)]
    b = [next(PipelineIterator(build(docs, tokenizer, train=True, seed=3))) for _ in range(1)]
    np.testing.assert_array_equal(a[0]["input_ids"], b[0]["input_ids"])
    assert all(x["attention_mask"].all() for x in a)  # an endless stream leaves no padding

    it = PipelineIterator(build(docs, tokenizer, train=True, seed=3))
    for _ in range(4):
        next(it)
    it.save(tmp_path)
    resumed = PipelineIterator(build(docs, tokenizer, train=True, seed=3))
    resumed.restore(tmp_path)
    for expected in a[4:]:
        got = next(resumed)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key])


def test_validate_settings():
    c = base.get_config().data
    c.max_seq_len = 2
    with pytest.raises(ConfigError, match="max_seq_len=2 must be between"):
        causal_lm.validate_settings(c, max_position_embeddings=64)
    c.max_seq_len = 128
    with pytest.raises(ConfigError, match="max_position_embeddings=64"):
        causal_lm.validate_settings(c, max_position_embeddings=64)


def test_next_token_sums_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 7, 11)).astype(np.float32)
    ids = rng.integers(0, 11, (3, 7)).astype(np.int32)
    weights = (rng.random((3, 7)) > 0.3).astype(np.float32)
    sums = next_token_loss_and_metrics(jnp.asarray(logits), jnp.asarray(ids), jnp.asarray(weights))
    logp = logits[:, :-1] - np.log(np.exp(logits[:, :-1]).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, ids[:, 1:, None], -1)[..., 0]
    w = weights[:, 1:]
    np.testing.assert_allclose(float(sums["lm_loss_sum"]), (nll * w).sum(), rtol=1e-5)
    np.testing.assert_allclose(float(sums["lm_correct"]), ((logits[:, :-1].argmax(-1) == ids[:, 1:]) * w).sum())
    assert float(sums["lm_weight"]) == w.sum()


def test_pieces_of_a_batch_add_up_to_the_whole():
    """With the whole batch's denominators, the losses (and so gradients) of two halves sum to the whole's."""

    import flax.linen as nn

    class TinyLM(nn.Module):
        @nn.compact
        def __call__(self, ids, attention_mask=None, position_ids=None, segment_ids=None, deterministic=True):
            logits = nn.Embed(13, 13)(ids)
            return type("Out", (), {"logits": logits})()

    model = TinyLM()
    params = model.init(jax.random.key(0), jnp.zeros((1, 5), jnp.int32))["params"]
    rng = np.random.default_rng(1)
    batch = {
        "input_ids": rng.integers(0, 13, (4, 6)).astype(np.int32),
        "attention_mask": np.ones((4, 6), np.int32),
        "position_ids": np.tile(np.arange(6, dtype=np.int32), (4, 1)),
        "segment_ids": np.ones((4, 6), np.int32),
        "loss_weights": (rng.random((4, 6)) > 0.2).astype(np.float32),
    }
    loss_fn = make_causal_lm_loss(model, segment_attention=False)
    whole, _ = loss_fn(params, batch, deterministic=True)
    den = loss_fn.denominators(batch)
    halves = [loss_fn(params, {k: v[i::2] for k, v in batch.items()}, deterministic=True, denominators=den)[0]
              for i in (0, 1)]  # fmt: skip
    np.testing.assert_allclose(float(sum(halves)), float(whole), rtol=1e-6)
    out = loss_fn.finalize(loss_fn(params, batch, deterministic=True)[1])
    assert set(out) == {"loss", "lm_loss", "perplexity", "next_token_accuracy"}

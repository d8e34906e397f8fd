"""The pretraining pipeline: batch contract, validation, eval exactness, re-masking, determinism and exact resume."""

import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from configs import base
from sslm_jax.data import pretraining
from sslm_jax.data.tokenizer import BERT_RESERVED_TOKENS, WordPieceTokenizer
from sslm_jax.errors import CheckpointError, ConfigError

N_TOKENS = 3000  # vocabulary words "t0".."t2999": every corpus token is unique, so a row tells where it came from


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer(list(BERT_RESERVED_TOKENS) + [f"t{i}" for i in range(N_TOKENS)] + ["##s"])


def corpus(num_docs=60, seed=0):
    """Documents of 1-5 lines ("sentences") of unique words t<k>, whose token id is k + 104."""
    rng = np.random.default_rng(seed)
    docs, k = [], 0
    for _ in range(num_docs):
        lines = []
        for _ in range(int(rng.integers(1, 6))):
            n = int(rng.integers(1, 12))
            lines.append(" ".join(f"t{k + i}" for i in range(n)))
            k += n
        docs.append("\n".join(lines))
    assert k <= N_TOKENS
    return docs


def settings(**overrides):
    c = base.get_config().data
    c.max_seq_len, c.max_predictions_per_seq, c.shuffle_buffer = 32, 5, 50
    c.update(overrides)
    return c


def build(docs, tokenizer, *, train, seed=0, per_host_batch=4, **overrides):
    c = settings(**overrides)
    pretraining.validate_settings(c, max_position_embeddings=512)
    return pretraining.pretraining_dataset(
        tf.data.Dataset.from_tensor_slices(docs),
        tokenizer,
        objective=c.objective,
        max_seq_len=c.max_seq_len,
        max_predictions_per_seq=c.max_predictions_per_seq,
        mask_rate=c.mask_rate,
        masking=c.masking,
        short_seq_prob=c.short_seq_prob,
        train=train,
        per_host_batch=per_host_batch,
        seed=seed,
        shuffle_buffer=c.shuffle_buffer,
    )


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def unmasked(batch):
    """The rows' original ids (masked positions restored from the labels)."""
    ids = batch["input_ids"].copy()
    for r in range(ids.shape[0]):
        w = batch["masked_weights"][r] > 0
        ids[r, batch["masked_positions"][r][w]] = batch["masked_ids"][r][w]
    return ids


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


# --- settings -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(max_seq_len=4), "max_seq_len=4 is below 8"),
        (dict(max_seq_len=1024), "exceeds the model's max_position_embeddings=512"),
        (dict(max_predictions_per_seq=0), "max_predictions_per_seq=0"),
        (dict(mask_rate=0.0), "mask_rate=0.0"),
        (dict(mask_rate=1.0), "mask_rate=1.0"),
        (dict(objective="electra"), "objective='electra' is unknown"),
        (dict(short_seq_prob=1.5), "short_seq_prob=1.5"),
    ],
)
def test_bad_settings_are_one_line_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as e:
        pretraining.validate_settings(settings(**overrides), max_position_embeddings=512)
    assert "\n" not in str(e.value) and "config.data." in str(e.value)


def test_create_dataset_validates_before_reading(tokenizer):
    c = settings(source="files", train_files="/nonexistent/*.txt", mask_rate=2.0)
    with pytest.raises(ConfigError, match="mask_rate"):
        pretraining.create_dataset(c, tokenizer, split="train", per_host_batch=4, seed=0, max_position_embeddings=512)
    with pytest.raises(ConfigError, match="per-host batch 0"):
        pretraining.create_dataset(
            settings(), tokenizer, split="train", per_host_batch=0, seed=0, max_position_embeddings=512
        )


# --- the pipeline's own ops ---------------------------------------------------------------------------------


def test_tokenize_sentences_eagerly_and_in_tf_data(tokenizer):
    docs = tf.constant(["t1 t2. T3 t4\nt5", "t6"])
    expected = [[[105, 106, 1], [107, 108], [109]], [[110]]]  # "." is not in this vocabulary: [UNK] = 100
    expected[0][0][2] = tokenizer.unk_id
    assert pretraining.tokenize_sentences(tokenizer, docs).to_list() == expected
    ds = tf.data.Dataset.from_tensors(docs).map(lambda d: pretraining.tokenize_sentences(tokenizer, d))
    assert next(iter(ds)).to_list() == expected


def test_finish_batch_eagerly_and_in_tf_data(tokenizer):
    masker = pretraining.masking.Masker.from_tokenizer(tokenizer, rate=0.15, max_predictions=3, masking="token")
    rows = {
        "input_ids": tf.constant([[101, 110, 111, 102, 0], [0, 0, 0, 0, 0]]),
        "token_type_ids": tf.zeros([2, 5], tf.int32),
        "segment_ids": tf.constant([[1, 1, 1, 1, 0], [0, 0, 0, 0, 0]]),
        "nsp_label": tf.zeros([2], tf.int32),
    }
    seed = tf.constant([0, 1], tf.int64)
    eager = {k: v.numpy() for k, v in pretraining.finish_batch(rows, masker=masker, seed=seed).items()}
    ds = tf.data.Dataset.from_tensors(rows).map(lambda r: pretraining.finish_batch(r, masker=masker, seed=seed))
    graph = {k: v.numpy() for k, v in next(iter(ds)).items()}
    assert eager.keys() == graph.keys() == pretraining.BATCH_SPEC.keys()
    for k in eager:
        np.testing.assert_array_equal(eager[k], graph[k])
    np.testing.assert_array_equal(eager["attention_mask"], [[1, 1, 1, 1, 0], [0] * 5])
    np.testing.assert_array_equal(eager["masked_weights"], [[1, 0, 0], [0, 0, 0]])  # max(1, round(0.3)) = 1
    assert eager["masked_positions"][0, 0] in (1, 2) and eager["masked_ids"][0, 0] in (110, 111)


# --- the batch contract -----------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["mlm", "nsp", "sop"])
def test_batches_follow_the_contract(tokenizer, objective):
    B, L, P = 4, 32, 5
    ds = build(corpus(), tokenizer, train=True, objective=objective, masking="word")
    for batch in take(pretraining.PipelineIterator(ds), 3):
        assert set(batch) == set(pretraining.BATCH_SPEC)
        dims = {"B": B, "L": L, "P": P}
        for key, (dtype, shape) in pretraining.BATCH_SPEC.items():
            assert batch[key].dtype == dtype, key
            assert batch[key].shape == tuple(dims[d] for d in shape.split()), key
        am, seg, types = batch["attention_mask"], batch["segment_ids"], batch["token_type_ids"]
        np.testing.assert_array_equal(am, seg > 0)
        ids = unmasked(batch)
        assert np.all(ids[:, 0] == tokenizer.cls_id) and np.all(ids[am == 0] == 0)
        if objective == "mlm":
            assert np.all(types == 0) and np.all(batch["nsp_label"] == 0)
            assert seg.max() > 1  # several documents share a row
        else:
            np.testing.assert_array_equal(seg, am)
            assert set(np.unique(types)) == {0, 1} and set(np.unique(batch["nsp_label"])) <= {0, 1}
        assert np.all(batch["masked_weights"].sum(1) >= 1)


# --- evaluation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["mlm", "sop"])
def test_eval_is_finite_fixed_and_padded(tokenizer, objective):
    docs = corpus(num_docs=23)
    ds = build(docs, tokenizer, train=False, objective=objective, per_host_batch=7)
    first, second = list(pretraining.PipelineIterator(ds)), list(pretraining.PipelineIterator(ds))
    assert_same_batches(first, second)  # a finite pass with the same masks every time
    real = np.concatenate([b["attention_mask"][:, 0] for b in first])
    n_real = int(real.sum())
    assert n_real % 7 != 0  # (this corpus leaves a partial last batch)
    assert len(real) == 7 * (n_real // 7 + 1) and np.all(real[:n_real] == 1)  # padding rows only at the end
    last = first[-1]
    padded = last["attention_mask"][:, 0] == 0
    assert np.all(last["masked_weights"][padded] == 0) and np.all(last["attention_mask"][padded] == 0)
    if objective == "mlm":  # every corpus token exactly once
        tokens = np.concatenate([unmasked(b)[b["attention_mask"] > 0] for b in first])
        words = np.sort(tokens[tokens >= 104])
        n_words = sum(len(d.split()) for d in docs)
        np.testing.assert_array_equal(words, np.arange(104, 104 + n_words))


# --- training: re-masking and determinism -------------------------------------------------------------------


def test_training_remasks_every_epoch(tokenizer):
    # Each document is exactly one row ([CLS] 29 tokens [SEP] [SEP]), so every epoch yields the same rows.
    docs = [" ".join(f"t{29 * d + i}" for i in range(29)) for d in range(8)]
    ds = build(docs, tokenizer, train=True, per_host_batch=4, shuffle_buffer=1)
    batches = take(pretraining.PipelineIterator(ds), 12)
    masks = {}
    for b in batches:
        for ids, positions in zip(unmasked(b), b["masked_positions"]):
            masks.setdefault(ids.tobytes(), []).append(tuple(positions))
    assert len(masks) == 8 and all(len(m) == 6 for m in masks.values())  # 6 epochs of 8 rows
    assert all(len(set(m)) >= 5 for m in masks.values())  # masks re-drawn in (nearly) every epoch


def test_same_seed_same_batches(tokenizer):
    docs = corpus()
    runs = [take(pretraining.PipelineIterator(build(docs, tokenizer, train=True, seed=s, objective="nsp")), 6) for s in (3, 3, 4)]
    assert_same_batches(runs[0], runs[1])
    assert not np.array_equal(runs[0][0]["input_ids"], runs[2][0]["input_ids"])


# --- exact resume ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["mlm", "nsp"])
def test_restored_iterator_continues_bit_identically(tokenizer, objective, tmp_path):
    docs = corpus()
    reference = pretraining.PipelineIterator(build(docs, tokenizer, train=True, objective=objective))
    take(reference, 7)
    reference.save(tmp_path)
    expected = take(reference, 30)  # crosses several epochs of this small corpus

    fresh = pretraining.PipelineIterator(build(docs, tokenizer, train=True, objective=objective))
    fresh.restore(tmp_path)
    assert_same_batches(take(fresh, 30), expected)


def test_span_masking_resumes_bit_identically(tokenizer, tmp_path):
    """masking="span" in the pipeline: whole "t<k>"/"##s" words in spans, and the same exact resume."""
    docs = [" ".join(f"t{i}" + ("s" if i % 5 == 0 else "") for i in range(k, k + 9)) for k in range(0, 540, 9)]
    reference = pretraining.PipelineIterator(build(docs, tokenizer, train=True, masking="span"))
    first = take(reference, 3)
    reference.save(tmp_path)
    expected = take(reference, 12)
    masked_pieces = 0
    for batch in first:
        assert np.all(batch["masked_weights"].sum(1) >= 1)
        ids, positions = unmasked(batch), batch["masked_positions"]
        for row, pos, weight in zip(ids, positions, batch["masked_weights"]):
            pos = pos[weight > 0]
            pieces = pos[row[pos] == tokenizer.vocab.index("##s")]
            assert np.all(np.isin(pieces - 1, pos))  # a "##s" is masked only with its word
            masked_pieces += len(pieces)
    assert masked_pieces > 0
    fresh = pretraining.PipelineIterator(build(docs, tokenizer, train=True, masking="span"))
    fresh.restore(tmp_path)
    assert_same_batches(take(fresh, 12), expected)


def test_restore_without_a_saved_position_is_a_checkpoint_error(tokenizer, tmp_path):
    it = pretraining.PipelineIterator(build(corpus(), tokenizer, train=True))
    with pytest.raises(CheckpointError, match="no saved data position"):
        it.restore(tmp_path)


@pytest.mark.slow
def test_restore_in_a_fresh_process(tokenizer, tmp_path):
    """Save after 5 batches here; a new Python process restores and writes the next 10, equal to ours."""
    docs = corpus()
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        sys.path.insert(0, {str(pathlib.Path(__file__).resolve().parent)!r})
        import test_pretraining as t
        tok = t.WordPieceTokenizer(list(t.BERT_RESERVED_TOKENS) + [f"t{{i}}" for i in range(t.N_TOKENS)] + ["##s"])
        it = t.pretraining.PipelineIterator(t.build(t.corpus(), tok, train=True, objective="sop"))
        it.restore({str(tmp_path)!r})
        np.savez({str(tmp_path / "next.npz")!r}, **{{f"{{i}}/{{k}}": v for i, b in enumerate(t.take(it, 10)) for k, v in b.items()}})
        """
    )
    it = pretraining.PipelineIterator(build(docs, tokenizer, train=True, objective="sop"))
    take(it, 5)
    it.save(tmp_path)
    expected = take(it, 10)
    repo = pathlib.Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(repo))
    with np.load(tmp_path / "next.npz") as saved:
        got = [{k: saved[f"{i}/{k}"] for k in expected[0]} for i in range(10)]
    assert_same_batches(got, expected)


def test_create_dataset_reads_the_configured_source(tokenizer, tmp_path):
    """create_dataset reads documents through sources.documents (blank-line separated files, here)."""
    path = tmp_path / "corpus.txt"
    docs = corpus()
    path.write_text("\n\n".join(docs) + "\n")
    c = settings(source="files", train_files=str(path), eval_files=str(path), format="text")
    ds = pretraining.create_dataset(c, tokenizer, split="eval", per_host_batch=4, seed=0, max_position_embeddings=512)
    batches = list(pretraining.PipelineIterator(ds))
    tokens = np.concatenate([unmasked(b)[b["attention_mask"] > 0] for b in batches])
    n_words = sum(len(d.split()) for d in docs)
    np.testing.assert_array_equal(np.sort(tokens[tokens >= 104]), np.arange(104, 104 + n_words))

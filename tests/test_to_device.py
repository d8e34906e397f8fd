"""Per-host numpy batches -> global sharded jax.Arrays on 8 fake CPU devices; device prefetch with exact resume."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sslm_jax.data import to_device
from sslm_jax.errors import CheckpointError


def host_batch(i, rows=16, length=8):
    rng = np.random.default_rng(i)
    return {
        "input_ids": rng.integers(0, 1000, size=[rows, length]).astype(np.int32),
        "masked_weights": rng.random([rows, 3]).astype(np.float32),
        "nsp_label": rng.integers(0, 2, size=[rows]).astype(np.int32),
    }


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
    return Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "fsdp"))


@pytest.mark.parametrize("spec", [P("data"), P(("data", "fsdp"))])
def test_global_batch_is_sharded_over_the_batch_axis(mesh, spec):
    sharding = NamedSharding(mesh, spec)
    batch = host_batch(0)
    out = to_device.global_batch(batch, sharding)
    assert out.keys() == batch.keys()
    rows_per_shard = 16 // (4 if spec == P("data") else 8)
    for key, value in out.items():
        assert isinstance(value, jax.Array) and value.sharding == sharding
        assert value.shape == batch[key].shape and value.dtype == batch[key].dtype  # one process: local = global
        np.testing.assert_array_equal(np.asarray(value), batch[key])
        for shard in value.addressable_shards:
            assert shard.data.shape[0] == rows_per_shard
            np.testing.assert_array_equal(np.asarray(shard.data), batch[key][shard.index])


def test_prefetch_yields_the_same_batches_in_order(mesh):
    sharding = NamedSharding(mesh, P("data"))
    batches = [host_batch(i) for i in range(5)]
    out = list(to_device.prefetch_to_device(iter(batches), 2, sharding))
    assert len(out) == 5
    for got, want in zip(out, batches):
        assert got["input_ids"].sharding == sharding
        for key in want:
            np.testing.assert_array_equal(np.asarray(got[key]), want[key])


class SavableSource:
    """A stand-in for pretraining.PipelineIterator: batch i is host_batch(i); the position is saved as i."""

    def __init__(self):
        self.position = 0

    def __next__(self):
        self.position += 1
        return host_batch(self.position - 1)

    def save(self, directory):
        (directory / "position").write_text(str(self.position))

    def restore(self, directory):
        self.position = int((directory / "position").read_text())


def test_prefetcher_save_restore_resumes_at_the_next_unconsumed_batch(mesh, tmp_path):
    sharding = NamedSharding(mesh, P("data"))
    it = to_device.prefetch_to_device(SavableSource(), 3, sharding)
    for _ in range(4):
        next(it)  # the source is now ahead: batches 4..6 are in flight
    it.save(tmp_path)
    expected = [np.asarray(next(it)["input_ids"]) for _ in range(6)]
    np.testing.assert_array_equal(expected[0], host_batch(4)["input_ids"])

    fresh = to_device.prefetch_to_device(SavableSource(), 3, sharding)
    fresh.restore(tmp_path)
    got = [np.asarray(next(fresh)["input_ids"]) for _ in range(6)]
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_prefetcher_restore_without_saved_batches_is_a_checkpoint_error(mesh, tmp_path):
    it = to_device.prefetch_to_device(SavableSource(), 2, NamedSharding(mesh, P("data")))
    with pytest.raises(CheckpointError, match="no saved in-flight batches"):
        it.restore(tmp_path)


def test_prefetcher_over_the_pretraining_pipeline_resumes_exactly(mesh, tmp_path):
    import tensorflow as tf

    from sslm_jax.data import pretraining
    from sslm_jax.data.tokenizer import BERT_RESERVED_TOKENS, WordPieceTokenizer

    tok = WordPieceTokenizer(list(BERT_RESERVED_TOKENS) + [f"t{i}" for i in range(400)])
    docs = [" ".join(f"t{(7 * d + i) % 400}" for i in range(3 + d % 11)) for d in range(40)]

    def pipeline():
        ds = pretraining.pretraining_dataset(
            tf.data.Dataset.from_tensor_slices(docs), tok, objective="mlm", max_seq_len=16, max_predictions_per_seq=3,
            mask_rate=0.15, whole_word_masking=False, short_seq_prob=0.1, train=True, per_host_batch=8, seed=1,
            shuffle_buffer=20,
        )  # fmt: skip
        return to_device.prefetch_to_device(pretraining.PipelineIterator(ds), 2, NamedSharding(mesh, P("data")))

    it = pipeline()
    for _ in range(3):
        next(it)
    it.save(tmp_path)
    expected = [jax.tree.map(np.asarray, next(it)) for _ in range(5)]
    fresh = pipeline()
    fresh.restore(tmp_path)
    for want in expected:
        got = next(fresh)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(np.asarray(got[key]), want[key], err_msg=key)

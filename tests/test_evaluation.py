"""`evaluate` with several hosts whose eval shares differ, down to a host with none (fewer eval documents than
hosts), and the loop's error for a host with no training data. The other hosts are simulated: `process_count` and
the all-gather of "done" flags are replaced, so one process plays host 1 of 2."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from sslm_jax.errors import DataError
from sslm_jax.training import evaluation, loop


class _Runner:
    def __init__(self):
        self.fed = []

    def params(self, state):
        return state

    def put(self, batch):
        return batch

    def evaluate(self, params, batch):
        self.fed.append(batch)
        return {"weight": float(batch["weights"].sum())}


class _Task:
    @staticmethod
    def summarize(outputs):
        return {"batches": len(outputs), "weight": sum(o["weight"] for o in outputs)}


def _batches(rows: int, per_host_batch: int = 4) -> tf.data.Dataset:
    """Eval batches as the pipelines make them: every batch padded to the per-host size (a static shape)."""
    data = {"ids": np.arange(rows * 3, dtype=np.int32).reshape(rows, 3), "weights": np.ones(rows, np.float32)}

    def pad(batch):
        missing = per_host_batch - tf.shape(batch["ids"])[0]
        return {
            "ids": tf.ensure_shape(tf.pad(batch["ids"], [[0, missing], [0, 0]]), [per_host_batch, 3]),
            "weights": tf.ensure_shape(tf.pad(batch["weights"], [[0, missing]]), [per_host_batch]),
        }

    return tf.data.Dataset.from_tensor_slices(data).batch(per_host_batch).map(pad)


def _as_host_of_two(monkeypatch, other_host_batches: int):
    """This process acts as one of two hosts; the other host has `other_host_batches` eval batches."""
    calls = []

    def allgather(done):
        calls.append(int(done))
        return np.array([int(done), int(len(calls) > other_host_batches)])

    monkeypatch.setattr(evaluation.jax, "process_count", lambda: 2)
    monkeypatch.setattr(evaluation.multihost_utils, "process_allgather", allgather)


@pytest.mark.parametrize("rows", [0, 5], ids=["no-eval-share", "fewer-batches"])
def test_a_host_that_runs_out_feeds_padding_until_every_host_is_done(monkeypatch, rows):
    """A host with no eval batch at all had no template to copy and fed None to the collective step."""
    _as_host_of_two(monkeypatch, other_host_batches=3)
    runner = _Runner()
    metrics = evaluation.evaluate(runner, None, _batches(rows), _Task(), max_batches=0)
    assert metrics == {"batches": 3, "weight": float(rows)}  # every real row counted once, padding weighs nothing
    assert all(b["ids"].shape == (4, 3) and b["ids"].dtype == np.int32 for b in runner.fed)
    assert not runner.fed[-1]["weights"].any()


def test_a_host_without_training_data_is_one_line():
    """The training split repeats forever: running out means this host's share is empty (it was a StopIteration)."""
    with pytest.raises(DataError, match=r"^process 0 of 1 has no training data: its share of the training split"):
        loop._next_batch(iter([]))

"""The service's pieces without a server: buckets, the dynamic batcher (order, sizes, waiting, errors) and the
per-row sampling filter against generate.py's."""

import asyncio
import concurrent.futures
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslm_jax.inference import batch_generate, generate
from sslm_jax.inference.batching import Batcher, RowError, bucket_for, size_buckets


def test_buckets():
    assert size_buckets(32) == (1, 2, 4, 8, 16, 32)
    assert size_buckets(24) == (1, 2, 4, 8, 16, 24)
    assert size_buckets(100, minimum=8) == (8, 16, 32, 64, 100)
    assert size_buckets(4, minimum=8) == (4,)
    assert bucket_for(5, (1, 2, 4, 8)) == 8 and bucket_for(1, (1, 2)) == 1
    with pytest.raises(ValueError, match="exceeds the largest bucket 8"):
        bucket_for(9, (1, 2, 4, 8))


def _batch_run(rows, *, max_batch=4, max_wait_s=0.05, run=None, spread=0.0):
    """Submits each list of `rows` as one request (staggered by `spread` s); returns (answers, batch sizes seen)."""
    sizes = []

    def default_run(batch):
        time.sleep(0.01)
        return [RowError(f"bad {r}") if r < 0 else r * 10 for r in batch]

    async def main():
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            batcher = Batcher(run or default_run, max_batch=max_batch, max_wait_s=max_wait_s, executor=pool,
                              on_batch=sizes.append)  # fmt: skip
            batcher.start()

            async def request(i, r):
                await asyncio.sleep(i * spread)
                return await batcher.submit(r)

            answers = await asyncio.gather(*(request(i, r) for i, r in enumerate(rows)), return_exceptions=True)
            await batcher.stop()
            return answers

    return asyncio.run(main()), sizes


def test_requests_share_batches_and_keep_their_order():
    requests = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10, 11]]
    answers, sizes = _batch_run(requests)
    assert answers == [[10, 20, 30], [40], [50, 60], [70, 80, 90, 100, 110]]
    assert sizes == [4, 4, 3]  # 11 rows, at most 4 per batch, a request split across batches


def test_a_lone_row_waits_at_most_max_wait():
    start = time.monotonic()
    answers, sizes = _batch_run([[1]], max_wait_s=0.2)
    assert answers == [[10]] and sizes == [1] and 0.2 <= time.monotonic() - start < 2


def test_max_wait_zero_runs_at_once_and_batch_one_is_batching_off():
    answers, sizes = _batch_run([[1], [2], [3]], max_batch=1, max_wait_s=0.0)
    assert answers == [[10], [20], [30]] and sizes == [1, 1, 1]


def test_row_errors_stay_with_their_row_and_a_crash_fails_its_batch_only():
    answers, _ = _batch_run([[1, -2], [3]])
    assert answers[0][0] == 10 and isinstance(answers[0][1], RowError) and answers[1] == [30]

    def crash_on_first(batch, calls=[]):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("device error")
        return [r * 10 for r in batch]

    answers, sizes = _batch_run([[1], [2]], max_batch=1, max_wait_s=0.0, run=crash_on_first)
    assert isinstance(answers[0], ValueError) and answers[1] == [20]


def test_filter_rows_equals_filter_logits_row_by_row():
    logits = jax.random.normal(jax.random.key(0), (6, 50)) * 3
    settings = [(0, 1.0), (5, 1.0), (0, 0.5), (10, 0.8), (1, 0.3), (0, 1e-45)]
    got = batch_generate.filter_rows(
        logits, jnp.array([k for k, _ in settings], jnp.int32), jnp.array([p for _, p in settings], jnp.float32)
    )
    for row, (k, p) in enumerate(settings):
        want = generate.filter_logits(logits[row], top_k=k, top_p=p)
        np.testing.assert_array_equal(np.isfinite(got[row]), np.isfinite(want), err_msg=f"top_k={k} top_p={p}")
    # A top_p below float32's smallest normal still keeps the best token (it once kept nothing: all -inf).
    assert np.flatnonzero(np.isfinite(got[5])).tolist() == [int(np.argmax(logits[5]))]


def test_sample_rows_is_greedy_at_temperature_zero_and_keyed_per_row():
    logits = jax.random.normal(jax.random.key(1), (3, 40))
    keys = jax.vmap(jax.random.key)(jnp.array([7, 7, 8], jnp.uint32))
    settings = batch_generate.RowSettings(
        seeds=None, max_new_tokens=None, temperature=jnp.array([0.0, 1.0, 1.0]), top_k=jnp.zeros(3, jnp.int32),
        top_p=jnp.ones(3),
    )  # fmt: skip
    tokens = batch_generate.sample_rows(logits, keys, settings)
    assert int(tokens[0]) == int(jnp.argmax(logits[0]))
    alone = batch_generate.sample_rows(logits[1:2], keys[1:2], jax.tree.map(lambda x: None if x is None else x[1:2], settings))
    assert int(alone[0]) == int(tokens[1])  # a row's sample does not depend on the other rows

"""Dynamic batching for `sslm serve`: rows of concurrent requests share one forward pass of fixed shape.

    batcher = Batcher(runner.run, max_batch=32, max_wait_s=0.005, executor=one_thread)
    batcher.start()                            # inside the event loop
    results = await batcher.submit(rows)       # one result or RowError per row, in the order given

Why: on CPUs and accelerators alike a forward pass over 32 rows costs little more than over one (the weights are
read once), so under load gathering rows multiplies throughput. A first row waits at most `max_wait_s` for company;
while one batch runs, the next one fills. One executor thread runs every batch, so the event loop stays free for
/healthz and /metrics and device work is never interleaved.

Shapes: a runner pads each batch to a bucket of batch sizes (`size_buckets(max_batch)`) and of lengths
(`size_buckets(max_len, minimum=8)`), and compiles every pair at warm-up, so no request ever compiles.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
from typing import Any, Callable, Sequence


class RowError(Exception):
    """One row the model cannot process (too long, no [MASK], ...): its request answers 422; the other rows of the
    batch are unaffected."""


def size_buckets(limit: int, *, minimum: int = 1) -> tuple[int, ...]:
    """Powers of two from `minimum` below `limit`, then `limit` itself.

    Example: size_buckets(32) -> (1, 2, 4, 8, 16, 32); size_buckets(100, minimum=8) -> (8, 16, 32, 64, 100).
    """
    if limit < 1 or minimum < 1:
        raise ValueError(f"bucket limit {limit} and minimum {minimum} must be at least 1")
    buckets, size = [], minimum
    while size < limit:
        buckets.append(size)
        size *= 2
    return tuple(buckets) + (limit,)


def bucket_for(size: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= `size`. Example: bucket_for(5, (1, 2, 4, 8)) -> 8."""
    for bucket in buckets:
        if bucket >= size:
            return bucket
    raise ValueError(f"{size} exceeds the largest bucket {buckets[-1]}")


@dataclasses.dataclass
class _Pending:
    row: Any
    future: asyncio.Future


class Batcher:
    """Gathers rows of concurrent `submit` calls into batches of at most `max_batch` rows for `run`.

    Args:
      run: rows -> one result (or RowError) per row; runs on `executor`. An exception it raises fails every
        request of that batch (a bug or a device error, not bad input).
      max_batch: rows per call of `run`.
      max_wait_s: how long the first row of a batch waits for more; 0 runs whatever is queued at once.
      executor: where `run` runs (one thread: batches never overlap).
      on_batch: called with the size of each batch (a metric); on_depth: with the rows waiting (a gauge).
    """

    def __init__(
        self,
        run: Callable[[Sequence[Any]], list],
        *,
        max_batch: int,
        max_wait_s: float,
        executor: concurrent.futures.Executor,
        on_batch: Callable[[int], None] = lambda size: None,
        on_depth: Callable[[int], None] = lambda depth: None,
    ):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch={max_batch} must be >= 1 and max_wait_s={max_wait_s} >= 0")
        self._run, self.max_batch, self.max_wait_s, self._executor = run, max_batch, max_wait_s, executor
        self._on_batch, self._on_depth = on_batch, on_depth
        self._rows: collections.deque[_Pending] = collections.deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Cancels the loop; rows still queued fail (the server drains requests before it stops batchers)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for pending in self._rows:
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the server stopped before this row ran"))

    async def submit(self, rows: Sequence[Any]) -> list:
        """One result per row, in order; a RowError stands in for a row that failed."""
        loop = asyncio.get_running_loop()
        pending = [_Pending(row, loop.create_future()) for row in rows]
        self._rows.extend(pending)
        self._on_depth(len(self._rows))
        self._arrived.set()
        return list(await asyncio.gather(*(p.future for p in pending)))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._rows:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.max_wait_s
            while len(self._rows) < self.max_batch and (remaining := deadline - loop.time()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:  # TimeoutError from 3.11 on
                    break
            batch = [self._rows.popleft() for _ in range(min(self.max_batch, len(self._rows)))]
            self._on_depth(len(self._rows))
            self._on_batch(len(batch))
            try:
                results = await loop.run_in_executor(self._executor, self._run, [p.row for p in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"the runner returned {len(results)} results for {len(batch)} rows")
            except Exception as e:  # noqa: BLE001 - handed to every waiting request, which answers 500
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(e)
                continue
            for p, result in zip(batch, results):
                if not p.future.done():  # a request whose client went away was cancelled
                    p.future.set_result(result)

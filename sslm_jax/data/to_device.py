"""Per-host numpy batches -> global, sharded `jax.Array`s, and a device prefetcher that keeps resume exact.

    sharding = NamedSharding(mesh, P("data"))           # batch axis over the data-parallel mesh axis
    batches = prefetch_to_device(PipelineIterator(ds), size=2, sharding=sharding)
    for batch in batches: state, metrics = train_step(state, batch)
    batches.save(workdir / "data")                       # the position of the *next* batch the step will see

Each host passes only its own rows (per_host_batch = global batch / process_count);
`jax.make_array_from_process_local_data` stitches them into one array of the global batch, host i's rows
forming the i-th slice of the batch axis.
"""

from __future__ import annotations

import collections
import io
import os
from collections.abc import Iterator, Mapping

import jax
import numpy as np
import tensorflow as tf

from sslm_jax.data import tf_setup
from sslm_jax.errors import CheckpointError

tf_setup.hide_accelerators_from_tf()  # tf is only used for tf.io.gfile here, but must never touch accelerators


def global_batch(batch: Mapping[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
    """This host's numpy batch -> dict of global jax.Arrays laid out by `sharding` (leading axis = batch).

    Example, 1 host, 8 devices, sharding NamedSharding(Mesh(devices, ("data",)), P("data")):
    {"input_ids": int32 [32, 128], "nsp_label": int32 [32]} -> jax.Arrays of the same shapes, 4 rows per device.
    With 4 hosts of 8 devices each, every host passes its 8 rows and gets [32, 128] global arrays.
    """
    return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value)) for key, value in batch.items()}


def prefetch_to_device(
    iterator: Iterator[Mapping[str, np.ndarray]], size: int, sharding: jax.sharding.Sharding
) -> DevicePrefetcher:
    """`DevicePrefetcher(iterator, size=size, sharding=sharding)`: global batches, `size` of them in flight."""
    return DevicePrefetcher(iterator, size=size, sharding=sharding)


class DevicePrefetcher(Iterator):
    """Iterator of global batches that keeps `size` batches in flight on the devices ahead of the consumer.

    Transfers are asynchronous, so the next batches copy to the devices while the current step runs.
    If the wrapped iterator can `save`/`restore` (a `pretraining.PipelineIterator`), so can this one, exactly:
    the batches already pulled from the pipeline but not yet consumed are saved with its position (as .npz),
    and come first again after `restore`.
    """

    def __init__(self, iterator: Iterator[Mapping[str, np.ndarray]], *, size: int, sharding: jax.sharding.Sharding):
        if size < 1:
            raise ValueError(f"prefetch size must be at least 1, got {size}")
        self._source = iterator
        self._size = size
        self._sharding = sharding
        self._replay: collections.deque = collections.deque()  # host batches to serve before the source's next
        self._queue: collections.deque = collections.deque()  # (host batch, device batch) in flight
        self._process_index = jax.process_index()

    def _pull(self) -> bool:
        try:
            host = self._replay.popleft() if self._replay else next(self._source)
        except StopIteration:
            return False
        self._queue.append((host, global_batch(host, self._sharding)))
        return True

    def __next__(self) -> dict[str, jax.Array]:
        while len(self._queue) < self._size and self._pull():
            pass
        if not self._queue:
            raise StopIteration
        return self._queue.popleft()[1]

    def _pending_path(self, directory) -> str:
        return os.path.join(os.fspath(directory), f"data_pending_process{self._process_index}.npz")

    def save(self, directory) -> None:
        """Saves the source's position and the batches in flight, so `restore` resumes at the next batch."""
        self._source.save(directory)
        pending = [host for host, _ in self._queue] + list(self._replay)
        buffer = io.BytesIO()
        np.savez(buffer, **{f"{i}/{key}": value for i, batch in enumerate(pending) for key, value in batch.items()})
        # tf.io.gfile: the directory may be on a bucket (gs://...), like the pipeline's position.
        with tf.io.gfile.GFile(self._pending_path(directory), "wb") as f:
            f.write(buffer.getvalue())

    def restore(self, directory) -> None:
        """Restores the source's position and the saved in-flight batches (dropping any now in flight)."""
        path = self._pending_path(directory)
        if not tf.io.gfile.exists(path):
            raise CheckpointError(f"no saved in-flight batches {path}; was the data position saved by this process?")
        self._source.restore(directory)
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
        with np.load(io.BytesIO(data)) as saved:
            batches: dict[int, dict[str, np.ndarray]] = {}
            for name in saved.files:
                index, key = name.split("/", 1)
                batches.setdefault(int(index), {})[key] = saved[name]
        self._queue.clear()
        self._replay = collections.deque(batches[i] for i in sorted(batches))

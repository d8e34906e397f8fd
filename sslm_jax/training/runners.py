"""How compiled steps meet the devices: sharded `jit` on a (data, fsdp, tensor) mesh, or `pmap`.

    runner = build_runner(config, task, tx, schedule)      # config.parallelism: "jit" | "pmap"
    state = runner.from_host_state(runner.init())
    state, metrics = runner.train(state, runner.put(numpy_batch), rng)
    sums = runner.evaluate(runner.params(state), runner.put(eval_batch))

Both runners offer the same methods, so the loop never asks which one it has.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from sslm_jax.errors import ConfigError
from sslm_jax.tasks.base import PER_EXAMPLE
from sslm_jax.training import partitioning
from sslm_jax.training.state import TrainState
from sslm_jax.training.step import make_train_step


@dataclasses.dataclass
class JitRunner:
    """State and batches as global jax.Arrays sharded over the (data, fsdp, tensor) mesh."""

    mesh: Any
    train: Any
    evaluate: Any
    abstract_state: Any
    init: Any
    batch_sharding: Any

    @classmethod
    def build(cls, config, task, tx, schedule) -> "JitRunner":
        mesh = partitioning.create_mesh(config.mesh_shape)
        partitioning.validate_batch_size(
            config.batch_size, partitioning.data_parallel_size(mesh), grad_accum_steps=config.grad_accum_steps
        )
        abstract = partitioning.abstract_train_state(task.model, tx, mesh, seq_len=task.seq_len)
        shardings = jax.tree.map(lambda a: a.sharding, abstract)
        batch_sharding = partitioning.batch_sharding(mesh)
        step = make_train_step(tx, task.loss_fn, schedule=schedule, grad_accum_steps=config.grad_accum_steps)
        init_rng = jax.random.key(config.seed)
        return cls(
            mesh=mesh,
            train=partitioning.jit_train_step(step, shardings, batch_sharding, mesh),
            evaluate=partitioning.jit_eval_step(task.eval_step, shardings.params, batch_sharding, mesh),
            abstract_state=abstract,
            init=lambda: partitioning.create_train_state(task.model, tx, init_rng, mesh, seq_len=task.seq_len)[0],
            batch_sharding=batch_sharding,
        )

    def put(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        # Each host passes its own rows; together they form the global batch (no host-to-host transfer).
        return {k: jax.make_array_from_process_local_data(self.batch_sharding, v) for k, v in batch.items()}

    def to_host_state(self, state: TrainState) -> TrainState:
        return state

    def from_host_state(self, state: TrainState) -> TrainState:
        return state

    def metrics(self, metrics):
        return metrics

    def params(self, state):
        return state.params

    def describe(self) -> str:
        return f"jit on mesh {dict(self.mesh.shape)}"


@dataclasses.dataclass
class PmapRunner:
    """Data parallelism with `jax.pmap`: the state replicated on every local device, gradients psum'ed."""

    train: Any
    evaluate: Any
    abstract_state: Any
    init: Any

    @classmethod
    def build(cls, config, task, tx, schedule) -> "PmapRunner":
        if jax.process_count() > 1:
            raise ConfigError("config.parallelism='pmap' runs in one process; use 'jit' on several hosts")
        n = jax.local_device_count()
        partitioning.validate_batch_size(config.batch_size, n, grad_accum_steps=config.grad_accum_steps)
        axis = partitioning.PMAP_AXIS
        step = make_train_step(
            tx, task.loss_fn, schedule=schedule, grad_accum_steps=config.grad_accum_steps, axis_name=axis
        )
        # The checkpointed state lives on one device; pmap gets a replicated copy.
        mesh = partitioning.create_mesh((1, 1, 1), devices=jax.local_devices()[:1])
        abstract = partitioning.abstract_train_state(task.model, tx, mesh, seq_len=task.seq_len)
        init_rng = jax.random.key(config.seed)

        def evaluate(params, batch):
            return partitioning.unreplicate(p_eval(params, batch))

        p_eval = partitioning.pmap_eval_step(psum_outputs(task.eval_step, axis), axis_name=axis)
        p_train = partitioning.pmap_train_step(step, axis_name=axis)

        def train(state, batch, rng):
            # Every device folds in its own axis index inside the step, so one replicated key serves all.
            return p_train(state, batch, partitioning.replicate(rng))

        return cls(
            train=train,
            evaluate=evaluate,
            abstract_state=abstract,
            init=lambda: partitioning.create_train_state(task.model, tx, init_rng, mesh, seq_len=task.seq_len)[0],
        )

    def put(self, batch):
        return partitioning.shard_batch(batch)

    def to_host_state(self, state):
        return partitioning.unreplicate(state)

    def from_host_state(self, state):
        return partitioning.replicate(state)

    def metrics(self, metrics):
        return partitioning.unreplicate(metrics)

    def params(self, state):
        return state.params

    def describe(self) -> str:
        return f"pmap over {jax.local_device_count()} devices"


def psum_outputs(eval_step, axis):
    """`eval_step` whose sums are added over the pmap `axis` and whose PER_EXAMPLE rows are gathered in order."""

    def step(params, batch):
        out = dict(eval_step(params, batch))
        rows = out.pop(PER_EXAMPLE, None)
        out = jax.lax.psum(out, axis)
        if rows is not None:
            # Each device holds a contiguous block of the batch: gathering in device order restores the row order.
            out[PER_EXAMPLE] = jax.lax.all_gather(rows, axis, tiled=True)
        return out

    return step


RUNNERS = {"jit": JitRunner, "pmap": PmapRunner}


def build_runner(config, task, tx, schedule):
    """The runner `config.parallelism` names, built for `task`."""
    return RUNNERS[config.parallelism].build(config, task, tx, schedule)

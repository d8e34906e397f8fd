"""`train_and_evaluate(config, workdir)`: the one training loop, for pretraining and fine-tuning alike.

    from sslm_jax.config_loading import load_config
    from sslm_jax.training.loop import train_and_evaluate
    final_eval = train_and_evaluate(load_config("configs/bert_demo.py:smoke"), "/tmp/demo")

What it does, in order: (multi-host) `jax.distributed.initialize` → validate the config → check the workdir →
find or train the vocabulary → build the task (model, loss, data) → mesh, optimizer, sharded state (restored
by the one policy in `checkpointing.restore_or_init`) → steps, with logging, evaluation, checkpoints and a
clean stop on SIGTERM → a final checkpoint and evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import pathlib
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from sslm_jax.errors import ConfigError, SslmError
from sslm_jax.models.bert import BertConfig
from sslm_jax.training import checkpointing, flops, optim, partitioning, reporting
from sslm_jax.training.state import TrainState
from sslm_jax.training.step import make_train_step


class TrainingDiverged(SslmError):
    """The loss became NaN or infinite."""


TASKS = ("pretrain", "classify")


def validate_config(config) -> None:
    """Checks the settings that no later stage checks itself; each failure is one ConfigError line."""
    if config.task not in TASKS:
        raise ConfigError(f"config.task={config.task!r} is unknown; use one of {', '.join(TASKS)}")
    for field in ("total_steps", "batch_size", "grad_accum_steps", "log_every_steps", "eval_every_steps"):
        if config[field] < 1:
            raise ConfigError(f"config.{field}={config[field]} must be >= 1")
    if config.eval_steps < 0:
        raise ConfigError(f"config.eval_steps={config.eval_steps} must be >= 0 (0 evaluates the whole eval split)")
    if config.parallelism not in ("jit", "pmap"):
        raise ConfigError(f"config.parallelism={config.parallelism!r}; use 'jit' (sharded, any mesh) or 'pmap'")
    if config.batch_size % jax.process_count():
        raise ConfigError(
            f"config.batch_size={config.batch_size} is not divisible by the {jax.process_count()} processes"
        )


def validate_parallelism(config) -> None:
    """The runners' mesh and batch checks, done up front: ConfigError when `config.mesh_shape` does not fit the
    devices or `config.batch_size` does not split into data-parallel shards × `grad_accum_steps` micro-batches."""
    if config.parallelism == "jit":
        data, fsdp, _ = partitioning.resolve_mesh_shape(config.mesh_shape, jax.device_count())
        data_parallel = data * fsdp
    else:
        data_parallel = jax.local_device_count()
    partitioning.validate_batch_size(config.batch_size, data_parallel, grad_accum_steps=config.grad_accum_steps)


def validate_task_settings(config) -> None:
    """The task's checks that read no data (pretraining: sequence length, predictions, masking, ...)."""
    if config.task == "pretrain":
        from sslm_jax.data import pretraining

        pretraining.validate_settings(config.data, max_position_embeddings=config.model.max_position_embeddings)


def adopt_init_from_settings(config) -> None:
    """With `init_from`, the model's shape (`model.size`, `model.vocab_size`, ...) and `data.lower_case` are the
    checkpoint's (see `checkpointing.init_from_settings`): its weights fit no other, so they need not be repeated.
    Values the config set otherwise are replaced, and logged."""
    settings = checkpointing.init_from_settings(config.init_from)
    for key, value in settings.items():
        section, field = key.split(".")
        given = config[section][field]
        if given != value and not (key == "model.vocab_size" and given == 0):
            logging.info("%s=%r from init_from=%s (the config said %r).", key, value, config.init_from, given)
    with config.unlocked():
        config.update_from_flattened_dict(settings)


def bert_config(config, vocab_size: int) -> BertConfig:
    """The model's BertConfig from `config.model` (vocab_size 0 = the vocabulary's size)."""
    m = config.model
    if m.vocab_size and m.vocab_size < vocab_size:
        raise ConfigError(
            f"config.model.vocab_size={m.vocab_size} is smaller than the vocabulary ({vocab_size} tokens); "
            f"use 0 to take the vocabulary's size"
        )
    try:
        return BertConfig.from_size(
            m.size,
            vocab_size=m.vocab_size or vocab_size,
            max_position_embeddings=m.max_position_embeddings,
            type_vocab_size=m.type_vocab_size,
            hidden_act=m.hidden_act,
            hidden_dropout_prob=m.hidden_dropout_prob,
            attention_probs_dropout_prob=m.attention_probs_dropout_prob,
            dtype=m.dtype,
            param_dtype=m.param_dtype,
            remat=m.remat,
            attention_implementation=m.attention_implementation or None,
        )
    except ValueError as e:
        raise ConfigError(f"config.model: {e}") from None


def prepare_vocab(config, workdir: pathlib.Path) -> pathlib.Path:
    """The vocabulary to use, by one rule: `data.vocab_path` → the `init_from` checkpoint's → one trained
    earlier in this workdir → a new one trained on the training corpus (process 0 trains, the others wait)."""
    from sslm_jax.data import sources, tokenizer

    if config.data.vocab_path:
        path = pathlib.Path(config.data.vocab_path)
        if not path.is_file():
            raise ConfigError(f"config.data.vocab_path={path} does not exist")
        return path
    if config.init_from:
        return _init_from_vocab(config.init_from)
    path = workdir / "vocab.txt"
    if not path.exists():
        if jax.process_index() == 0:
            logging.info("Training a %d-token WordPiece vocabulary into %s.", config.data.vocab_size, path)
            docs = sources.documents(config.data, split="train")
            tokenizer.train_wordpiece(
                docs, vocab_size=config.data.vocab_size, out_dir=workdir, lower_case=config.data.lower_case
            )
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("sslm vocabulary trained")
    return path


def _init_from_vocab(init_from: str) -> pathlib.Path:
    step_dir = checkpointing.latest_checkpoint(init_from)
    if step_dir is not None:
        return pathlib.Path(os.fspath(checkpointing.vocab_file(step_dir)))
    path = pathlib.Path(init_from) / "vocab.txt"
    if path.is_file():
        return path
    raise ConfigError(
        f"init_from={init_from} has no vocabulary (vocab.txt): set config.data.vocab_path to the one it was trained with"
    )


def build_task(config, model_config: BertConfig, tok):
    index, count = jax.process_index(), jax.process_count()
    if config.task == "pretrain":
        from sslm_jax.tasks import pretraining

        return pretraining.build(config, model_config, tok, process_index=index, process_count=count)
    from sslm_jax.tasks import classification

    return classification.build(config, model_config, tok, process_index=index, process_count=count)


# --- Compiled steps: sharded jit on a mesh, or pmap ----------------------------------------------------------


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

        p_eval = partitioning.pmap_eval_step(_psum_outputs(task.eval_step, axis), axis_name=axis)
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


def _psum_outputs(eval_step, axis):
    from sslm_jax.tasks.base import PER_EXAMPLE

    def step(params, batch):
        out = dict(eval_step(params, batch))
        rows = out.pop(PER_EXAMPLE, None)
        out = jax.lax.psum(out, axis)
        if rows is not None:
            # Each device holds a contiguous block of the batch: gathering in device order restores the row order.
            out[PER_EXAMPLE] = jax.lax.all_gather(rows, axis, tiled=True)
        return out

    return step


# --- The loop ---------------------------------------------------------------------------------------------------


def train_and_evaluate(config, workdir: str | os.PathLike) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming whatever is there) and returns the final eval metrics."""
    if config.distributed and not jax.distributed.is_initialized():
        # First: initialize() fails once anything (even jax.process_count()) has started jax's backends.
        jax.distributed.initialize()
    validate_config(config)
    if config.init_from:
        adopt_init_from_settings(config)
    # Every check that needs no data runs before the workdir is touched (a vocabulary trained into it, say).
    validate_parallelism(config)
    validate_task_settings(config)
    workdir = pathlib.Path(os.fspath(checkpointing.check_workdir(workdir)))
    manager = checkpointing.create_manager(workdir, config=config)

    from sslm_jax.data import pretraining as pipeline
    from sslm_jax.data import tokenizer as tokenizer_lib

    vocab_path = prepare_vocab(config, workdir)
    tok = tokenizer_lib.load_tokenizer(vocab_path, lower_case=config.data.lower_case)
    model_config = bert_config(config, tok.vocab_size)
    with config.unlocked():
        config.model.vocab_size = model_config.vocab_size  # saved with checkpoints: they need the real size
    task = build_task(config, model_config, tok)
    with config.unlocked():
        config.update_from_flattened_dict(dict(task.metadata))  # saved with checkpoints too (label names, ...)

    tx, schedule = optim.make_optimizer(config)
    runner_cls = JitRunner if config.parallelism == "jit" else PmapRunner
    runner = runner_cls.build(config, task, tx, schedule)
    _log_startup(config, runner, model_config, vocab_path)

    train_iter = pipeline.PipelineIterator(task.train_data(), process_index=jax.process_index())
    state, start_step, how = checkpointing.restore_or_init(
        manager,
        abstract_state=runner.abstract_state,
        init_fn=runner.init,
        init_from=config.init_from,
        config=config,
        data_iterator=train_iter,
        vocab_path=vocab_path,
    )
    logging.info("Start: %s at step %d.", how, start_step)
    eval_data = task.eval_data() if task.eval_data is not None else None
    writer = reporting.MetricsWriter(workdir, resume_step=start_step)
    rng = jax.random.key(config.seed + 1)  # dropout; folded with the step inside train_step

    def save(step: int, state: TrainState, *, force: bool = False) -> None:
        checkpointing.save_checkpoint(
            manager,
            step,
            state=runner.to_host_state(state),
            config=config,
            vocab_path=vocab_path,
            data_iterator=train_iter,
            force=force,
        )

    def last_good() -> str:
        step = manager.latest_step()
        return str(manager.directory / str(step)) if step is not None else "none"

    # This interval's (step, loss, param_norm), still on device. A step's loss vouches only for the parameters it
    # started from; param_norm (after the update) for the ones a checkpoint of that step holds.
    losses: list[tuple[int, jax.Array, jax.Array]] = []

    def check_finite() -> None:
        for step, loss, param_norm in losses:
            values = {"loss": float(loss), "param_norm": float(param_norm)}
            bad = [f"{name} is {v}" for name, v in values.items() if not math.isfinite(v)]
            if bad:
                manager.wait_until_finished()
                raise TrainingDiverged(
                    f"{' and '.join(bad)} at step {step}; last good checkpoint: {last_good()} "
                    f"(lower learning_rate, raise warmup_steps or set max_grad_norm, then resume or restart)"
                )
        losses.clear()

    final_eval: dict[str, float] = {}
    state = runner.from_host_state(state)
    progress = _progress_bar(start_step, config.total_steps)
    tokens_per_step = config.batch_size * task.seq_len
    peak = flops.peak_flops_per_device(override_tflops=config.peak_tflops_per_device)
    timer_step, timer = start_step, time.perf_counter()
    # The bar is closed however the loop ends, so an error message printed after it is the last line of the output.
    bar = progress if progress is not None else contextlib.nullcontext()
    with checkpointing.PreemptionHandler() as preemption, bar:
        for step in range(start_step + 1, config.total_steps + 1):
            state, metrics = runner.train(state, runner.put(next(train_iter)), rng)
            losses.append((step, runner.metrics(metrics)["loss"], runner.metrics(metrics)["param_norm"]))
            last = step == config.total_steps
            stop = preemption.should_stop(step)

            if step % config.log_every_steps == 0 or last or stop:
                check_finite()
                host = {k: float(v) for k, v in jax.device_get(runner.metrics(metrics)).items() if np.ndim(v) == 0}
                elapsed = time.perf_counter() - timer
                host["tokens_per_second"] = (step - timer_step) * tokens_per_step / elapsed
                if peak:
                    achieved = (step - timer_step) * config.batch_size * task.flops_per_sequence / elapsed
                    host["mfu"] = achieved / (peak * jax.device_count())
                writer.write(step, host)
                _update_progress(progress, step, host, task.progress_keys)
                timer_step, timer = step, time.perf_counter()

            if eval_data is not None and (step % config.eval_every_steps == 0 or last):
                final_eval = evaluate(runner, state, eval_data, task, config.eval_steps)
                writer.write(step, final_eval, split="eval")
                writer.plot()
                logging.info("eval at step %d: %s", step, _fmt(final_eval))
                timer = time.perf_counter()  # evaluation time is not training throughput

            if step % config.checkpoint_every_steps == 0:
                check_finite()
            save(step, state, force=last or stop)
            if stop:
                logging.warning("Preempted (SIGTERM): saved step %d, exiting.", step)
                break
    manager.wait_until_finished()
    manager.close()
    writer.plot()
    writer.close()
    if config.task == "pretrain" and config.fill_mask_examples and not preemption.requested:
        _show_fill_mask(task.model, runner.to_host_state(state).params, tok, config)
    return final_eval


def evaluate(runner, state, eval_data, task, max_batches: int) -> dict[str, float]:
    """One pass over the eval split (or `max_batches` batches): every example counted once, padding ignored.

    Hosts can hold different numbers of eval batches; one that has run out feeds all-padding batches (zero
    weights) until every host is done, so the collective eval step never waits for a missing participant.
    """
    params = runner.params(state)
    outputs, it, template = [], iter(eval_data.as_numpy_iterator()), None
    while not max_batches or len(outputs) < max_batches:
        batch = next(it, None)
        if jax.process_count() > 1:
            done = multihost_utils.process_allgather(np.int32(batch is None))
            if np.all(done):
                break
        elif batch is None:
            break
        if batch is None:
            batch = jax.tree.map(np.zeros_like, template)
        template = batch
        outputs.append(jax.device_get(runner.evaluate(params, runner.put(batch))))
    return task.summarize(outputs)


def _log_startup(config, runner, model_config: BertConfig, vocab_path) -> None:
    logging.info(
        "Devices: %d (%s) on %d process(es); this is process %d with %d local device(s).",
        jax.device_count(), jax.devices()[0].device_kind, jax.process_count(), jax.process_index(),
        jax.local_device_count(),
    )  # fmt: skip
    logging.info("Parallelism: %s.", runner.describe())
    logging.info(
        "Batch: global %d, per host %d, micro-batches per step %d; %d steps.",
        config.batch_size, config.batch_size // jax.process_count(), config.grad_accum_steps, config.total_steps,
    )  # fmt: skip
    logging.info("Model: BERT-%s %s; vocabulary %s.", config.model.size, model_config, vocab_path)


def _progress_bar(start: int, total: int):
    if jax.process_index() != 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)


def _update_progress(progress, step: int, host: dict[str, float], keys) -> None:
    if progress is None:
        return
    progress.n = step
    shown = {k: f"{host[k]:.4g}" for k in keys if k in host}
    shown["tok/s"] = f"{host['tokens_per_second']:.3g}"
    progress.set_postfix(shown, refresh=False)
    progress.refresh()


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())


def _show_fill_mask(model, params, tok, config) -> None:
    from sslm_jax.inference.fill_mask import fill_mask

    if jax.process_index() != 0:
        return
    results = fill_mask(model, params, tok, list(config.fill_mask_examples), top_k=5, max_seq_len=config.data.max_seq_len)
    for text, per_mask in zip(config.fill_mask_examples, results):
        guesses = "; ".join(" ".join(f"{t} ({p:.2f})" for t, p in mask) for mask in per_mask)
        print(f"fill-mask: {text}\n    -> {guesses}", flush=True)

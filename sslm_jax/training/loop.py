"""`train_and_evaluate(config, workdir)`: the one training loop, for every registered task.

    from sslm_jax.config_loading import load_config
    from sslm_jax.training.loop import train_and_evaluate
    final_eval = train_and_evaluate(load_config("configs/bert_demo.py:smoke"), "/tmp/demo")

What it does, in order: (multi-host) `jax.distributed.initialize` → adopt the `init_from` model's shape → validate
every config section (`validation.py`) → check and lock the workdir (`workdir_lock.py`) → move a damaged newest
checkpoint aside (`checkpointing.set_aside_damaged`) → find or train the vocabulary (`vocab.py`) → build the
task `config.task` names (`sslm_jax.tasks`: model, objective, data) → optimizer and runner (`runners.py`: sharded
jit or pmap) → the state restored by the one policy (`checkpointing.restore_or_init`) → steps, with logging,
evaluation, checkpoints and a clean stop on SIGTERM or SIGINT → a final checkpoint, evaluation and the task's
end-of-run hook. It knows no model or objective by name: a new task is a new module registered in `sslm_jax.tasks`.
"""

from __future__ import annotations

import contextlib
import math
import os
import pathlib
import shutil
import time

import jax
import numpy as np
from absl import logging

from sslm_jax.checkpoints import layout, transplant
from sslm_jax.errors import DataError, SslmError
from sslm_jax.training import checkpointing, disk_full, flops, optim, reporting, runners, validation
from sslm_jax.training.evaluation import evaluate
from sslm_jax.training.preemption import Interrupted, PreemptionHandler
from sslm_jax.training.state import TrainState
from sslm_jax.training.vocab import prepare_vocab
from sslm_jax.training.workdir_lock import WorkdirLock


class TrainingDiverged(SslmError):
    """The loss became NaN or infinite."""


def adopt_init_from_settings(config) -> None:
    """With `init_from`, the model's shape (`model.family`, `model.size`, `model.vocab_size`, ...) and
    `data.lower_case` are the checkpoint's (see `transplant.init_from_settings`): its weights fit no other, so they
    need not be repeated. Values the config set otherwise are replaced, and logged."""
    family = transplant.init_from_family(config.init_from)
    settings = {"model.family": family.name, **transplant.init_from_settings(config.init_from)}
    for key, value in settings.items():
        section, field = key.split(".")
        given = config[section][field]
        if given != value and not (key == "model.vocab_size" and given == 0):
            logging.info("%s=%r from init_from=%s (the config said %r).", key, value, config.init_from, given)
    with config.unlocked():
        config.update_from_flattened_dict(settings)


def train_and_evaluate(config, workdir: str | os.PathLike) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming whatever is there) and returns the final eval metrics.

    SIGTERM and SIGINT are caught from the first line on (a signal during validation, vocabulary training or
    compilation included): the run saves the step it is at, if it trained one, and returns; after SIGINT it then
    raises `preemption.Interrupted` (a KeyboardInterrupt). While it runs it holds the workdir's lock
    (`workdir_lock.py`); a full disk anywhere becomes one `DiskFullError` line (`disk_full.py`).
    """
    if config.distributed and not jax.distributed.is_initialized():
        # First: initialize() fails once anything (even jax.process_count()) has started jax's backends.
        jax.distributed.initialize()
    with PreemptionHandler() as preemption:
        if config.init_from:
            adopt_init_from_settings(config)
        spec = validation.validate(config)  # every check that needs no data, before the workdir is touched
        if preemption.requested and jax.process_count() == 1:  # stopped while starting: leave the workdir alone
            return _stop_before_training(preemption)
        requested = pathlib.Path(os.fspath(workdir))
        existed = requested.exists()
        fresh = not existed or (requested.is_dir() and not any(requested.iterdir()))
        workdir = pathlib.Path(os.fspath(checkpointing.check_workdir(workdir)))
        managers = []  # closed if the disk fills, so no background save is left running
        try:
            with disk_full.reported(workdir, on_failure=lambda: [m.close() for m in managers]):
                with WorkdirLock(workdir, enabled=jax.process_index() == 0):
                    return _train(config, workdir, spec, preemption, managers)
        except SslmError:
            for manager in managers:  # an Orbax manager left open prints a thread's traceback at exit
                checkpointing.close_manager(manager)
            # Bad data, vocabulary or init_from surface only once the run has started (they need the workdir's
            # vocabulary or the files read): a new workdir is left as it was found, not with a lock and an empty
            # checkpoints/ folder that the next attempt would have to resume.
            if fresh and jax.process_count() == 1 and not _started(workdir):
                shutil.rmtree(workdir) if not existed else _empty(workdir)
            raise


def _next_batch(train_iter):
    """The next training batch. The training split repeats forever, so running out means this host's share of it
    is empty (with several hosts: fewer documents or examples than hosts)."""
    try:
        return next(train_iter)
    except StopIteration:
        raise DataError(
            f"process {jax.process_index()} of {jax.process_count()} has no training data: its share of the training "
            "split is empty (fewer documents or examples than processes?); add data or use fewer processes"
        ) from None


def _started(workdir: pathlib.Path) -> bool:
    """Whether training began: a metrics line or a checkpoint exists (kept, with the vocabulary, for a rerun)."""
    checkpoints = workdir / layout.CHECKPOINTS_DIR
    return (workdir / "metrics.jsonl").exists() or (checkpoints.is_dir() and any(checkpoints.iterdir()))


def _empty(workdir: pathlib.Path) -> None:
    """Removes what this call created in a workdir that was empty when it started."""
    for entry in workdir.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _stop_before_training(preemption: PreemptionHandler) -> dict[str, float]:
    """A signal arrived before the first step: nothing new to save. SIGTERM returns, SIGINT raises."""
    logging.warning("%s before the first step: nothing new to save, exiting.", preemption.name)
    if preemption.interrupted:
        raise Interrupted("stopped before the first step; nothing new to save")
    return {}


def _train(config, workdir: pathlib.Path, spec, preemption: PreemptionHandler, managers: list) -> dict[str, float]:
    checkpointing.set_aside_damaged(workdir)  # before the manager lists the steps
    manager = checkpointing.create_manager(workdir, config=config)
    managers.append(manager)
    checkpointing.check_latest_is_same_model(manager, config)  # before a vocabulary of another kind is written

    from sslm_jax.data import pretraining as pipeline
    from sslm_jax.data import tokenizers

    vocab_path = prepare_vocab(config, workdir)
    tok = tokenizers.load(config.data, vocab_path)
    task = spec.build(config, tok, process_index=jax.process_index(), process_count=jax.process_count())
    with config.unlocked():
        config.update_from_flattened_dict(dict(task.metadata))  # saved with checkpoints (vocab size, labels, ...)

    tx, schedule = optim.make_optimizer(config)
    runner = runners.build_runner(config, task, tx, schedule)
    reporting.log_startup(config, runner, task, vocab_path)

    train_iter = pipeline.PipelineIterator(task.train_data(), process_index=jax.process_index())
    state, start_step, how = checkpointing.restore_or_init(
        manager,
        abstract_state=runner.abstract_state,
        init_fn=runner.init,
        init_from=config.init_from,
        config=config,
        data_iterator=train_iter,
        vocab_path=tok.files,
    )
    logging.info("Start: %s at step %d.", how, start_step)
    if preemption.requested and jax.process_count() == 1:  # several hosts agree on a step inside the loop
        manager.close()
        return _stop_before_training(preemption)
    eval_data = task.eval_data() if task.eval_data is not None else None
    writer = reporting.MetricsWriter(workdir, resume_step=start_step, plotted=(*task.progress_keys, "learning_rate"))
    rng = jax.random.key(config.seed + 1)  # dropout; folded with the step inside train_step

    def save(step: int, state: TrainState, *, force: bool = False) -> None:
        checkpointing.save_checkpoint(
            manager,
            step,
            state=runner.to_host_state(state),
            config=config,
            vocab_path=tok.files,
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
    progress = reporting.progress_bar(start_step, config.total_steps)
    tokens_per_step = config.batch_size * task.seq_len
    peak = flops.peak_flops_per_device(override_tflops=config.peak_tflops_per_device)
    # Wall and CPU clocks of this log interval. CPU seconds (all threads: the input pipeline included) per step are
    # what a shared or throttled machine still measures fairly; bench/objectives.py budgets compute in them.
    timer_step, timer, cpu_timer = start_step, time.perf_counter(), time.process_time()
    # The bar is closed however the loop ends, so an error message printed after it is the last line of the output.
    bar = progress if progress is not None else contextlib.nullcontext()
    with bar:
        for step in range(start_step + 1, config.total_steps + 1):
            state, metrics = runner.train(state, runner.put(_next_batch(train_iter)), rng)
            metrics = runner.metrics(metrics)
            losses.append((step, metrics["loss"], metrics["param_norm"]))
            last = step == config.total_steps
            stop = preemption.should_stop(step)

            if step % config.log_every_steps == 0 or last or stop:
                check_finite()
                host = {k: float(v) for k, v in jax.device_get(metrics).items() if np.ndim(v) == 0}
                elapsed = time.perf_counter() - timer
                host["tokens_per_second"] = (step - timer_step) * tokens_per_step / elapsed
                host["cpu_seconds_per_step"] = (time.process_time() - cpu_timer) / (step - timer_step)
                if peak:
                    achieved = (step - timer_step) * config.batch_size * task.flops_per_sequence / elapsed
                    host["mfu"] = achieved / (peak * jax.device_count())
                writer.write(step, host)
                reporting.update_progress(progress, step, host, task.progress_keys)
                timer_step, timer, cpu_timer = step, time.perf_counter(), time.process_time()

            if eval_data is not None and (step % config.eval_every_steps == 0 or last):
                final_eval = evaluate(runner, state, eval_data, task, config.eval_steps)
                writer.write(step, final_eval, split="eval")
                writer.plot(min_interval_s=reporting.PLOT_EVERY_S)
                logging.info("eval at step %d: %s", step, reporting.fmt(final_eval))
                timer, cpu_timer = time.perf_counter(), time.process_time()  # evaluation is not training throughput

            if step % config.checkpoint_every_steps == 0:
                check_finite()
            save(step, state, force=last or stop)
            if stop:
                logging.warning("%s: saved step %d, exiting.", preemption.name, step)
                break
    manager.wait_until_finished()
    saved_step = manager.latest_step()
    manager.close()
    writer.plot()
    writer.close()
    if preemption.interrupted:
        raise Interrupted(f"saved step {saved_step}; run the same command to resume")
    if task.end_of_run is not None and jax.process_index() == 0 and not preemption.requested:
        task.end_of_run(runner.to_host_state(state).params)
    return final_eval

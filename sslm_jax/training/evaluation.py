"""Evaluation: one exact pass over a task's eval split, in the loop and for a saved checkpoint (`sslm eval`).

    metrics = evaluate(runner, state, task.eval_data(), task, max_batches=0)   # inside the training loop
    step_dir, metrics = evaluate_checkpoint("runs/sst2")
    # runs/sst2/checkpoints/6315, {"accuracy": 0.92, "loss": 0.24, "examples": 872.0}

For a checkpoint the run is rebuilt from what it holds (config, vocabulary, label names), the parameters are
restored onto the run's mesh, and the eval split is read once, every example counted exactly once (the whole split
unless `eval_steps` limits the batches). Each task reports its own metrics (masked-LM, classification, ...).
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils

from sslm_jax.checkpoints import layout, transplant
from sslm_jax.data import tokenizers
from sslm_jax.errors import CheckpointError, ConfigError, DataError
from sslm_jax.training import optim, runners, validation
from sslm_jax.training.state import TrainState


def evaluate(runner, state, eval_data, task, max_batches: int) -> dict[str, float]:
    """One pass over the eval split (or `max_batches` batches): every example counted once, padding ignored.

    Hosts can hold different numbers of eval batches; one that has run out feeds all-padding batches (zero
    weights) until every host is done, so the collective eval step never waits for a missing participant.
    """
    params = runner.params(state)
    outputs, it, template = [], _numpy_batches(eval_data), None
    while not max_batches or len(outputs) < max_batches:
        batch = next(it, None)
        if jax.process_count() > 1:
            done = multihost_utils.process_allgather(np.int32(batch is None))
            if np.all(done):
                break
        elif batch is None:
            break
        if batch is None:
            batch = _padding_batch(eval_data, template)
        template = batch
        outputs.append(jax.device_get(runner.evaluate(params, runner.put(batch))))
    return task.summarize(outputs)


def _numpy_batches(eval_data):
    """An iterator of numpy batch dicts: a tf.data pipeline's, with its errors as one line; else eval_data's own."""
    tf = sys.modules.get("tensorflow")  # a tf.data pipeline exists only where TensorFlow was imported
    if tf is not None and isinstance(eval_data, tf.data.Dataset):
        from sslm_jax.data.graph_records import numpy_batches

        return numpy_batches(eval_data)
    return iter(eval_data)


def _padding_batch(eval_data, template):
    """An all-padding batch (zero weights): zeros shaped like this host's last batch, or for a host whose share of
    the split is empty, like the dataset's batches (eval pipelines pad every batch to the per-host size)."""
    if template is not None:
        return jax.tree.map(np.zeros_like, template)
    spec = getattr(eval_data, "element_spec", None)  # a tf.data pipeline's; host batches pad every host themselves
    if spec is None or not all(s.shape.is_fully_defined() for s in jax.tree.leaves(spec)):
        raise DataError(f"process {jax.process_index()} has no eval data and its eval batches have no fixed shape")
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype.as_numpy_dtype), spec)


def evaluate_checkpoint(path: str | os.PathLike, *, eval_steps: int = 0):
    """(the checkpoint directory evaluated, {metric: value}) for the latest checkpoint of the workdir `path` (or the
    checkpoint directory `path` itself). `eval_steps` > 0 stops after that many batches."""
    if eval_steps < 0:
        raise ConfigError(f"eval_steps={eval_steps} must be >= 0 (0 evaluates the whole eval split)")
    step_dir = layout.latest_checkpoint(path)
    if step_dir is None:
        raise CheckpointError(f"{path} holds no checkpoint: give a training run's workdir (with checkpoints/<step>)")
    config = layout.load_config(step_dir)
    spec = validation.validate(config)
    kind = tokenizers.get(config.data.tokenizer)
    # The in-graph tokenizer imports TensorFlow (once the checkpoint is found); a task that evaluates on the host,
    # such as a classifier of files, gets the host one and runs without it.
    tok = kind.load_for(layout.vocab_dir(step_dir) / kind.files[0], config.data, host=spec.host_eval(config))
    task = spec.build(config, tok, process_index=jax.process_index(), process_count=jax.process_count())
    if task.eval_data is None:
        raise ConfigError(f"{step_dir}: the run's task has no eval split")
    tx, schedule = optim.make_optimizer(config)
    runner = runners.build_runner(config, task, tx, schedule)
    loaded = transplant.load_params(step_dir, params=runner.abstract_state.params)
    if loaded.fresh:
        raise CheckpointError(f"{step_dir}: the checkpoint lacks {', '.join(loaded.fresh[:3])}; it is incomplete")
    state = TrainState(step=np.int32(0), params=loaded.params, opt_state=None)  # evaluation needs no optimizer state
    metrics = evaluate(runner, runner.from_host_state(state), task.eval_data(), task, eval_steps)
    return step_dir, metrics

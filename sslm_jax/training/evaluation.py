"""Evaluate a saved checkpoint on its run's eval split (`sslm eval`), with the training loop's own eval path.

    step_dir, metrics = evaluate_checkpoint("runs/sst2")
    # runs/sst2/checkpoints/6315, {"accuracy": 0.92, "loss": 0.24, "examples": 872.0}

The run is rebuilt from what the checkpoint holds (config, vocabulary, label names), the parameters are restored
onto the run's mesh, and the eval split is read once, every example counted exactly once (the whole split unless
`eval_steps` limits the batches). Pretraining runs report masked-LM metrics, fine-tuning runs the task's metrics.
"""

from __future__ import annotations

import os

import numpy as np

from sslm_jax.errors import CheckpointError, ConfigError
from sslm_jax.training import checkpointing, loop, optim
from sslm_jax.training.state import TrainState


def evaluate_checkpoint(path: str | os.PathLike, *, eval_steps: int = 0):
    """(the checkpoint directory evaluated, {metric: value}) for the latest checkpoint of the workdir `path` (or the
    checkpoint directory `path` itself). `eval_steps` > 0 stops after that many batches."""
    if eval_steps < 0:
        raise ConfigError(f"eval_steps={eval_steps} must be >= 0 (0 evaluates the whole eval split)")
    step_dir = checkpointing.latest_checkpoint(path)
    if step_dir is None:
        raise CheckpointError(f"{path} holds no checkpoint: give a training run's workdir (with checkpoints/<step>)")
    config = checkpointing.load_config(step_dir)
    loop.validate_config(config)
    from sslm_jax.data import tokenizer as tokenizer_lib  # TensorFlow: imported once the checkpoint is found

    tok = tokenizer_lib.load_tokenizer(checkpointing.vocab_file(step_dir), lower_case=config.data.lower_case)
    task = loop.build_task(config, loop.bert_config(config, tok.vocab_size), tok)
    if task.eval_data is None:
        raise ConfigError(f"{step_dir}: the run's task has no eval split")
    tx, schedule = optim.make_optimizer(config)
    runner = (loop.JitRunner if config.parallelism == "jit" else loop.PmapRunner).build(config, task, tx, schedule)
    loaded = checkpointing.load_params(step_dir, params=runner.abstract_state.params)
    if loaded.fresh:
        raise CheckpointError(f"{step_dir}: the checkpoint lacks {', '.join(loaded.fresh[:3])}; it is incomplete")
    state = TrainState(step=np.int32(0), params=loaded.params, opt_state=None)  # evaluation needs no optimizer state
    metrics = loop.evaluate(runner, runner.from_host_state(state), task.eval_data(), task, eval_steps)
    return step_dir, metrics

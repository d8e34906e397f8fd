"""`sslm eval` of a directory written by `sslm quantize` / `sslm prune`: the source run's task, these parameters.

    step_dir, metrics = evaluate_any("runs/sst2-int8")     # a compressed directory, or a run (evaluate_checkpoint)
    # runs/sst2-int8, {"accuracy": 0.81, "loss": 0.43, "examples": 872.0}

The task is rebuilt from the run config saved in the directory (its eval split, metrics and eval step, exactly as
`sslm eval` of the run itself), and the eval step is traced inside `quantize.quantized(mode)`: the task's own model
then runs the int8 kernels (no task learns about quantization). One device: a compressed model is small.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any, Callable

import jax

from sslm_jax.data import tokenizers
from sslm_jax.errors import CheckpointError, ConfigError
from sslm_jax.inference import compressed_dir, quantize
from sslm_jax.training import evaluation, validation


@dataclasses.dataclass(frozen=True)
class _OneDevice:
    """What `evaluation.evaluate` asks of a runner, on the default device."""

    evaluate: Callable[[Any, Any], Any]

    def params(self, state):
        return state

    def put(self, batch):
        return batch


def evaluate_compressed(path: str | os.PathLike, *, eval_steps: int = 0) -> dict[str, float]:
    """The source run's eval metrics for the compressed model at `path`."""
    if eval_steps < 0:
        raise ConfigError(f"eval_steps={eval_steps} must be >= 0 (0 evaluates the whole eval split)")
    loaded = compressed_dir.load(path, host_tokenizer=True)  # no TensorFlow yet: the task may not need it
    if loaded.run_config is None:
        raise CheckpointError(
            f"{path} was compressed from {loaded.compression['source']}, a Hugging Face directory: it has no eval "
            "split to run (use `sslm predict` on your own file)"
        )
    config = loaded.run_config
    spec = validation.validate(config)
    tok = loaded.tokenizer if spec.host_eval(config) else tokenizers.load(config.data, loaded.vocab_path)
    task = spec.build(config, tok, process_index=0, process_count=1)
    if task.eval_data is None:
        raise ConfigError(f"{path}: the run's task has no eval split")
    mode = loaded.compression["quantization"]
    with quantize.quantized(mode) if mode else contextlib.nullcontext():
        runner = _OneDevice(jax.jit(task.eval_step))
        return evaluation.evaluate(runner, loaded.params, task.eval_data(), task, eval_steps)


def evaluate_any(path: str | os.PathLike, *, eval_steps: int = 0):
    """(what was evaluated, metrics): a compressed directory, else a run's latest checkpoint."""
    if compressed_dir.is_compressed(path):
        return path, evaluate_compressed(path, eval_steps=eval_steps)
    return evaluation.evaluate_checkpoint(path, eval_steps=eval_steps)

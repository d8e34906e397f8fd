"""Tasks by name: `get(config.task)` -> the registered `TaskSpec` (see tasks/base.py).

    spec = tasks.get("pretrain")
    task = spec.build(config, tokenizer, process_index=0, process_count=1)
"""

from __future__ import annotations

import importlib

from sslm_jax.errors import ConfigError
from sslm_jax.tasks.base import PER_EXAMPLE, Task, TaskSpec, names, register, registered

# task name -> the module that registers it (imported on first use, so TensorFlow loads only when a task is built).
BUILTIN = {
    "pretrain": "sslm_jax.tasks.pretraining",
    "classify": "sslm_jax.tasks.classification",
    "causal_lm": "sslm_jax.tasks.causal_lm",
    "causal_sft": "sslm_jax.tasks.causal_sft",
    "electra": "sslm_jax.tasks.electra",
}


def get(name: str) -> TaskSpec:
    """The task called `name`; ConfigError (one line) naming the known tasks otherwise."""
    if registered(name) is None and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    spec = registered(name)
    if spec is None:
        known = sorted(set(BUILTIN) | set(names()))
        raise ConfigError(f"config.task={name!r} is unknown; use one of {', '.join(known)}")
    return spec


__all__ = ["BUILTIN", "PER_EXAMPLE", "Task", "TaskSpec", "get", "register"]

"""What the training loop needs to know about a task, in one record (`Task`), and the registry of tasks.

A task binds a model, an objective, the data it trains and evaluates on, how evaluation outputs are summarised
and what to show at the end. The loop (`sslm_jax.training.loop`) knows only this record; `config.task` names a
registered task:

    @register("parity", command="pretrain", validate=check_parity_settings)
    def build(config, tokenizer, *, process_index, process_count) -> Task: ...

    spec = get(config.task)           # the built-in tasks are imported on first use (BUILTIN, in __init__.py)
    spec.validate(config)             # before the workdir is touched
    task = spec.build(config, tok, process_index=0, process_count=1)

A new task is a new module under tasks/ (or in research code) that calls `register`; built-in ones also get one
line in `sslm_jax.tasks.BUILTIN`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn


# The eval-step output key of per-example arrays ({name: [B]}, e.g. predictions and labels for F1 or Spearman):
# concatenated over devices (not summed like every other output) and handed to `summarize` batch by batch.
PER_EXAMPLE = "per_example"


@dataclasses.dataclass(frozen=True)
class Task:
    model: nn.Module
    # An objective (sslm_jax.objectives.base): loss_fn(params, batch, rng, deterministic=False, *, denominators=None)
    # -> (loss, sums), with denominators(batch) and finalize(sums).
    loss_fn: Any
    train_data: Callable[[], Any]  # () -> tf.data.Dataset of this host's training batches (infinite)
    # () -> this host's eval batches, one pass: a tf.data.Dataset, or an iterable of numpy batch dicts that can be
    # iterated again for each evaluation (as data/host_finetuning.py's); None: the task has no eval split.
    eval_data: Callable[[], Any] | None
    # pure (params, batch) -> dict of sums (added over devices), optionally PER_EXAMPLE rows; summarised on the host
    eval_step: Callable[[Any, Mapping], dict]
    summarize: Callable[[list[dict]], dict[str, float]]  # all eval-step outputs (numpy) -> eval metrics
    seq_len: int
    flops_per_sequence: float  # model FLOPs of one training sequence (forward + backward), for MFU
    progress_keys: tuple[str, ...]  # metrics shown in the progress bar
    # Settings the task resolved (vocabulary size, head, label names, ...) as dotted config keys: the loop writes
    # them into the config saved with every checkpoint, so eval / predict / export need no data.
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Called with the final parameters (on one host, after a run that was not preempted): fill-mask lines, samples.
    end_of_run: Callable[[Any], None] | None = None
    description: str = ""  # the model, for the start-up log


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A registered task.

    Attributes:
      name: the `config.task` value.
      build: `(config, tokenizer, *, process_index, process_count) -> Task`.
      validate: `config -> None`, the task's checks that read no data; raise ConfigError (one line). Run before
        the workdir is touched.
      command: the `sslm` command that trains it ("pretrain" or "finetune").
      host_eval: `config -> bool`: True when the task, built with a host tokenizer (the tokenizer kind's
        `load_host`, which imports no TensorFlow), evaluates without TensorFlow; `sslm eval` then never imports it.
    """

    name: str
    build: Callable[..., Task]
    validate: Callable[[Any], None]
    command: str
    host_eval: Callable[[Any], bool]


_TASKS: dict[str, TaskSpec] = {}


def require_head(config, head: str) -> None:
    """ConfigError unless `config.model.family` has `head`: after `init_from` the family is the starting model's,
    so this is where "a GPT run cannot start a classifier" is said, before its vocabulary is looked for."""
    from sslm_jax.errors import ConfigError
    from sslm_jax.models import registry

    family = registry.get(config.model.family)
    if head not in family.heads:
        start = f" (the family of init_from={config.init_from})" if config.get("init_from") else ""
        able = [name for name in registry.names() if head in registry.get(name).heads]
        raise ConfigError(
            f"task={config.task!r} trains a {head!r} head, which model.family={family.name!r}{start} does not have: "
            f"start from a {' or '.join(able)} model"
        )


def _no_checks(config) -> None:
    del config


def _never(config) -> bool:
    del config
    return False


def register(
    name: str,
    *,
    command: str = "pretrain",
    validate: Callable[[Any], None] | None = None,
    host_eval: Callable[[Any], bool] | None = None,
):
    """Decorator registering `build` as the task `name` (see TaskSpec); returns `build` unchanged."""

    def add(build):
        _TASKS[name] = TaskSpec(
            name=name, build=build, validate=validate or _no_checks, command=command, host_eval=host_eval or _never
        )
        return build

    return add


def registered(name: str) -> TaskSpec | None:
    return _TASKS.get(name)


def names() -> list[str]:
    return sorted(_TASKS)

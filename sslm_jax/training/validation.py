"""Every check of a run's config, one entry per config section, run once before the workdir is touched.

    spec = validate(config)      # ConfigError (one line naming the field) on the first bad setting

Sections: the run itself (steps, batch, parallelism and mesh, checkpoint intervals), the optimizer, the model
(its family builds a model config from `config.model`), the tokenizer kind and the task's data settings
(`TaskSpec.validate`), and that the input globs match files. Checks that need data (a label set, a vocabulary) run
when the task is built, still before anything is trained.
"""

from __future__ import annotations

import pathlib

import jax

from sslm_jax import tasks
from sslm_jax.data import tokenizers
from sslm_jax.errors import ConfigError
from sslm_jax.models import registry
from sslm_jax.training import checkpointing, optim, partitioning
from sslm_jax.training.runners import RUNNERS


def validate(config) -> tasks.TaskSpec:
    """Checks every section of `config`; returns the task's spec."""
    spec = tasks.get(config.task)
    validate_run(config)
    optim.make_optimizer(config)  # building the optimizer is its validation (schedule, rates, clipping)
    validate_model(config)
    validate_vocab(config)
    validate_data_files(config)
    spec.validate(config)
    return spec


def validate_run(config) -> None:
    """Steps, intervals, batch and parallelism: the fields at the top of configs/base.py."""
    for field in ("total_steps", "batch_size", "grad_accum_steps", "log_every_steps", "eval_every_steps"):
        if config[field] < 1:
            raise ConfigError(f"config.{field}={config[field]} must be >= 1")
    checkpointing.validate_settings(config)
    if config.eval_steps < 0:
        raise ConfigError(f"config.eval_steps={config.eval_steps} must be >= 0 (0 evaluates the whole eval split)")
    if config.parallelism not in RUNNERS:
        raise ConfigError(f"config.parallelism={config.parallelism!r}; use 'jit' (sharded, any mesh) or 'pmap'")
    if config.batch_size % jax.process_count():
        raise ConfigError(
            f"config.batch_size={config.batch_size} is not divisible by the {jax.process_count()} processes"
        )
    if config.parallelism == "jit":
        data, fsdp, _ = partitioning.resolve_mesh_shape(config.mesh_shape, jax.device_count())
        data_parallel = data * fsdp
    else:
        data_parallel = jax.local_device_count()
    partitioning.validate_batch_size(config.batch_size, data_parallel, grad_accum_steps=config.grad_accum_steps)


def validate_vocab(config) -> None:
    """The tokenizer kind exists, and a given `data.vocab_path` has every file of that kind."""
    kind = tokenizers.get(config.data.tokenizer)
    if not config.data.vocab_path:
        return
    path = pathlib.Path(config.data.vocab_path)
    folder = path if path.is_dir() else path.parent
    needed = [path] if len(kind.files) == 1 and not path.is_dir() else [folder / name for name in kind.files]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise ConfigError(
            f"config.data.vocab_path={config.data.vocab_path}: {', '.join(missing)} does not exist (a {kind.name} "
            f"vocabulary is {' + '.join(kind.files)})"
        )


def validate_data_files(config) -> None:
    """With `data.source="files"`, every glob of `data.train_files` / `data.eval_files` matches a file: found here
    rather than when the corpus is first read, which is after the workdir is created (vocabulary training)."""
    from sslm_jax.data import files, sources

    if config.data.source not in sources.SOURCES:
        raise ConfigError(f"config.data.source={config.data.source!r} is not one of {', '.join(sources.SOURCES)}")
    if config.data.source != "files":
        return
    if config.data.format not in sources.FORMATS:
        raise ConfigError(f"config.data.format={config.data.format!r} is not one of {', '.join(sources.FORMATS)}")
    # An empty setting is left to the reader's own message (configs such as sst2_lift.py ship it empty).
    for setting in ("train_files", "eval_files"):
        if config.data[setting]:
            files.expand(config.data[setting], setting=f"data.{setting}")


def validate_model(config) -> None:
    """The family exists and builds a model config from `config.model` (size, activation, dtypes, ...)."""
    family = registry.get(config.model.family)
    # The vocabulary's real size is known only once it exists; any size checks the other fields.
    family.config_for(config.model, config.model.vocab_size or config.data.vocab_size)

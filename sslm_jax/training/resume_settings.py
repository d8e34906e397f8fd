"""What may change between a checkpoint and the run that resumes it: one rule per config field.

    reconcile(saved_config, config, checkpoint_dir)   # logs each applied change; CheckpointError on a refused one

A field that differs from the checkpoint's saved config is either

- APPLIED from the resumed step on, with one log line ("total_steps: 6 -> 12 (from step 6 on)"): the loop's
  cadences, the number of steps (and so where the learning-rate schedule ends), evaluation and logging settings,
  the optimizer's hyperparameters, and how the same computation is laid out (mesh, parallelism, micro-batches,
  remat, compute dtype);
- or REFUSED with one line naming the field and both values, before anything is written: anything that moves the
  data position (batch size, sequence length, masking, sources, the vocabulary, the seed) — the saved iterator
  state belongs to the old pipeline and cannot be re-derived for a new one — and anything that changes the shape
  or meaning of the train state (model shape fields, parameter dtype, optimizer kind, task).

Nothing is ignored: the config saved with the next checkpoint is the one now running. Fields not in `POLICY` are
refused (a new field must be classified here; tests/test_resume_settings.py checks every field of configs/base.py
is). configs/base.py repeats the classification next to each field.
"""

from __future__ import annotations

import json

from absl import logging

from sslm_jax.errors import CheckpointError

APPLY, REFUSE = "apply", "refuse"

_APPLIED = (
    # Cadences, length and bookkeeping: the loop reads them at every step.
    "total_steps", "log_every_steps", "eval_every_steps", "eval_steps", "checkpoint_every_steps", "keep_checkpoints",
    "peak_tflops_per_device", "fill_mask_examples", "sample_prompts", "sample_max_new_tokens",
    # Optimizer hyperparameters: the schedule is a function of the step; the optimizer state keeps its shape.
    "learning_rate", "warmup_steps", "lr_schedule", "weight_decay", "adam_b1", "adam_b2", "adam_eps",
    "max_grad_norm",
    # The loss's weights and ELECTRA's sampling: read at every step; the train state keeps its shape.
    "disc_weight", "replacement_temperature",
    # The same computation, laid out differently: the state is restored onto any mesh.
    "parallelism", "mesh_shape", "distributed", "grad_accum_steps",
    "model.dtype", "model.remat", "model.attention_implementation",
    "model.hidden_dropout_prob", "model.attention_probs_dropout_prob",
    # Not read when resuming (the checkpoint's own weights are), or checked separately (the vocabulary's tokens).
    "init_from", "data.vocab_path", "data.tfds_data_dir", "data.metrics",
)  # fmt: skip
POLICY: dict[str, str] = {field: APPLY for field in _APPLIED}
# Everything else under data.* and model.*, and these top-level fields, is refused.
_REFUSED_TOP = ("task", "seed", "batch_size", "optimizer")
POLICY.update({field: REFUSE for field in _REFUSED_TOP})
_REFUSED_SECTIONS = ("data.", "model.")


def policy(field: str) -> str | None:
    """APPLY or REFUSE for a flattened field name ("data.max_seq_len"); None if it is not classified."""
    if field in POLICY:
        return POLICY[field]
    if field.startswith(_REFUSED_SECTIONS):
        return REFUSE
    return None


def _flat(tree, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(saved, config) -> list[tuple[str, object, object]]:
    """[(field, saved value, value now)] for the fields both configs have, compared as the checkpoint stores them
    (JSON: tuples are lists)."""
    saved = _flat(json.loads(saved.to_json_best_effort(sort_keys=True)))
    now = _flat(json.loads(config.to_json_best_effort(sort_keys=True)))
    both = sorted(saved.keys() & now.keys())
    return [(field, saved[field], now[field]) for field in both if saved[field] != now[field]]


def reconcile(saved, config, checkpoint_dir) -> None:
    """Logs every applied change; CheckpointError on the first refused one (see the module docstring)."""
    changes = differences(saved, config)
    for field, there, here in changes:
        if policy(field) != APPLY:
            raise CheckpointError(
                f"config.{field}={here!r}, but {checkpoint_dir} was trained with {field}={there!r}; it cannot change "
                f"on resume (the saved data position or train state depends on it): set {field}={there!r} to "
                f"resume, or use another workdir"
            )
    for field, there, here in changes:
        logging.info("Resuming with a changed setting: %s: %r -> %r (from this step on).", field, there, here)

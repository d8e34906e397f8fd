"""Changed settings on resume (sslm_jax/training/resume_settings.py): every field classified; applied ones logged,
refused ones named with both values."""

import logging

import pytest

from configs import base
from sslm_jax.errors import CheckpointError
from sslm_jax.training import resume_settings


def flat_fields(config, prefix=""):
    for key, value in config.items():
        if hasattr(value, "items"):
            yield from flat_fields(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_every_field_of_the_base_config_is_classified():
    unclassified = [f for f in flat_fields(base.get_config()) if resume_settings.policy(f) is None]
    assert unclassified == [], "classify them in resume_settings.POLICY and say so in configs/base.py"


@pytest.mark.parametrize("field", ["total_steps", "log_every_steps", "eval_every_steps", "checkpoint_every_steps",
                                   "keep_checkpoints", "learning_rate"])  # fmt: skip
def test_cadence_fields_are_applied_with_a_log_line(field, caplog):
    caplog.set_level(logging.INFO)
    saved, now = base.get_config(), base.get_config()
    now[field] = saved[field] * 2
    resume_settings.reconcile(saved, now, "run/checkpoints/6")
    assert f"{field}: {saved[field]!r} -> {now[field]!r}" in caplog.text


@pytest.mark.parametrize(
    "field, value",
    [("batch_size", 64), ("data.max_seq_len", 64), ("data.masking", "word"), ("data.train_files", "other/*.txt"),
     ("data.source", "files"), ("data.vocab_size", 600), ("seed", 3), ("model.param_dtype", "bfloat16")],
)  # fmt: skip
def test_data_position_and_state_fields_are_refused_naming_both_values(field, value):
    saved, now = base.get_config(), base.get_config()
    section, _, name = field.rpartition(".")
    (now[section] if section else now)[name] = value
    old = (saved[section] if section else saved)[name]
    with pytest.raises(CheckpointError, match="cannot change on resume") as refused:
        resume_settings.reconcile(saved, now, "run/checkpoints/6")
    assert f"config.{field}={value!r}" in str(refused.value) and f"{field}={old!r}" in str(refused.value)


def test_tuples_compare_as_saved():
    """The checkpoint stores JSON (tuples become lists): an unchanged tuple is no change."""
    saved, now = base.get_config(), base.get_config()
    now.fill_mask_examples = ("a [MASK] .",)
    saved.fill_mask_examples = ["a [MASK] ."]
    assert resume_settings.differences(saved, now) == []

"""training/vocab.py: a vocabulary trained into a workdir is reused only for the settings it was trained with."""

import json

import pytest

from configs import base
from sslm_jax.errors import ConfigError
from sslm_jax.training import vocab

_TEXT = "\n".join(f"the {w} sat on the {v} mat and looked at {w}s ." for w in ("cat", "dog", "owl", "fox", "hen")
                  for v in ("red", "blue", "green", "flat", "old"))  # fmt: skip


def _config(tmp_path, **data):
    (tmp_path / "corpus.txt").write_text(_TEXT + "\n")
    config = base.get_config()
    config.data.source, config.data.train_files, config.data.vocab_path = "files", str(tmp_path / "corpus.txt"), ""
    config.data.vocab_size = 120
    config.data.update(data)
    return config


def test_the_trained_vocabulary_records_its_settings_and_is_reused_for_the_same(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    path = vocab.prepare_vocab(_config(tmp_path), workdir)
    assert json.loads((workdir / vocab.SETTINGS_FILE).read_text()) == {
        "tokenizer": "wordpiece", "data.vocab_size": 120, "data.lower_case": True}  # fmt: skip
    before = path.stat().st_mtime_ns
    assert vocab.prepare_vocab(_config(tmp_path), workdir) == path
    assert path.stat().st_mtime_ns == before  # reused, not retrained


@pytest.mark.parametrize("field, value", [("vocab_size", 140), ("lower_case", False)])
def test_other_settings_than_the_trained_vocabularys_are_one_clear_error(tmp_path, field, value):
    """A run killed before its first checkpoint leaves a vocabulary and nothing else; a rerun that asks for another
    size must be refused (resume_settings only sees runs that have a checkpoint)."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    vocab.prepare_vocab(_config(tmp_path), workdir)
    kept = (workdir / "vocab.txt").read_bytes()
    old = base.get_config().data[field] if field == "lower_case" else 120
    with pytest.raises(ConfigError) as refused:
        vocab.prepare_vocab(_config(tmp_path, **{field: value}), workdir)
    message = str(refused.value)
    assert f"config.data.{field}={value!r}" in message and f"data.{field}={old!r}" in message
    assert "\n" not in message and "new workdir" in message
    assert (workdir / "vocab.txt").read_bytes() == kept


def test_a_vocabulary_without_a_record_is_taken_as_it_is(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    vocab.prepare_vocab(_config(tmp_path), workdir)
    (workdir / vocab.SETTINGS_FILE).unlink()
    assert vocab.prepare_vocab(_config(tmp_path, vocab_size=140), workdir) == workdir / "vocab.txt"

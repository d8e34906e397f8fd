"""`sslm pretrain` on bad input, in subprocesses: exit 2, no traceback, stderr's last line `sslm pretrain: error: ...`
naming the setting, and nothing written (or overwritten).

The runs that fail before training are started together by one fixture (each is mostly start-up time, so they
overlap well) and checked one per test; refusing another model's checkpoint needs a real checkpoint first (slow).
"""

from __future__ import annotations

import pathlib

import pytest

from _shared_runs import PRETRAINING_SETTINGS, copy_of, tiny_pretraining_run
from _sslm_runs import (
    Run,
    assert_one_line_error,
    pretrain_args,
    session_compile_cache,
    sslm_env,
    tree_digest,
)

# name -> (fake CPU devices, --config overrides, fragments the error line must contain). "{tmp}" is the test's folder.
BEFORE_ANY_WRITE = {
    "unknown_field": (1, {"nonexistent": 1}, ("--config.nonexistent", "no field 'nonexistent'")),
    "misspelled_field": (1, {"batch_sizee": 8}, ("--config.batch_sizee", 'Did you mean "batch_size"')),
    "replaced_field": (
        1, {"data.whole_word_masking": True}, ("--config.data.whole_word_masking", "replaced by data.masking='word'")
    ),
    "batch_not_divisible": (8, {"batch_size": 6, "mesh_shape": "(-1,1,1)"}, ("batch_size=6", "data-parallel size 8")),
    "mesh_not_device_count": (8, {"mesh_shape": "(3,1,1)"}, ("mesh_shape=(3, 1, 1)", "8 are available")),
    "init_from_nothing": (1, {"init_from": "{tmp}/no_such_run"}, ("init_from={tmp}/no_such_run", "does not exist")),
    "max_seq_len_below_8": (1, {"data.max_seq_len": 4}, ("config.data.max_seq_len=4", "below 8")),
    "no_predictions": (1, {"data.max_predictions_per_seq": 0}, ("config.data.max_predictions_per_seq=0",)),
    # Refused before a vocabulary is trained into the new workdir (issue 11: it used to be trained first).
    "negative_learning_rate": (1, {"learning_rate": -1e-3}, ("learning_rate=-0.001 must be > 0",)),
    "warmup_over_total": (1, {"warmup_steps": 50, "total_steps": 10}, ("warmup_steps=50 exceeds total_steps=10",)),
    "unknown_model_size": (1, {"model.size": "huge"}, ("config.model", "huge")),
    "mesh_shape_not_numbers": (1, {"mesh_shape": "abc"}, ("mesh_shape=", "must be 3 positive sizes")),
    "unknown_source": (1, {"data.source": "bogus"}, ("config.data.source='bogus' is not one of",)),
    "bpe_for_masked_lm": (1, {"data.tokenizer": "bpe"}, ("config.data.tokenizer='bpe': masked-LM pretraining needs",)),
    "unknown_format": (
        1, {"data.source": "files", "data.train_files": "{tmp}/none.txt", "data.format": "yaml"},
        ("config.data.format='yaml' is not one of",),
    ),
}


@pytest.fixture(scope="module")
def failing_runs(tmp_path_factory) -> tuple[pathlib.Path, dict[str, tuple[Run, pathlib.Path]]]:
    """Every failing run of this module that needs no checkpoint, started at once: (their folder, {name: (run,
    its workdir)})."""
    tmp = tmp_path_factory.mktemp("cli")
    runs = {}
    for name, (devices, overrides, _) in BEFORE_ANY_WRITE.items():
        overrides = {k: str(v).replace("{tmp}", str(tmp)) for k, v in overrides.items()}
        workdir = tmp / name / "run"
        runs[name] = (Run(pretrain_args(workdir, **overrides), env=sslm_env(devices=devices), logs=tmp / name), workdir)

    blocker = tmp / "a_file"  # a workdir "inside" a regular file can never be created, even by root
    blocker.write_text("not a folder\n")
    workdir = blocker / "run"
    runs["unwritable_workdir"] = (Run(pretrain_args(workdir), env=sslm_env(), logs=tmp / "unwritable"), workdir)

    workdir = tmp / "a_file_as_workdir"
    workdir.write_text("not a folder\n")
    runs["workdir_is_a_file"] = (Run(pretrain_args(workdir), env=sslm_env(), logs=tmp / "file_workdir"), workdir)

    empty = tmp / "empty.txt"  # found only once the run has started: when the vocabulary is trained from it
    empty.write_text("")
    workdir = tmp / "empty_corpus" / "run"
    files = {"data.source": "files", "data.train_files": empty, "data.eval_files": empty}
    runs["empty_corpus"] = (Run(pretrain_args(workdir, **files), env=sslm_env(), logs=tmp / "empty_corpus"), workdir)

    bad_line = tmp / "bad_line.tsv"  # found while the vocabulary is trained: decode_csv's error was a traceback
    bad_line.write_text("text\tlabel\n" + "the movie was fine\t1\n" * 600 + "bad\trow\textra\n")
    workdir = tmp / "bad_line" / "run"
    files = {"data.source": "files", "data.format": "tsv", "data.train_files": bad_line, "data.eval_files": bad_line}
    runs["bad_tsv_line"] = (Run(pretrain_args(workdir, **files), env=sslm_env(), logs=tmp / "bad_line"), workdir)

    workdir = tmp / "glob" / "run"
    files = {"data.source": "files", "data.train_files": f"{tmp}/no_corpus/*.txt"}
    runs["glob_matching_nothing"] = (Run(pretrain_args(workdir, **files), env=sslm_env(), logs=tmp / "glob"), workdir)
    return tmp, runs


@pytest.mark.parametrize("name", sorted(BEFORE_ANY_WRITE))
def test_bad_setting_fails_before_writing_anything(failing_runs, name):
    tmp, runs = failing_runs
    process, workdir = runs[name]
    fragments = [f.replace("{tmp}", str(tmp)) for f in BEFORE_ANY_WRITE[name][2]]
    assert_one_line_error(process, *fragments)
    assert not workdir.exists(), "checked before the workdir is created"


def test_unwritable_workdir(failing_runs):
    process, workdir = failing_runs[1]["unwritable_workdir"]
    assert_one_line_error(process, f"workdir {workdir} is not writable", "--workdir")
    assert workdir.parent.read_text() == "not a folder\n"


def test_workdir_that_is_a_file(failing_runs):
    process, workdir = failing_runs[1]["workdir_is_a_file"]
    assert_one_line_error(process, f"workdir {workdir} is a file, not a folder", "--workdir")
    assert workdir.read_text() == "not a folder\n"


def test_glob_matching_nothing(failing_runs):
    """Checked with the config, before the workdir is created (it used to be found when the corpus was first read)."""
    tmp, runs = failing_runs
    process, workdir = runs["glob_matching_nothing"]
    assert_one_line_error(process, f"data.train_files: glob '{tmp}/no_corpus/*.txt' matches no file")
    assert not workdir.exists()


def test_a_new_workdir_is_left_as_found_when_the_data_fails_after_start(failing_runs):
    """An empty corpus is found when the vocabulary is trained, after the workdir, its lock and checkpoints/ exist:
    they are removed again, so the next attempt does not find a half-made run."""
    process, workdir = failing_runs[1]["empty_corpus"]
    assert_one_line_error(process, "is empty: no text in 1 file(s)")
    assert not workdir.exists()


def test_a_bad_line_deep_in_a_tsv_is_one_line_naming_file_and_line(failing_runs):
    tmp, runs = failing_runs
    process, workdir = runs["bad_tsv_line"]
    assert_one_line_error(process, f"a tsv line of {tmp}/bad_line.tsv is not 2 fields as its header has: bad\\trow")
    assert not workdir.exists()


@pytest.mark.slow
def test_checkpoint_of_another_model_size_is_refused_untouched(tmp_path):
    env = sslm_env(cache_dir=session_compile_cache())  # the smoke programs other test files compile too
    workdir = copy_of(tiny_pretraining_run(), tmp_path / "copy")  # model.size tiny, checkpoints 3 and 6
    common = {"data.vocab_path": workdir.parent / "vocab.txt", **PRETRAINING_SETTINGS}
    before = tree_digest(workdir)
    assert any(name.startswith("checkpoints/6/state/") for name in before)

    mini = Run(pretrain_args(workdir, **common, **{"model.size": "mini"}), env=env, logs=tmp_path / "mini")
    assert_one_line_error(mini, "checkpoints/6 is a checkpoint with model.size='tiny'", "model.size='mini'")
    assert tree_digest(workdir) == before

    # Another task: refused before its vocabulary (vocab.json + merges.txt) is trained into the run.
    gpt = [*pretrain_args(workdir)[:4], "--config=configs/gpt_demo.py:smoke", f"--workdir={workdir}"]
    assert_one_line_error(Run(gpt, env=env, logs=tmp_path / "gpt"), "task='pretrain'", "task='causal_lm'")
    assert tree_digest(workdir) == before

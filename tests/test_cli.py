"""`sslm pretrain` on bad input, in subprocesses: exit 2, no traceback, stderr's last line `sslm pretrain: error: ...`
naming the setting, and nothing written (or overwritten).

The runs that fail before training are started together by one fixture (each is mostly start-up time, so they
overlap well) and checked one per test; refusing another model's checkpoint needs a real checkpoint first (slow).
"""

from __future__ import annotations

import pathlib

import pytest

from _sslm_runs import Run, assert_one_line_error, pretrain_args, run, sslm_env, tree_digest

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


def test_glob_matching_nothing(failing_runs):
    """Found when the corpus is first read, after the workdir was checked: at most empty folders are left."""
    tmp, runs = failing_runs
    process, workdir = runs["glob_matching_nothing"]
    assert_one_line_error(process, f"glob '{tmp}/no_corpus/*.txt' matches no file")
    assert [p for p in workdir.rglob("*") if not p.is_dir()] == []


# A WordPiece vocabulary with BERT's special-token ids, so no run here spends time training one.
SPECIALS = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARACTERS = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,;:!?'\"()[]{}-_=+*/<>@#$%&|\\`~^")
WORDS = ["the", "of", "and", "to", "is", "in", "return", "def", "class", "object", "file", "string", "list", "value"]


@pytest.mark.slow
def test_checkpoint_of_another_model_size_is_refused_untouched(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(SPECIALS + CHARACTERS + ["##" + c for c in CHARACTERS[:36]] + WORDS) + "\n")
    workdir = tmp_path / "run"
    common = {"data.vocab_path": vocab, "fill_mask_examples": "()", "total_steps": 2}
    run(pretrain_args(workdir, **common, **{"model.size": "tiny"}), env=sslm_env(), logs=tmp_path / "tiny")
    before = tree_digest(workdir)
    assert any(name.startswith("checkpoints/2/state/") for name in before)

    mini = Run(pretrain_args(workdir, **common, **{"model.size": "mini"}), env=sslm_env(), logs=tmp_path / "mini")
    assert_one_line_error(mini, "checkpoints/2 is a checkpoint with model.size='tiny'", "model.size='mini'")
    assert tree_digest(workdir) == before

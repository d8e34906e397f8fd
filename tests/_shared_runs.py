"""Runs that several test files need, built once per test session and shared by both xdist workers.

    folder = built_once("tiny_classifier", build)   # build(folder) runs in the first worker that asks

xdist gives each worker its own session fixtures, so a run that two files need was trained twice. These are built in
the session's shared folder (conftest.py makes it) under a file lock: the first worker to ask builds, a worker asking
meanwhile waits for it, and later ones find it made. A build that failed leaves no completion mark: the next asker
builds again (and fails as loudly). The runs are read-only for the tests: a test that writes copies, or writes its
outputs elsewhere.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import shutil
from typing import Callable, NamedTuple

from _sslm_runs import (
    ROOT,
    SHARED_RUNS_VARIABLE,
    pretrain_args,
    run,
    session_compile_cache,
    sslm,
    sslm_env,
    write_tiny_vocab,
)


def built_once(name: str, build: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """The folder `name` in the session's shared folder, filled by `build(folder)` the first time it is asked for."""
    root = os.environ.get(SHARED_RUNS_VARIABLE)
    if not root:
        raise RuntimeError(f"{SHARED_RUNS_VARIABLE} is not set: tests/conftest.py sets it in pytest_configure")
    root = pathlib.Path(root)
    folder, complete = root / name, root / f"{name}.built"  # the mark is outside: the folder holds the runs only
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if not complete.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            complete.touch()
    return folder


# --- A tiny BERT pretrained, then fine-tuned on SST-2 rows ------------------------------------------------------

LABELS = {"0": "negative", "1": "positive"}  # SST-2's labels, renamed: label names travel through every command
TRAIN_ROWS, DEV_ROWS = 160, 37  # 37 dev rows: the last eval batch (8 rows) is padded


class TinyClassifier(NamedTuple):
    pretrained: pathlib.Path  # a 4-step smoke pretraining run (bert_demo.py:smoke, its checkpoint 4)
    finetuned: pathlib.Path  # `sslm finetune` from it: 4 steps on `train`, evaluated on `dev`
    train: pathlib.Path  # TSV (sentence, label) with the renamed labels
    dev: pathlib.Path
    dev_rows: list[tuple[str, str]]  # (sentence, label name) of dev, in order


def sst2_rows(path: pathlib.Path, count: int) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()[1 : count + 1]
    return [(sentence, LABELS[label]) for sentence, label in (line.split("\t") for line in lines)]


def write_tsv(path: pathlib.Path, rows, header=("sentence", "label")) -> pathlib.Path:
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return path


def finetune_flags(workdir, init_from, train, dev, *extra) -> tuple[str, ...]:
    return (
        "finetune", "--config=configs/glue.py:files,smoke", f"--workdir={workdir}", f"--config.init_from={init_from}",
        f"--config.data.train_files={train}", f"--config.data.eval_files={dev}", "--config.total_steps=4",
        "--config.eval_every_steps=4", "--config.checkpoint_every_steps=4", *extra,
    )  # fmt: skip


def _build_tiny_classifier(folder: pathlib.Path, sst2: pathlib.Path) -> None:
    from sslm_jax.config_loading import load_config
    from sslm_jax.training.loop import train_and_evaluate

    config = load_config(f"{ROOT}/configs/bert_demo.py:smoke")
    config.total_steps = config.eval_every_steps = config.checkpoint_every_steps = 4
    config.fill_mask_examples = ()
    train_and_evaluate(config, folder / "pretrain")
    train = write_tsv(folder / "train.tsv", sst2_rows(sst2 / "train.tsv", TRAIN_ROWS))
    dev = write_tsv(folder / "dev.tsv", sst2_rows(sst2 / "dev.tsv", DEV_ROWS))
    # model.size=mini on purpose: with init_from, the model's shape is the checkpoint's (tiny), not the config's.
    sslm(*finetune_flags(folder / "sst2", folder / "pretrain", train, dev, "--config.model.size=mini"))


def tiny_classifier(shared_data: pathlib.Path) -> TinyClassifier:
    """Used by test_finetune_cli.py (fine-tuning, eval, predict, export) and test_deploy_cli.py (compression)."""
    folder = built_once("tiny_classifier", lambda f: _build_tiny_classifier(f, shared_data / "sst2"))
    return TinyClassifier(
        pretrained=folder / "pretrain", finetuned=folder / "sst2", train=folder / "train.tsv", dev=folder / "dev.tsv",
        dev_rows=sst2_rows(shared_data / "sst2" / "dev.tsv", DEV_ROWS),
    )  # fmt: skip


# --- A tiny BERT pretraining run with two checkpoints ---------------------------------------------------------

# The ready-made vocabulary, no fill-mask examples at the end, steps 3 and 6 saved.
PRETRAINING_SETTINGS = {"fill_mask_examples": "()", "total_steps": 6, "checkpoint_every_steps": 3,
                        "keep_checkpoints": 3}  # fmt: skip


def _build_pretraining_run(folder: pathlib.Path) -> None:
    vocab = write_tiny_vocab(folder / "vocab.txt")
    run(pretrain_args(folder / "run", **PRETRAINING_SETTINGS, **{"data.vocab_path": vocab}),
        env=sslm_env(cache_dir=session_compile_cache()), logs=folder / "logs")  # fmt: skip


def tiny_pretraining_run() -> pathlib.Path:
    """A finished 6-step smoke run (`sslm pretrain`, bert_demo.py:smoke with PRETRAINING_SETTINGS) with checkpoints 3
    and 6; its vocabulary is beside it (`run.parent / "vocab.txt"`). test_operations.py and test_cli.py work on copies
    (`copy_of`)."""
    return built_once("tiny_pretraining_run", _build_pretraining_run) / "run"


def copy_of(trained: pathlib.Path, where: pathlib.Path) -> pathlib.Path:
    """`where/run`, a copy of the run `trained`, with the vocabulary beside it as `where/vocab.txt`."""
    where.mkdir(parents=True)
    shutil.copy(trained.parent / "vocab.txt", where / "vocab.txt")
    return pathlib.Path(shutil.copytree(trained, where / "run"))

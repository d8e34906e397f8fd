"""The tokenizer a run uses, by one rule, decided before any data is read for training.

    vocab_path = prepare_vocab(config, workdir)          # the first file of the tokenizer (vocab.txt, vocab.json)
    tok = tokenizers.load(config.data, vocab_path)

`data.vocab_path` → the `init_from` checkpoint's → one trained earlier in this workdir (checked against the copy
its newest checkpoint holds, and put back from it if damaged; refused if it was trained with other settings) → a new
one of kind `data.tokenizer` trained on the training corpus (process 0 trains, the others wait).

A vocabulary trained into a workdir is recorded with the settings it was trained with (`SETTINGS_FILE`: the kind and
the `config.data` fields it reads, `TokenizerKind.settings`). The record matters before the first checkpoint: after
it, resume_settings refuses a changed `data.vocab_size` anyway, but a run killed while compiling leaves a vocabulary
and no checkpoint, and a rerun asking for another size must not silently train on the old one.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time

import jax
from absl import logging
from jax.experimental import multihost_utils

from sslm_jax.checkpoints import integrity, layout
from sslm_jax.errors import ConfigError

SETTINGS_FILE = "vocab_settings.json"


def prepare_vocab(config, workdir: pathlib.Path) -> pathlib.Path:
    """The vocabulary file of the run `config` in `workdir` (see the module docstring)."""
    from sslm_jax.data import sources, tokenizers

    kind = tokenizers.get(config.data.tokenizer)
    if config.data.vocab_path:  # its files were checked by validation.validate_vocab
        path = pathlib.Path(config.data.vocab_path)
        return path / kind.files[0] if path.is_dir() else path
    if config.init_from:
        return init_from_vocab(config.init_from, kind.files[0])
    path = workdir / kind.files[0]
    if jax.process_index() == 0:
        restore_from_checkpoint(kind.files, workdir)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("sslm vocabulary checked")
    if all((workdir / name).exists() for name in kind.files):
        check_settings(kind, config.data, workdir)
    else:
        if jax.process_index() == 0:
            logging.info("Training a %d-token %s vocabulary into %s.", config.data.vocab_size, kind.name, workdir)
            _train_whole(kind, sources.documents(config.data, split="train"), config.data, workdir)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("sslm vocabulary trained")
    return path


def restore_from_checkpoint(names, workdir: pathlib.Path) -> None:
    """The workdir's vocabulary must be the one its newest checkpoint saved (and verified, `integrity.verify`): a
    file that is missing or differs (truncated, overwritten) is moved aside to `<name>.corrupt-<UTC time>` and the
    checkpoint's copy put back, with one warning line. Without a checkpoint there is nothing to check against (a
    vocabulary is only ever written whole, `_train_whole`)."""
    steps = integrity.committed_steps(workdir / layout.CHECKPOINTS_DIR)
    if not steps or integrity.verify(steps[0], only=layout.VOCAB_ITEM + "/") is not None:
        return  # a damaged saved copy proves nothing about the workdir's (the trainer sets such steps aside)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for name in names:
        saved, here = steps[0] / layout.VOCAB_ITEM / name, workdir / name
        if not saved.exists() or (here.exists() and here.read_bytes() == saved.read_bytes()):
            continue
        aside = workdir / f"{name}.corrupt-{stamp}"
        what = f"differs from the copy saved with {steps[0]}: moved it to {aside}" if here.exists() else "is missing"
        if here.exists():
            os.replace(here, aside)
        tmp = workdir / f".{name}.tmp-{os.getpid()}"
        tmp.write_bytes(saved.read_bytes())
        os.replace(tmp, here)
        logging.warning("Vocabulary %s %s; put back the copy saved with %s.", here, what, steps[0])


def _settings(kind, data_config) -> dict:
    return {"tokenizer": kind.name, **{f"data.{field}": data_config[field] for field in kind.settings}}


def check_settings(kind, data_config, workdir: pathlib.Path) -> None:
    """ConfigError if the vocabulary in `workdir` was trained with other settings than `data_config` asks for. A
    vocabulary without a record (put there by hand, or trained before the record existed) is taken as it is."""
    record = workdir / SETTINGS_FILE
    if not record.exists():
        return
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{record} is unreadable ({e}): delete it to reuse the vocabulary beside it as it is") from e
    wanted = _settings(kind, data_config)
    changed = [field for field in wanted if field in saved and saved[field] != wanted[field]]
    if changed:
        asked = ", ".join(f"config.{field}={wanted[field]!r}" for field in changed)
        had = ", ".join(f"{field}={saved[field]!r}" for field in changed)
        raise ConfigError(
            f"{workdir / kind.files[0]} was trained with {had} but this run asks for {asked}: keep the old value, "
            "or use a new workdir to train a new vocabulary"
        )


def _train_whole(kind, documents, data_config, workdir: pathlib.Path) -> None:
    """Trains into a temporary folder and moves the files into `workdir` last, so a kill or a full disk never leaves
    a partial vocabulary that the next run would reuse (a lone file of a two-file kind is retrained as well)."""
    tmp = workdir / f".vocab-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        kind.train(documents, data_config, tmp)
        (tmp / SETTINGS_FILE).write_text(json.dumps(_settings(kind, data_config), sort_keys=True) + "\n")
        for name in (SETTINGS_FILE, *reversed(kind.files)):  # the first file, the one `prepare_vocab` returns, lands last
            os.replace(tmp / name, workdir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def init_from_vocab(init_from: str, name: str = layout.VOCAB_FILE) -> pathlib.Path:
    """The vocabulary file `name` an `init_from` source was trained with: its checkpoint's, or a Hugging Face
    directory's."""
    step_dir = layout.latest_checkpoint(init_from)
    folder = pathlib.Path(os.fspath(layout.vocab_dir(step_dir))) if step_dir is not None else pathlib.Path(init_from)
    if (folder / name).is_file():
        return folder / name
    raise ConfigError(
        f"init_from={init_from} has no vocabulary ({name}): set config.data.vocab_path to the one it was trained with"
    )

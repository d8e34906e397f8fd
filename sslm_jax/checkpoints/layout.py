"""The on-disk layout of an sslm checkpoint, its Orbax items, and reading one back (no training code needed).

Every checkpoint is one Orbax step directory under `<workdir>/checkpoints`, self-contained for resuming, evaluation,
inference and export:

    <workdir>/checkpoints/1000/
      state/               the TrainState (step, params, opt_state), sharded Orbax arrays
      config/config.json   the run's ConfigDict as JSON
      vocab/vocab.txt      the vocabulary the model was trained with
      data/process_0-of-2/ each host's input-pipeline position (`iterator.save(directory)`), one folder per host
      data/process_1-of-2/
      manifest/manifest.json  every other file's size and CRC32, written last (`integrity.py`)

All five are items of ONE Orbax save, so they are written into the same temporary directory and renamed together:
a step appears (and becomes "latest") only once every item of every host is complete. Writing is
`sslm_jax.training.checkpointing`; this module is what inference and `init_from` read with. Readers take the newest
*intact* step (its manifest checks out) and log a warning for each damaged one they skip; they never move or
delete anything (only the trainer, which holds the workdir's lock, moves a damaged step aside).

    step_dir = latest_checkpoint("runs/bert_tiny")    # runs/bert_tiny/checkpoints/1000
    config = load_config(step_dir); vocab = vocab_file(step_dir)
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from absl import logging

from sslm_jax.checkpoints import integrity
from sslm_jax.errors import CheckpointError

CHECKPOINTS_DIR = "checkpoints"
STATE_ITEM, CONFIG_ITEM, VOCAB_ITEM, DATA_ITEM = "state", "config", "vocab", "data"
CONFIG_FILE, VOCAB_FILE = "config.json", "vocab.txt"


# --- Orbax items of our own: the vocabulary file and each host's data-iterator position -----------------------


@dataclasses.dataclass
class VocabSave(ocp.args.CheckpointArgs):
    files: Mapping[str, str]  # name in the checkpoint -> the file to copy (vocab.txt; or vocab.json + merges.txt)


@dataclasses.dataclass
class DataSave(ocp.args.CheckpointArgs):
    iterator: Any  # has save(directory) / restore(directory)


@dataclasses.dataclass
class DataRestore(ocp.args.CheckpointArgs):
    iterator: Any


def tokenizer_files(vocab) -> dict[str, str]:
    """{name in the checkpoint: file} of a tokenizer: a tokenizer's `files` mapping as it is, or one vocabulary
    file (WordPiece), saved as vocab.txt."""
    if isinstance(vocab, Mapping):
        return {name: os.fspath(path) for name, path in vocab.items()}
    return {VOCAB_FILE: os.fspath(vocab)}


class VocabHandler(ocp.CheckpointHandler):
    """Copies the tokenizer's files into the step (one host writes them; every host reads back the folder)."""

    def save(self, directory: epath.Path, args: VocabSave):
        if jax.process_index() == 0:
            for name, path in args.files.items():
                (directory / name).write_bytes(epath.Path(path).read_bytes())

    def restore(self, directory: epath.Path, args=None) -> epath.Path:
        return directory


def data_folder(index: int, count: int) -> str:
    return f"process_{index}-of-{count}"


class DataIteratorHandler(ocp.CheckpointHandler):
    """Each host saves its own iterator position into `data/process_<i>-of-<n>` of the same step.

    Orbax calls `save` during the blocking part of `CheckpointManager.save`, so the position is that of the batch
    the saved state has just consumed, even though the arrays are written in the background.
    """

    def save(self, directory: epath.Path, args: DataSave):
        folder = directory / data_folder(jax.process_index(), jax.process_count())
        folder.mkdir(parents=True, exist_ok=True)
        args.iterator.save(os.fspath(folder))

    def restore(self, directory: epath.Path, args: DataRestore):
        args.iterator.restore(os.fspath(directory / data_folder(jax.process_index(), jax.process_count())))
        return args.iterator


def handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    registry.add(STATE_ITEM, ocp.args.StandardSave)
    registry.add(STATE_ITEM, ocp.args.StandardRestore)
    config_handler = ocp.JsonCheckpointHandler(CONFIG_FILE)
    registry.add(CONFIG_ITEM, ocp.args.JsonSave, config_handler)
    registry.add(CONFIG_ITEM, ocp.args.JsonRestore, config_handler)
    registry.add(VOCAB_ITEM, VocabSave, VocabHandler())
    data_handler = DataIteratorHandler()
    registry.add(DATA_ITEM, DataSave, data_handler)
    registry.add(DATA_ITEM, DataRestore, data_handler)
    # Last: Orbax finalizes items in registration order, and the manifest must see every other item complete.
    registry.add(integrity.MANIFEST_ITEM, integrity.ManifestSave, integrity.ManifestHandler())
    return registry


# --- Reading ----------------------------------------------------------------------------------------------------


def latest_checkpoint(path: str | os.PathLike) -> epath.Path | None:
    """The newest intact step directory in an sslm workdir, its `checkpoints/` folder, or `path` itself when it is
    a step directory; None when there is no step at all.

        latest_checkpoint("runs/bert_tiny")               # -> runs/bert_tiny/checkpoints/1000
        latest_checkpoint("runs/bert_tiny/checkpoints/500")  # -> runs/bert_tiny/checkpoints/500

    A damaged step (`integrity.verify`) is skipped with one warning line; CheckpointError when `path` is a damaged
    step, or when steps exist and none is intact.
    """
    path = epath.Path(path)
    if (path / STATE_ITEM).is_dir() and ocp.utils.is_checkpoint_finalized(path):
        problem = integrity.verify(path)
        if problem:
            raise CheckpointError(f"checkpoint {path} is damaged: {problem}; use another step of the run")
        return path
    folder = path / CHECKPOINTS_DIR if (path / CHECKPOINTS_DIR).is_dir() else path
    steps = integrity.committed_steps(folder)
    damaged = []
    for step_dir in steps:
        problem = integrity.verify(step_dir)
        if problem is None:
            if damaged:
                logging.warning("Using %s, the newest intact checkpoint.", step_dir)
            return step_dir
        logging.warning("Skipping damaged checkpoint %s: %s.", step_dir, problem)
        damaged.append(step_dir.name)
    if damaged:
        raise CheckpointError(
            f"no intact checkpoint in {folder}: step(s) {', '.join(damaged)} are damaged (see the warnings above); "
            f"restore them from a backup or retrain"
        )
    return None


def load_config(checkpoint_dir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The ConfigDict a checkpoint was saved with."""
    file = epath.Path(checkpoint_dir) / CONFIG_ITEM / CONFIG_FILE
    if not file.exists():
        raise CheckpointError(f"{file} is missing: {checkpoint_dir} was not saved by sslm_jax's save_checkpoint")
    return _upgrade(ml_collections.ConfigDict(json.loads(file.read_text())))


def _upgrade(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Fills what older runs' configs do not record, so that they read like today's:

    - runs saved before model families existed (sslm_jax 0.1) were all BERT with a WordPiece vocabulary, and their
      head followed from the task;
    - runs saved before `data.masking` existed chose between token and whole-word masking with the bool
      `data.whole_word_masking`: True becomes masking="word", False "token", and the old field is dropped (a config
      that still sets it is refused by the data validation);
    - runs saved before `model.pooling` existed pooled [CLS].
    """
    data = config.get("data")
    if data is not None and "tokenizer" not in data:
        data.tokenizer = "wordpiece"
    if data is not None and "whole_word_masking" in data and "masking" not in data:
        data.masking = "word" if data.whole_word_masking else "token"
        del data["whole_word_masking"]
    model = config.get("model")
    if model is not None and "family" not in model:
        model.family = "bert"
    if model is not None and "head" not in model:
        model.head = {"pretrain": "pretraining", "classify": "classification"}.get(config.get("task"), "")
    if model is not None and "pooling" not in model:
        model.pooling = "cls"
    return config


def vocab_dir(checkpoint_dir: str | os.PathLike) -> epath.Path:
    """The folder of the tokenizer files saved with a checkpoint (vocab.txt; vocab.json + merges.txt)."""
    folder = epath.Path(checkpoint_dir) / VOCAB_ITEM
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is missing: {checkpoint_dir} was saved without its vocabulary")
    return folder


def vocab_file(checkpoint_dir: str | os.PathLike) -> epath.Path:
    """The vocabulary file saved with a checkpoint."""
    file = epath.Path(checkpoint_dir) / VOCAB_ITEM / VOCAB_FILE
    if not file.exists():
        raise CheckpointError(f"{file} is missing: {checkpoint_dir} was saved without its vocabulary")
    return file

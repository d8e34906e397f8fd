"""The vocabulary a run uses, by one rule, decided before any data is read for training.

    vocab_path = prepare_vocab(config, workdir)

`data.vocab_path` → the `init_from` checkpoint's → one trained earlier in this workdir → a new one trained on the
training corpus (process 0 trains, the others wait).
"""

from __future__ import annotations

import os
import pathlib

import jax
from absl import logging
from jax.experimental import multihost_utils

from sslm_jax.checkpoints import layout
from sslm_jax.errors import ConfigError


def prepare_vocab(config, workdir: pathlib.Path) -> pathlib.Path:
    """The vocabulary file of the run `config` in `workdir` (see the module docstring)."""
    from sslm_jax.data import sources, tokenizer

    if config.data.vocab_path:
        path = pathlib.Path(config.data.vocab_path)
        if not path.is_file():
            raise ConfigError(f"config.data.vocab_path={path} does not exist")
        return path
    if config.init_from:
        return init_from_vocab(config.init_from)
    path = workdir / layout.VOCAB_FILE
    if not path.exists():
        if jax.process_index() == 0:
            logging.info("Training a %d-token WordPiece vocabulary into %s.", config.data.vocab_size, path)
            docs = sources.documents(config.data, split="train")
            tokenizer.train_wordpiece(
                docs, vocab_size=config.data.vocab_size, out_dir=workdir, lower_case=config.data.lower_case
            )
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("sslm vocabulary trained")
    return path


def init_from_vocab(init_from: str) -> pathlib.Path:
    """The vocabulary an `init_from` source was trained with: its checkpoint's, or a Hugging Face vocab.txt."""
    step_dir = layout.latest_checkpoint(init_from)
    if step_dir is not None:
        return pathlib.Path(os.fspath(layout.vocab_file(step_dir)))
    path = pathlib.Path(init_from) / layout.VOCAB_FILE
    if path.is_file():
        return path
    raise ConfigError(
        f"init_from={init_from} has no vocabulary (vocab.txt): set config.data.vocab_path to the one it was trained with"
    )

"""Command line: `sslm <command> [--flag=value ...]` (also `python -m sslm_jax <command>`).

Only flag parsing lives here; each command calls one library function. Bad input (`SslmError`) is printed as
one line `sslm <command>: error: ...` and exits with status 2.
"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from sslm_jax.errors import SslmError

# name -> (one-line help, function(argv) -> None). Each command module adds itself here.
COMMANDS: dict[str, tuple[str, object]] = {}


def command(name: str, help_text: str):
    def register(fn):
        COMMANDS[name] = (help_text, fn)
        return fn

    return register


# --- train-tokenizer ---------------------------------------------------------------------------------------
flags.DEFINE_string("input", None, "train-tokenizer: glob(s) of text files (comma-separated).")
flags.DEFINE_integer("vocab-size", 8192, "train-tokenizer: vocabulary size, special tokens included.")
flags.DEFINE_string("out", None, "train-tokenizer / export-hf: output directory.")
flags.DEFINE_bool("lower-case", True, "train-tokenizer: lower-case and strip accents (uncased BERT).")
flags.DEFINE_string("format", "text", "train-tokenizer: text | lines | jsonl | tsv | csv.")
flags.DEFINE_string("text-field", "text", "train-tokenizer: jsonl field or tsv/csv column with the text.")

# --- pretrain / finetune -------------------------------------------------------------------------------------
config_flags.DEFINE_config_file(
    "config", None, "pretrain / finetune: configs/NAME.py[:variant]; override fields with --config.key=value.",
    lock_config=True,
)  # fmt: skip
flags.DEFINE_string("workdir", None, "pretrain / finetune / eval / predict / fill-mask / export-hf: the run's folder.")

FLAGS = flags.FLAGS


def _train(argv, task: str):
    from sslm_jax.training.loop import train_and_evaluate

    if FLAGS.config is None:
        raise SslmError(f"--config is required, e.g. --config=configs/{'bert_demo' if task == 'pretrain' else 'glue'}.py")
    if not FLAGS.workdir:
        raise SslmError("--workdir is required: the folder for checkpoints, metrics and the vocabulary")
    if FLAGS.config.task != task:
        raise SslmError(f"--config sets task={FLAGS.config.task!r}; use `sslm {'pretrain' if FLAGS.config.task == 'pretrain' else 'finetune'}`")
    final = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    if final:
        print("final eval: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()), flush=True)


@command("pretrain", "pretrain a model: --config=configs/X.py[:variant] --workdir=DIR [--config.key=value ...]")
def _pretrain(argv):
    _train(argv, "pretrain")


@command("train-tokenizer", "train a WordPiece vocabulary: --input=GLOB --vocab-size=N --out=DIR")
def _train_tokenizer(argv):
    from sslm_jax.data import sources

    for name in ("input", "out"):
        if not FLAGS[name].value:
            raise SslmError(f"--{name} is required")
    docs = sources.file_documents(
        FLAGS["input"].value, format=FLAGS["format"].value, text_field=FLAGS["text-field"].value
    )
    from sslm_jax.data import tokenizer  # after the input checks: TensorFlow's import is slow and noisy

    path = tokenizer.train_wordpiece(
        docs, vocab_size=FLAGS["vocab-size"].value, out_dir=FLAGS["out"].value, lower_case=FLAGS["lower-case"].value
    )
    print(f"wrote {path}")


def _usage() -> str:
    lines = ["usage: sslm <command> [--flag=value ...]", "", "commands:"]
    lines += [f"  {name:16s} {help_text}" for name, (help_text, _) in COMMANDS.items()]
    return "\n".join(lines)


def _main(argv):
    if len(argv) < 2 or argv[1] not in COMMANDS:
        given = f"unknown command {argv[1]!r}\n" if len(argv) >= 2 else ""
        print(given + _usage(), file=sys.stderr)
        sys.exit(2)
    name = argv[1]
    try:
        COMMANDS[name][1](argv[2:])
    except SslmError as e:
        print(f"sslm {name}: error: {e}", file=sys.stderr)
        sys.exit(2)


def run():
    """Console-script entry point."""
    from sslm_jax.config_loading import config_dir_on_path

    # Config files import their siblings (`from configs import base`): make that work from any directory
    # before absl loads the file while parsing flags.
    for arg in sys.argv[1:]:
        if arg.startswith("--config="):
            config_dir_on_path(arg.split("=", 1)[1])
    # TensorFlow's C++ start-up chatter (no CUDA driver, ...) says nothing about the run.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.call_after_init(_quiet_library_info)
    app.run(_main)


class _LibraryInfoFilter(logging.Filter):
    """Drops INFO records of Orbax (one per array write): the run's own INFO lines stay readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "orbax" not in record.pathname


def _quiet_library_info():
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logging.get_absl_handler().addFilter(_LibraryInfoFilter())

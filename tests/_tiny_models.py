"""Tiny Hugging Face BERT directories built locally (nothing downloads), for the deployment tests."""

from __future__ import annotations

import pathlib

import jax

from sslm_jax.interop import huggingface
from sslm_jax.models import bert

CONFIG = bert.BertConfig.from_size("tiny", vocab_size=40, max_position_embeddings=64)
WORDS = "the a movie film was is great good bad dull fun funny boring".split()


def vocab_file(folder: pathlib.Path) -> pathlib.Path:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tokens += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"[: CONFIG.vocab_size - len(tokens)]]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("".join(t + "\n" for t in tokens))
    return path


def hf_dir(tmp: pathlib.Path, head: str, *, seed: int = 0) -> pathlib.Path:
    """A Hugging Face directory with a random tiny BERT: head "classification" (labels neg, pos) or "pretraining"."""
    model = bert.BertForSequenceClassification(CONFIG, num_labels=2) if head == "classification" else (
        bert.BertForPreTraining(CONFIG)
    )  # fmt: skip
    params = bert.init_params(model, jax.random.key(seed))
    return huggingface.save_checkpoint(
        tmp / f"hf_{head}",
        CONFIG,
        jax.device_get(params),
        vocab_file=vocab_file(tmp / "vocab_src"),
        id2label=("neg", "pos") if head == "classification" else None,
    )

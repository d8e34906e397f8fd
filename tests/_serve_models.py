"""Tiny Hugging Face model directories for the service tests, built in a second from random weights: a BERT
classifier (labels negative / positive), a BERT pretraining model (fill-mask, embed) and a GPT-2 with a byte-level BPE
trained on a few sentences. Weights are drawn with numpy on the shapes init would make (no init compilation), with a
spread wide enough that greedy choices and top-k orders have no near-ties."""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from sslm_jax.interop import hf_gpt2, huggingface
from sslm_jax.models import bert, gpt

WORDS = "the a movie film was is good great bad dull fun funny boring and not very plot actors story".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *[f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]]
BERT = bert.BertConfig(
    vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    max_position_embeddings=16,
)  # fmt: skip
GPT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64)
SENTENCES = ["the movie was good and fun .", "a dull film , not very funny .", "def read_file(path): return 1"] * 20


def _random(model, init, seed: int, scale: float):
    rs = np.random.RandomState(seed)
    abstract = jax.eval_shape(lambda rng: init(model, rng), jax.random.key(0))

    def draw(path, leaf):
        value = scale * rs.randn(*leaf.shape)
        return (value + 1.0 if path[-1].key == "scale" else value).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, abstract)


def bert_dir(folder: pathlib.Path, head: str) -> pathlib.Path:
    """head "classification" (2 labels) or "pretraining"."""
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(VOCAB) + "\n")
    if head == "classification":
        model = bert.BertForSequenceClassification(BERT, num_labels=2)
    else:
        model = bert.BertForPreTraining(BERT)
    params = _random(model, bert.init_params, seed=1, scale=0.3)
    labels = ["negative", "positive"] if head == "classification" else None
    return huggingface.save_checkpoint(folder / head, BERT, params, vocab_file=vocab_file, id2label=labels)


def gpt_dir(folder: pathlib.Path) -> pathlib.Path:
    from sslm_jax.data import bpe_vocab, host_bpe

    tokenizer_dir = bpe_vocab.train_bpe(SENTENCES, vocab_size=300, out_dir=folder / "bpe")
    tok = host_bpe.HostBPE(tokenizer_dir)
    config = gpt.GPTConfig(vocab_size=tok.vocab_size, bos_token_id=tok.eot_id, eos_token_id=tok.eot_id, **GPT)
    params = _random(gpt.GPTLMHeadModel(config), gpt.init_params, seed=2, scale=0.2)
    return hf_gpt2.save_checkpoint(folder / "gpt2", config, params, tokenizer_dir=tokenizer_dir)

"""Fill-mask prediction: the top-k vocabulary entries for each [MASK] in a sentence.

    predictions = fill_mask(model, params, tokenizer, ["the movie was [MASK] ."], top_k=3)
    predictions[0][0]  # [("great", 0.21), ("good", 0.17), ("bad", 0.09)] for the first [MASK]

Works with any model whose output has `mlm_logits` (BertForPreTraining, BertForMaskedLM).
"""

from __future__ import annotations

import functools

import numpy as np
import jax
import jax.numpy as jnp

from sslm_jax.errors import SslmError, shown
from sslm_jax.inference.loading import load_model

MASK_TOKEN = "[MASK]"
# Heads whose output has `mlm_logits`: BERT's, and ELECTRA's generator (alone or in the joint pretraining model).
MASKED_LM_HEADS = ("pretraining", "masked_lm", "generator")


def encode_with_masks(tokenizer, text: str, max_seq_len: int) -> list[int]:
    """`[CLS] pieces… [SEP]` with the literal "[MASK]" kept as the mask id (the word-piece tokenizer would split it)."""
    parts = text.split(MASK_TOKEN)
    if len(parts) == 1:
        raise SslmError(f"no {MASK_TOKEN} in {shown(text)}: mark the word(s) to predict with {MASK_TOKEN}")
    pieces = tokenizer.encode(parts)
    ids = [tokenizer.cls_id]
    for i, part_ids in enumerate(pieces):
        ids += part_ids
        if i < len(pieces) - 1:
            ids.append(tokenizer.mask_id)
    ids.append(tokenizer.sep_id)
    if len(ids) > max_seq_len:
        raise SslmError(f"{shown(text)} is {len(ids)} tokens long; the model takes at most {max_seq_len}")
    return ids


def fill_mask(model, params, tokenizer, texts: list[str], *, top_k: int = 5, max_seq_len: int = 128):
    """For each text, for each [MASK] in it, the `top_k` (token, probability) pairs."""
    encoded = [encode_with_masks(tokenizer, t, max_seq_len) for t in texts]
    length = max(len(ids) for ids in encoded)
    input_ids = np.full((len(texts), length), tokenizer.pad_id, np.int32)
    for row, ids in enumerate(encoded):
        input_ids[row, : len(ids)] = ids
    attention_mask = (np.arange(length)[None, :] < np.array([len(ids) for ids in encoded])[:, None]).astype(np.int32)
    logits = _logits(model, params, jnp.asarray(input_ids), jnp.asarray(attention_mask))
    probs = np.asarray(token_probabilities(logits, len(tokenizer.vocab)))
    results = []
    for row, ids in enumerate(encoded):
        per_mask = []
        for pos in np.flatnonzero(np.asarray(ids) == tokenizer.mask_id):
            best = np.argsort(-probs[row, pos])[:top_k]
            per_mask.append([(tokenizer.vocab[i], float(probs[row, pos, i])) for i in best])
        results.append(per_mask)
    return results


def token_probabilities(logits, num_tokens: int):
    """softmax over the model's whole output (as transformers' fill-mask pipeline), with the ids the tokenizer does
    not have (a model vocab_size padded past the vocabulary) set to -1, so that no ranking picks them."""
    probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.where(jnp.arange(probs.shape[-1]) < num_tokens, probs, -1.0)


@functools.partial(jax.jit, static_argnums=0)
def _logits(model, params, input_ids, attention_mask):
    return model.apply({"params": params}, input_ids, attention_mask=attention_mask).mlm_logits


def fill_mask_from(path, texts: list[str], *, top_k: int = 5):
    """`fill_mask` with the model saved at `path`: an sslm BERT or ELECTRA pretraining workdir (or checkpoint), or a
    Hugging Face BertForPreTraining / BertForMaskedLM / ElectraForMaskedLM directory. Texts are limited to the model's max_seq_len."""
    if not texts:
        raise SslmError(f"no text given: pass one or more sentences with {MASK_TOKEN}")
    if top_k < 1:
        raise SslmError(f"top_k={top_k} must be at least 1")
    loaded = load_model(path, host_tokenizer=True)  # WordPiece without TensorFlow: a one-shot call's import cost
    if loaded.head not in MASKED_LM_HEADS:
        raise SslmError(
            f"{loaded.path} holds a {loaded.head} model, which has no masked-LM head: use a BERT or ELECTRA "
            "pretraining run, or a BertForMaskedLM / BertForPreTraining / ElectraForMaskedLM directory"
        )
    top_k = min(top_k, loaded.tokenizer.vocab_size)
    return fill_mask(
        loaded.model, loaded.params, loaded.tokenizer, list(texts), top_k=top_k, max_seq_len=loaded.max_seq_len
    )


def print_fill_mask(model, tokenizer, texts, max_seq_len: int, params) -> None:
    """Prints the top-5 guesses for each [MASK] of `texts` (the pretraining task's end-of-run hook)."""
    results = fill_mask(model, params, tokenizer, list(texts), top_k=5, max_seq_len=max_seq_len)
    for text, per_mask in zip(texts, results):
        guesses = "; ".join(" ".join(f"{t} ({p:.2f})" for t, p in mask) for mask in per_mask)
        print(f"fill-mask: {text}\n    -> {guesses}", flush=True)

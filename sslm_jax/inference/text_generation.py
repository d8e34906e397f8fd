"""Text in, text out: prompts through a causal LM's tokenizer, `generate.generate`, and back (`sslm generate`).

    results = generate_from("runs/gpt_demo", ["def read_file(path):"], max_new_tokens=32, temperature=0.8,
                            top_k=40, seed=0)
    results[0][0]   # the first sample's continuation of the first prompt (text after the prompt)

`complete(model, params, tokenizer, prompts, ...)` does the same for a model already in memory (the causal-LM
task's end-of-run hook). Prompts of one call go in one batch (right-padded; `generate` buckets their length);
`num_samples` repeats each prompt, every sample drawn with its own key from `seed`.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from sslm_jax.errors import SslmError
from sslm_jax.inference import generate as generate_lib
from sslm_jax.inference.loading import load_model


def encode_prompts(tokenizer, prompts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded ids [B, longest] and lengths [B]; an empty prompt becomes the end-of-text id (a document
    start), as in GPT-2's unconditional samples."""
    ids = [row or [tokenizer.eot_id] for row in tokenizer.encode(list(prompts))]
    lengths = np.array([len(row) for row in ids], np.int32)
    out = np.zeros((len(ids), int(lengths.max())), np.int32)
    for i, row in enumerate(ids):
        out[i, : len(row)] = row
    return out, lengths


def complete(
    model,
    params,
    tokenizer,
    prompts: Sequence[str],
    *,
    init_cache,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    num_samples: int = 1,
) -> list[list[str]]:
    """For each prompt, `num_samples` continuations (the text after the prompt, up to end-of-text)."""
    if not prompts:
        raise SslmError("no prompt given: pass one or more texts, or --input=FILE")
    if num_samples < 1:
        raise SslmError(f"num_samples={num_samples} must be at least 1")
    ids, lengths = encode_prompts(tokenizer, [p for p in prompts for _ in range(num_samples)])
    out = generate_lib.generate(
        model, params, ids, jax.random.key(seed), max_new_tokens=max_new_tokens, init_cache=init_cache,
        prompt_lengths=lengths, temperature=temperature, top_k=top_k, top_p=top_p, eos_id=tokenizer.eot_id,
    )  # fmt: skip
    texts = decode_new_tokens(tokenizer, np.asarray(out.tokens), np.asarray(out.lengths))
    return [texts[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]


def decode_new_tokens(tokenizer, tokens: np.ndarray, counts: np.ndarray) -> list[str]:
    """The text of each row's first `counts[i]` new tokens [B, N], end-of-text dropped."""
    texts = []
    for row, count in zip(tokens, counts):
        texts.append(tokenizer.decode([int(t) for t in row[:count] if int(t) != tokenizer.eot_id]))
    return texts


def generate_from(path, prompts: Sequence[str], **settings) -> list[list[str]]:
    """`complete` with the causal LM saved at `path`: an sslm causal-LM run or a Hugging Face GPT-2 directory."""
    from sslm_jax.models import registry

    loaded = load_model(path, host_tokenizer=True)  # BPE without TensorFlow: a one-shot call's import cost
    if loaded.head != "causal_lm":
        raise SslmError(
            f"{loaded.path} holds a {loaded.head} model, which cannot generate text: use a causal-LM run "
            "(configs/gpt_demo.py) or a Hugging Face GPT-2 directory"
        )
    family = registry.get("gpt" if loaded.kind == "huggingface" else loaded.run_config.model.family)
    return complete(loaded.model, loaded.params, loaded.tokenizer, prompts, init_cache=family.init_cache, **settings)

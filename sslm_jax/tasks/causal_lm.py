"""The causal-LM pretraining task: a model family's "causal_lm" head (GPT) on packed next-token rows.

    task = tasks.get("causal_lm").build(config, tokenizer, process_index=0, process_count=1)

Evaluation reports the exact next-token means over the eval split (loss, perplexity, next_token_accuracy) and
`unigram_perplexity`: the perplexity of the eval targets under their own unigram frequencies, the best any
context-free model can do there, which the model's perplexity must beat to show it uses context.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from sslm_jax.data import tokenizers
from sslm_jax.inference.text_generation import complete
from sslm_jax.models import registry
from sslm_jax.objectives import make_eval_step
from sslm_jax.objectives.causal_lm import make_causal_lm_loss
from sslm_jax.tasks.base import Task, register

HEAD = "causal_lm"


def validate(config) -> None:
    from sslm_jax.data import causal_lm  # TF is imported only when a task is used

    causal_lm.validate_settings(config.data, max_position_embeddings=config.model.max_position_embeddings)


@register("causal_lm", command="pretrain", validate=validate)
def build(config, tokenizer, *, process_index: int, process_count: int) -> Task:
    from sslm_jax.data import causal_lm

    d = config.data
    family = registry.get(config.model.family)
    model_config = family.config_for(config.model, tokenizer.vocab_size)
    model = family.model(model_config, HEAD)
    loss_fn = make_causal_lm_loss(model, segment_attention=d.segment_attention)
    dataset = functools.partial(
        causal_lm.create_dataset,
        d,
        tokenizer,
        per_host_batch=config.batch_size // process_count,
        seed=config.seed,
        max_position_embeddings=config.model.max_position_embeddings,
        process_index=process_index,
        process_count=process_count,
    )
    return Task(
        model=model,
        loss_fn=loss_fn,
        train_data=functools.partial(dataset, split="train"),
        eval_data=functools.partial(dataset, split="eval"),
        eval_step=functools.partial(eval_step, make_eval_step(loss_fn), model_config.vocab_size),
        summarize=functools.partial(summarize, loss_fn.finalize),
        seq_len=d.max_seq_len,
        flops_per_sequence=family.train_flops(model_config, d.max_seq_len, None),
        progress_keys=("loss", "next_token_accuracy"),
        metadata={"model.vocab_size": model_config.vocab_size, "model.head": HEAD},
        end_of_run=sample_hook(config, model, tokenizer, family, tuple(config.sample_prompts)),
        description=f"{family.name}-{config.model.size} {model_config}",
    )


def sample_hook(config, model, tokenizer, family, prompts: tuple[str, ...]):
    """The end-of-run hook that prints a greedy continuation of each prompt (None without prompts)."""
    if not prompts:
        return None
    first_file = next(iter(tokenizer.files.values()))

    def show(params) -> None:
        # The prompts are encoded on the host, as `sslm generate` does: the in-graph tokenizer would first trace its
        # graph for this one call (about 3 s for byte-level BPE). Both give the same ids. Loaded here, at the end of
        # the run, not when the task is built: a run stopped earlier never needs it.
        host = tokenizers.get(config.data.tokenizer).load_for(first_file, config.data, host=True)
        texts = complete(
            model, params, host, prompts, init_cache=family.init_cache,
            max_new_tokens=config.sample_max_new_tokens, temperature=0.0,
        )  # fmt: skip
        for prompt, (text,) in zip(prompts, texts):
            print(f"sample: {prompt!r}\n    -> {text!r}", flush=True)

    return show


def eval_step(sums_step, vocab_size, params, batch):
    """The eval sums, plus a histogram of the weighted targets for the unigram baseline."""
    sums = sums_step(params, batch)
    targets, weights = batch["input_ids"][:, 1:], batch["loss_weights"][:, 1:]
    sums["target_counts"] = jnp.zeros(vocab_size, jnp.float32).at[targets].add(weights)
    return sums


def summarize(finalize, outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Eval-step sums over all batches -> exact means and `unigram_perplexity` (see the module docstring)."""
    if not outputs:
        return {}
    totals = {k: np.sum([np.asarray(o[k], np.float64) for o in outputs], axis=0) for k in outputs[0]}
    counts = totals.pop("target_counts")
    out = {k: float(v) for k, v in finalize(totals).items()}
    p = counts[counts > 0] / max(counts.sum(), 1.0)
    out["unigram_perplexity"] = float(np.exp(-np.sum(p * np.log(p))))
    return out

"""Prompt -> response fine-tuning of a causal LM (`sslm finetune --config=configs/causal_sft.py`).

    task = tasks.get("causal_sft").build(config, tokenizer, process_index=0, process_count=1)

The loss and every eval metric count response tokens only (data/causal_sft.py): eval reports the response
perplexity, next-token accuracy on responses and the unigram baseline of the response tokens. The end of a run
prints greedy continuations of `config.sample_prompts`, or of the first three eval prompts.
"""

from __future__ import annotations

import functools

from absl import logging

from sslm_jax.errors import ConfigError
from sslm_jax.models import registry
from sslm_jax.objectives import make_eval_step
from sslm_jax.objectives.causal_lm import make_causal_lm_loss
from sslm_jax.tasks import causal_lm
from sslm_jax.tasks.base import Task, register, require_head

HEAD = "causal_lm"


def validate(config) -> None:
    from sslm_jax.data import causal_sft

    require_head(config, HEAD)
    causal_sft.fields(config.data)
    causal_sft.check_eval_fraction(config.data)
    limit = config.model.max_position_embeddings
    if not 4 <= config.data.max_seq_len <= limit:
        raise ConfigError(f"config.data.max_seq_len={config.data.max_seq_len} must be between 4 and {limit}")


def _evaluates_on_the_host(config) -> bool:
    """Its eval rows are always numpy batches (data/causal_sft.py): `sslm eval` of such a run imports no TensorFlow."""
    del config
    return True


@register("causal_sft", command="finetune", validate=validate, host_eval=_evaluates_on_the_host)
def build(config, tokenizer, *, process_index: int, process_count: int) -> Task:
    from sslm_jax.data import causal_sft

    d = config.data
    family = registry.get(config.model.family)
    model_config = family.config_for(config.model, tokenizer.vocab_size)
    model = family.model(model_config, HEAD)
    loss_fn = make_causal_lm_loss(model, segment_attention=False)
    where = dict(per_host_batch=config.batch_size // process_count, max_seq_len=d.max_seq_len,
                 process_index=process_index, process_count=process_count)  # fmt: skip
    # The eval split first: its errors (a row without a response, nothing that fits) surface before training. It is
    # numpy batches built on the host (`sslm eval` of the run then imports no TensorFlow); train data is tf.data.
    eval_batches, stats = causal_sft.create_eval_batches(d, tokenizer, **where)
    _log_stats("eval", stats, d.max_seq_len)
    # Shown at the end: the configured prompts, else the first eval prompts.
    prompts = tuple(config.sample_prompts) or tuple(p for p, _ in causal_sft.split_pairs(d, "eval")[:3])

    def train_data():
        ds, train_stats = causal_sft.create_dataset(d, tokenizer, seed=config.seed, **where)
        _log_stats("train", train_stats, d.max_seq_len)
        return ds

    return Task(
        model=model,
        loss_fn=loss_fn,
        train_data=train_data,
        eval_data=lambda: eval_batches,
        eval_step=functools.partial(causal_lm.eval_step, make_eval_step(loss_fn), model_config.vocab_size),
        summarize=functools.partial(causal_lm.summarize, loss_fn.finalize),
        seq_len=d.max_seq_len,
        flops_per_sequence=family.train_flops(model_config, d.max_seq_len, None),
        progress_keys=("loss", "next_token_accuracy"),
        metadata={"model.vocab_size": model_config.vocab_size, "model.head": HEAD},
        end_of_run=causal_lm.sample_hook(config, model, tokenizer, family, prompts),
        description=f"{family.name}-{config.model.size} {model_config}",
    )


def _log_stats(split: str, stats, max_seq_len: int) -> None:
    logging.info("%s: %d prompt -> response examples.", split, stats.examples)
    if stats.dropped:
        logging.warning(
            "%s: %d examples dropped: their response and end-of-text are longer than max_seq_len=%d.",
            split, stats.dropped, max_seq_len,
        )  # fmt: skip
    if stats.prompts_cut:
        logging.warning("%s: %d prompts lost their oldest tokens to fit max_seq_len=%d.", split, stats.prompts_cut,
                        max_seq_len)  # fmt: skip

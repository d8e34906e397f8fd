"""The masked-LM pretraining task: a model family's "pretraining" head (MLM + NSP/SOP) on the tf.data pipeline.

    task = tasks.get("pretrain").build(config, tokenizer, process_index=0, process_count=1)

Evaluation reports the exact masked-LM means over the eval batches plus `unigram_accuracy` (the baseline of always
predicting the most frequent masked token); the end of a run prints fill-mask predictions for
`config.fill_mask_examples`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from sslm_jax.inference.fill_mask import print_fill_mask
from sslm_jax.models import registry
from sslm_jax.objectives import make_eval_step
from sslm_jax.objectives.pretraining import make_pretraining_loss
from sslm_jax.tasks.base import Task, register

HEAD = "pretraining"


def validate(config) -> None:
    from sslm_jax.data import pretraining  # TF is imported only when a task is used

    pretraining.validate_settings(config.data, max_position_embeddings=config.model.max_position_embeddings)


@register("pretrain", command="pretrain", validate=validate)
def build(config, tokenizer, *, process_index: int, process_count: int) -> Task:
    d = config.data
    return masked_lm_task(
        config,
        tokenizer,
        # Always the NSP/SOP head, even for "mlm": the checkpoint then has the layout of Hugging Face's
        # BertForPreTraining (exportable with no missing weights); the unused head costs one [H, 2] matmul.
        lambda model: make_pretraining_loss(model, use_nsp=d.objective != "mlm", segment_attention=d.segment_attention),
        progress_keys=("loss", "mlm_accuracy"),
        process_index=process_index,
        process_count=process_count,
    )


def masked_lm_task(
    config,
    tokenizer,
    make_loss: Callable[[Any], Any],
    *,
    progress_keys: tuple[str, ...],
    process_index: int,
    process_count: int,
) -> Task:
    """A Task on the masked-LM pipeline's batches for the family's "pretraining" head, with the loss that
    `make_loss(model)` builds: the BERT objective here, ELECTRA's in tasks/electra.py. Evaluation adds the
    unigram baseline; the end of a run prints the model's fill-mask guesses for `config.fill_mask_examples`."""
    from sslm_jax.data import pretraining

    d = config.data
    family = registry.get(config.model.family)
    model_config = family.config_for(config.model, tokenizer.vocab_size)
    model = family.model(model_config, HEAD)
    loss_fn = make_loss(model)
    dataset = functools.partial(
        pretraining.create_dataset,
        d,
        tokenizer,
        per_host_batch=config.batch_size // process_count,
        seed=config.seed,
        max_position_embeddings=model_config.max_position_embeddings,
        process_index=process_index,
        process_count=process_count,
    )
    examples = tuple(config.fill_mask_examples)
    return Task(
        model=model,
        loss_fn=loss_fn,
        train_data=functools.partial(dataset, split="train"),
        eval_data=functools.partial(dataset, split="eval"),
        eval_step=functools.partial(eval_step, make_eval_step(loss_fn), model_config.vocab_size),
        summarize=functools.partial(summarize, loss_fn.finalize),
        seq_len=d.max_seq_len,
        flops_per_sequence=family.train_flops(model_config, d.max_seq_len, d.max_predictions_per_seq),
        progress_keys=progress_keys,
        metadata={"model.vocab_size": model_config.vocab_size, "model.head": HEAD},
        end_of_run=functools.partial(print_fill_mask, model, tokenizer, examples, d.max_seq_len) if examples else None,
        description=f"{family.name}-{config.model.size} {model_config}",
    )


def eval_step(sums_step, vocab_size, params, batch):
    """The eval sums, plus a histogram of the masked labels for the unigram baseline."""
    sums = sums_step(params, batch)
    sums["label_counts"] = jnp.zeros(vocab_size, jnp.float32).at[batch["masked_ids"]].add(batch["masked_weights"])
    return sums


def summarize(finalize, outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Eval-step sums over all batches -> exact means (loss, mlm_accuracy, perplexity, ...) and
    `unigram_accuracy`: the masked-token accuracy of always predicting the most frequent label, the baseline
    that MLM accuracy must beat to show the model learned anything from context."""
    if not outputs:
        return {}
    totals = {k: np.sum([np.asarray(o[k], np.float64) for o in outputs], axis=0) for k in outputs[0]}
    counts = totals.pop("label_counts")
    out = {k: float(v) for k, v in finalize(totals).items()}
    out["unigram_accuracy"] = float(counts.max() / max(counts.sum(), 1.0))
    return out

"""The pretraining task: BERT with MLM (+ NSP/SOP) heads on the tf.data pretraining pipeline."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from sslm_jax.models.bert import BertConfig, BertForPreTraining
from sslm_jax.objectives import metrics as metrics_lib
from sslm_jax.objectives.pretraining import make_pretraining_loss
from sslm_jax.tasks.base import Task
from sslm_jax.training import flops
from sslm_jax.training.step import make_eval_step


def build(config, bert_config: BertConfig, tokenizer, *, process_index: int, process_count: int) -> Task:
    from sslm_jax.data import pretraining  # TF is imported only when a task is built

    d = config.data
    # Always the NSP/SOP head, even for "mlm": the checkpoint then has the layout of Hugging Face's
    # BertForPreTraining (exportable with no missing weights); the unused head costs one [H, 2] matmul.
    model = BertForPreTraining(bert_config)
    loss_fn = make_pretraining_loss(model, use_nsp=d.objective != "mlm", segment_attention=d.segment_attention)
    pretraining.validate_settings(d, max_position_embeddings=bert_config.max_position_embeddings)
    dataset = functools.partial(
        pretraining.create_dataset,
        d,
        tokenizer,
        per_host_batch=config.batch_size // process_count,
        seed=config.seed,
        max_position_embeddings=bert_config.max_position_embeddings,
        process_index=process_index,
        process_count=process_count,
    )
    return Task(
        model=model,
        loss_fn=loss_fn,
        train_data=functools.partial(dataset, split="train"),
        eval_data=functools.partial(dataset, split="eval"),
        eval_step=functools.partial(_eval_step, make_eval_step(loss_fn), bert_config.vocab_size),
        summarize=summarize,
        seq_len=d.max_seq_len,
        flops_per_sequence=flops.train_flops_per_sequence(bert_config, d.max_seq_len, d.max_predictions_per_seq),
        progress_keys=("loss", "mlm_accuracy"),
    )


def _eval_step(sums_step, vocab_size, params, batch):
    """The eval sums, plus a histogram of the masked labels for the unigram baseline."""
    sums = sums_step(params, batch)
    sums["label_counts"] = jnp.zeros(vocab_size, jnp.float32).at[batch["masked_ids"]].add(batch["masked_weights"])
    return sums


def summarize(outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Eval-step sums over all batches -> exact means (loss, mlm_accuracy, perplexity, ...) and
    `unigram_accuracy`: the masked-token accuracy of always predicting the most frequent label, the baseline
    that MLM accuracy must beat to show the model learned anything from context."""
    if not outputs:
        return {}
    totals = {k: np.sum([np.asarray(o[k], np.float64) for o in outputs], axis=0) for k in outputs[0]}
    counts = totals.pop("label_counts")
    out = {k: float(v) for k, v in metrics_lib.finalize(totals).items()}
    out["unigram_accuracy"] = float(counts.max() / max(counts.sum(), 1.0))
    return out

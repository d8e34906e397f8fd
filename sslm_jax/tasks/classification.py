"""The fine-tuning task: a model family's "classification" head on labelled sentences (pairs), classes or a score.

    task = tasks.get("classify").build(config, tokenizer, process_index=0, process_count=1)
    task.metadata   # {"data.label_names": ("negative", "positive"), "data.num_labels": 2}: saved with checkpoints

Evaluation is exact over the whole split: the eval step returns the loss sums and, per example, the prediction
(class id, or the score for regression), the label and the weight (0 on padding rows); `summarize` divides the
sums once and computes the task's metrics (`TaskInfo.metric_names`: accuracy, F1, MCC, Pearson, Spearman) over
every real example, e.g. {"accuracy": 0.91, "loss": 0.27, "examples": 872.0} for SST-2.
"""

from __future__ import annotations

import functools

import numpy as np

from sslm_jax.data import host_finetuning
from sslm_jax.errors import ConfigError
from sslm_jax.models import registry
from sslm_jax.objectives import glue_metrics
from sslm_jax.objectives.classification import (
    CLASSIFICATION_TERM,
    classification_loss_and_metrics,
    make_classification_loss,
    make_predict_fn,
    predictions_from_logits,
)
from sslm_jax.objectives.metrics import finalize_terms
from sslm_jax.tasks.base import PER_EXAMPLE, Task, register, require_head

SUM_KEYS = ("loss_sum", "correct", "count")
HEAD = "classification"


def validate(config) -> None:
    d = config.data
    require_head(config, HEAD)
    limit = config.model.max_position_embeddings
    if d.max_seq_len > limit:
        raise ConfigError(
            f"data.max_seq_len={d.max_seq_len} exceeds the model's max_position_embeddings={limit}; use at most {limit}"
        )


def _evaluates_on_the_host(config) -> bool:
    """Files are evaluated on the host (data/host_finetuning.py): `sslm eval` of such a run imports no TensorFlow."""
    return config.data.source == "files"


@register("classify", command="finetune", validate=validate, host_eval=_evaluates_on_the_host)
def build(config, tokenizer, *, process_index: int, process_count: int) -> Task:
    d = config.data
    family = registry.get(config.model.family)
    model_config = family.config_for(config.model, tokenizer.vocab_size)
    where = dict(per_host_batch=config.batch_size // process_count, process_index=process_index,
                 process_count=process_count)  # fmt: skip

    def dataset(split: str):
        from sslm_jax.data import finetuning  # TF is imported only when a tf.data split is built

        return finetuning.create_classification_dataset(d, tokenizer, split=split, seed=config.seed, **where)

    # The eval split is read first: its TaskInfo (label names, pair or single) shapes the model, and its errors
    # (an empty or mislabelled eval file) surface before any training work. The train split is built when the
    # loop asks for it, so `sslm eval` never builds it.
    if _evaluates_on_the_host(config):
        eval_data, info = host_finetuning.create_eval_batches(d, tokenizer, **where)
    else:
        eval_data, info = dataset("eval")
    model = family.model(model_config, HEAD, num_labels=info.num_labels)
    loss_fn = make_classification_loss(model, is_regression=info.is_regression)
    return Task(
        model=model,
        loss_fn=loss_fn,
        train_data=lambda: dataset("train")[0],
        eval_data=lambda: eval_data,
        eval_step=functools.partial(_eval_step, make_predict_fn(model), info.is_regression),
        summarize=functools.partial(summarize, metric_names=info.metric_names),
        seq_len=d.max_seq_len,
        flops_per_sequence=family.train_flops(model_config, d.max_seq_len, 0),
        progress_keys=("loss", "accuracy") if not info.is_regression else ("loss",),
        metadata={
            "model.vocab_size": model_config.vocab_size,
            "model.head": HEAD,
            "data.label_names": tuple(info.label_names),
            "data.num_labels": info.num_labels,
        },
        description=f"{family.name}-{config.model.size} {model_config} + {info.num_labels}-way classifier",
    )


def _eval_step(predict_fn, is_regression: bool, params, batch) -> dict:
    """Loss sums of the batch, plus each row's prediction, label and weight (for the split's metrics)."""
    logits = predict_fn(params, batch)
    out = classification_loss_and_metrics(logits, batch["label"], batch["example_weight"], is_regression=is_regression)
    out[PER_EXAMPLE] = {
        "prediction": predictions_from_logits(logits, is_regression=is_regression),
        "label": batch["label"],
        "weight": batch["example_weight"],
    }
    return out


def summarize(outputs: list[dict], *, metric_names: tuple[str, ...]) -> dict[str, float]:
    """All eval-step outputs -> the metrics of the split: `metric_names` (the headline first), loss, accuracy
    (classification) and `examples` (real examples scored). Padding rows (weight 0) count nowhere.

    Example: two batches with predictions [1, 0] / [1, 1], labels [1, 1] / [0, 1], weights [1, 1] / [1, 0] and
    metric_names ("f1", "accuracy") -> f1 = 0.667, accuracy = 0.333, examples = 3 (the fourth row is padding).
    """
    if not outputs:
        return {}
    sums = {k: np.sum([np.asarray(o[k], np.float64) for o in outputs]) for k in SUM_KEYS if k in outputs[0]}
    rows = {k: np.concatenate([np.asarray(o[PER_EXAMPLE][k]) for o in outputs]) for k in outputs[0][PER_EXAMPLE]}
    out: dict[str, float] = {}
    if np.any(rows["weight"] > 0):
        out.update(
            glue_metrics.compute_metrics(
                metric_names, rows["prediction"], rows["label"], example_weight=rows["weight"]
            )
        )
    finalized = finalize_terms((CLASSIFICATION_TERM,), sums)
    out.update({k: float(v) for k, v in finalized.items() if k not in out})
    out["examples"] = float(sums["count"])
    return out

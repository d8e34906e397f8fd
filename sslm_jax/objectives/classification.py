"""Sequence classification and regression (fine-tuning) as a pure loss function over summed statistics.

    model = BertForSequenceClassification(config, num_labels=task_info.num_labels)
    loss_fn = make_classification_loss(model, is_regression=task_info.is_regression)
    (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
    # loss: mean cross-entropy (or squared error) over the batch's real examples
    # sums: loss_sum, count (+ correct for classification); finalize_classification(sums) -> loss, accuracy

Batches follow the fine-tuning contract: input_ids, attention_mask, token_type_ids [B, L], label [B] (int32 class
ids, or float32 scores for regression) and example_weight [B] (0.0 on the rows that pad a final eval batch).
The loss is computed in float32 whatever the compute dtype. Like `pretraining.py`, a step that splits the batch
passes the whole batch's `loss_fn.denominators(batch)` to each piece so the pieces' losses add up exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from sslm_jax.objectives.base import Objective
from sslm_jax.objectives.metrics import LossTerm, register_term, safe_divide, weighted_cross_entropy

Array = jax.Array
Batch = Mapping[str, Array]


def classification_loss_and_metrics(
    logits: Array, labels: Array, example_weight: Array, *, is_regression: bool
) -> dict[str, Array]:
    """Weighted loss sum, (correct count,) and example count of a classification or regression batch.

    Args:
      logits: [B, num_labels] scores (any float dtype; computed in float32). Regression: num_labels == 1.
      labels: [B] int class ids, or float targets for regression.
      example_weight: [B] 1.0 for real examples, 0.0 for padding rows.
      is_regression: squared error on logits[:, 0] (Hugging Face's MSE for num_labels == 1) instead of
        softmax cross-entropy.

    Returns:
      dict of float32 scalars: `loss_sum` (Σ weight · loss), `count` (Σ weight) and, for classification,
      `correct` (Σ weight where argmax == label).

    Example: logits [[2, 0], [2, 0]], labels [0, 1], example_weight [1, 0] gives loss_sum ≈ 0.127, correct = 1,
    count = 1 (the padded second row is ignored). Regression: logits [[1.5]], labels [1.0] gives loss_sum = 0.25.
    """
    if is_regression:
        if logits.shape[-1] != 1:
            raise ValueError(f"regression needs one output per example; the logits have shape {logits.shape}")
        weights = example_weight.astype(jnp.float32)
        error = jnp.where(weights != 0, logits[:, 0].astype(jnp.float32) - labels.astype(jnp.float32), 0.0)
        return {"loss_sum": jnp.sum(error * error * weights), "count": jnp.sum(weights)}
    loss_sum, correct, count = weighted_cross_entropy(logits, labels, example_weight)
    return {"loss_sum": loss_sum, "correct": correct, "count": count}


def finalize_classification(sums: Mapping[str, Array]) -> dict[str, Array]:
    """Means from summed statistics: loss (mean cross-entropy or squared error) and, if present, accuracy.

    Example: {"loss_sum": 3.0, "correct": 3.0, "count": 4.0} -> {"loss": 0.75, "accuracy": 0.75}.
    """
    out = {"loss": safe_divide(sums["loss_sum"], sums["count"])}
    if "correct" in sums:
        out["accuracy"] = safe_divide(sums["correct"], sums["count"])
    return out


def _accuracy(sums: Mapping[str, Array]) -> dict[str, Array]:
    return {"accuracy": safe_divide(sums["correct"], sums["count"])} if "correct" in sums else {}


# The mean cross-entropy (or squared error) over real examples; accuracy for classification.
CLASSIFICATION_TERM = register_term(LossTerm("loss_sum", "count", metrics=_accuracy))


def predictions_from_logits(logits: Array, *, is_regression: bool) -> Array:
    """[B, num_labels] logits -> [B] predictions: class ids (argmax) or the regression scores (logits[:, 0])."""
    return logits[:, 0] if is_regression else jnp.argmax(logits, axis=-1)


def _apply(model: nn.Module, params: Any, batch: Batch, rng: jax.Array | None, deterministic: bool) -> Array:
    rngs = None if deterministic or rng is None else {"dropout": rng}
    out = model.apply(
        {"params": params},
        batch["input_ids"],
        attention_mask=batch["attention_mask"],
        token_type_ids=batch["token_type_ids"],
        deterministic=deterministic,
        rngs=rngs,
    )
    return out.logits


@dataclasses.dataclass(frozen=True)
class ClassificationLoss(Objective):
    """`loss_fn(params, batch, rng=None, deterministic=False, *, denominators=None) -> (loss, sums)`.

    Build it with `make_classification_loss`. Frozen and hashable, so a jitted step may close over it.
    """

    batch_layout = {  # data/finetuning.py's batches
        "input_ids": "B L", "attention_mask": "B L", "token_type_ids": "B L", "label": "B", "example_weight": "B",
    }  # fmt: skip

    model: nn.Module
    is_regression: bool
    terms = (CLASSIFICATION_TERM,)

    def denominators(self, batch: Batch) -> dict[str, Array]:
        """The loss normaliser of `batch`: {"count": Σ example_weight} (float32 scalar; parameter-free)."""
        return {"count": jnp.sum(batch["example_weight"].astype(jnp.float32))}

    def __call__(
        self,
        params: Any,
        batch: Batch,
        rng: jax.Array | None = None,
        deterministic: bool = False,
        *,
        denominators: Mapping[str, Array] | None = None,
    ) -> tuple[Array, dict[str, Array]]:
        """Loss and summed statistics of `batch` under `params`.

        Args:
          params: the classifier's parameters (unboxed).
          batch: a classification batch (input_ids, attention_mask, token_type_ids, label, example_weight).
          rng: dropout key; unused when `deterministic`.
          deterministic: True disables dropout (evaluation).
          denominators: {"count": ...} of the whole step's batch; None = this batch's own.

        Returns:
          (loss, sums): loss = loss_sum / count (float32 scalar, differentiable; 0 for an all-padding batch);
          sums from `classification_loss_and_metrics`.
        """
        self.check_batch(batch)
        logits = _apply(self.model, params, batch, rng, deterministic)
        sums = classification_loss_and_metrics(
            logits, batch["label"], batch["example_weight"], is_regression=self.is_regression
        )
        if denominators is None:
            denominators = self.denominators(batch)
        return self.loss(sums, denominators), sums


def make_classification_loss(model: nn.Module, *, is_regression: bool) -> ClassificationLoss:
    """The fine-tuning loss of `model` (a `BertForSequenceClassification`; num_labels == 1 for regression).

    Args:
      model: the classifier.
      is_regression: `TaskInfo.is_regression` of the data (squared error instead of cross-entropy).

    Returns:
      `loss_fn(params, batch, rng=None, deterministic=False, *, denominators=None) -> (loss, sums)`, with
      `loss_fn.denominators(batch)`.

    Example:
      >>> loss_fn = make_classification_loss(BertForSequenceClassification(config, num_labels=2), is_regression=False)
      >>> loss, sums = loss_fn(params, batch, jax.random.key(0))
    """
    return ClassificationLoss(model=model, is_regression=is_regression)


def make_predict_fn(model: nn.Module):
    """`predict_fn(params, batch) -> logits` [B, num_labels] float32, without dropout (evaluation, inference).

    Example: `predictions_from_logits(jax.jit(make_predict_fn(model))(params, batch), is_regression=False)`.
    """

    def predict_fn(params: Any, batch: Batch) -> Array:
        return _apply(model, params, batch, None, True).astype(jnp.float32)

    return predict_fn

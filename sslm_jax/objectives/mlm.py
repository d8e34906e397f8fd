"""Masked-LM loss and accuracy at the masked positions, as sums so any split of a batch aggregates exactly.

    logits = model.apply(..., masked_positions=batch["masked_positions"]).mlm_logits      # [B, P, V]
    sums = mlm_loss_and_metrics(logits, batch["masked_ids"], batch["masked_weights"])
    sums["mlm_loss_sum"] / sums["mlm_weight"]        # the mean cross-entropy over real predictions

Returning sums (not means) is what makes gradient accumulation, data-parallel devices and padded evaluation
batches exact: add the sums of the pieces, divide once at the end (`MLM_TERM`'s metrics, see objectives/metrics.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sslm_jax.objectives.metrics import LossTerm, register_term, safe_divide, weighted_cross_entropy

Array = jax.Array


def mlm_loss_and_metrics(logits: Array, masked_ids: Array, masked_weights: Array) -> dict[str, Array]:
    """Weighted cross-entropy sum, correct-prediction count and total weight of a masked-LM batch.

    Args:
      logits: [B, P, V] scores at the masked positions, any float dtype (computed in float32 here).
      masked_ids: [B, P] int labels (the original token ids); padded slots may hold any id.
      masked_weights: [B, P] 1.0 for a real prediction, 0.0 for padding (fractional weights also work).

    Returns:
      dict of float32 scalars: `mlm_loss_sum` (sum of weight * cross-entropy), `mlm_correct` (sum of weight
      where argmax == label) and `mlm_weight` (sum of weights).

    Example: logits [[[0, 9], [9, 0]]], masked_ids [[1, 1]], masked_weights [[1, 0]] gives
    mlm_loss_sum ≈ 1.2e-4 (only the first slot counts), mlm_correct = 1, mlm_weight = 1.
    """
    loss_sum, correct, weight = weighted_cross_entropy(logits, masked_ids, masked_weights)
    return {"mlm_loss_sum": loss_sum, "mlm_correct": correct, "mlm_weight": weight}


def real_positions(batch) -> Array:
    """`masked_positions` with each padded slot (weight 0) pointed at position 0: a padded slot may hold any
    position (one past the row gathered NaN, and NaN · 0 is NaN), but the model gathers every slot."""
    return jnp.where(batch["masked_weights"] != 0, batch["masked_positions"], 0)


def finalize_mlm(sums) -> dict[str, Array]:
    """mlm_loss, mlm_accuracy and perplexity (= exp(mlm_loss)) from the masked-LM sums."""
    loss = safe_divide(sums["mlm_loss_sum"], sums["mlm_weight"])
    accuracy = safe_divide(sums["mlm_correct"], sums["mlm_weight"])
    return {"mlm_loss": loss, "mlm_accuracy": accuracy, "perplexity": jnp.exp(loss)}


# The mean masked-LM cross-entropy over real predictions.
MLM_TERM = register_term(LossTerm("mlm_loss_sum", "mlm_weight", metrics=finalize_mlm))

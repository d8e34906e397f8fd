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
import optax

from sslm_jax.objectives.metrics import LossTerm, register_term, safe_divide

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
    logits = logits.astype(jnp.float32)
    weights = masked_weights.astype(jnp.float32)
    labels = masked_ids.astype(jnp.int32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return {
        "mlm_loss_sum": jnp.sum(nll * weights),
        "mlm_correct": jnp.sum(correct * weights),
        "mlm_weight": jnp.sum(weights),
    }


def finalize_mlm(sums) -> dict[str, Array]:
    """mlm_loss, mlm_accuracy and perplexity (= exp(mlm_loss)) from the masked-LM sums."""
    loss = safe_divide(sums["mlm_loss_sum"], sums["mlm_weight"])
    accuracy = safe_divide(sums["mlm_correct"], sums["mlm_weight"])
    return {"mlm_loss": loss, "mlm_accuracy": accuracy, "perplexity": jnp.exp(loss)}


# The mean masked-LM cross-entropy over real predictions.
MLM_TERM = register_term(LossTerm("mlm_loss_sum", "mlm_weight", metrics=finalize_mlm))

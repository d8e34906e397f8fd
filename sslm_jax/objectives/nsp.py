"""Next-sentence (NSP) or sentence-order (SOP) prediction loss and accuracy, as sums over examples.

Labels follow Hugging Face: 0 = "B follows A" (is next / in order), 1 = random next (NSP) or swapped (SOP).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sslm_jax.objectives.metrics import LossTerm, register_term, safe_divide, weighted_cross_entropy

Array = jax.Array


def nsp_loss_and_metrics(logits: Array, labels: Array, weights: Array | None = None) -> dict[str, Array]:
    """Weighted cross-entropy sum, correct count and example count of a two-way sentence-pair head.

    Args:
      logits: [B, 2] scores (any float dtype; computed in float32).
      labels: [B] int, 0 or 1.
      weights: [B] 1.0 for real examples, 0.0 for the padding rows of a final eval batch; None = all ones.

    Returns:
      dict of float32 scalars `nsp_loss_sum`, `nsp_correct`, `nsp_count`.

    Example: logits [[2, 0], [2, 0]], labels [0, 1], weights [1, 0] gives nsp_loss_sum ≈ 0.127,
    nsp_correct = 1, nsp_count = 1 (the padded second row is ignored).
    """
    weights = jnp.ones(labels.shape, jnp.float32) if weights is None else weights
    loss_sum, correct, count = weighted_cross_entropy(logits, labels, weights)
    return {"nsp_loss_sum": loss_sum, "nsp_correct": correct, "nsp_count": count}


def finalize_nsp(sums) -> dict[str, Array]:
    """nsp_loss and nsp_accuracy from the sentence-pair sums."""
    return {
        "nsp_loss": safe_divide(sums["nsp_loss_sum"], sums["nsp_count"]),
        "nsp_accuracy": safe_divide(sums["nsp_correct"], sums["nsp_count"]),
    }


# The mean sentence-pair cross-entropy over real examples (added to the MLM term, as in google-research/bert).
NSP_TERM = register_term(LossTerm("nsp_loss_sum", "nsp_count", metrics=finalize_nsp))

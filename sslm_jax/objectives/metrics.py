"""Turn summed objective statistics into means: the one place where losses and accuracies are divided.

Every objective returns sums (`mlm_loss_sum`, `mlm_correct`, `mlm_weight`, `nsp_loss_sum`, ...; fine-tuning's
`loss_sum`, `correct`, `count`). Sums of the pieces of a batch (micro-batches, devices, eval batches) add up
exactly; `finalize` divides once.

    sums = {"mlm_loss_sum": 6.0, "mlm_correct": 1.0, "mlm_weight": 4.0}
    finalize(sums)  # {"loss": 1.5, "mlm_loss": 1.5, "mlm_accuracy": 0.25, "perplexity": 4.48...}
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

Array = jax.Array

# Each loss term: (sum of weighted losses, its normaliser). The total loss is the sum of the terms' means, as in
# google-research/bert (mean masked-LM loss + mean next-sentence loss). ("loss_sum", "count") is fine-tuning's
# classification / regression loss (sslm_jax.objectives.classification).
LOSS_TERMS: tuple[tuple[str, str], ...] = (
    ("mlm_loss_sum", "mlm_weight"),
    ("nsp_loss_sum", "nsp_count"),
    ("loss_sum", "count"),
)


def safe_divide(numerator: Array, denominator: Array) -> Array:
    """numerator / denominator, or 0 where the denominator is 0 (an all-padding batch), with finite gradients."""
    denominator = jnp.asarray(denominator, jnp.float32)
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 0.0)


def total_loss(sums: Mapping[str, Array], denominators: Mapping[str, Array] | None = None) -> Array:
    """Σ over the loss terms present in `sums` of loss_sum / denominator.

    Args:
      sums: an objective's sums (e.g. from `mlm_loss_and_metrics`, merged with `nsp_loss_and_metrics`).
      denominators: normalisers keyed like the sums' weights (`mlm_weight`, `nsp_count`); None uses the
        weights in `sums` itself (the mean loss of that batch). A train step passes the totals of the whole
        step's batch so that the losses (and gradients) of its micro-batches simply add up.

    Returns:
      float32 scalar.
    """
    denominators = sums if denominators is None else denominators
    terms = [safe_divide(sums[loss], denominators[weight]) for loss, weight in LOSS_TERMS if loss in sums]
    return sum(terms, jnp.zeros((), jnp.float32))


def finalize(sums: Mapping[str, Array]) -> dict[str, Array]:
    """Means from sums: loss, mlm_loss, mlm_accuracy, perplexity (= exp(mlm_loss)), nsp_loss, nsp_accuracy;
    for fine-tuning sums, loss and (classification) accuracy = correct / count.

    Args:
      sums: summed statistics (any subset of the objectives' keys; NSP entries only when NSP sums are there).

    Returns:
      dict of float32 scalars (works on jax and numpy inputs).
    """
    out = {"loss": total_loss(sums)}
    if "mlm_loss_sum" in sums:
        out["mlm_loss"] = safe_divide(sums["mlm_loss_sum"], sums["mlm_weight"])
        out["mlm_accuracy"] = safe_divide(sums["mlm_correct"], sums["mlm_weight"])
        out["perplexity"] = jnp.exp(out["mlm_loss"])
    if "nsp_loss_sum" in sums:
        out["nsp_loss"] = safe_divide(sums["nsp_loss_sum"], sums["nsp_count"])
        out["nsp_accuracy"] = safe_divide(sums["nsp_correct"], sums["nsp_count"])
    if "correct" in sums:
        out["accuracy"] = safe_divide(sums["correct"], sums["count"])
    return out

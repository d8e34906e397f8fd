"""Loss terms as an open, weighted composition over summed statistics: the one place where sums are divided.

Every objective returns sums (`mlm_loss_sum`, `mlm_correct`, `mlm_weight`, `nsp_loss_sum`, ...; fine-tuning's
`loss_sum`, `correct`, `count`). Sums of the pieces of a batch (micro-batches, devices, eval batches) add up
exactly; a division happens once, here. Each objective's file declares its own `LossTerm`s (which sum, which
normaliser, which metrics its sums finalize to) and registers them, so a new objective never edits this module:

    MLM = register_term(LossTerm("mlm_loss_sum", "mlm_weight", metrics=finalize_mlm))
    loss = weighted_loss((MLM, NSP.replace(weight=0.5)), sums, denominators)   # Σ weight · loss_sum / denominator
    finalize_terms((MLM,), {"mlm_loss_sum": 6.0, "mlm_correct": 1.0, "mlm_weight": 4.0})
    # {"loss": 1.5, "mlm_loss": 1.5, "mlm_accuracy": 0.25, "perplexity": 4.48...}
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
Sums = Mapping[str, Array]


@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One term of a loss: `weight · sums[loss_sum] / denominators[denominator]`.

    Attributes:
      loss_sum: the key of the summed loss in an objective's sums ("mlm_loss_sum").
      denominator: the key of its normaliser, in the sums and in `denominators(batch)` ("mlm_weight").
      weight: the term's weight in the total (ELECTRA: 50 for replaced-token detection).
      metrics: sums -> {name: mean} of the statistics this term owns (its loss mean, accuracy, ...); None: none.
    """

    loss_sum: str
    denominator: str
    weight: float = 1.0
    metrics: Callable[[Sums], dict[str, Array]] | None = None

    def replace(self, **changes) -> "LossTerm":
        return dataclasses.replace(self, **changes)


# Every term some objective module declared, keyed by its loss-sum key: what `finalize` / `total_loss` use when
# no terms are given (sums of unknown provenance, e.g. in tests or notebooks).
_REGISTERED: dict[str, LossTerm] = {}


def register_term(term: LossTerm) -> LossTerm:
    """Declares `term` (at its default weight) for `finalize` / `total_loss` without explicit terms; returns it."""
    known = _REGISTERED.get(term.loss_sum)
    if known is not None and known.denominator != term.denominator:
        raise ValueError(f"loss sum {term.loss_sum!r} is already registered with denominator {known.denominator!r}")
    _REGISTERED[term.loss_sum] = term
    return term


def weighted_cross_entropy(logits: Array, labels: Array, weights: Array) -> tuple[Array, Array, Array]:
    """(Σ weight · cross-entropy, Σ weight where argmax == label, Σ weight) in float32, over any leading shape.

    A slot of weight 0 counts for nothing whatever its label holds (Hugging Face's -100, an id past the vocabulary):
    its label is replaced by 0 before the softmax, so no NaN enters the sums (NaN · 0 is NaN) or the gradients.
    """
    logits = logits.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    labels = jnp.where(weights != 0, labels.astype(jnp.int32), 0)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return jnp.sum(nll * weights), jnp.sum(correct * weights), jnp.sum(weights)


def safe_divide(numerator: Array, denominator: Array) -> Array:
    """numerator / denominator, or 0 where the denominator is 0 (an all-padding batch), with finite gradients."""
    denominator = jnp.asarray(denominator, jnp.float32)
    positive = denominator > 0
    return jnp.where(positive, numerator / jnp.where(positive, denominator, 1.0), 0.0)


def weighted_loss(terms: Sequence[LossTerm], sums: Sums, denominators: Sums | None = None) -> Array:
    """Σ over `terms` present in `sums` of weight · loss_sum / denominator (float32 scalar).

    Args:
      terms: the objective's terms.
      sums: its summed statistics.
      denominators: normalisers keyed like the terms' denominators; None uses the ones in `sums` (the mean loss of
        that batch). A train step passes the totals of the whole step's batch, so that the losses (and gradients)
        of its micro-batches and devices simply add up.
    """
    denominators = sums if denominators is None else denominators
    total = jnp.zeros((), jnp.float32)
    for term in terms:
        if term.loss_sum in sums:
            total = total + term.weight * safe_divide(sums[term.loss_sum], denominators[term.denominator])
    return total


def finalize_terms(terms: Sequence[LossTerm], sums: Sums) -> dict[str, Array]:
    """Means from sums: `loss` (the weighted total) and every present term's metrics (works on jax and numpy)."""
    out = {"loss": weighted_loss(terms, sums)}
    for term in terms:
        if term.loss_sum in sums and term.metrics is not None:
            out.update(term.metrics(sums))
    return out


def _registered(sums: Sums) -> list[LossTerm]:
    return [term for key, term in _REGISTERED.items() if key in sums]


def total_loss(sums: Sums, denominators: Sums | None = None) -> Array:
    """`weighted_loss` over the registered terms present in `sums`, at their default weights."""
    return weighted_loss(_registered(sums), sums, denominators)


def finalize(sums: Sums) -> dict[str, Array]:
    """`finalize_terms` over the registered terms present in `sums`: e.g. loss, mlm_loss, mlm_accuracy, perplexity,
    nsp_loss, nsp_accuracy for pretraining sums; loss and accuracy for fine-tuning's."""
    return finalize_terms(_registered(sums), sums)

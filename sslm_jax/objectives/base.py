"""What every objective (loss function) offers the trainer, and the eval step built from it.

An objective is a frozen dataclass (hashable, so jitted steps close over it) with:

    loss_fn(params, batch, rng=None, deterministic=False, *, denominators=None) -> (loss, sums)
    loss_fn.terms                 # its weighted `LossTerm`s (objectives/metrics.py)
    loss_fn.denominators(batch)   # the terms' normalisers for `batch`; parameter-free, so a step computes them
                                  # for the WHOLE batch before splitting it into micro-batches or devices
    loss_fn.finalize(sums)        # summed statistics -> means: {"loss": ..., "mlm_accuracy": ..., ...}
    loss_fn.uses_step             # optional, default False: True has the train step also pass `step=` (the
                                  # updates applied so far, traced), for a loss that follows training progress
                                  # (movement pruning's sparsity schedule, training/pruning.py)

A new objective is a new file under objectives/ that subclasses `Objective`, declares its terms and returns sums;
the train step (`sslm_jax.training.step`) and evaluation need nothing else.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax

from sslm_jax.objectives import metrics

Array = jax.Array
Batch = Mapping[str, Array]


class Objective:
    """Mixin for objective dataclasses: `terms` (a tuple or property) in, `loss` and `finalize` out."""

    terms: tuple[metrics.LossTerm, ...] = ()
    uses_step: bool = False

    def denominators(self, batch: Batch) -> dict[str, Array]:
        raise NotImplementedError

    def loss(self, sums: Mapping[str, Array], denominators: Mapping[str, Array] | None) -> Array:
        """The weighted total of this objective's terms; `denominators` None = the batch's own (in `sums`)."""
        return metrics.weighted_loss(self.terms, sums, denominators)

    def finalize(self, sums: Mapping[str, Array]) -> dict[str, Array]:
        return metrics.finalize_terms(self.terms, sums)


def _psum(tree, axis_name: str | None):
    return tree if axis_name is None else jax.lax.psum(tree, axis_name)


def make_eval_step(loss_fn, *, axis_name: str | None = None) -> Callable[[Any, Batch], dict[str, Array]]:
    """A pure `eval_step(params_or_state, batch) -> sums` (dropout off); add the sums over batches, then
    `loss_fn.finalize(total)` gives exact means (padded rows carry zero weight).

    Args:
      loss_fn: an objective (see the module docstring).
      axis_name: the pmap axis to sum the statistics over; None under jit.

    Returns:
      `eval_step(params_or_state, batch)`; a train state (anything with `.params`) or bare params are accepted.
    """

    def eval_step(params_or_state: Any, batch: Batch) -> dict[str, Array]:
        params = getattr(params_or_state, "params", params_or_state)
        _, sums = loss_fn(params, batch, None, deterministic=True)
        return _psum(sums, axis_name)

    return eval_step

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
    """Mixin for objective dataclasses: `terms` (a tuple or property) in, `loss` and `finalize` out.

    `batch_layout` ({field: "B L"}, letters naming sizes shared across fields) is what `check_batch` holds a batch
    to: a field of the wrong shape is one ValueError naming it, instead of a broadcasting error deep in XLA.
    """

    terms: tuple[metrics.LossTerm, ...] = ()
    uses_step: bool = False
    batch_layout: Mapping[str, str] = {}

    def check_batch(self, batch: Batch) -> None:
        """ValueError naming the first field of `batch` whose shape does not fit `batch_layout`. Fields the layout
        lacks, or the batch lacks (a KeyError names those where they are read), are not checked. Shapes are static
        under jit, so this runs once per compilation."""
        sizes: dict[str, int] = {}
        for field, dims in self.batch_layout.items():
            if field not in batch:
                continue
            names, shape = dims.split(), tuple(batch[field].shape)
            if len(shape) != len(names) or any(sizes.setdefault(n, s) != s for n, s in zip(names, shape)):
                known = ", ".join(f"{n}={sizes[n]}" for n in names if n in sizes)
                layout = "; ".join(f"{f} [{', '.join(d.split())}]" for f, d in self.batch_layout.items())
                raise ValueError(
                    f"{type(self).__name__}: batch[{field!r}] has shape {list(shape)}, not [{', '.join(names)}]"
                    f"{' with ' + known if known else ''} (a batch holds {layout})"
                )

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

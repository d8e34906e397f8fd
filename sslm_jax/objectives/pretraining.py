"""The BERT pretraining objective (masked LM, plus NSP/SOP on sentence pairs) as a pure loss function.

    loss_fn = make_pretraining_loss(model, use_nsp=False, segment_attention=True)
    (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
    # loss: mean masked-LM cross-entropy of the batch (+ mean NSP loss); loss_fn.finalize(sums): the means

Logits are computed only at `masked_positions` (the model gathers before its vocabulary projection) and the
losses in float32 whatever the compute dtype.

A train step that splits the batch (micro-batches, devices) passes `denominators=loss_fn.denominators(batch)`
of the WHOLE batch to each piece: the pieces' losses and gradients then add up to the whole batch's exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from sslm_jax.objectives.base import Objective
from sslm_jax.objectives.metrics import LossTerm
from sslm_jax.objectives.mlm import MLM_TERM, mlm_loss_and_metrics, real_positions
from sslm_jax.objectives.nsp import NSP_TERM, nsp_loss_and_metrics

Array = jax.Array
Batch = Mapping[str, Array]


def example_weights(batch: Batch) -> Array:
    """[B] float32: 1.0 for real rows, 0.0 for the all-padding rows that complete a final eval batch."""
    return jnp.any(batch["attention_mask"] > 0, axis=-1).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class PretrainingLoss(Objective):
    """`loss_fn(params, batch, rng, deterministic=False, *, denominators=None) -> (loss, sums)`.

    Build it with `make_pretraining_loss`. Frozen and hashable, so a jitted step may close over it.
    """

    batch_layout = {  # data/pretraining.py's BATCH_SPEC
        "input_ids": "B L", "attention_mask": "B L", "token_type_ids": "B L", "segment_ids": "B L",
        "masked_positions": "B P", "masked_ids": "B P", "masked_weights": "B P", "nsp_label": "B",
    }  # fmt: skip

    model: nn.Module
    use_nsp: bool
    segment_attention: bool

    @property
    def terms(self) -> tuple[LossTerm, ...]:
        return (MLM_TERM, NSP_TERM) if self.use_nsp else (MLM_TERM,)

    def denominators(self, batch: Batch) -> dict[str, Array]:
        """The loss normalisers of `batch` (its total prediction weight and example count), float32 scalars.

        They depend only on the batch, never on the parameters, so a step can compute them for the whole batch
        before splitting it.
        """
        out = {"mlm_weight": jnp.sum(batch["masked_weights"].astype(jnp.float32))}
        if self.use_nsp:
            out["nsp_count"] = jnp.sum(example_weights(batch))
        return out

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
          params: the model's parameters (unboxed).
          batch: a pretraining batch (data contract: input_ids, attention_mask, token_type_ids, segment_ids,
            masked_positions, masked_ids, masked_weights, nsp_label).
          rng: dropout key; unused when `deterministic`.
          deterministic: True disables dropout (evaluation).
          denominators: normalisers of the loss terms; None = this batch's own (`self.denominators(batch)`).

        Returns:
          (loss, sums): loss = Σ_terms loss_sum / denominator (float32 scalar, differentiable);
          sums = mlm_loss_sum, mlm_correct, mlm_weight (+ nsp_loss_sum, nsp_correct, nsp_count);
          `self.finalize(sums)` turns them into means.
        """
        self.check_batch(batch)
        rngs = None if deterministic or rng is None else {"dropout": rng}
        out = self.model.apply(
            {"params": params},
            batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            masked_positions=real_positions(batch),
            # Packed rows hold several documents; with segment attention tokens attend within their own only.
            segment_ids=batch["segment_ids"] if self.segment_attention else None,
            deterministic=deterministic,
            rngs=rngs,
        )
        sums = mlm_loss_and_metrics(out.mlm_logits, batch["masked_ids"], batch["masked_weights"])
        if self.use_nsp:
            if not hasattr(out, "nsp_logits"):
                raise ValueError(f"use_nsp=True needs a model with an NSP head; {type(self.model).__name__} has none")
            sums.update(nsp_loss_and_metrics(out.nsp_logits, batch["nsp_label"], example_weights(batch)))
        if denominators is None:
            denominators = self.denominators(batch)
        return self.loss(sums, denominators), sums


def make_pretraining_loss(model: nn.Module, *, use_nsp: bool, segment_attention: bool) -> PretrainingLoss:
    """The masked-LM (+ NSP/SOP) loss of `model`.

    Args:
      model: a `BertForPreTraining` (NSP head) or `BertForMaskedLM`, applied with `masked_positions`.
      use_nsp: add the sentence-pair loss (data.objective "nsp" or "sop").
      segment_attention: pass `segment_ids` so packed documents do not attend to each other.

    Returns:
      `loss_fn(params, batch, rng, deterministic=False, *, denominators=None) -> (loss, sums)`, with
      `loss_fn.denominators(batch)`.

    Example:
      >>> loss_fn = make_pretraining_loss(BertForMaskedLM(config), use_nsp=False, segment_attention=False)
      >>> loss, sums = loss_fn(params, batch, jax.random.key(0))
    """
    return PretrainingLoss(model=model, use_nsp=use_nsp, segment_attention=segment_attention)

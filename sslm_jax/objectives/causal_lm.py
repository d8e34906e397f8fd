"""Next-token prediction (causal LM) as a pure loss over exact sums.

    loss_fn = make_causal_lm_loss(model, segment_attention=True)
    (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
    loss_fn.finalize(sums)   # {"loss", "lm_loss", "perplexity", "next_token_accuracy"}

Position t predicts token t+1 with weight `loss_weights[t + 1]` (every real token but a row's first in pretraining;
only response tokens in prompt -> response fine-tuning), so the sums of any split of a batch add up exactly. Logits
are computed in the model's dtype and the cross-entropy in float32.
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


def next_token_loss_and_metrics(logits: Array, input_ids: Array, loss_weights: Array) -> dict[str, Array]:
    """Weighted next-token cross-entropy sum, correct count and total weight.

    Args:
      logits: [B, T, V] at every position.
      input_ids: [B, T]; position t is scored on input_ids[:, t + 1].
      loss_weights: [B, T] weight of each token as a target (its own position; position 0 is never a target).

    Example: logits favouring token 3 everywhere, input_ids [[1, 3, 4]], loss_weights [[1, 1, 0]] -> only the
    prediction of token 3 at position 0 counts: lm_correct = 1, lm_weight = 1.
    """
    loss_sum, correct, weight = weighted_cross_entropy(logits[:, :-1], input_ids[:, 1:], loss_weights[:, 1:])
    return {"lm_loss_sum": loss_sum, "lm_correct": correct, "lm_weight": weight}


def finalize_lm(sums) -> dict[str, Array]:
    loss = safe_divide(sums["lm_loss_sum"], sums["lm_weight"])
    accuracy = safe_divide(sums["lm_correct"], sums["lm_weight"])
    return {"lm_loss": loss, "perplexity": jnp.exp(loss), "next_token_accuracy": accuracy}


# The mean next-token cross-entropy over weighted targets.
LM_TERM = register_term(LossTerm("lm_loss_sum", "lm_weight", metrics=finalize_lm))


@dataclasses.dataclass(frozen=True)
class CausalLMLoss(Objective):
    """`loss_fn(params, batch, rng=None, deterministic=False, *, denominators=None) -> (loss, sums)`.

    Batches: input_ids, attention_mask, segment_ids, position_ids, loss_weights [B, T] (data/causal_lm.py).
    """

    batch_layout = {  # data/causal_lm.py's BATCH_SPEC
        "input_ids": "B L", "attention_mask": "B L", "segment_ids": "B L", "position_ids": "B L", "loss_weights": "B L",
    }  # fmt: skip

    model: nn.Module
    segment_attention: bool
    terms = (LM_TERM,)

    def denominators(self, batch: Batch) -> dict[str, Array]:
        return {"lm_weight": jnp.sum(batch["loss_weights"][:, 1:].astype(jnp.float32))}

    def __call__(self, params: Any, batch: Batch, rng=None, deterministic: bool = False, *, denominators=None):
        self.check_batch(batch)
        # Packed documents: with segment attention each attends only to itself, its positions starting at 0.
        per_document = self.segment_attention
        out = self.model.apply(
            {"params": params},
            batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"] if per_document else None,
            segment_ids=batch["segment_ids"] if per_document else None,
            deterministic=deterministic,
            rngs=None if deterministic or rng is None else {"dropout": rng},
        )
        sums = next_token_loss_and_metrics(out.logits, batch["input_ids"], batch["loss_weights"])
        return self.loss(sums, self.denominators(batch) if denominators is None else denominators), sums


def make_causal_lm_loss(model: nn.Module, *, segment_attention: bool) -> CausalLMLoss:
    """The next-token loss of `model` (e.g. `GPTLMHeadModel`), whose output has `.logits` [B, T, V]."""
    return CausalLMLoss(model=model, segment_attention=segment_attention)

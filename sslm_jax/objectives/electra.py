"""ELECTRA's objective: a small MLM generator fills the masked positions, and the discriminator learns, at every
real token, whether it is the original or a replacement (replaced-token detection, RTD).

    loss_fn = make_electra_loss(model, disc_weight=50.0)      # model: models.electra.ElectraPretrainingModel
    (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, rng)
    loss_fn.finalize(sums)   # loss, mlm_loss, mlm_accuracy, rtd_loss, rtd_accuracy, rtd_precision, rtd_recall, ...

Batches are the masked-LM pipeline's (data/pretraining.py): input_ids with the masked positions already corrupted
(80/10/10), masked_positions / masked_ids / masked_weights, attention_mask, token_type_ids, segment_ids.

Decisions on the details that matter (Clark et al. 2020; google-research/electra; the electra_pytorch
reproduction's list), each explicit here:
- Loss: generator MLM mean + `disc_weight` (50, the paper's λ) × RTD mean over every real token, each term a sum
  over the whole step's batch divided once (exact under micro-batches and devices, like every objective here).
- Sampling: replacements come from the generator's softmax at `temperature` (default 1, the paper's and the
  original code's), drawn with the Gumbel-max trick under `stop_gradient` (the discriminator's loss never flows
  into the generator, as in the paper: no GAN-style backpropagation through sampling). The [MASK] token itself
  cannot be sampled (electra's `disallow_from_mask`). A temperature above 1 flattens the generator's distribution
  towards uniform, so replacements are easier to tell apart: at tiny scale and a few hundred steps, at temperature 1
  the discriminator stays near "all original" (its replacements are near-unigram draws of frequent tokens), while
  at 4 it learns (BENCHMARKS.md, "Is ELECTRA's discriminator defective?").
- Labels: a position is "replaced" iff the sampled token differs from the original; a correct guess counts as
  original (the paper's rule), so the labels are decided after sampling.
- The discriminator sees the original sequence with the masked positions replaced by the samples: the 80/10/10
  corruption only feeds the generator (the original code masks 100 % of the selected positions for the generator;
  we keep the pipeline's 80/10/10, which the reproduction found equivalent, and document it here).
- Evaluation samples with a fixed key, so eval metrics are the same on every pass.
- Embeddings are shared between generator and discriminator by the model (models/electra.py), not here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from sslm_jax.objectives.base import Objective
from sslm_jax.objectives.metrics import LossTerm, register_term, safe_divide
from sslm_jax.objectives.mlm import MLM_TERM, mlm_loss_and_metrics, real_positions

Array = jax.Array
Batch = Mapping[str, Array]
_EVAL_KEY = 7  # the sampling key of deterministic (evaluation) calls


def _write_real_slots(ids: Array, batch: Batch, values: Array) -> Array:
    """`ids` [B, T] with each real masked slot's position set to its value in `values` [B, P]. Padded slots (weight
    0) write nothing, whatever position they hold: they are sent past the row, where a scatter drops them (a padded
    slot that repeated a real one's position made which write won unspecified)."""
    rows = jnp.arange(ids.shape[0])[:, None]
    positions = jnp.where(batch["masked_weights"] > 0, batch["masked_positions"], ids.shape[1])
    return ids.at[rows, positions].set(values.astype(ids.dtype), mode="drop")


def original_ids(batch: Batch) -> Array:
    """The uncorrupted rows: input_ids with each real masked position set back to its label."""
    return _write_real_slots(jnp.asarray(batch["input_ids"]), batch, batch["masked_ids"])


def gumbel_sample(logits: Array, rng: Array, *, forbidden: int | None = None, temperature: float = 1.0) -> Array:
    """argmax(logits / temperature + Gumbel noise): an exact sample of softmax(logits / temperature),
    [..., V] -> [...] int32."""
    logits = logits.astype(jnp.float32) / temperature
    if forbidden is not None:
        logits = logits.at[..., forbidden].set(-jnp.inf)
    uniform = jax.random.uniform(rng, logits.shape, jnp.float32, minval=1e-9, maxval=1.0)
    return jnp.argmax(logits - jnp.log(-jnp.log(uniform)), axis=-1).astype(jnp.int32)


def rtd_loss_and_metrics(logits: Array, labels: Array, weights: Array) -> dict[str, Array]:
    """Sigmoid cross-entropy sums of replaced-token detection over weighted positions [B, T]."""
    logits = logits.astype(jnp.float32)
    labels = labels.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    predicted = (logits > 0).astype(jnp.float32)
    return {
        "rtd_loss_sum": jnp.sum(optax.sigmoid_binary_cross_entropy(logits, labels) * weights),
        "rtd_correct": jnp.sum((predicted == labels) * weights),
        "rtd_count": jnp.sum(weights),
        "rtd_true_positives": jnp.sum(predicted * labels * weights),
        "rtd_predicted_replaced": jnp.sum(predicted * weights),
        "rtd_replaced": jnp.sum(labels * weights),
    }


def finalize_rtd(sums) -> dict[str, Array]:
    return {
        "rtd_loss": safe_divide(sums["rtd_loss_sum"], sums["rtd_count"]),
        "rtd_accuracy": safe_divide(sums["rtd_correct"], sums["rtd_count"]),
        "rtd_precision": safe_divide(sums["rtd_true_positives"], sums["rtd_predicted_replaced"]),
        "rtd_recall": safe_divide(sums["rtd_true_positives"], sums["rtd_replaced"]),
        # The accuracy of calling every token original: what rtd_accuracy must beat.
        "rtd_all_original_accuracy": 1.0 - safe_divide(sums["rtd_replaced"], sums["rtd_count"]),
    }


RTD_TERM = register_term(LossTerm("rtd_loss_sum", "rtd_count", metrics=finalize_rtd))


@dataclasses.dataclass(frozen=True)
class ElectraLoss(Objective):
    """`loss_fn(params, batch, rng=None, deterministic=False, *, denominators=None) -> (loss, sums)`."""

    batch_layout = {  # data/pretraining.py's BATCH_SPEC
        "input_ids": "B L", "attention_mask": "B L", "token_type_ids": "B L", "segment_ids": "B L",
        "masked_positions": "B P", "masked_ids": "B P", "masked_weights": "B P", "nsp_label": "B",
    }  # fmt: skip

    model: nn.Module
    disc_weight: float
    mask_id: int
    segment_attention: bool
    temperature: float = 1.0

    @property
    def terms(self) -> tuple[LossTerm, ...]:
        return (MLM_TERM, RTD_TERM.replace(weight=self.disc_weight))

    def denominators(self, batch: Batch) -> dict[str, Array]:
        return {
            "mlm_weight": jnp.sum(batch["masked_weights"].astype(jnp.float32)),
            "rtd_count": jnp.sum(batch["attention_mask"].astype(jnp.float32)),
        }

    def __call__(self, params: Any, batch: Batch, rng=None, deterministic: bool = False, *, denominators=None):
        self.check_batch(batch)
        if rng is None:
            if not deterministic:  # the other objectives fail in Flax (dropout needs a key); this one samples too
                raise ValueError("ElectraLoss samples replacements: pass an rng, or deterministic=True (evaluation)")
            rng = jax.random.key(_EVAL_KEY)
        dropout_gen, dropout_disc, sampling = jax.random.split(rng, 3)
        common = dict(
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            segment_ids=batch["segment_ids"] if self.segment_attention else None,
            deterministic=deterministic,
        )
        gen = self.model.apply(
            {"params": params}, batch["input_ids"], masked_positions=real_positions(batch), **common,
            method="generator", rngs=None if deterministic else {"dropout": dropout_gen},
        )  # fmt: skip
        sums = mlm_loss_and_metrics(gen.mlm_logits, batch["masked_ids"], batch["masked_weights"])

        sampled = gumbel_sample(
            jax.lax.stop_gradient(gen.mlm_logits), sampling, forbidden=self.mask_id, temperature=self.temperature
        )
        original = original_ids(batch)
        corrupted = _write_real_slots(original, batch, sampled)
        labels = (corrupted != original).astype(jnp.int32)
        disc = self.model.apply(
            {"params": params}, corrupted, **common,
            method="discriminator", rngs=None if deterministic else {"dropout": dropout_disc},
        )  # fmt: skip
        sums.update(rtd_loss_and_metrics(disc.logits, labels, batch["attention_mask"]))
        return self.loss(sums, self.denominators(batch) if denominators is None else denominators), sums


def make_electra_loss(
    model: nn.Module, *, disc_weight: float, mask_id: int, segment_attention: bool, temperature: float = 1.0
) -> ElectraLoss:
    """ELECTRA's generator MLM + `disc_weight` × replaced-token-detection loss, replacements sampled from the
    generator at `temperature` (see the module docstring)."""
    if disc_weight < 0:
        raise ValueError(f"disc_weight={disc_weight} must be >= 0")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be > 0 (ELECTRA: 1)")
    return ElectraLoss(
        model=model, disc_weight=disc_weight, mask_id=mask_id, segment_attention=segment_attention,
        temperature=float(temperature),
    )  # fmt: skip

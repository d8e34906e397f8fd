"""Pure loss and metric functions (sums, for exact aggregation) used by the trainer and by research code."""

from sslm_jax.objectives.metrics import finalize, total_loss
from sslm_jax.objectives.mlm import mlm_loss_and_metrics
from sslm_jax.objectives.nsp import nsp_loss_and_metrics
from sslm_jax.objectives.pretraining import PretrainingLoss, make_pretraining_loss

__all__ = [
    "PretrainingLoss",
    "finalize",
    "make_pretraining_loss",
    "mlm_loss_and_metrics",
    "nsp_loss_and_metrics",
    "total_loss",
]

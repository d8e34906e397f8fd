"""Pure loss and metric functions (sums, for exact aggregation) used by the trainer and by research code.

One file per objective; each declares its weighted loss terms (objectives/metrics.py) and, for the trainer, builds
an `Objective` (objectives/base.py). Importing the package registers the built-in terms for `finalize`.
"""

from sslm_jax.objectives.base import Objective, make_eval_step
from sslm_jax.objectives.causal_lm import CausalLMLoss, make_causal_lm_loss
from sslm_jax.objectives.classification import ClassificationLoss, make_classification_loss
from sslm_jax.objectives.electra import ElectraLoss, make_electra_loss
from sslm_jax.objectives.metrics import LossTerm, finalize, total_loss, weighted_loss
from sslm_jax.objectives.mlm import mlm_loss_and_metrics
from sslm_jax.objectives.nsp import nsp_loss_and_metrics
from sslm_jax.objectives.pretraining import PretrainingLoss, make_pretraining_loss

__all__ = [
    "CausalLMLoss",
    "ClassificationLoss",
    "ElectraLoss",
    "LossTerm",
    "Objective",
    "PretrainingLoss",
    "finalize",
    "make_causal_lm_loss",
    "make_classification_loss",
    "make_electra_loss",
    "make_eval_step",
    "make_pretraining_loss",
    "mlm_loss_and_metrics",
    "nsp_loss_and_metrics",
    "total_loss",
    "weighted_loss",
]

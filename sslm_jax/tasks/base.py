"""What the training loop needs to know about a task (pretraining, classification, ...), in one record."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn

# The eval-step output key of per-example arrays ({name: [B]}, e.g. predictions and labels for F1 or Spearman):
# concatenated over devices (not summed like every other output) and handed to `summarize` batch by batch.
PER_EXAMPLE = "per_example"


@dataclasses.dataclass(frozen=True)
class Task:
    model: nn.Module
    # loss_fn(params, batch, rng, deterministic=False, *, denominators=None) -> (loss, sums); see objectives/.
    loss_fn: Any
    train_data: Callable[[], Any]  # () -> tf.data.Dataset of this host's training batches (infinite)
    eval_data: Callable[[], Any] | None  # () -> tf.data.Dataset of this host's eval batches (one pass)
    # pure (params, batch) -> dict of sums (added over devices), optionally PER_EXAMPLE rows; summarised on the host
    eval_step: Callable[[Any, Mapping], dict]
    summarize: Callable[[list[dict]], dict[str, float]]  # all eval-step outputs (numpy) -> eval metrics
    seq_len: int
    flops_per_sequence: float  # model FLOPs of one training sequence (forward + backward), for MFU
    progress_keys: tuple[str, ...]  # metrics shown in the progress bar
    # Settings the task resolved from its data, as dotted config keys ({"data.label_names": ("neg", "pos")}): the
    # loop writes them into the config saved with every checkpoint, so eval / predict / export need no data.
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

"""What the training loop needs to know about a task (pretraining, classification, ...), in one record."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn


@dataclasses.dataclass(frozen=True)
class Task:
    model: nn.Module
    # loss_fn(params, batch, rng, deterministic=False, *, denominators=None) -> (loss, sums); see objectives/.
    loss_fn: Any
    train_data: Callable[[], Any]  # () -> tf.data.Dataset of this host's training batches (infinite)
    eval_data: Callable[[], Any] | None  # () -> tf.data.Dataset of this host's eval batches (one pass)
    eval_step: Callable[[Any, Mapping], dict]  # pure (params, batch) -> dict of arrays, summarised on the host
    summarize: Callable[[list[dict]], dict[str, float]]  # all eval-step outputs (numpy) -> eval metrics
    seq_len: int
    flops_per_sequence: float  # model FLOPs of one training sequence (forward + backward), for MFU
    progress_keys: tuple[str, ...]  # metrics shown in the progress bar
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # saved beside the config (labels, ...)

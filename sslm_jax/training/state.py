"""The training state: pure data (no functions), so Orbax saves it and jit shards it as one pytree."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax


class TrainState(flax.struct.PyTreeNode):
    """`step` (int32 scalar), `params` (fp32 master weights) and `opt_state` (the optax state).

    The model and the optimizer are not part of the state: step functions close over them, so the state can be
    restored into any process that builds the same model and optimizer.
    """

    step: jax.Array
    params: Any
    opt_state: Any

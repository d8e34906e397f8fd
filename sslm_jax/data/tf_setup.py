"""TensorFlow runs the host-side input pipeline only: it must never claim a GPU or TPU that JAX trains on.

Every module of `sslm_jax.data` that imports TensorFlow calls `hide_accelerators_from_tf()` right after the
import. Without it, a TensorFlow build that finds CUDA would reserve most of the GPU memory for itself the first
time it runs an op, and JAX would then fail to allocate.
"""

from __future__ import annotations

import tensorflow as tf

_ACCELERATOR_KINDS = ("GPU", "TPU")


def hide_accelerators_from_tf() -> None:
    """Make TensorFlow's accelerators invisible to it (idempotent; TF keeps using the host CPUs).

    Raises:
      RuntimeError: TensorFlow already initialised an accelerator before this was called (something imported and
        ran TensorFlow on it first); the visible-device list can no longer be changed in this process.
    """
    for kind in _ACCELERATOR_KINDS:
        if not tf.config.list_physical_devices(kind) or not tf.config.get_visible_devices(kind):
            continue
        try:
            tf.config.set_visible_devices([], kind)
        except RuntimeError as e:  # TF refuses once its runtime is initialised.
            raise RuntimeError(
                f"TensorFlow already initialised its {kind}s; import sslm_jax.data before running any TensorFlow op "
                f"so the input pipeline stays on the CPU ({e})"
            ) from e

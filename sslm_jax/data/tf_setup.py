"""TensorFlow runs the host-side input pipeline only: it must never claim a GPU or TPU that JAX trains on.

Every module of `sslm_jax.data` gets TensorFlow from here (`from sslm_jax.data.tf_setup import tf`, before any
`tensorflow_*` import), which does two things once per process:

- It imports TensorFlow with its C++ log threshold at FATAL (`TF_CPP_MIN_LOG_LEVEL=3`), holding back the INFO
  lines its libraries print while loading (replayed if the import fails). TF's GPU build probes for CUDA when it
  first lists devices, and on a machine without a driver prints `E0000 ... failed call to cuInit: ... UNKNOWN
  ERROR (303)`, which reads like a failure. TF's core library reads the variable once, while it is imported; its
  previous value is restored right after, so JAX/XLA and child processes keep their own logging. (One later line,
  oneDNN's int64 notice on CPUs without AVX-512, comes from a library that reads it later and still shows.) TF's
  real errors still reach us: they are raised as Python exceptions. To see TF's C++ logs, import tensorflow
  yourself before sslm_jax.data.
- It makes TF's accelerators invisible to it (`hide_accelerators_from_tf`). Without that, a TensorFlow build that
  finds CUDA would reserve most of the GPU memory for itself the first time it runs an op, and JAX would then fail
  to allocate. (The `tensorflow` wheel has no TPU runtime; `TPU` is hidden too in case a TPU build is installed.)
- It tells AutoGraph to leave sslm_jax's own functions as they are (`skip_autograph`), which saves ~3 s of every
  training run's start.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from sslm_jax.import_guard import imports_blocked

_ACCELERATOR_KINDS = ("GPU", "TPU")
_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"


def _import_tensorflow_quietly():
    if "tensorflow" in sys.modules:  # imported before us (a user's script): its logging is already decided
        import tensorflow

        return tensorflow
    previous = os.environ.get(_LOG_LEVEL)  # jax sets "1" when it is imported
    os.environ[_LOG_LEVEL] = "3"
    try:
        # Keras, which TensorFlow imports eagerly, would import scikit-learn for its sklearn wrappers (1.3 s) and
        # matplotlib with pyplot for its image-gallery plots (~1 s); it falls back cleanly without them. Processes
        # that draw curves import matplotlib themselves, with the Agg backend (training/reporting.py).
        with _stderr_kept_unless_failing(), imports_blocked("sklearn", "matplotlib"):
            import tensorflow
    finally:
        if previous is None:
            os.environ.pop(_LOG_LEVEL, None)
        else:
            os.environ[_LOG_LEVEL] = previous
    return tensorflow


@contextlib.contextmanager
def _stderr_kept_unless_failing():
    """Holds back what is written to file descriptor 2 inside the block; replays it only if the block raises.

    TF's shared libraries log a few INFO lines while they load ("oneDNN custom operations are on", "Could not find
    cuda drivers on your machine") before absl's logging is initialised, ignoring TF_CPP_MIN_LOG_LEVEL.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


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


def skip_autograph(package: str = __name__.split(".")[0]) -> None:
    """Functions defined in `package` are traced as written, not rewritten by AutoGraph first (idempotent).

    `Dataset.map`/`filter`/... hand every Python function to AutoGraph, which parses and rewrites its source (Python
    `if`/`for` over tensors become graph control flow) before tracing it: ~50 ms a function, about 3 s for a
    pretraining run's train and eval pipelines, paid by every process that builds them. Our pipeline functions are
    graph code throughout, and would fail loudly without AutoGraph if one were not (a tensor used as a Python bool
    raises while tracing), so the rewrite only costs time. This is the rule TensorFlow registers for its own packages,
    Keras and TFDS. Should a later TensorFlow move the table, functions are converted again: slower to start, the
    same graphs.
    """
    try:
        from tensorflow.python.autograph.core import config
    except ImportError:
        return
    rules = getattr(config, "CONVERSION_RULES", None)
    if not isinstance(rules, tuple) or not hasattr(config, "DoNotConvert"):
        return
    rule = config.DoNotConvert(package)
    if all(str(r) != str(rule) for r in rules):
        config.CONVERSION_RULES = (rule, *rules)


tf = _import_tensorflow_quietly()
hide_accelerators_from_tf()
skip_autograph()

"""SIGTERM / SIGINT that arrive while a training command is still starting (Python importing jax and TensorFlow,
parsing flags), before the trainer installs its own handler. Standard library only, so it is installed first.

    install_for(sys.argv)     # `python -m sslm_jax pretrain ...` and the `sslm` script do this first

The trainer's `PreemptionHandler` finds the recorder as the handler it replaces and takes its signal over, so a run
stopped at any moment exits as a stopped run does: 0 after SIGTERM, 130 after SIGINT, having saved what it had.
Other commands (eval, fill-mask, ...) keep Python's defaults: they have nothing to save and stop at once.
"""

from __future__ import annotations

import signal

TRAINING_COMMANDS = ("pretrain", "finetune")


class EarlySignals:
    """A signal handler that only records the last signal received (`received`)."""

    def __init__(self):
        self.received = None

    def __call__(self, signum, frame):
        del frame
        self.received = signum


def install_for(argv: list[str]) -> None:
    """Installs one recorder for SIGTERM and SIGINT if `argv` runs a training command (once: a second call keeps it)."""
    if len(argv) < 2 or argv[1] not in TRAINING_COMMANDS:
        return
    if isinstance(signal.getsignal(signal.SIGTERM), EarlySignals):
        return
    recorder = EarlySignals()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, recorder)

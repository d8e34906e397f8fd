"""SIGTERM (a preemption notice) and SIGINT (Ctrl-C) as a flag the training loop polls once per step, agreed across
hosts. Both save the current step; SIGTERM then ends the run normally (exit 0: the scheduler may restart it), SIGINT
raises `Interrupted` after the save (the CLI exits 130, no traceback)."""

from __future__ import annotations

import signal
from typing import Any

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils


def _jax_preemption_service_active() -> bool:
    """Whether jax's coordination service watches for SIGTERM and agrees a save step across hosts.

    `jax.distributed.initialize` starts it on multi-host runs unless `jax_enable_preemption_service` is off; it
    catches SIGTERM in C++, which a Python signal handler would replace.
    """
    return jax.process_count() > 1 and bool(jax.config.jax_enable_preemption_service)


class Interrupted(KeyboardInterrupt):
    """Raised after SIGINT once the run has saved what it had: a KeyboardInterrupt, as Ctrl-C is in Python."""


class PreemptionHandler:
    """Turns SIGTERM (a preemption notice) into a flag the training loop polls once per step.

        with PreemptionHandler() as preemption:
            for step in ...:
                ...
                if preemption.should_stop(step):   # every host gets the same answer for the same step
                    save_checkpoint(..., force=True)
                    break                           # and exit 0; the run resumes from this step

    One host: a Python handler records the signal. Several hosts: jax's preemption service (started by
    `jax.distributed.initialize`) is used when on, since hosts receive SIGTERM at different steps and must agree on
    one; with it off, the recorded flags are combined across hosts at every `should_stop`. Install from the main
    thread; the previous handlers come back on exit. A signal recorded before by a previous handler that has a
    `received` attribute (the CLI's, installed before jax is even imported) counts as received here.
    """

    def __init__(self, *, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)):
        self._signals = tuple(signals)
        self._previous: dict[int, Any] = {}
        self.received: int | None = None  # the signal number, once one arrived

    def install(self) -> "PreemptionHandler":
        if _jax_preemption_service_active():
            logging.info("Preemption: using jax's multi-host preemption service.")
            return self
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._record)
            early = getattr(self._previous[sig], "received", None)
            if early is not None and self.received is None:
                self.received = early
        return self

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def __enter__(self) -> "PreemptionHandler":
        return self.install()

    def __exit__(self, *exc_info) -> None:
        self.uninstall()

    def _record(self, signum, frame) -> None:
        del frame
        # Only set a flag: a signal handler interrupts arbitrary code, so it must not log, save or raise.
        self.received = signum

    @property
    def interrupted(self) -> bool:
        """True once SIGINT (Ctrl-C) arrived: the run saves, then raises `Interrupted`."""
        return self.received == signal.SIGINT

    @property
    def name(self) -> str:
        """For log lines: "Preempted (SIGTERM)", "Interrupted (SIGINT)"."""
        if self.received is None:
            return "Preempted"
        word = "Interrupted" if self.interrupted else "Preempted"
        return f"{word} ({signal.Signals(self.received).name})"

    @property
    def requested(self) -> bool:
        """True once this process received one of the signals."""
        return self.received is not None

    def should_stop(self, step: int) -> bool:
        """Whether to save at `step` and stop. Call it at every step on every host."""
        if _jax_preemption_service_active():
            return multihost_utils.reached_preemption_sync_point(step)
        if jax.process_count() == 1:
            return self.requested
        flags = multihost_utils.process_allgather(np.int32(self.requested))
        return bool(np.any(flags))

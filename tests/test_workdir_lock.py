"""The workdir lock (sslm_jax/training/workdir_lock.py): one holder, named in the refusal; a dead holder's lock taken
over with a log line; a clean end leaves nothing stale."""

import os
import socket
import subprocess
import sys

import pytest

from sslm_jax.errors import CheckpointError
from sslm_jax.training.workdir_lock import LOCK_FILE, WorkdirLock


def test_second_holder_is_refused_naming_the_first(tmp_path):
    with WorkdirLock(tmp_path):
        content = (tmp_path / LOCK_FILE).read_text()
        assert content.startswith(f"{socket.gethostname()} {os.getpid()} ")
        with pytest.raises(CheckpointError, match=f"is in use by pid {os.getpid()} on host {socket.gethostname()}"):
            WorkdirLock(tmp_path).acquire()
        assert (tmp_path / LOCK_FILE).read_text() == content, "the refused one writes nothing"
    assert (tmp_path / LOCK_FILE).read_text() == "", "a clean end leaves no holder behind"
    with WorkdirLock(tmp_path):  # free again
        pass


def test_lock_of_a_dead_process_is_taken_over_with_a_log_line(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / LOCK_FILE).write_text(f"{socket.gethostname()} {pid} 2026-01-01T00:00:00Z\n")
    with WorkdirLock(tmp_path):
        assert f"Taking over the stale lock {tmp_path / LOCK_FILE} of pid {pid}" in caplog.text


def test_a_live_holder_is_respected_even_where_flock_is_a_no_op(tmp_path):
    """A free lock whose file names a live process on this host (flock ignored by a network filesystem)."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            (tmp_path / LOCK_FILE).write_text(f"{socket.gethostname()} {other.pid} 2026-01-01T00:00:00Z\n")
            with pytest.raises(CheckpointError, match=f"in use by pid {other.pid}"):
                WorkdirLock(tmp_path).acquire()
        finally:
            other.kill()


def test_disabled_lock_is_not_taken(tmp_path):
    """Processes other than 0 of a multi-host run: one lock per run, taken by process 0."""
    with WorkdirLock(tmp_path, enabled=False):
        assert not (tmp_path / LOCK_FILE).exists()

"""One writer per workdir: an OS file lock on `<workdir>/sslm.lock`, held for as long as the trainer runs.

    with WorkdirLock(workdir):         # CheckpointError "... is in use by pid 4242 on host-a ..." if another holds it
        train(...)

Why an OS lock (`fcntl.flock`) and not a file that exists or not: the kernel releases it when its holder exits,
however it exits (kill -9, OOM, a node reboot), so a crash never leaves the workdir locked. The file records the
holder (`host pid start-time`) so the refusal can name it; the holder empties it when it ends cleanly. A non-empty
file whose lock is free was therefore left by a process that died: it is taken over, with a log line.

A second check covers filesystems whose `flock` is a no-op (some network mounts): a free lock whose file names a
*live* process on this host other than us is treated as held.

Multi-host runs: only process 0 locks (`enabled=jax.process_index() == 0`), one lock per run; the other hosts write
only their own data positions into the steps process 0 commits.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time

from absl import logging

from sslm_jax.errors import CheckpointError

LOCK_FILE = "sslm.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _parse(text: str) -> tuple[str, int, str] | None:
    """(host, pid, since) from the lock file's one line, or None if empty/garbled."""
    parts = text.split()
    if len(parts) >= 2 and parts[1].isdigit():
        return parts[0], int(parts[1]), " ".join(parts[2:])
    return None


class WorkdirLock:
    """An exclusive lock on a workdir for the life of a `with` block (or of the process, if never released)."""

    def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True):
        self.path = os.path.join(os.fspath(workdir), LOCK_FILE)
        self.enabled = enabled
        self._fd: int | None = None

    def acquire(self) -> "WorkdirLock":
        if not self.enabled:
            return self
        host, me = socket.gethostname(), os.getpid()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inheritable: children never hold it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise CheckpointError(self._in_use(_parse(self._read())))
        previous = _parse(self._read())
        if previous is not None:
            held_by, pid, since = previous
            if held_by == host and pid != me and _alive(pid):  # flock ignored by this filesystem
                os.close(fd)
                raise CheckpointError(self._in_use(previous))
            logging.warning(
                "Taking over the stale lock %s of pid %d on %s (started %s), which is no longer running.",
                self.path, pid, held_by, since or "at an unknown time",
            )  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{host} {me} {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Empties the file (a clean end: nothing stale is left) and unlocks."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass  # a full or read-only disk: the next holder just logs a take-over
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    def _read(self) -> str:
        try:
            with open(self.path) as f:
                return f.read(200)
        except OSError:
            return ""

    def _in_use(self, holder: tuple[str, int, str] | None) -> str:
        who = f"pid {holder[1]} on host {holder[0]} (since {holder[2]})" if holder else "another process"
        workdir = os.path.dirname(self.path)
        return (
            f"workdir {workdir} is in use by {who}: wait for that run to end, stop it, or use another --workdir "
            f"(the lock is {self.path})"
        )

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

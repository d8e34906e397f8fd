"""A full disk, wherever it strikes (checkpoint, metrics, TensorBoard, vocabulary), as one line instead of five
tracebacks.

    with disk_full.reported(workdir):       # DiskFullError: "no space left writing <path> ...: free ~7.3 MB ..."
        train(...)

A write that fails for lack of room surfaces in many shapes: an `OSError` with errno ENOSPC (or EDQUOT, or EFBIG
when a file-size limit such as `ulimit -f` is hit) from Python, the same wrapped by Orbax's background thread, or a
TensorStore `ValueError` whose text carries the OS message. `disk_full_error` walks the exception's causes and
contexts for any of them. What it does not change: Orbax writes a step into a temporary folder and commits it by a
rename, so a save cut short leaves the previous steps intact and the next run removes the leftover; a torn last line
of metrics.jsonl is dropped on resume (`reporting.MetricsWriter`); a vocabulary is trained into a temporary folder
and moved into place whole (`vocab.py`). A rerun with room resumes from the last intact step.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import threading

from sslm_jax.checkpoints import integrity, layout
from sslm_jax.errors import SslmError

_ERRNOS = {errno.ENOSPC: "no space left", errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file size limit reached"}
_TEXTS = {"No space left on device": "no space left", "Disk quota exceeded": "disk quota exceeded",
          "File too large": "file size limit reached"}  # fmt: skip
_PATH = re.compile(r"(/[^\s'\"\]\[:;,)]+)")


class DiskFullError(SslmError):
    """A write failed for lack of disk space (or quota, or a file-size limit)."""


def _chain(error: BaseException):
    seen = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__cause__, e.__context__, *getattr(e, "exceptions", ())]


def disk_full_error(error: BaseException, *, under=None) -> tuple[str, str | None] | None:
    """(what happened, the path being written or None) if `error` comes from a full disk, else None. Of the paths
    an error's text names, the first below `under` (the workdir) is taken, else the longest."""
    for e in _chain(error):
        if isinstance(e, OSError) and e.errno in _ERRNOS:
            return _ERRNOS[e.errno], e.filename
        text = str(e)
        for needle, what in _TEXTS.items():
            if needle in text:
                paths = sorted(_PATH.findall(text), key=len, reverse=True)
                mine = [p for p in paths if under is not None and p.startswith(os.fspath(under))]
                return what, (mine or paths or [None])[0]
    return None


def _size_of_a_checkpoint(workdir) -> str:
    step_dir = layout.latest_checkpoint(workdir) if os.path.isdir(os.fspath(workdir)) else None
    size = integrity.total_bytes(step_dir) if step_dir is not None else None
    return f"a checkpoint of this run takes {size / 2**20:.1f} MiB" if size else "a checkpoint needs room"


# Full-disk errors raised in background threads (TensorBoard's event writer thread), kept for the main thread.
_background: list[BaseException] = []


def _keep_disk_full(previous):
    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and disk_full_error(args.exc_value) is not None:
            _background.append(args.exc_value)  # no traceback: the main thread reports it as one line
        else:
            previous(args)

    return hook


def raise_pending() -> None:
    """Raises, in the calling (main) thread, a full-disk error a background thread met since the last call.
    tensorboardX writes events from its own thread, which a full disk ends silently (events are then lost)."""
    if _background:
        error = _background[0]
        _background.clear()
        raise error


@contextlib.contextmanager
def reported(workdir, *, on_failure=None):
    """Turns a full-disk error raised inside into `DiskFullError` (one line naming the path and the room needed);
    `on_failure()` runs first (e.g. to stop background writers), its own errors ignored. Inside, a background
    thread's full-disk error prints nothing; `raise_pending()` (and the end of the block) raise it here."""
    previous = threading.excepthook
    threading.excepthook = _keep_disk_full(previous)
    _background.clear()
    try:
        yield
        raise_pending()
    except Exception as e:
        found = disk_full_error(e, under=workdir)
        if found is None:
            raise
        if on_failure is not None:
            with contextlib.suppress(Exception):
                on_failure()
        what, path = found
        try:
            need = _size_of_a_checkpoint(workdir)
        except Exception:  # a damaged step must not hide the disk error
            need = "a checkpoint needs room"
        raise DiskFullError(
            f"{what} writing {path or workdir} ({need}): free space and rerun the same command; it resumes from the "
            f"last intact checkpoint"
        ) from None
    finally:
        threading.excepthook = previous

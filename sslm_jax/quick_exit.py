"""A finished `sslm` command exits without Python tearing its modules down one by one.

After the last line of a command, CPython's finalisation clears the dictionary of every loaded module, with a full
garbage collection between passes. TensorFlow, jax, flax and orbax load thousands of modules: a command that imported
TensorFlow spent 2.6-3.3 s there (`sslm eval` / `sslm pretrain` on a smoke run, measured between the SystemExit and
the process's end), one that did not ~0.9 s (`sslm fill-mask`), for nothing the user can see. Every command, service
start and notebook cell that shells out paid it.

    with skipped_module_teardown():   # the CLI's entry point, around absl's app.run
        app.run(main)

Everything else Python does at exit still happens, in its usual order: non-daemon threads are joined (Orbax's and
tensorboardX's writers), then every atexit handler registered after this one runs (jax's backends and distributed
client, Orbax's, multiprocessing's). Only then does this handler, registered first and therefore run last, shut
logging down, flush standard output and error, and end the process with the command's status (`os._exit`). A
command that raised something other than SystemExit (a crash with a traceback) keeps Python's full teardown.

What is skipped are the atexit handlers registered before the CLI started (logging's, which is run here, and a
tool's that wraps the process, e.g. `coverage run`) and the deallocation of the objects still alive: sslm_jax closes
every file it writes when it is done with it, so there is no buffer left for that teardown to flush.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys


class _Exit:
    code: int | None = None  # the status of the SystemExit that ended the command; None: it did not end that way

    def __call__(self) -> None:
        if self.code is None:
            return
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a reader that went away (`sslm ... | head`), a closed stream
                pass
        os._exit(self.code)


def _status(code: object) -> int:
    """The exit status Python gives `sys.exit(code)`; a message is printed to stderr first, as Python does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def skipped_module_teardown():
    """Makes the process end right after Python's own exit handlers once the block raises SystemExit."""
    exit_handler = _Exit()
    atexit.register(exit_handler)
    try:
        yield
    except SystemExit as e:
        exit_handler.code = _status(e.code)
        raise SystemExit(exit_handler.code) from None  # the message (a str code) is printed already

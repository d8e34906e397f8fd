"""`quick_exit.skipped_module_teardown`: a command that ends with SystemExit skips only the module teardown; its status,
its output, its threads and the exit handlers registered after it are kept. Each case is a small Python process."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A module-level object whose finaliser runs only in Python's module teardown; a thread and an exit handler that
# both write a file; output that sits unflushed in the buffers when the command ends.
PROLOGUE = """
import atexit, logging, sys, threading, time
from sslm_jax.quick_exit import skipped_module_teardown

class Teardown:
    def __del__(self):
        sys.stderr.write("module teardown ran\\n")

marker = Teardown()

def late_thread(path):
    time.sleep(0.3)
    open(path, "w").write("thread")

def command(path):
    atexit.register(lambda: open(path + ".atexit", "w").write("handler"))
    threading.Thread(target=late_thread, args=(path + ".thread",)).start()  # not a daemon: joined at exit
    sys.stdout.write("unflushed output")  # no newline: still buffered when the process ends
    logging.getLogger("x").warning("a logged line")
"""


def _run(tmp_path, body: str) -> subprocess.CompletedProcess:
    script = PROLOGUE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script, str(tmp_path / "f")], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


@pytest.mark.parametrize("code, status", [(None, 0), (3, 3), (130, 130)])
def test_system_exit_keeps_status_output_threads_and_handlers_and_skips_the_teardown(tmp_path, code, status):
    out = _run(tmp_path, f"""
        with skipped_module_teardown():
            command(sys.argv[1])
            sys.exit({code})
    """)
    assert out.returncode == status, out.stderr
    assert out.stdout == "unflushed output" and "a logged line" in out.stderr
    assert (tmp_path / "f.thread").read_text() == "thread", "non-daemon threads are joined first"
    assert (tmp_path / "f.atexit").read_text() == "handler", "handlers registered later run first"
    assert "module teardown ran" not in out.stderr


def test_a_message_exit_prints_it_and_exits_1(tmp_path):
    out = _run(tmp_path, """
        with skipped_module_teardown():
            sys.exit("sslm: something went wrong")
    """)
    assert out.returncode == 1 and out.stderr.splitlines()[0] == "sslm: something went wrong", out.stderr
    assert "module teardown ran" not in out.stderr


def test_a_crash_keeps_the_full_teardown(tmp_path):
    out = _run(tmp_path, """
        with skipped_module_teardown():
            command(sys.argv[1])
            raise ValueError("a bug")
    """)
    assert out.returncode == 1 and "ValueError: a bug" in out.stderr
    assert out.stdout == "unflushed output" and (tmp_path / "f.atexit").exists()
    assert "module teardown ran" in out.stderr, "a crash is not a command's end: Python tears down as usual"


def test_without_the_block_python_tears_modules_down(tmp_path):
    """The control: the finaliser above does reveal a module teardown."""
    out = _run(tmp_path, "sys.exit(0)")
    assert out.returncode == 0 and "module teardown ran" in out.stderr

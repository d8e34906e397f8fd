"""README.md stays true: its command-line examples run as printed. (Its Python example runs in
tests/test_import_without_tf.py, with TensorFlow, torch and transformers imports blocked.)"""

import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _cli_examples() -> list[str]:
    """The `sslm ...` lines of the command-line examples block (the one right after "Examples")."""
    section = README.split("Examples (all run as printed", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("sslm ")]


@pytest.mark.slow
@pytest.mark.parametrize("line", _cli_examples())
def test_cli_example_runs(line, tmp_path, shared_data):
    # Run as printed, from the repository root (the wikitext example reads ../shared/data), into fresh folders.
    line = line.replace("/tmp/", f"{tmp_path}/")
    argv = [sys.executable, "-m", "sslm_jax"] + shlex.split(line)[1:]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]

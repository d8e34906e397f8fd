"""README.md stays true: its Python example runs, and its command-line examples run as printed."""

import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_python_example_runs():
    (example,) = _blocks("python")
    out = subprocess.run(
        [sys.executable, "-c", example], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"step 3: loss \d+\.\d+", out.stdout), out.stdout


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

"""README.md stays true: its command-line examples run as printed. (Its Python example runs in
tests/test_import_without_tf.py, with TensorFlow, torch and transformers imports blocked.)"""

import ast
import os
import pathlib
import re
import socket
import subprocess
import sys

import pytest

from _sslm_runs import session_compile_cache

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _example_blocks() -> list[str]:
    """Every ```bash block from "Examples (all run as printed" on, in README order: each block may use what the
    blocks before it wrote (the fine-tuning block starts from the pretraining block's run, serving from both)."""
    section = README.split("Examples (all run as printed", 1)[1]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_examples_cover_every_command_and_the_server():
    script = "\n".join(_example_blocks())
    commands = {line.split()[1] for line in script.splitlines() if line.startswith("sslm ")}
    assert commands >= {"train-tokenizer", "pretrain", "finetune", "eval", "predict", "export-hf", "fill-mask",
                        "quantize", "prune", "export", "generate", "serve"}, commands  # fmt: skip
    assert "8080" in script and "/tmp/" in script  # what the test below replaces


@pytest.mark.slow
def test_readme_examples_run_as_printed(tmp_path, shared_data):
    """The example blocks run as one bash script from the repository root (../shared/data is read in place), each
    line as printed except two substitutions: /tmp/ becomes a fresh folder and port 8080 a free one. `set -e`: any
    failing line fails the test; a server that never turns ready is caught by the timeout. The environment is a
    user's (one CPU device, not conftest's 8) plus the session's compilation cache."""
    script = "set -euo pipefail\n" + "\n".join(_example_blocks())
    script = script.replace("/tmp/", f"{tmp_path}/").replace("8080", str(_free_port()))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if cache := session_compile_cache():
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    # What the blocks print: an exported classifier's labels and logits, the served answers and counters.
    assert re.search(r"^\('0', '1'\) \[\[", out.stdout, flags=re.M), out.stdout[-2000:]
    # The portable GPT's greedy continuation equals `sslm generate --temperature=0`'s on the same weights (via HF).
    portable_line = [line for line in out.stdout.splitlines() if line.startswith("['") or line.startswith('["')]
    assert len(portable_line) == 1, out.stdout[-2000:]
    assert f"import os{ast.literal_eval(portable_line[0])[0]}\n---\n" in out.stdout
    assert '{"results":[{"label":' in out.stdout.replace(" ", "") and '"embeddings":' in out.stdout
    assert re.search(r'sslm_requests_total\{[^}]*route="/v1/classify"[^}]*\} 1', out.stdout), out.stdout[-2000:]
    assert (tmp_path / "sst2_predictions.jsonl").stat().st_size > 0 and (tmp_path / "gpt_hf" / "config.json").exists()

"""Research users import the model, losses and steps with only jax, flax and optax: no TensorFlow, torch or
transformers. A subprocess whose imports of those fail runs README's training-step example and imports the rest."""

import pathlib
import re
import subprocess
import sys

import _blocked_imports

ROOT = pathlib.Path(__file__).resolve().parents[1]

BLOCKED = ("tensorflow", "tensorflow_text", "tensorflow_datasets", "torch", "transformers", "tokenizers")

_BLOCKER = _blocked_imports.source(BLOCKED)

TF_FREE = (
    "sslm_jax.models.bert",
    "sslm_jax.models.gpt",
    "sslm_jax.models.electra",
    "sslm_jax.objectives",
    "sslm_jax.objectives.causal_lm",
    "sslm_jax.objectives.electra",
    "sslm_jax.training.step",
    "sslm_jax.training.partitioning",
    "sslm_jax.training.optim",
    "sslm_jax.inference.generate",
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKER + code], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_models_objectives_and_steps_import_and_train_without_tf_torch_transformers():
    """README's two library examples (a sharded train step; generation with a KV cache), run as printed."""
    training, generation = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    imports = "".join(f"import {m}\n" for m in TF_FREE)
    out = _run(imports + training + generation)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"step 3: loss \d+\.\d+", out.stdout), out.stdout
    assert re.search(r"^\(2, 16\) \[\s*\d+\s+\d+\]$", out.stdout, flags=re.M), out.stdout


def test_the_blocker_blocks():
    """The control: the input pipeline does need TensorFlow, and the blocker makes that import fail."""
    out = _run("import sslm_jax.data.tokenizer")
    assert out.returncode != 0 and "No module named 'tensorflow'" in out.stderr, out.stderr[-2000:]

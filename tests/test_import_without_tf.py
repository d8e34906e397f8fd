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


def test_one_shot_inference_and_deployment_need_no_tensorflow(tmp_path):
    """Only training and evaluation read data through tf.data (`sslm eval` of a classifier of files does not either:
    test_finetune_cli). Loading a model to generate, serve, quantize, prune or export it tokenizes on the host (or
    only copies the tokenizer's files), BPE included: all of it runs where TensorFlow cannot be imported.
    (`export_hf` loads models the same way; it takes only sslm runs.)"""
    from _serve_models import bert_dir, gpt_dir

    gpt, classifier = gpt_dir(tmp_path), bert_dir(tmp_path, "classification")
    code = (
        _blocked_imports.source(("tensorflow", "tensorflow_text", "tensorflow_datasets"))
        + f"gpt, classifier, out = {str(gpt)!r}, {str(classifier)!r}, {str(tmp_path)!r}\n"
        + """
import sys
from sslm_jax.inference import compress, service, stablehlo, text_generation
print(text_generation.generate_from(gpt, ["the movie"], max_new_tokens=4, temperature=0.0))
print(sorted(service.create_app(gpt).state.service.backend.runners))
compress.quantize_model(classifier, out + "/int8", mode="dynamic")
compress.prune_model(classifier, out + "/pruned", sparsity=0.5)
stablehlo.export_portable(out + "/int8", out + "/portable")
stablehlo.export_portable(gpt, out + "/gpt_portable")
print("tensorflow" in sys.modules)
"""
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[1:3] == ["['generate']", "False"], out.stdout
    # The same greedy text with the in-graph tokenizer, in this process (TensorFlow allowed).
    from sslm_jax.inference import text_generation

    assert out.stdout.split("\n")[0] == str(text_generation.generate_from(gpt, ["the movie"], max_new_tokens=4,
                                                                         temperature=0.0))  # fmt: skip
    for name in ("int8", "pruned", "portable", "gpt_portable"):
        assert (tmp_path / name).is_dir(), name

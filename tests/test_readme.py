"""README.md stays true: its command-line examples run as printed, and what they make is right. (Its Python example
runs in tests/test_import_without_tf.py, with TensorFlow, torch and transformers imports blocked.)

The examples are run once (the module fixture `examples`); the tests below check what they printed and wrote. The
CLI tests (test_deploy_cli, test_gpt_cli, test_electra_cli) do not repeat what the examples already run: the int8,
pruned and portable classifier, GPT-2's export to `transformers`, and ELECTRA's pretrain → fill-mask → fine-tune →
export chain are checked here, on the examples' own outputs.
"""

import ast
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
from typing import NamedTuple

import numpy as np
import pytest

from _sslm_runs import TEST_XLA_FLAGS, compile_cache_env, session_compile_cache

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
    assert "8080" in script and "/tmp/" in script  # what the fixture below replaces


class Examples(NamedTuple):
    tmp: pathlib.Path  # what the examples' /tmp/ became
    stdout: str


@pytest.fixture(scope="module")
def examples(tmp_path_factory, shared_data) -> Examples:
    """The example blocks run as one bash script from the repository root (../shared/data is read in place), each
    line as printed except two substitutions: /tmp/ becomes a fresh folder and port 8080 a free one. `set -e`: any
    failing line fails the run; a server that never turns ready is caught by the timeout. The environment is a
    user's (one CPU device, not conftest's 8) plus the session's compilation cache and the tests' XLA optimisation
    level (`_sslm_runs.TEST_XLA_FLAGS`)."""
    tmp = tmp_path_factory.mktemp("readme")
    script = "set -euo pipefail\n" + "\n".join(_example_blocks())
    script = script.replace("/tmp/", f"{tmp}/").replace("8080", str(_free_port()))
    env = {**os.environ, "XLA_FLAGS": TEST_XLA_FLAGS}
    env.update(PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if cache := session_compile_cache():
        env.update(compile_cache_env(cache))
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=1800, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return Examples(tmp, out.stdout)


@pytest.mark.slow
def test_readme_examples_run_as_printed(examples):
    tmp, stdout = examples
    # What the blocks print: an exported classifier's labels and logits, the served answers and counters.
    assert re.search(r"^\('0', '1'\) \[\[", stdout, flags=re.M), stdout[-2000:]
    # The portable GPT's greedy continuation equals `sslm generate --temperature=0`'s on the same weights (via HF).
    assert f"import os{_portable_greedy_continuation(stdout)}\n---\n" in stdout
    assert '{"results":[{"label":' in stdout.replace(" ", "") and '"embeddings":' in stdout
    assert re.search(r'sslm_requests_total\{[^}]*route="/v1/classify"[^}]*\} 1', stdout), stdout[-2000:]
    assert (tmp / "sst2_predictions.jsonl").stat().st_size > 0 and (tmp / "gpt_hf" / "config.json").exists()
    # Two fill-mask examples (BERT's and ELECTRA's generator), one [MASK] each.
    assert len(re.findall(r"^  \[MASK\] 1: \S+ \d\.\d{3}", stdout, flags=re.M)) == 2, stdout[-2000:]


def _portable_greedy_continuation(stdout: str) -> str:
    """What `portable.load('gpt_portable').generate(['import os'], max_new_tokens=16)` printed (one list line)."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("['") or line.startswith('["')]
    return ast.literal_eval(line)[0]


def _eval_line(stdout: str, workdir: pathlib.Path) -> dict[str, float]:
    """`sslm eval --workdir=W`'s printed metrics ("eval of W[/checkpoints/N]: loss=..., ...")."""
    (line,) = re.findall(rf"^eval of {re.escape(str(workdir))}(?:/\S*)?: (.*)$", stdout, flags=re.M)
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split(", "))}


@pytest.mark.slow
def test_int8_and_pruned_classifiers_keep_every_eval_example_and_shrink(examples, shared_data):
    tmp, stdout = examples
    dev_rows = len((shared_data / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()) - 1
    fp32, int8, pruned_int8 = (_eval_line(stdout, tmp / n) for n in ("sst2_smoke", "sst2_int8", "sst2_p70_int8"))
    assert fp32["examples"] == int8["examples"] == pruned_int8["examples"] == dev_rows
    assert abs(int8["loss"] - fp32["loss"]) < 0.05, (int8, fp32)  # dynamic int8: per-token activation scales

    from sslm_jax.inference.loading import load_model

    pruning = load_model(tmp / "sst2_p70").compression["pruning"]
    assert pruning["method"] == "movement" and pruning["steps"] == 20
    assert pruning["per_layer"]["total"] == pytest.approx(0.7, abs=1e-3)
    # int8 values + bitmask: the pruned model quantized is the smallest
    sizes = {n: (tmp / n / "params.npz").stat().st_size for n in ("sst2_p70", "sst2_p70_int8")}
    assert sizes["sst2_p70_int8"] < sizes["sst2_p70"] / 2.5, sizes


@pytest.mark.slow
def test_portable_classifier_equals_the_int8_model_it_was_exported_from(examples):
    tmp, _ = examples
    manifest = json.loads((tmp / "sst2_portable" / "manifest.json").read_text())
    assert manifest["compression"]["quantization"] == "dynamic" and list(manifest["entry_points"]) == ["classify"]
    assert manifest["label_names"] == ["0", "1"]
    from sslm_jax.inference import portable
    from sslm_jax.inference.loading import load_model

    model, live = portable.load(tmp / "sst2_portable"), load_model(tmp / "sst2_int8")
    ids = np.random.default_rng(0).integers(5, 100, (3, 20)).astype(np.int32)
    mask, types = np.ones_like(ids), np.zeros_like(ids)
    want = live.model.apply({"params": live.params}, ids, attention_mask=mask, token_type_ids=types).logits
    np.testing.assert_allclose(model.classify(ids, mask, types), np.asarray(want), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_gpt_export_generates_in_transformers_what_sslm_generates(examples, torch):
    import transformers

    tmp, stdout = examples
    export = tmp / "gpt_hf"
    model = transformers.GPT2LMHeadModel.from_pretrained(export).eval()
    tok = transformers.GPT2TokenizerFast.from_pretrained(export)
    # generate stops at config.json's eos_token_id: the run's end-of-text (id 0 in the BPE sslm trained; it was
    # null, so transformers generated past the end of the text)
    assert model.config.eos_token_id == model.generation_config.eos_token_id == tok.eos_token_id == 0
    ids = tok("import os", return_tensors="pt").input_ids
    with torch.no_grad():
        hf = model.generate(ids, do_sample=False, max_new_tokens=16, pad_token_id=tok.eos_token_id)
    hf_text = tok.decode(hf[0, ids.shape[1] :].tolist()).split("<|endoftext|>")[0]
    # The examples' greedy text (the portable program's, which test_readme_examples_run_as_printed holds equal to
    # `sslm generate --workdir=gpt_hf "import os" --temperature=0 --max-new-tokens=16`'s)
    ours = "import os" + _portable_greedy_continuation(stdout)
    assert ours.splitlines()[0] == "import os" + hf_text.split("\n")[0], (ours, hf_text)


@pytest.mark.slow
def test_electra_reports_both_models_fine_tunes_and_exports_what_transformers_loads(examples, torch):
    import transformers

    tmp, _ = examples
    last = json.loads((tmp / "electra_smoke" / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("mlm_accuracy", "rtd_accuracy", "eval_rtd_precision", "eval_rtd_recall", "eval_rtd_all_original_accuracy"):
        assert key in last, sorted(last)
    fine_tuned = json.loads((tmp / "sst2_electra" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.0 <= fine_tuned["eval_accuracy"] <= 1.0, fine_tuned
    for name, cls in (("discriminator", "ElectraForPreTraining"), ("generator", "ElectraForMaskedLM")):
        config = json.loads((tmp / "electra_hf" / name / "config.json").read_text())
        assert config["architectures"] == [cls]
        model = getattr(transformers, cls).from_pretrained(tmp / "electra_hf" / name)
        tokenizer = transformers.AutoTokenizer.from_pretrained(tmp / "electra_hf" / name)
        inputs = tokenizer("the file is closed .", return_tensors="pt")
        assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]

"""bench/accelerator.py cannot rot: its --smoke mode runs every row on CPU, without TensorFlow, and writes its JSON."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import _blocked_imports
from _sslm_runs import session_compile_cache, sslm_env

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_runs_every_row_without_tensorflow(tmp_path, torch):
    out_file = tmp_path / "accelerator.json"
    # One CPU device, as on a one-chip host, at XLA's optimisation level 0 (89 -> 75 s; its smoke figures mean nothing
    # on a CPU anyway).
    env = sslm_env(cache_dir=session_compile_cache())
    # The script runs from a bare checkout: no TensorFlow may be importable for it to pass.
    (tmp_path / "sitecustomize.py").write_text(
        _blocked_imports.source(("tensorflow", "tensorflow_text", "tensorflow_datasets"))
    )
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "bench/accelerator.py", "--smoke", f"--json={out_file}", "--ablations=nodropout,rbg,cudnn"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out_file.read_text())
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines == rows  # one JSON line per result, the same as the file
    assert rows[0]["bench"] == "environment" and rows[0]["smoke"] is True
    got = {(r["bench"], r["impl"], r.get("remat")) for r in rows[1:]}
    assert got >= {
        ("bert_train", "sslm_jax", False),
        ("bert_train", "sslm_jax", True),
        ("hf_bert_train", "transformers", None),
        ("gpt_train", "sslm_jax", False),
        ("hf_gpt_train", "transformers", None),
        ("gpt_generate", "sslm_jax", None),
        ("hf_gpt_generate", "transformers", None),
    }, got
    ablations = {r["variant"]: r for r in rows if r["bench"] == "bert_ablation"}
    assert ablations.keys() == {"nodropout", "rbg", "cudnn"}, ablations
    assert ablations["cudnn"]["skipped"] == "needs a gpu/cuda backend"  # cuDNN's attention: GPU only
    measured = [r for r in rows[1:] if "skipped" not in r]
    assert len(measured) == len(rows) - 2, rows
    for r in measured:
        assert r["tokens_per_s"] > 0 and r["step_s"] > 0 and r["mfu"] is None, r  # CPUs have no known peak
    assert all("ratio_vs_hf" in r for r in measured if r["impl"] == "sslm_jax"), rows
    assert "| bench | impl |" in out.stdout and "TensorFlow imported: no" in out.stdout

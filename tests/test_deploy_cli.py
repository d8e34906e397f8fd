"""End to end on tiny sslm runs: `sslm quantize` / `sslm prune` / `sslm export` / `sslm eval` of the results, on a
fine-tuned classifier (SST-2 rows from the shared files) and a pretraining run (fill-mask), and the one-line errors
(exit 2, nothing written) of bad input. The two runs are `_shared_runs.tiny_classifier`, built once per session
(test_finetune_cli.py tests the same ones). README.md's deployment example (dynamic int8, movement pruning, int8 of
the pruned model, the portable export of a classifier) is run and checked by tests/test_readme.py; this file covers
the rest: weight-only int8, one-shot pruning and its fine-tuning with the mask fixed, a pretraining run's int8 and
export, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from _sslm_runs import assert_cli_error, sslm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tiny_classifier, tmp_path_factory):
    """The shared tiny pretraining run and its SST-2 classifier (_shared_runs, read-only); outputs go to `root`."""
    return {"root": tmp_path_factory.mktemp("deploy"), "pretrain": tiny_classifier.pretrained,
            "sst2": tiny_classifier.finetuned}  # fmt: skip


def _eval(workdir) -> dict[str, float]:
    line = sslm("eval", f"--workdir={workdir}").stdout.strip().splitlines()[-1]
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split(": ", 1)[1].split(", "))}


def test_weight_only_int8_keeps_the_eval(runs):
    root, run = runs["root"], runs["sst2"]
    fp32 = _eval(run)
    sslm("quantize", f"--workdir={run}", f"--out={root / 'weights'}", "--mode=weights")
    metrics = _eval(root / "weights")
    assert metrics["examples"] == fp32["examples"] == 37
    assert abs(metrics["loss"] - fp32["loss"]) < 0.05, (metrics, fp32)
    from sslm_jax.inference.loading import load_model

    assert load_model(root / "weights").compression["quantization"] == "weights"


def test_prune_one_shot_then_fine_tuned_with_the_mask_fixed(runs):
    root, run = runs["root"], runs["sst2"]
    out = sslm("prune", f"--workdir={run}", f"--out={root / 'p50'}", "--sparsity=0.5").stdout
    assert "total: 50.0% pruned" in out and "layer_1/intermediate/kernel" in out
    sslm("prune", f"--workdir={run}", f"--out={root / 'p50ft'}", "--sparsity=0.5", "--steps=2")
    from sslm_jax.inference.loading import load_model

    one_shot, fixed = (load_model(root / n).compression for n in ("p50", "p50ft"))
    for name, mask in one_shot["masks"].items():
        np.testing.assert_array_equal(fixed["masks"][name], mask)  # fine-tuning kept the mask
    assert fixed["pruning"]["method"] == "magnitude" and fixed["pruning"]["steps"] == 2
    assert _eval(root / "p50ft")["examples"] == 37  # a pruned float model evaluates like a run


def test_pretraining_run_quantized_fills_masks_and_exports(runs):
    root, run = runs["root"], runs["pretrain"]
    sslm("quantize", f"--workdir={run}", f"--out={root / 'pt_q'}", "--mode=dynamic")
    out = sslm("fill-mask", f"--workdir={root / 'pt_q'}", "the movie was [MASK] .").stdout
    assert "[MASK] 1:" in out
    out = sslm("prune", f"--workdir={root / 'pt_q'}", f"--out={root / 'x'}", "--sparsity=0.5", check=False)
    assert_cli_error(out, "prune", "is quantized: prune the float model")
    out = sslm("export-hf", f"--workdir={root / 'pt_q'}", f"--out={root / 'pt_q_hf'}", check=False)
    assert_cli_error(out, "export-hf", "is a quantized or pruned model: export the run it was made from")
    sslm("export", f"--workdir={run}", f"--out={root / 'pt_export'}")
    assert list(json.loads((root / "pt_export" / "manifest.json").read_text())["entry_points"]) == ["fill_mask"]


@pytest.mark.parametrize(
    "args, command, fragment",
    [
        (["prune", "--sparsity=1.0"], "prune", "must be in [0, 1)"),
        (["prune", "--sparsity=0.5", "--method=random"], "prune", "--method=random is unknown"),
        (["quantize", "--mode=int4"], "quantize", "--mode=int4 is unknown"),
        (["export", "--format=onnx"], "export", "--format=onnx is unknown"),
    ],
)
def test_bad_settings_exit_2_and_write_nothing(runs, tmp_path, args, command, fragment):
    assert_cli_error(sslm(*args, f"--workdir={runs['sst2']}", f"--out={tmp_path / 'out'}", check=False), command,
                     fragment)  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_bad_inputs_exit_2_and_write_nothing(runs, tmp_path):
    sslm("quantize", f"--workdir={runs['sst2']}", f"--out={tmp_path / 'q'}")
    out = sslm("quantize", f"--workdir={tmp_path / 'q'}", f"--out={tmp_path / 'qq'}", check=False)
    assert_cli_error(out, "quantize", "already quantized")
    (tmp_path / "empty_run").mkdir()
    out = sslm("export", f"--workdir={tmp_path / 'empty_run'}", f"--out={tmp_path / 'e'}", check=False)
    assert_cli_error(out, "export", "holds no sslm checkpoint")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    out = sslm("prune", f"--workdir={runs['sst2']}", f"--out={tmp_path / 'taken'}", "--sparsity=0.5", check=False)
    assert_cli_error(out, "prune", "exists and is not empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty_run", "q", "taken"]
    assert not list(runs["sst2"].parent.glob(".*"))  # no temporary folders left behind, beside the source either

"""End to end on tiny sslm runs: `sslm quantize` / `sslm prune` / `sslm export` / `sslm eval` of the results, on a
fine-tuned classifier (SST-2 rows from the shared files) and a pretraining run (fill-mask), and the one-line errors
(exit 2, nothing written) of bad input."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from _sslm_runs import assert_cli_error, sslm
from sslm_jax.config_loading import load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _tsv(source: pathlib.Path, dest: pathlib.Path, rows: int) -> pathlib.Path:
    dest.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[: rows + 1]))
    return dest


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory):
    from sslm_jax.training.loop import train_and_evaluate

    root = tmp_path_factory.mktemp("deploy")
    config = load_config(f"{ROOT}/configs/bert_demo.py:smoke")
    config.total_steps = config.eval_every_steps = config.checkpoint_every_steps = 4
    config.fill_mask_examples = ()
    train_and_evaluate(config, root / "pretrain")
    train = _tsv(shared_data / "sst2" / "train.tsv", root / "train.tsv", 160)
    dev = _tsv(shared_data / "sst2" / "dev.tsv", root / "dev.tsv", 37)
    sslm(
        "finetune", "--config=configs/glue.py:files,smoke", f"--workdir={root / 'sst2'}",
        f"--config.init_from={root / 'pretrain'}", f"--config.data.train_files={train}",
        f"--config.data.eval_files={dev}", "--config.total_steps=4", "--config.eval_every_steps=4",
        "--config.checkpoint_every_steps=4",
    )  # fmt: skip
    return {"root": root, "pretrain": root / "pretrain", "sst2": root / "sst2"}


def _eval(workdir) -> dict[str, float]:
    line = sslm("eval", f"--workdir={workdir}").stdout.strip().splitlines()[-1]
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split(": ", 1)[1].split(", "))}


def test_quantize_eval_export_of_a_classifier(runs):
    root, run = runs["root"], runs["sst2"]
    fp32 = _eval(run)
    for mode in ("weights", "dynamic"):
        sslm("quantize", f"--workdir={run}", f"--out={root / mode}", f"--mode={mode}")
        metrics = _eval(root / mode)
        assert metrics["examples"] == fp32["examples"] == 37
        assert abs(metrics["loss"] - fp32["loss"]) < 0.05, (mode, metrics, fp32)
    sslm("export", f"--workdir={root / 'dynamic'}", f"--out={root / 'exported'}", "--format=stablehlo")
    manifest = json.loads((root / "exported" / "manifest.json").read_text())
    assert manifest["compression"]["quantization"] == "dynamic" and list(manifest["entry_points"]) == ["classify"]
    assert manifest["label_names"] == ["0", "1"]
    from sslm_jax.inference import portable
    from sslm_jax.inference.loading import load_model

    model, live = portable.load(root / "exported"), load_model(root / "dynamic")
    ids = np.random.default_rng(0).integers(5, 100, (3, 20)).astype(np.int32)
    mask, types = np.ones_like(ids), np.zeros_like(ids)
    want = live.model.apply({"params": live.params}, ids, attention_mask=mask, token_type_ids=types).logits
    np.testing.assert_allclose(model.classify(ids, mask, types), np.asarray(want), rtol=1e-5, atol=1e-5)


def test_prune_one_shot_fixed_mask_and_movement(runs):
    root, run = runs["root"], runs["sst2"]
    out = sslm("prune", f"--workdir={run}", f"--out={root / 'p50'}", "--sparsity=0.5").stdout
    assert "total: 50.0% pruned" in out and "layer_1/intermediate/kernel" in out
    sslm("prune", f"--workdir={run}", f"--out={root / 'p50ft'}", "--sparsity=0.5", "--steps=2")
    sslm("prune", f"--workdir={run}", f"--out={root / 'mv50'}", "--sparsity=0.5", "--method=movement", "--steps=2")
    from sslm_jax.inference.loading import load_model

    one_shot, fixed, movement = (load_model(root / n).compression for n in ("p50", "p50ft", "mv50"))
    for name, mask in one_shot["masks"].items():
        np.testing.assert_array_equal(fixed["masks"][name], mask)  # fine-tuning kept the mask
    assert movement["pruning"]["method"] == "movement" and movement["pruning"]["steps"] == 2
    assert movement["pruning"]["per_layer"]["total"] == pytest.approx(0.5, abs=1e-3)
    assert _eval(root / "mv50")["examples"] == 37
    # int8 values + bitmask: the pruned model quantized is the smallest
    sslm("quantize", f"--workdir={root / 'mv50'}", f"--out={root / 'mv50q'}")
    sizes = {n: (root / n / "params.npz").stat().st_size for n in ("mv50", "mv50q")}
    assert sizes["mv50q"] < sizes["mv50"] / 2.5, sizes
    assert _eval(root / "mv50q")["examples"] == 37


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
    root = runs["root"]
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
    assert not list(root.glob(".*"))  # no temporary folders left behind

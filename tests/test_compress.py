"""`quantize_model` / `prune_model` and the compressed directory they write (sslm_jax/inference/compress.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sslm_jax.errors import SslmError
from sslm_jax.inference import compress, compressed_dir, prune
from sslm_jax.inference.loading import load_model
import _tiny_models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {head: _tiny_models.hf_dir(root, head) for head in ("classification", "pretraining")}


def _logits(loaded, ids, mask):
    out = loaded.model.apply({"params": loaded.params}, ids, attention_mask=mask)
    return np.asarray(out.logits if loaded.head == "classification" else out.mlm_logits)


def _batch(seed=0, batch=4, length=11):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, _tiny_models.CONFIG.vocab_size, (batch, length)).astype(np.int32)
    mask = (np.arange(length)[None] < rng.integers(3, length + 1, (batch, 1))).astype(np.int32)
    return ids, mask


@pytest.mark.parametrize("head", ["classification", "pretraining"])
@pytest.mark.parametrize("mode", ["weights", "dynamic"])
def test_quantized_directory_runs_like_its_source(tiny, tmp_path, head, mode):
    out = compress.quantize_model(tiny[head], tmp_path / "q", mode=mode)
    source, quantized = load_model(tiny[head]), load_model(out)
    assert quantized.kind == "compressed" and quantized.compression["quantization"] == mode
    assert quantized.head == source.head and quantized.label_names == source.label_names
    ids, mask = _batch()
    a, b = _logits(source, ids, mask), _logits(quantized, ids, mask)
    assert np.max(np.abs(a - b)) < 0.05 * max(1.0, np.max(np.abs(a)))
    size = compressed_dir.size_on_disk(out)
    float_bytes = (tiny[head] / "model.safetensors").stat().st_size
    assert size * 3.5 < float_bytes, (size, float_bytes)


def test_quantizing_twice_is_refused_and_writes_nothing(tiny, tmp_path):
    once = compress.quantize_model(tiny["classification"], tmp_path / "q")
    with pytest.raises(SslmError, match="already quantized"):
        compress.quantize_model(once, tmp_path / "q2")
    assert not (tmp_path / "q2").exists()


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_pruning_hits_the_sparsity_and_keeps_the_largest(tiny, tmp_path, scope):
    out, report = compress.prune_model(tiny["classification"], tmp_path / "p", sparsity=0.7, scope=scope)
    assert report["total"] == pytest.approx(0.7, abs=1e-4)
    if scope == "layer":
        assert all(v == pytest.approx(0.7, abs=1e-3) for v in report.values())
    assert all("layer_" in name for name in report if name != "total")
    loaded, source = load_model(out), load_model(tiny["classification"])
    masks = loaded.compression["masks"]
    assert set(masks) == set(report) - {"total"}
    name = "bert/encoder/layer_0/intermediate/kernel"
    kept, orig = prune.leaf(loaded.params, name), prune.leaf(source.params, name)
    np.testing.assert_array_equal(kept, orig * masks[name])  # kept values are exact, the rest are zero
    if scope == "layer":
        assert np.abs(orig[masks[name]]).min() >= np.abs(orig[~masks[name]]).max()
    manifest = json.loads((out / compressed_dir.MANIFEST).read_text())
    assert manifest["pruning"]["per_layer"] == report
    # untouched leaves come back bit for bit
    np.testing.assert_array_equal(
        prune.leaf(loaded.params, "bert/embeddings/word_embeddings/embedding"),
        prune.leaf(source.params, "bert/embeddings/word_embeddings/embedding"),
    )


def test_pruned_then_quantized_is_int8_values_plus_bitmask(tiny, tmp_path):
    pruned, _ = compress.prune_model(tiny["pretraining"], tmp_path / "p", sparsity=0.9)
    both = compress.quantize_model(pruned, tmp_path / "pq", mode="weights")
    manifest = json.loads((both / compressed_dir.MANIFEST).read_text())
    assert manifest["pruning"]["sparsity"] == 0.9 and manifest["quantization"] == "weights"
    assert manifest["arrays"]["bert/encoder/layer_1/output/kernel"]["encoding"] == "sparse-int8"
    loaded = load_model(both)
    masks = loaded.compression["masks"]
    kernel = loaded.params["bert"]["encoder"]["layer_1"]["output"]["kernel"]
    assert not np.any(np.asarray(kernel.values)[~masks["bert/encoder/layer_1/output/kernel"]])
    assert compressed_dir.size_on_disk(both) < compressed_dir.size_on_disk(tmp_path / "p")
    ids, mask = _batch(1)
    assert np.all(np.isfinite(_logits(loaded, ids, mask)))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda src, out: compress.prune_model(src, out, sparsity=1.0), r"must be in \[0, 1\)"),
        (lambda src, out: compress.prune_model(src, out, sparsity=-0.1), r"must be in \[0, 1\)"),
        (lambda src, out: compress.prune_model(src, out, sparsity=0.5, method="random"), "unknown; use one of"),
        (lambda src, out: compress.prune_model(src, out, sparsity=0.5, scope="row"), "unknown; use one of"),
        (lambda src, out: compress.quantize_model(src, out, mode="int4"), "unknown; use one of weights, dynamic"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_read(tiny, tmp_path, call, message):
    with pytest.raises(SslmError, match=message):
        call(tiny["classification"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_existing_output_is_never_overwritten(tiny, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(SslmError, match="exists and is not empty"):
        compress.quantize_model(tiny["classification"], tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]

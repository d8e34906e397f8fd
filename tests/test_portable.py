"""Portable export (sslm_jax/inference/stablehlo.py) and its loader (sslm_jax/inference/portable.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import _tiny_models
from sslm_jax.errors import SslmError
from sslm_jax.inference import compress, portable, stablehlo
from sslm_jax.inference.loading import load_model

SHAPES = [(1, 5), (3, 17), (8, 64)]  # (batch, length): several shapes through one artifact, up to the table's end


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {head: _tiny_models.hf_dir(root, head) for head in ("classification", "pretraining")}


def _batch(batch, length, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, _tiny_models.CONFIG.vocab_size, (batch, length)).astype(np.int32)
    mask = (np.arange(length)[None] < rng.integers(1, length + 1, (batch, 1))).astype(np.int32)
    types = (np.arange(length)[None] >= length // 2).astype(np.int32).repeat(batch, 0)
    return ids, mask, types


def _live(loaded, ids, mask, types):
    out = loaded.model.apply({"params": loaded.params}, ids, attention_mask=mask, token_type_ids=types)
    return np.asarray(out.logits if loaded.head == "classification" else out.mlm_logits)


@pytest.mark.parametrize("head, entry", [("classification", "classify"), ("pretraining", "fill_mask")])
def test_exported_equals_the_live_model(tiny, tmp_path, head, entry):
    out = stablehlo.export_portable(tiny[head], tmp_path / "export")
    model, live = portable.load(out), load_model(tiny[head])
    assert model.entry_points == (entry,)
    for seed, (batch, length) in enumerate(SHAPES):
        ids, mask, types = _batch(batch, length, seed)
        got = getattr(model, entry)(ids, mask, types)
        np.testing.assert_allclose(got, _live(live, ids, mask, types), rtol=1e-5, atol=1e-5)
    manifest = json.loads((out / portable.MANIFEST).read_text())
    assert manifest["entry_points"][entry]["inputs"][0] == {"name": "input_ids", "dtype": "int32",
                                                            "shape": ["batch", "length"]}  # fmt: skip
    if head == "classification":
        assert model.label_names == ("neg", "pos")
    assert (out / "vocab.txt").read_text() == (tiny[head] / "vocab.txt").read_text()


@pytest.mark.parametrize("mode", ["weights", "dynamic"])
def test_quantized_models_export_with_their_int8_weights(tiny, tmp_path, mode):
    quantized = compress.quantize_model(tiny["classification"], tmp_path / "q", mode=mode)
    out = stablehlo.export_portable(quantized, tmp_path / "export")
    model, live = portable.load(out), load_model(quantized)
    ids, mask, types = _batch(4, 12, 0)
    np.testing.assert_allclose(model.classify(ids, mask, types), _live(live, ids, mask, types), rtol=1e-5, atol=1e-5)
    dtypes = {w["dtype"] for w in json.loads((out / portable.MANIFEST).read_text())["weights"]}
    assert "int8" in dtypes
    assert (out / portable.WEIGHTS).stat().st_size * 3 < (tiny["classification"] / "model.safetensors").stat().st_size


def test_loader_needs_neither_flax_nor_the_models(tiny, tmp_path):
    out = stablehlo.export_portable(tiny["classification"], tmp_path / "export")
    script = (
        "import sys, numpy as np\n"
        "from sslm_jax.inference import portable\n"
        f"m = portable.load({str(out)!r})\n"
        "ids, mask, types = m.encode(['the movie was great', 'dull'])\n"
        "print(m.classify(ids, mask, types).shape)\n"
        "heavy = ('sslm_jax.models', 'sslm_jax.inference.generate', 'flax', 'tensorflow', 'sslm_jax.data')\n"
        "heavy = [n for n in heavy if n in sys.modules]\n"
        "print('imported:', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(2, 2)" in done.stdout and "imported: []" in done.stdout, done.stdout


def test_texts_are_cut_where_the_model_was_run(tiny, tmp_path):
    """encode() cut texts at the model's positions, `sslm predict` at the run's max_seq_len (here the tokenizer's
    model_max_length): long texts were classified differently."""
    source = tmp_path / "short"
    shutil.copytree(tiny["classification"], source)
    settings = json.loads((source / "tokenizer_config.json").read_text())
    (source / "tokenizer_config.json").write_text(json.dumps({**settings, "model_max_length": 8}))
    assert load_model(source).max_seq_len == 8
    model = portable.load(stablehlo.export_portable(source, tmp_path / "export"))
    ids, _, _ = model.encode([" ".join(["the movie"] * 40)])
    assert ids.shape == (1, 8) and model.text_length == 8 and model.max_length > 8
    assert model.encode(["the movie " * 40], max_length=12)[0].shape == (1, 12)


def _exported(tiny, tmp_path):
    return stablehlo.export_portable(tiny["classification"], tmp_path / "export")


def test_a_corrupt_function_is_one_line(tiny, tmp_path):
    out = _exported(tiny, tmp_path)
    file = out / ("classify" + portable.SUFFIX)
    file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 3])
    with pytest.raises(portable.PortableError, match="classify.jax_exported is corrupt") as e:
        portable.load(out)
    assert "\n" not in str(e.value)


def test_an_incompatible_calling_convention_is_one_line(tiny, tmp_path):
    out = _exported(tiny, tmp_path)
    manifest = json.loads((out / portable.MANIFEST).read_text())
    manifest["calling_convention_version"] = 999
    (out / portable.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(portable.PortableError, match="calling convention 999"):
        portable.load(out)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / portable.MANIFEST).write_text("{not json"), "not valid JSON"),
        (lambda d: (d / portable.MANIFEST).unlink(), "not a portable export"),
        (lambda d: (d / portable.WEIGHTS).write_bytes(b"garbage"), "weights.npz cannot be read"),
    ],
)
def test_damaged_directories_are_one_line(tiny, tmp_path, damage, message):
    out = _exported(tiny, tmp_path)
    damage(out)
    with pytest.raises(portable.PortableError, match=message):
        portable.load(out)


def test_bad_calls_are_refused(tiny, tmp_path):
    model = portable.load(_exported(tiny, tmp_path))
    ids, mask, types = _batch(2, 80, 0)  # longer than the 64 positions
    with pytest.raises(portable.PortableError, match="outside 1..64"):
        model.classify(ids, mask, types)
    with pytest.raises(portable.PortableError, match="no entry point 'fill_mask'"):
        model("fill_mask", ids, mask, types)
    with pytest.raises(portable.PortableError, match="classify: the batch is empty; give at least one row"):
        model.classify(ids[:0, :8], mask[:0, :8], types[:0, :8])


def test_bad_export_requests_write_nothing(tiny, tmp_path):
    with pytest.raises(SslmError, match="--format=onnx is unknown"):
        stablehlo.export_portable(tiny["classification"], tmp_path / "out", format="onnx")
    with pytest.raises(SslmError, match="holds no sslm checkpoint"):
        stablehlo.export_portable(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- A causal LM: prefill + decode_step over an explicit cache, and generation on the host ------------------------


@pytest.fixture(scope="module")
def gpt_export(tmp_path_factory):
    from _serve_models import gpt_dir

    root = tmp_path_factory.mktemp("gpt")
    source = gpt_dir(root)
    return source, stablehlo.export_portable(source, root / "export")


def test_causal_lm_decoding_equals_the_full_forward_pass(gpt_export):
    """Prefill + decode steps through the exported functions give the logits one uncached forward pass gives at
    every position, for rows of different lengths, at two batch sizes and cache sizes (one artifact)."""
    source, out = gpt_export
    model, live = portable.load(out), load_model(source)
    assert model.entry_points == ("prefill", "decode_step")
    for seed, (batch, prompt, steps, cache) in enumerate([(1, 3, 4, 8), (3, 9, 5, 20)]):
        rng = np.random.default_rng(seed)
        tokens = rng.integers(0, live.model_config.vocab_size, (batch, prompt + steps)).astype(np.int32)
        lengths = rng.integers(1, prompt + 1, batch).astype(np.int32)
        full = np.asarray(live.model.apply({"params": live.params}, tokens).logits)
        key_spec = model.manifest["entry_points"]["prefill"]["inputs"][2]
        shape = [batch if d == "batch" else cache if d == "cache" else d for d in key_spec["shape"]]
        logits, key, value, index = model.prefill(tokens[:, :prompt], lengths, np.zeros(shape), np.zeros(shape))
        rows = np.arange(batch)
        np.testing.assert_allclose(logits, full[rows, lengths - 1], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(index, lengths)
        for step in range(steps):  # each row continues with its own next token from `tokens`
            logits, key, value, index = model.decode_step(tokens[rows, lengths + step], key, value, index)
            np.testing.assert_allclose(logits, full[rows, lengths + step], rtol=1e-5, atol=1e-5)


def test_portable_generation_equals_sslm_generate(gpt_export):
    from sslm_jax.inference import text_generation
    from sslm_jax.models import gpt

    source, out = gpt_export
    model, live = portable.load(out), load_model(source)
    prompts = ["the movie was", "def read_file(path):", ""]
    want = text_generation.complete(live.model, live.params, live.tokenizer, prompts, init_cache=gpt.init_cache,
                                    max_new_tokens=10, temperature=0.0)  # fmt: skip
    assert model.generate(prompts, max_new_tokens=10) == [w[0] for w in want]
    # The same BPE ids, a literal <|endoftext|> included (the portable tokenizer split it into its 13 bytes).
    texts = [*prompts[:2], "a<|endoftext|>b"]
    ids = model._tokenizer().encode_batch(texts)
    assert [e.ids for e in ids] == live.tokenizer.tokenize(texts).to_list()
    assert live.tokenizer.eot_id in ids[2].ids
    for seed, settings in enumerate([dict(temperature=1.0), dict(temperature=0.7, top_k=20, top_p=0.9)]):
        # The same sampler and keys as the live decoder: sampled text equals `sslm generate --seed`'s too.
        want = text_generation.complete(live.model, live.params, live.tokenizer, prompts, init_cache=gpt.init_cache,
                                        max_new_tokens=8, seed=seed, **settings)  # fmt: skip
        assert model.generate(prompts, max_new_tokens=8, seed=seed, **settings) == [w[0] for w in want]
    assert model.generate(prompts, max_new_tokens=8, temperature=1.0, seed=0) != model.generate(
        prompts, max_new_tokens=8, temperature=1.0, seed=1)  # fmt: skip
    with pytest.raises(portable.PortableError, match="passes the model's 64 positions"):
        model.generate(["the movie was"], max_new_tokens=64)
    with pytest.raises(portable.PortableError, match="encode\\(\\) is for encoders"):
        model.encode(["the movie"])
    with pytest.raises(portable.PortableError, match="top_p=0.0"):
        model.generate(["the movie was"], max_new_tokens=4, temperature=1.0, top_p=0.0)

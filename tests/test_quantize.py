"""int8 quantization (sslm_jax/inference/quantize.py): scales, layouts, both modes against the float model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslm_jax.errors import SslmError
from sslm_jax.inference import quantize
from sslm_jax.models import bert

CONFIG = bert.BertConfig.from_size("tiny", vocab_size=97, max_position_embeddings=32)


def _inputs(batch=3, length=9, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, CONFIG.vocab_size, (batch, length)).astype(np.int32)
    mask = np.ones((batch, length), np.int32)
    mask[0, length // 2 :] = 0
    return jnp.asarray(ids), jnp.asarray(mask)


@pytest.fixture(scope="module")
def pretraining():
    model = bert.BertForPreTraining(CONFIG)
    params = bert.init_params(model, jax.random.key(1))
    ids, _ = _inputs()
    return model, params, quantize.dense_layouts(model, params, ids)


def test_quantize_worked_example():
    q = quantize.quantize(jnp.array([[1.0, -2.0], [0.5, 0.25]]), reduce_axes=(1,))
    np.testing.assert_allclose(q.scale[:, 0], [2 / 127, 0.5 / 127], rtol=1e-6)
    np.testing.assert_array_equal(q.values, [[64, -127], [127, 64]])
    assert q.values.dtype == jnp.int8
    zero = quantize.quantize(jnp.zeros((2, 3)), reduce_axes=(0,))
    np.testing.assert_array_equal(zero.dequantize(), 0.0)


def test_layouts_name_every_kernel_and_table(pretraining):
    model, params, layouts = pretraining
    assert layouts[("bert", "encoder", "layer_0", "attention", "query", "kernel")] == 1
    assert layouts[("bert", "encoder", "layer_0", "attention", "output", "kernel")] == 2
    assert layouts[("bert", "embeddings", "word_embeddings", "embedding")] == 0
    assert layouts[("bert", "embeddings", "position_embeddings", "embedding")] == 0
    kernels = {p for p, _ in _paths(params) if p[-1] in ("kernel", "embedding")}
    assert kernels == set(layouts)  # nothing dense is left float


def _paths(tree):
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(tuple(k.key for k in path), leaf) for path, leaf in flat]


def test_scales_are_per_output_channel(pretraining):
    _, params, layouts = pretraining
    q = quantize.quantize_params(params, layouts)
    out = q["bert"]["encoder"]["layer_0"]["attention"]["output"]["kernel"]  # [heads, kv, embed]
    assert out.scale.shape == (1, 1, CONFIG.hidden_size)
    table = q["bert"]["embeddings"]["word_embeddings"]["embedding"]  # [vocab, embed]: one scale per row
    assert table.scale.shape == (CONFIG.vocab_size, 1)
    assert quantize.is_quantized(q) and not quantize.is_quantized(params)
    assert quantize.nbytes(q) < quantize.nbytes(params) / 3.5


@pytest.mark.parametrize("mode, tolerance", [("weights", 0.02), ("dynamic", 0.05)])
def test_quantized_model_follows_the_float_one(pretraining, mode, tolerance):
    model, params, layouts = pretraining
    qparams = quantize.quantize_params(params, layouts)
    ids, mask = _inputs()
    ref = model.apply({"params": params}, ids, attention_mask=mask)
    out = quantize.QuantizedModel(model, mode).apply({"params": qparams}, ids, attention_mask=mask)
    for name in ("mlm_logits", "nsp_logits"):
        a, b = np.asarray(getattr(ref, name)), np.asarray(getattr(out, name))
        assert np.max(np.abs(a - b)) < tolerance * max(1.0, np.max(np.abs(a))), (mode, name)
        assert not np.array_equal(a, b)  # the int8 path really ran


def test_weights_mode_is_the_dequantized_model(pretraining):
    """Weights-only quantization computes the float model of the dequantized weights (same numbers, stored int8)."""
    model, params, layouts = pretraining
    qparams = quantize.quantize_params(params, layouts)
    deq = quantize.dequantize_params(qparams)
    ids, mask = _inputs()
    a = model.apply({"params": deq}, ids, attention_mask=mask).mlm_logits
    b = quantize.QuantizedModel(model, "weights").apply({"params": qparams}, ids, attention_mask=mask).mlm_logits
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_dynamic_mode_compiles_to_an_int8_dot_on_cpu(pretraining):
    model, params, layouts = pretraining
    qparams = quantize.quantize_params(params, layouts)
    ids, mask = _inputs()
    qmodel = quantize.QuantizedModel(model, "dynamic")
    hlo = jax.jit(lambda p: qmodel.apply({"params": p}, ids, attention_mask=mask).mlm_logits).lower(qparams)
    text = hlo.compile().as_text()
    int8_dots = [line for line in text.splitlines() if " dot(" in line and "s32[" in line.split("=")[1][:12]]
    assert int8_dots, "XLA:CPU did not keep an s8 x s8 -> s32 dot"


def test_unknown_mode_is_one_line():
    with pytest.raises(SslmError, match="unknown; use one of weights, dynamic"):
        with quantize.quantized("int4"):
            pass

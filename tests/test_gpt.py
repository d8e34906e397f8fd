"""GPT-2: parity with Hugging Face's GPT2LMHeadModel both ways through safetensors, the KV cache, packed documents,
sizes, numerics options, the family record, and clean errors for what is not a GPT-2 checkpoint."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.flax

from sslm_jax.errors import CheckpointError
from sslm_jax.interop import hf_gpt2
from sslm_jax.interop import safetensors_io
from sslm_jax.models import gpt, registry

# Odd sizes on purpose: vocab 97, hidden 36 with 3 heads of 12, 19 positions.
CONFIG = gpt.GPTConfig(vocab_size=97, max_position_embeddings=19, hidden_size=36, num_hidden_layers=2,
                       num_attention_heads=3, initializer_range=0.1, bos_token_id=96, eos_token_id=96)  # fmt: skip
LENGTH = 11


def _random_params(config, seed=0):
    """std 0.2 draws on init's shapes (LayerNorm scales around 1), so every weight and every bias shows.

    numpy on `jax.eval_shape`'s shapes: compiling the real init is slow on busy CPUs.
    """
    rs = np.random.RandomState(seed)
    shapes = jax.eval_shape(lambda k: gpt.init_params(gpt.GPTLMHeadModel(config), k), jax.random.key(0))
    draw = lambda path, x: (0.2 * rs.randn(*x.shape) + (path[-1].key == "scale")).astype(np.float32)  # noqa: E731
    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope="module")
def params():
    return _random_params(CONFIG)


@pytest.fixture(scope="module")
def apply():
    return jax.jit(gpt.GPTLMHeadModel(CONFIG).apply)


def _batch(seed=0):
    """Three rows of LENGTH ids, right-padded: row 1 has 4 real tokens, row 2 has 8."""
    rs = np.random.RandomState(seed)
    ids = rs.randint(0, CONFIG.vocab_size, (3, LENGTH)).astype(np.int32)
    mask = (np.arange(LENGTH)[None] < np.array([[LENGTH], [4], [8]])).astype(np.int32)
    return np.where(mask == 1, ids, 0), mask


def _assert_close_on_real_positions(ours, theirs, mask, atol=1e-5):
    diff = np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64))[mask.astype(bool)]
    assert diff.max() <= atol, f"max abs diff {diff.max():.3g}"
    return float(diff.max())


# --- Against transformers (PyTorch) ------------------------------------------------------------------------


def _hf_logits(torch, model, ids, mask=None):
    with torch.inference_mode():
        mask = None if mask is None else torch.tensor(mask, dtype=torch.long)
        return model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=mask).logits.numpy()


@pytest.mark.torch
def test_export_loads_in_transformers_with_the_same_logits(torch, tmp_path, params, apply):
    transformers = pytest.importorskip("transformers")
    hf_gpt2.save_checkpoint(tmp_path / "out", CONFIG, params)
    model, info = transformers.GPT2LMHeadModel.from_pretrained(
        tmp_path / "out", output_loading_info=True, attn_implementation="eager"
    )
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    model.eval()
    ids, mask = _batch()
    padded = _assert_close_on_real_positions(
        apply({"params": params}, ids, attention_mask=mask).logits, _hf_logits(torch, model, ids, mask), mask
    )
    full = _assert_close_on_real_positions(
        apply({"params": params}, ids).logits, _hf_logits(torch, model, ids), np.ones_like(mask)
    )
    print(f"export -> HF: max abs logit diff {padded:.2e} (padded), {full:.2e} (unpadded)")


@pytest.mark.torch
def test_transformers_save_pretrained_imports_with_the_same_logits(torch, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = CONFIG.replace(intermediate_size=50, layer_norm_eps=1e-6)  # n_inner other than 4H
    hf_config = transformers.GPT2Config(**config.to_hf_dict(), attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(hf_config).eval()
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():  # random biases and LayerNorms too (HF initialises them to 0 and 1)
        for name, p in model.named_parameters():
            is_scale = name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight"))
            p.copy_(0.2 * torch.randn_like(p) + (1.0 if is_scale else 0.0))
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    loaded_config, loaded = hf_gpt2.load_checkpoint(tmp_path / "hf")
    assert loaded_config == config
    ids, mask = _batch(1)
    ours = gpt.GPTLMHeadModel(config).apply({"params": loaded}, ids, attention_mask=mask).logits
    diff = _assert_close_on_real_positions(ours, _hf_logits(torch, model, ids, mask), mask)
    print(f"HF save_pretrained -> import: max abs logit diff {diff:.2e}")


def _byte_alphabet():
    """GPT-2's byte -> printable character table (the one vocab.json spells its 256 base tokens with)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return {b: chr(b if b in keep else next(extra)) for b in range(256)}


def test_tokenizer_files_are_copied_and_load_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    alphabet = _byte_alphabet()
    vocab = {alphabet[b]: b for b in range(256)} | {"hi": 256, "<|endoftext|>": 257}
    (tmp_path / "bpe").mkdir()
    (tmp_path / "bpe" / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "bpe" / "merges.txt").write_text("#version: 0.2\nh i\n")
    with pytest.raises(CheckpointError, match=r"vocab\.json: has id 257 but the model's vocab_size is 97"):
        hf_gpt2.save_checkpoint(tmp_path / "small", CONFIG, _random_params(CONFIG), tokenizer_dir=tmp_path / "bpe")
    assert not (tmp_path / "small").exists()
    config = CONFIG.replace(vocab_size=260)
    out = hf_gpt2.save_checkpoint(tmp_path / "out", config, _random_params(config), tokenizer_dir=tmp_path / "bpe")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "merges.txt", "model.safetensors", "tokenizer_config.json", "vocab.json"
    ]  # fmt: skip
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer("hi hi")["input_ids"] == [256, ord(" "), 256]  # "hi", then " hi" = "Ġ" + "hi"
    assert tokenizer.model_max_length == config.max_position_embeddings
    # generate stops at config.json's eos_token_id: this vocabulary's end-of-text (257), not CONFIG's 96
    saved = json.loads((out / "config.json").read_text())
    assert saved["eos_token_id"] == saved["bos_token_id"] == tokenizer.eos_token_id == 257


# --- Round trips and errors (torch-free) -------------------------------------------------------------------


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_save_then_load_is_exact_and_writes_hf_names(tmp_path, params):
    out = hf_gpt2.save_checkpoint(tmp_path / "out", CONFIG, params)
    written = json.loads((out / "config.json").read_text())
    assert written["architectures"] == ["GPT2LMHeadModel"] and written["model_type"] == "gpt2"
    assert (written["n_embd"], written["n_positions"], written["n_inner"]) == (36, 19, 144)
    tensors = safetensors_io.read_safetensors(out / "model.safetensors")
    assert tensors["transformer.h.0.attn.c_attn.weight"].shape == (36, 108)  # Conv1D [in, out], q|k|v fused
    assert tensors["transformer.h.1.mlp.c_proj.weight"].shape == (144, 36)
    assert "lm_head.weight" not in tensors  # tied to wte
    # query columns of c_attn are our query kernel [H, N, D] flattened, without a transpose
    np.testing.assert_array_equal(
        tensors["transformer.h.0.attn.c_attn.weight"][:, :36],
        params["transformer"]["decoder"]["layer_0"]["attention"]["query"]["kernel"].reshape(36, 36),
    )
    config, loaded = hf_gpt2.load_checkpoint(out)
    assert config == CONFIG
    _assert_trees_equal(loaded, params)
    # A bare backbone (GPTModel) saves the same file; boxed params are unboxed.
    hf_gpt2.save_checkpoint(tmp_path / "bare", CONFIG, params["transformer"])
    _assert_trees_equal(hf_gpt2.load_checkpoint(tmp_path / "bare")[1], params)
    with pytest.raises(CheckpointError, match="exists and is not empty: choose a new output directory"):
        hf_gpt2.save_checkpoint(out, CONFIG, params)
    hf_gpt2.save_checkpoint(out, CONFIG, params, overwrite=True)


def test_gpt2model_names_shards_bf16_and_a_tied_lm_head_load(tmp_path, params):
    out = hf_gpt2.save_checkpoint(tmp_path / "out", CONFIG, params)
    tensors = safetensors_io.read_safetensors(out / "model.safetensors")
    (out / "model.safetensors").unlink()
    # GPT2Model's bare names, old causal-mask buffers, a tied lm_head, two bf16 shards behind an index.
    bare = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    bare["h.0.attn.bias"] = np.tril(np.ones((1, 1, 19, 19), np.float32))
    bare["lm_head.weight"] = bare["wte.weight"]
    names = sorted(bare)
    shards = {"model-00001-of-00002.safetensors": names[:7], "model-00002-of-00002.safetensors": names[7:]}
    for file, keys in shards.items():
        # bfloat16 through the flax writer: numpy has no bfloat16 of its own.
        safetensors.flax.save_file({k: jnp.asarray(bare[k], jnp.bfloat16) for k in keys}, out / file)
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    _, loaded = hf_gpt2.load_checkpoint(out)
    as_bf16 = jax.tree.map(lambda x: np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32), params)
    _assert_trees_equal(loaded, as_bf16)


def _edit(directory, **changes):
    d = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**d, **changes}))


def test_what_is_not_this_gpt2_is_refused_in_one_line(tmp_path, params):
    out = hf_gpt2.save_checkpoint(tmp_path / "out", CONFIG, params)

    def refused(pattern):
        with pytest.raises(CheckpointError, match=pattern) as e:
            hf_gpt2.load_checkpoint(out)
        assert "\n" not in str(e.value)

    _edit(out, model_type="bert")
    refused(r"config\.json: model_type='bert'; only 'gpt2' checkpoints")
    _edit(out, model_type="gpt2", scale_attn_by_inverse_layer_idx=True)
    refused(r"scale_attn_by_inverse_layer_idx=True is not supported")
    _edit(out, scale_attn_by_inverse_layer_idx=False, n_layer=3)
    refused(r"missing weights: h\.2\.ln_1\.weight")
    _edit(out, n_layer=1)
    refused(r"weights not described by config\.json: h\.1\.")
    _edit(out, n_layer=2, n_embd=48, n_head=4)
    refused(r"wte\.weight has shape \(97, 36\) but config\.json implies \(97, 48\)")
    _edit(out, n_embd=36, n_head=3, activation_function="quick_gelu")  # named as config.json names it
    refused(r"config\.json: activation_function='quick_gelu' is not supported; choose one of")
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        hf_gpt2.load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="is not a GPT-2"):
        hf_gpt2.save_checkpoint(tmp_path / "x", CONFIG, {"params": params})
    with pytest.raises(CheckpointError, match=r"do not match the config \(unexpected: decoder/layer_1"):
        hf_gpt2.save_checkpoint(tmp_path / "x", CONFIG.replace(num_hidden_layers=1), params)
    assert not (tmp_path / "x").exists()


# --- The model ----------------------------------------------------------------------------------------------


def test_init_with_ids_only_and_dropout_only_when_not_deterministic():
    config = CONFIG.replace(num_hidden_layers=1)
    model = gpt.GPTLMHeadModel(config)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 5), jnp.int32))
    assert set(variables) == {"params"}
    params = nn.meta.unbox(variables["params"])
    assert set(params["transformer"]) == {"embeddings", "decoder"}
    assert set(params["transformer"]["embeddings"]) == {"word_embeddings", "position_embeddings"}  # no LN, no types
    ids = jnp.arange(6, dtype=jnp.int32)[None]
    out = model.apply(variables, ids)
    assert out.logits.shape == (1, 6, CONFIG.vocab_size) and out.cache is None
    np.testing.assert_array_equal(out.logits, model.apply(variables, ids, deterministic=True).logits)
    noisy = model.apply(variables, ids, deterministic=False, rngs={"dropout": jax.random.key(1)}).logits
    assert np.abs(np.asarray(noisy) - np.asarray(out.logits)).max() > 1e-4
    with pytest.raises(ValueError, match="exceeds max_position_embeddings=19"):
        gpt.init_cache(CONFIG, batch=1, max_length=20)


def test_cached_prefill_then_decode_equals_full_recomputation(params, apply):
    lengths, steps = np.array([3, 6]), 5
    ids = np.random.RandomState(2).randint(0, CONFIG.vocab_size, (2, 12)).astype(np.int32)
    full = np.asarray(apply({"params": params}, ids).logits)
    prompt_mask = (np.arange(6)[None] < lengths[:, None]).astype(np.int32)
    prompt = np.where(prompt_mask == 1, ids[:, :6], 0)
    cache = gpt.init_cache(CONFIG, batch=2, max_length=CONFIG.max_position_embeddings)
    out = apply({"params": params}, prompt, attention_mask=prompt_mask, cache=cache)
    assert isinstance(out, gpt.CausalLMOutput)
    diffs = [_assert_close_on_real_positions(out.logits, full[:, :6], prompt_mask)]
    np.testing.assert_array_equal(out.cache[0].index, lengths)
    cache = out.cache
    for j in range(steps):
        out = apply({"params": params}, ids[[0, 1], lengths + j][:, None], cache=cache)
        cache = out.cache
        expected = full[[0, 1], lengths + j][:, None]
        diffs.append(_assert_close_on_real_positions(out.logits, expected, np.ones((2, 1))))
    np.testing.assert_array_equal(cache[1].index, lengths + steps)
    print(f"cached prefill + decode vs full: max abs logit diff {max(diffs):.2e}")


def test_segment_ids_isolate_packed_documents(params, apply):
    rs = np.random.RandomState(3)
    doc1, doc2 = (rs.randint(0, CONFIG.vocab_size, (1, n)).astype(np.int32) for n in (5, 7))
    packed = np.concatenate([doc1, doc2], axis=1)
    segments = np.array([[1] * 5 + [2] * 7])
    positions = np.array([[*range(5), *range(7)]])
    logits = apply({"params": params}, packed, segment_ids=segments, position_ids=positions).logits
    alone1, alone2 = (apply({"params": params}, d).logits for d in (doc1, doc2))
    np.testing.assert_allclose(logits[:, :5], alone1, rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits[:, 5:], alone2, rtol=0, atol=1e-5)
    # Without segment ids the second document sees the first.
    mixed = apply({"params": params}, packed, position_ids=positions).logits
    assert np.abs(np.asarray(mixed[:, 5:]) - np.asarray(alone2)).max() > 1e-3


def test_remat_gives_the_same_logits_and_grads_and_bf16_keeps_fp32_params(params):
    ids, mask = _batch(4)

    def loss(p, config):
        logits = gpt.GPTLMHeadModel(config).apply({"params": p}, ids, attention_mask=mask).logits
        return jnp.sum(jnp.where(mask[..., None] == 1, logits.astype(jnp.float32), 0.0) ** 2) * 1e-3

    plain = jax.jit(jax.value_and_grad(lambda p: loss(p, CONFIG)))(params)
    remat = jax.jit(jax.value_and_grad(lambda p: loss(p, CONFIG.replace(remat=True))))(params)
    np.testing.assert_allclose(remat[0], plain[0], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), remat[1], plain[1])

    bf16 = CONFIG.replace(dtype="bfloat16")
    shapes = jax.eval_shape(lambda k: gpt.init_params(gpt.GPTLMHeadModel(bf16), k), jax.random.key(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(shapes))
    logits = jax.jit(gpt.GPTLMHeadModel(bf16).apply)({"params": params}, ids, attention_mask=mask).logits
    assert logits.dtype == jnp.bfloat16
    reference = gpt.GPTLMHeadModel(CONFIG).apply({"params": params}, ids, attention_mask=mask).logits
    real = mask.astype(bool)
    assert np.abs(np.asarray(logits, np.float32) - np.asarray(reference))[real].max() < 0.25
    cache = gpt.init_cache(bf16, batch=3, max_length=12)
    assert cache[0].key.dtype == jnp.bfloat16


# Published parameter counts (tied output embedding, vocab 50257, 1024 positions).
PUBLISHED = {"small": 124_439_808, "medium": 354_823_168, "large": 774_030_080}


@pytest.mark.parametrize("size", gpt.SIZES)
def test_size_table(size):
    config = gpt.GPTConfig.from_size(size)
    assert config.hidden_size // config.num_attention_heads == 64
    assert config.intermediate_size == 4 * config.hidden_size
    shapes = jax.eval_shape(lambda k: gpt.init_params(gpt.GPTLMHeadModel(config), k, seq_len=1), jax.random.key(0))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
    h, n_layers = config.hidden_size, config.num_hidden_layers
    assert count == (config.vocab_size + config.max_position_embeddings) * h + n_layers * (12 * h * h + 13 * h) + 2 * h
    if size in PUBLISHED:
        assert count == PUBLISHED[size]


def test_config_defaults_round_trip_and_validation():
    assert gpt.GPTConfig(hidden_size=40, num_attention_heads=4).intermediate_size == 160  # n_inner None -> 4H
    d = CONFIG.to_hf_dict()
    assert d["n_embd"] == 36 and d["activation_function"] == "gelu_new" and d["layer_norm_epsilon"] == 1e-5
    assert gpt.GPTConfig.from_hf_dict({**d, "n_inner": None, "n_ctx": 19, "summary_type": "cls_index"}) == CONFIG
    with pytest.raises(ValueError, match="not divisible"):
        gpt.GPTConfig(hidden_size=36, num_attention_heads=5)
    with pytest.raises(ValueError, match="hidden_act"):
        gpt.GPTConfig(hidden_act="gelu_newest")
    with pytest.raises(ValueError, match="unknown model size 'base'"):
        gpt.GPTConfig.from_size("base")


# --- The family record ------------------------------------------------------------------------------------


def test_family_is_registered_and_builds_from_settings():
    import configs.base

    family = registry.get("gpt")
    assert family is gpt.FAMILY and registry.by_hf_model_type("gpt2") is family
    assert family.shape_fields == ("size", "vocab_size", "max_position_embeddings", "hidden_act")
    m = configs.base.get_config().model
    m.family, m.size, m.hidden_act, m.max_position_embeddings = "gpt", "mini", "gelu_new", 256
    m.hidden_dropout_prob, m.attention_probs_dropout_prob = 0.05, 0.0
    config = family.config_for(m, vocab_size=8192)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (256, 4, 8192)
    assert (config.resid_pdrop, config.embd_pdrop, config.attn_pdrop) == (0.05, 0.05, 0.0)
    assert config.eos_token_id is None  # GPT-2's 50256 is outside this vocabulary
    assert family.config_for(m, vocab_size=50257).eos_token_id == 50256
    assert isinstance(family.model(config, "causal_lm"), gpt.GPTLMHeadModel)
    assert isinstance(family.model(config, "encoder"), gpt.GPTModel)
    assert family.is_backbone(_random_params(CONFIG)["transformer"])
    # Every position is predicted: the masked-LM prediction count does not change the FLOPs.
    assert family.train_flops(config, 128, 20) == family.train_flops(config, 128, None) > 0
    hf_small = {"model_type": "gpt2", **gpt.GPTConfig.from_size("small").to_hf_dict(), "n_inner": None}
    assert family.settings_from_hf(hf_small) == {
        "size": "small", "vocab_size": 50257, "max_position_embeddings": 1024, "hidden_act": "gelu_new"
    }  # fmt: skip
    with pytest.raises(ValueError, match="none of sslm_jax's model sizes"):
        family.settings_from_hf(CONFIG.to_hf_dict())

"""ELECTRA: parity with Hugging Face's ElectraForPreTraining / ElectraForMaskedLM / ElectraForSequenceClassification
both ways through safetensors, the joint model's one shared embedding set, generator sizes, numerics options, the
family record, and clean errors for what is not an ELECTRA checkpoint."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslm_jax.errors import CheckpointError, ConfigError
from sslm_jax.interop import hf_electra, safetensors_io
from sslm_jax.models import electra, registry

# Odd sizes on purpose: vocab 101, embeddings 24 wide, hidden 36 in 3 heads of 12, FFN 50, 19 positions; the
# generator is 1/3 as wide: 12 = one head of 12, FFN 48. Both stacks have an embeddings_project (24 -> 36, 24 -> 12).
CONFIG = electra.ElectraConfig(vocab_size=101, embedding_size=24, hidden_size=36, num_hidden_layers=2,
                               num_attention_heads=3, intermediate_size=50, max_position_embeddings=19,
                               initializer_range=0.1, generator_hidden_fraction=1 / 3)  # fmt: skip
LENGTH = 11


def _random_params(model, seed=0):
    """std 0.2 draws on init's shapes (LayerNorm scales around 1), so every weight and every bias shows."""
    rs = np.random.RandomState(seed)
    shapes = jax.eval_shape(lambda k: electra.init_params(model, k), jax.random.key(0))
    draw = lambda path, x: (0.2 * rs.randn(*x.shape) + (path[-1].key == "scale")).astype(np.float32)  # noqa: E731
    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope="module")
def params():
    return _random_params(electra.ElectraPretrainingModel(CONFIG))


def _batch(seed=0, vocab=CONFIG.vocab_size):
    """Three rows of LENGTH ids, right-padded (row 1 has 4 real tokens, row 2 has 8), and random token types."""
    rs = np.random.RandomState(seed)
    mask = (np.arange(LENGTH)[None] < np.array([[LENGTH], [4], [8]])).astype(np.int32)
    ids = np.where(mask == 1, rs.randint(0, vocab, (3, LENGTH)), 0).astype(np.int32)
    return ids, mask, (rs.rand(3, LENGTH) < 0.5).astype(np.int32) * mask


def _max_diff_on_real_positions(ours, theirs, mask, atol=1e-5):
    diff = np.abs(np.asarray(ours, np.float64) - np.asarray(theirs, np.float64))[mask.astype(bool)]
    assert diff.max() <= atol, f"max abs diff {diff.max():.3g}"
    return float(diff.max())


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def _hf(torch, model, ids, mask, types):
    with torch.inference_mode():
        tensors = (torch.tensor(x, dtype=torch.long) for x in (ids, mask, types))
        return model(**dict(zip(("input_ids", "attention_mask", "token_type_ids"), tensors))).logits.numpy()


def _from_pretrained(cls, directory):
    model, info = cls.from_pretrained(directory, output_loading_info=True, attn_implementation="eager")
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


# --- Against transformers (PyTorch) ------------------------------------------------------------------------


@pytest.mark.torch
def test_joint_export_loads_in_transformers_with_the_same_logits(torch, tmp_path, params):
    transformers = pytest.importorskip("transformers")
    disc_dir, gen_dir = hf_electra.save_pretraining_checkpoints(tmp_path / "hf", CONFIG, params)
    ids, mask, types = _batch()
    model = electra.ElectraPretrainingModel(CONFIG)
    run = lambda method, **kw: model.apply({"params": params}, ids, mask, types, method=method, **kw)  # noqa: E731

    theirs = _hf(torch, _from_pretrained(transformers.ElectraForPreTraining, disc_dir), ids, mask, types)
    disc = _max_diff_on_real_positions(run("discriminator").logits, theirs, mask)

    theirs = _hf(torch, _from_pretrained(transformers.ElectraForMaskedLM, gen_dir), ids, mask, types)
    gen = _max_diff_on_real_positions(run("generator").mlm_logits, theirs, mask)
    positions = np.array([[0, 5, 10], [1, 2, 3], [7, 0, 4]])  # masked positions, real tokens only
    at = run("generator", masked_positions=positions).mlm_logits
    picked = np.take_along_axis(theirs, positions[..., None], axis=1)
    masked = _max_diff_on_real_positions(at, picked, np.ones(positions.shape))
    print(f"export -> HF: max abs logit diff discriminator {disc:.2e}, generator {gen:.2e} ({masked:.2e} masked rows)")


def _hf_model(torch, cls, hf_config, seed):
    """A transformers model with every parameter drawn at std 0.2 (HF initialises biases and LayerNorms to 0/1)."""
    torch.manual_seed(seed)
    model = cls(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(0.2 * torch.randn_like(p) + (1.0 if name.endswith("LayerNorm.weight") else 0.0))
    return model


@pytest.mark.torch
@pytest.mark.parametrize(
    "head, cls_name, config",
    [
        # the discriminator head's activation follows hidden_act ...
        ("discriminator", "ElectraForPreTraining", CONFIG.replace(hidden_act="gelu_new", layer_norm_eps=1e-6)),
        # ... the generator head's is gelu whatever hidden_act says; its own width (hidden 16, 2 heads of 8)
        ("generator", "ElectraForMaskedLM", CONFIG.replace(hidden_size=16, num_attention_heads=2, hidden_act="relu")),
        ("classification", "ElectraForSequenceClassification", CONFIG.replace(embedding_size=36)),  # no projection
    ],
)
def test_transformers_save_pretrained_imports_with_the_same_logits(torch, tmp_path, head, cls_name, config):
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.ElectraConfig(**config.to_hf_dict(), num_labels=3, attn_implementation="eager")
    model = _hf_model(torch, getattr(transformers, cls_name), hf_config, seed=1)
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    loaded_config, loaded = hf_electra.load_checkpoint(tmp_path / "hf")
    assert loaded_config == config.replace(generator_hidden_fraction=0.25)  # not Hugging Face's: the default
    assert hf_electra.head_of(loaded) == head
    ids, mask, types = _batch(1)
    model_ours = hf_electra.model_for_head(loaded_config, head, num_labels=hf_electra.num_labels_of(loaded))
    out = model_ours.apply({"params": loaded}, ids, mask, types)
    logits = out.mlm_logits if head == "generator" else out.logits
    theirs = _hf(torch, model, ids, mask, types)
    real = mask if head != "classification" else np.ones((3, 3))  # [B, 3 labels], from token 0 (real in every row)
    diff = _max_diff_on_real_positions(logits, theirs, real)
    print(f"HF {cls_name}.save_pretrained -> import: max abs logit diff {diff:.2e}")
    if head == "classification":  # and back: our export loads whole, with the same logits
        hf_electra.save_checkpoint(tmp_path / "out", loaded_config, loaded, id2label=["neg", "neu", "pos"])
        back = _from_pretrained(transformers.ElectraForSequenceClassification, tmp_path / "out")
        assert back.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
        _max_diff_on_real_positions(logits, _hf(torch, back, ids, mask, types), real)


@pytest.mark.torch
def test_replaced_token_detection_gradients_equal_transformers(torch, tmp_path):
    """Our RTD loss (objectives/electra.py) on the discriminator, and its gradient for every parameter, equal
    `ElectraForPreTraining(labels=...)`'s loss (mean BCE over real tokens) and autograd's: what trains the
    discriminator is the reference's. (Its training curves then follow the reference's from the same start:
    BENCHMARKS.md, "Is ELECTRA's discriminator defective?".)"""
    from sslm_jax.objectives import electra as objective

    transformers = pytest.importorskip("transformers")
    hf_config = transformers.ElectraConfig(**CONFIG.to_hf_dict(), attn_implementation="eager")
    model = _hf_model(torch, transformers.ElectraForPreTraining, hf_config, seed=2)
    ids, mask, types = _batch(2)
    labels = (np.random.RandomState(2).rand(*ids.shape) < 0.3).astype(np.int32) * mask
    tensors = {k: torch.tensor(x, dtype=torch.long) for k, x in
               (("input_ids", ids), ("attention_mask", mask), ("token_type_ids", types), ("labels", labels))}  # fmt: skip
    loss = model(**tensors).loss
    loss.backward()
    model.save_pretrained(tmp_path / "weights", safe_serialization=True)
    with torch.no_grad():  # the gradients, saved under the parameters' names: imported by the same mapping
        for p in model.parameters():
            p.copy_(p.grad)
    model.save_pretrained(tmp_path / "grads", safe_serialization=True)
    config, params = hf_electra.load_checkpoint(tmp_path / "weights")
    expected = hf_electra.load_checkpoint(tmp_path / "grads")[1]
    ours = hf_electra.model_for_head(config, "discriminator")

    def rtd_loss(p):
        sums = objective.rtd_loss_and_metrics(ours.apply({"params": p}, ids, mask, types).logits, labels, mask)
        return sums["rtd_loss_sum"] / sums["rtd_count"]

    value, grads = jax.value_and_grad(rtd_loss)(params)
    np.testing.assert_allclose(float(value), loss.item(), rtol=1e-6)
    assert jax.tree.structure(grads) == jax.tree.structure(expected)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, expected)


# --- The joint model ------------------------------------------------------------------------------------------


def test_the_joint_model_shares_one_embedding_set(params):
    tree = jax.tree_util.tree_flatten_with_path(params)[0]
    holders = {"/".join(k.key for k in path[:-2]) for path, _ in tree if path[-2].key == "word_embeddings"}
    assert holders == {"electra/embeddings"}  # one word table ...
    assert set(params["generator_encoder"]) == {"embeddings_project", "layer_0", "layer_1"}  # ... no second set
    model = electra.ElectraPretrainingModel(CONFIG)
    ids, mask, types = _batch(2)

    def generator_loss(embeddings):
        p = {**params, "electra": {**params["electra"], "embeddings": embeddings}}
        logits = model.apply({"params": p}, ids, mask, types, method="generator").mlm_logits
        return jnp.sum(logits**2)

    # The generator reads every embedding parameter, the LayerNorm included, and the discriminator the same ones.
    grads = jax.grad(generator_loss)(params["electra"]["embeddings"])
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))
    discriminator, generator = hf_electra.split_pretraining_params(params)
    assert generator["electra"]["embeddings"] is discriminator["electra"]["embeddings"]
    assert generator["electra"]["encoder"] is params["generator_encoder"]
    # __call__: the generator on the masked input, the discriminator on the corrupted one, each as alone.
    positions = np.array([[1, 2], [0, 3], [4, 5]])
    corrupted = (ids + 1) % CONFIG.vocab_size
    out = model.apply({"params": params}, ids, mask, types, positions, corrupted)
    alone = electra.ElectraDiscriminator(CONFIG).apply({"params": discriminator}, corrupted, mask, types).logits
    np.testing.assert_allclose(out.discriminator_logits, alone, atol=1e-6)
    gen = electra.ElectraGenerator(electra.generator_config(CONFIG))
    alone = gen.apply({"params": generator}, ids, mask, types, positions).mlm_logits
    np.testing.assert_allclose(out.mlm_logits, alone, atol=1e-6)
    assert out.mlm_logits.shape == (3, 2, CONFIG.vocab_size) and out.discriminator_logits.shape == (3, LENGTH)
    _assert_trees_equal(hf_electra.join_pretraining_params(discriminator, generator), params)
    other = jax.tree.map(lambda x: x + 1, generator["electra"]["embeddings"])
    with pytest.raises(CheckpointError, match="embeddings differ"):
        hf_electra.join_pretraining_params(discriminator, {**generator, "electra": {**generator["electra"],
                                                                                    "embeddings": other}})  # fmt: skip


def test_generator_sizes_and_a_fraction_that_is_not_whole_heads():
    widths = {size: electra.generator_config(electra.ElectraConfig.from_size(size)) for size in electra.SIZES}
    dims = {s: (g.hidden_size, g.num_attention_heads, g.intermediate_size) for s, g in widths.items()}
    assert dims == {"tiny": (32, 1, 128), "mini": (64, 1, 256), "small": (64, 1, 256), "base": (256, 4, 1024),
                    "large": (256, 4, 1024)}  # fmt: skip
    small = electra.ElectraConfig.from_size("small")
    assert widths["small"].num_hidden_layers == 12 and widths["small"].embedding_size == 128
    assert electra.generator_config(small, 1.0) == small.replace(intermediate_size=1024)  # Small++: as wide
    for fraction, pattern in ((0.3, "does not divide the heads"), (0.125, "does not divide the heads"),
                              (0.0, r"must be in \(0, 1\]"), (1.5, r"must be in \(0, 1\]")):  # fmt: skip
        with pytest.raises(ValueError, match=pattern) as e:
            electra.generator_config(small, fraction)
        assert "\n" not in str(e.value)
    assert "256 x 0.3 = 76.8 is not a whole number of heads of 64" in _message(small, 0.3)


def _message(config, fraction):
    with pytest.raises(ValueError) as e:
        electra.generator_config(config, fraction)
    return str(e.value)


def test_small_discriminator_has_13_5m_parameters():
    config = electra.ElectraConfig.from_size("small", vocab_size=30522)
    shapes = jax.eval_shape(lambda k: electra.init_params(electra.ElectraDiscriminator(config), k), jax.random.key(0))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
    assert count == 13_549_057 and abs(count - 13.5e6) < 0.1e6  # google/electra-small-discriminator's size
    joint = jax.eval_shape(lambda k: electra.init_params(electra.ElectraPretrainingModel(config), k), jax.random.key(0))
    generator_only = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(joint)) - count
    assert 0.5e6 < generator_only < 1.0e6  # a 64-wide, 12-layer stack plus its head; no second embedding set


def test_remat_gives_the_same_grads_and_bf16_keeps_fp32_params():
    config = CONFIG.replace(num_hidden_layers=1)  # one layer per stack: compiling is most of this test's time
    params = _random_params(electra.ElectraPretrainingModel(config), seed=4)
    ids, mask, types = _batch(4)

    def loss(p, config):
        out = electra.ElectraPretrainingModel(config).apply({"params": p}, ids, mask, types)
        real = mask[..., None] == 1
        return jnp.sum(jnp.where(real, out.mlm_logits, 0) ** 2) * 1e-3 + jnp.sum(
            jnp.where(mask == 1, out.discriminator_logits, 0) ** 2
        )

    plain = jax.jit(jax.value_and_grad(lambda p: loss(p, config)))(params)
    remat = jax.jit(jax.value_and_grad(lambda p: loss(p, config.replace(remat=True))))(params)
    np.testing.assert_allclose(remat[0], plain[0], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), remat[1], plain[1])

    bf16 = config.replace(dtype="bfloat16")
    shapes = jax.eval_shape(lambda k: electra.init_params(electra.ElectraPretrainingModel(bf16), k), jax.random.key(0))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(shapes))
    out = jax.jit(electra.ElectraPretrainingModel(bf16).apply)({"params": params}, ids, mask, types)
    assert out.mlm_logits.dtype == out.discriminator_logits.dtype == jnp.bfloat16
    reference = jax.jit(electra.ElectraPretrainingModel(config).apply)({"params": params}, ids, mask, types)
    diff = np.abs(np.asarray(out.discriminator_logits, np.float32) - np.asarray(reference.discriminator_logits))
    assert diff[mask.astype(bool)].max() < 0.25


# --- Checkpoints (torch-free) ----------------------------------------------------------------------------------


def test_save_then_load_is_exact_and_writes_hf_names(tmp_path, params):
    disc_dir, gen_dir = hf_electra.save_pretraining_checkpoints(tmp_path / "hf", CONFIG, params)
    written = json.loads((gen_dir / "config.json").read_text())
    assert written["architectures"] == ["ElectraForMaskedLM"] and written["model_type"] == "electra"
    assert (written["hidden_size"], written["num_attention_heads"], written["embedding_size"]) == (12, 1, 24)
    tensors = safetensors_io.read_safetensors(gen_dir / "model.safetensors")
    assert tensors["electra.embeddings_project.weight"].shape == (12, 24)  # torch Linear [out, in]
    assert tensors["generator_predictions.dense.weight"].shape == (24, 12)
    assert "generator_lm_head.weight" not in tensors and tensors["generator_lm_head.bias"].shape == (101,)
    config, loaded = hf_electra.load_pretraining_checkpoints(disc_dir, gen_dir)
    assert config == CONFIG
    _assert_trees_equal(loaded, params)
    with pytest.raises(CheckpointError, match="pass head='discriminator' or head='generator'"):
        hf_electra.save_checkpoint(tmp_path / "x", CONFIG, params)
    with pytest.raises(CheckpointError, match="exists and is not empty: choose a new output directory"):
        hf_electra.save_checkpoint(disc_dir, CONFIG, params, head="discriminator")
    hf_electra.save_checkpoint(disc_dir, CONFIG, params, head="discriminator", overwrite=True)


def test_vocab_file_makes_a_tokenizer_transformers_loads(tmp_path, params):
    transformers = pytest.importorskip("transformers")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    out = hf_electra.save_checkpoint(tmp_path / "out", CONFIG, params, head="discriminator",
                                     vocab_file=tmp_path / "vocab.txt")  # fmt: skip
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert tokenizer("hello world")["input_ids"] == [2, 5, 6, 3]


def _edit(directory, **changes):
    d = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**d, **changes}))


def test_what_is_not_this_electra_is_refused_in_one_line(tmp_path, params):
    out = hf_electra.save_checkpoint(tmp_path / "out", CONFIG, params, head="discriminator")

    def refused(pattern, directory=out):
        with pytest.raises(CheckpointError, match=pattern) as e:
            hf_electra.load_checkpoint(directory)
        assert "\n" not in str(e.value)

    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 36}))
    refused(r"bert is not an ELECTRA checkpoint \(model_type='bert'\)", tmp_path / "bert")
    _edit(out, architectures=["ElectraForTokenClassification"])
    refused(r"architectures=\['ElectraForTokenClassification'\] has no sslm_jax counterpart")
    _edit(out, architectures=["ElectraForMaskedLM"])
    refused(r"weights not of an ElectraForMaskedLM .*: discriminator_predictions\.")
    _edit(out, architectures=["ElectraForPreTraining"], num_hidden_layers=3)
    refused(r"missing weights: electra\.encoder\.layer\.2\.")
    _edit(out, num_hidden_layers=2, embedding_size=30)
    refused(r"has shape \(.*24,?\) but config\.json implies \(.*30,?\)")
    _edit(out, embedding_size=24, position_embedding_type="relative_key")
    refused(r"position_embedding_type='relative_key' is not supported")
    refused("no such checkpoint directory", tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="is not an ELECTRA head"):
        hf_electra.save_checkpoint(tmp_path / "x", CONFIG, {"params": params})
    with pytest.raises(CheckpointError, match=r"do not match the config \(unexpected: electra/encoder/layer_1"):
        hf_electra.save_checkpoint(tmp_path / "x", CONFIG.replace(num_hidden_layers=1), params, head="discriminator")
    assert not (tmp_path / "x").exists()


# --- The family record ----------------------------------------------------------------------------------------


def test_family_is_registered_and_builds_from_settings():
    import configs.base

    family = registry.get("electra")
    assert family is electra.FAMILY and registry.by_hf_model_type("electra") is family
    m = configs.base.get_config().model.to_dict()
    m.update(family="electra", size="small", hidden_dropout_prob=0.05, generator_hidden_fraction=0.0)
    config = family.config_for(m, vocab_size=8192)
    assert (config.hidden_size, config.embedding_size, config.vocab_size, config.hidden_dropout_prob) == (
        256, 128, 8192, 0.05)  # fmt: skip
    assert electra.generator_config(config).hidden_size == 64  # 0: the size's default, 1/4
    assert electra.generator_config(family.config_for({**m, "size": "base"}, 8192)).hidden_size == 256  # 1/3
    assert electra.generator_config(family.config_for({**m, "generator_hidden_fraction": 0.5}, 8192)).hidden_size == 128
    with pytest.raises(ConfigError, match=r"config\.model: generator_hidden_fraction=0\.3 does not divide the heads"):
        family.config_for({**m, "generator_hidden_fraction": 0.3}, 8192)
    heads = {h: type(family.model(config, h, num_labels=2)).__name__ for h in family.heads}
    assert heads == {"pretraining": "ElectraPretrainingModel", "discriminator": "ElectraDiscriminator",
                     "generator": "ElectraGenerator", "classification": "ElectraForSequenceClassification",
                     "encoder": "ElectraModel"}  # fmt: skip
    assert family.model(config, "generator").config.hidden_size == 64
    assert family.is_backbone({"embeddings": {}, "encoder": {}}) and not family.is_backbone({"electra": {}})
    # The generator at 20 masked positions costs less than at all 128; fine-tuning (0) only the discriminator stack.
    full, masked, tuning = (family.train_flops(config, 128, n) for n in (None, 20, 0))
    assert full > masked > tuning > 0
    hf_small = {"model_type": "electra", **electra.ElectraConfig.from_size("small").to_hf_dict()}
    assert family.settings_from_hf(hf_small) == {
        "size": "small", "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2,
        "hidden_act": "gelu", "generator_hidden_fraction": 0.0,
    }  # fmt: skip
    assert set(family.settings_from_hf(hf_small)) == set(family.shape_fields)
    with pytest.raises(ValueError, match="none of sslm_jax's model sizes"):
        family.settings_from_hf(CONFIG.to_hf_dict())


# --- Inference on Hugging Face ELECTRA directories ---------------------------------------------------------------


def test_hf_generator_and_classifier_directories_serve_fill_mask_and_classify(tmp_path, params):
    from sslm_jax.inference import fill_mask, loading

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(CONFIG.vocab_size - 5)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    _, gen_dir = hf_electra.save_pretraining_checkpoints(tmp_path / "hf", CONFIG, params)
    hf_electra.save_checkpoint(gen_dir, electra.generator_config(CONFIG), hf_electra.split_pretraining_params(params)[1],
                               head="generator", vocab_file=tmp_path / "vocab.txt", overwrite=True)  # fmt: skip
    loaded = loading.load_model(gen_dir)
    assert (loaded.kind, loaded.head) == ("huggingface", "generator")
    got = fill_mask.fill_mask_from(gen_dir, ["w3 [MASK] w7"], top_k=3)
    # The same text through the joint model's generator, from the parameters that were saved.
    ids = jnp.array([[2, 8, 4, 12, 3]])
    logits = electra.ElectraPretrainingModel(CONFIG).apply(
        {"params": params}, ids, attention_mask=jnp.ones_like(ids), masked_positions=jnp.array([[2]]),
        method="generator",
    ).mlm_logits[0, 0]  # fmt: skip
    expected = [vocab[i] for i in np.argsort(-np.asarray(logits))[:3]]
    assert [token for token, _ in got[0][0]] == expected
    # A vocabulary shorter than the model's vocab_size (allowed: the model pads it): only its tokens are ranked (an
    # id past it was looked up in the vocabulary: IndexError).
    short = vocab[: CONFIG.vocab_size - 10]
    (gen_dir / "vocab.txt").write_text("\n".join(short) + "\n")
    got = fill_mask.fill_mask_from(gen_dir, ["w3 [MASK] w7"], top_k=CONFIG.vocab_size)
    ranked = [short[i] for i in np.argsort(-np.asarray(logits)[: len(short)])]
    assert [token for token, _ in got[0][0]] == ranked

    classifier = electra.ElectraForSequenceClassification(CONFIG, num_labels=3)
    cls_dir = hf_electra.save_checkpoint(tmp_path / "cls", CONFIG, _random_params(classifier, seed=1),
                                         head="classification", vocab_file=tmp_path / "vocab.txt")  # fmt: skip
    loaded = loading.load_model(cls_dir)
    assert (loaded.head, len(loaded.label_names)) == ("classification", 3)
    with pytest.raises(Exception, match="has no masked-LM head"):
        fill_mask.fill_mask_from(cls_dir, ["w3 [MASK]"])

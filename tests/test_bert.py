"""BERT invariants (shapes, numerics options, masking, dropout, sizes) and parity with Hugging Face's PyTorch BERT."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslm_jax.interop import huggingface as hf
from sslm_jax.models import bert

SMALL = dict(
    vocab_size=101,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=4,
    intermediate_size=48,
    max_position_embeddings=24,
    type_vocab_size=3,
)


def _batch(config, batch=3, length=11, seed=0):
    """Random ids and mixed token types; row 1 has 3 padding tokens, row 2 has 7."""
    rs = np.random.RandomState(seed)
    ids = rs.randint(1, config.vocab_size, (batch, length)).astype(np.int32)
    types = rs.randint(0, config.type_vocab_size, (batch, length)).astype(np.int32)
    mask = np.ones((batch, length), np.int32)
    mask[1, length - 3 :] = 0
    mask[2, length - 7 :] = 0
    ids[mask == 0] = config.pad_token_id
    return ids, mask, types


# --- Shapes, dtypes and options ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_params():
    """Pretraining parameters of the SMALL config: numpy draws on init's shapes (compiling init is slow here).

    std 0.1 and LayerNorm scales around 1, so every weight matters to the outputs.
    """
    rs = np.random.RandomState(0)
    model = bert.BertForPreTraining(bert.BertConfig(**SMALL))
    abstract = jax.eval_shape(lambda rng: bert.init_params(model, rng), jax.random.key(0))
    draw = lambda path, x: (0.1 * rs.randn(*x.shape) + (path[-1].key == "scale")).astype(np.float32)  # noqa: E731
    return jax.tree_util.tree_map_with_path(draw, abstract)


def _head_params(params, head, num_labels=3):
    """The other heads' trees cut from pretraining parameters (plus a random classifier)."""
    if head == "pretraining":
        return params
    if head == "encoder":
        return params["bert"]
    if head == "masked_lm":
        encoder = {k: v for k, v in params["bert"].items() if k != "pooler"}
        return {"bert": encoder, "predictions": params["predictions"]}
    kernel = 0.02 * jax.random.normal(jax.random.key(9), (SMALL["hidden_size"], num_labels))
    return {"bert": params["bert"], "classifier": {"kernel": kernel, "bias": jnp.zeros(num_labels)}}


@pytest.mark.parametrize("head", hf.HEADS)
def test_output_shapes_and_dtypes(head, small_params):
    config = bert.BertConfig(**SMALL)
    model = hf.model_for_head(config, head, num_labels=3)
    params = _head_params(small_params, head)
    # What init would make has exactly this structure, these shapes and float32 everywhere.
    abstract = jax.eval_shape(lambda rng: bert.init_params(model, rng), jax.random.key(0))
    assert jax.tree.structure(abstract) == jax.tree.structure(params)
    assert jax.tree.leaves(jax.tree.map(lambda a, p: a.shape == p.shape, abstract, params)) == [True] * len(
        jax.tree.leaves(params)
    )
    assert {x.dtype for x in jax.tree.leaves(abstract)} == {jnp.dtype(jnp.float32)}
    ids, mask, types = _batch(config)
    out = model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types)
    b, t, v, h = *ids.shape, config.vocab_size, config.hidden_size
    if head == "pretraining":
        assert out.mlm_logits.shape == (b, t, v) and out.nsp_logits.shape == (b, 2)
        assert out.mlm_logits.dtype == out.nsp_logits.dtype == jnp.float32
    elif head == "masked_lm":
        assert out.mlm_logits.shape == (b, t, v) and out.mlm_logits.dtype == jnp.float32
    elif head == "classification":
        assert out.logits.shape == (b, 3) and out.logits.dtype == jnp.float32
    else:
        seq, pooled = out
        assert seq.shape == (b, t, h) and pooled.shape == (b, h)
        assert seq.dtype == pooled.dtype == jnp.float32


@pytest.mark.parametrize("head", ["pretraining", "masked_lm"])
def test_masked_positions_gather_the_full_logits(head, small_params):
    config = bert.BertConfig(**SMALL)
    model = hf.model_for_head(config, head)
    params = _head_params(small_params, head)
    ids, mask, types = _batch(config)
    positions = np.array([[0, 3, 3, 10], [1, 2, 7, 0], [0, 1, 2, 3]], np.int32)
    full = model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types).mlm_logits
    picked = model.apply(
        {"params": params}, ids, attention_mask=mask, token_type_ids=types, masked_positions=positions
    ).mlm_logits
    assert picked.shape == (3, 4, config.vocab_size)
    np.testing.assert_allclose(picked, np.take_along_axis(np.asarray(full), positions[..., None], axis=1), atol=1e-6)


def test_bf16_compute_keeps_fp32_params(small_params):
    config = bert.BertConfig(**SMALL, dtype="bfloat16")
    model = bert.BertForPreTraining(config)
    abstract = jax.eval_shape(lambda rng: bert.init_params(model, rng), jax.random.key(0))
    assert {x.dtype for x in jax.tree.leaves(abstract)} == {jnp.dtype(jnp.float32)}
    params = small_params
    ids, mask, types = _batch(config)
    out = model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types)
    assert out.mlm_logits.dtype == out.nsp_logits.dtype == jnp.bfloat16
    ref = bert.BertForPreTraining(config.replace(dtype="float32")).apply(
        {"params": params}, ids, attention_mask=mask, token_type_ids=types
    )
    # bf16 keeps under 3 significant digits, and the error grows through the layers: a few % of the scale.
    err = np.abs(np.asarray(out.mlm_logits, np.float32) - np.asarray(ref.mlm_logits)).max()
    assert err < 0.05 * np.abs(ref.mlm_logits).max()


def test_remat_gives_the_same_outputs_and_grads(small_params):
    config = bert.BertConfig(**SMALL)
    ids, mask, types = _batch(config)
    params = small_params

    def loss(params, remat):
        # Dropout on: the recomputed forward must draw the same masks as the first one.
        out = bert.BertForPreTraining(config.replace(remat=remat)).apply(
            {"params": params},
            ids,
            attention_mask=mask,
            token_type_ids=types,
            deterministic=False,
            rngs={"dropout": jax.random.key(7)},
        )
        return jnp.mean(out.mlm_logits**2) + jnp.mean(out.nsp_logits**2)

    remat_model = bert.BertForPreTraining(config.replace(remat=True))
    remat_params = jax.eval_shape(lambda rng: bert.init_params(remat_model, rng), jax.random.key(0))
    assert jax.tree.structure(remat_params) == jax.tree.structure(params)
    grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    (l0, g0), (l1, g1) = (grad(params, r) for r in (False, True))
    np.testing.assert_allclose(l0, l1, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8), g0, g1)


def test_segment_ids_block_cross_document_attention(small_params):
    config = bert.BertConfig(**SMALL)
    model = bert.BertModel(config)
    params = small_params["bert"]
    rs = np.random.RandomState(3)
    doc_a, doc_b = rs.randint(1, 101, 5), rs.randint(1, 101, 6)
    packed = np.concatenate([doc_a, doc_b, np.zeros(3, int)])[None]
    segments = np.array([[1] * 5 + [2] * 6 + [0] * 3])
    positions = np.array([list(range(5)) + list(range(6)) + [0, 0, 0]])
    seq, _ = model.apply(
        {"params": params}, packed, attention_mask=segments > 0, segment_ids=segments, position_ids=positions
    )
    # Each document alone, padded to the same length (one shape: eager ops compile once).
    alone_a, _ = model.apply({"params": params}, np.pad(doc_a, (0, 9))[None], attention_mask=np.arange(14)[None] < 5)
    alone_b, _ = model.apply({"params": params}, np.pad(doc_b, (0, 8))[None], attention_mask=np.arange(14)[None] < 6)
    np.testing.assert_allclose(seq[0, :5], alone_a[0, :5], atol=1e-5)
    np.testing.assert_allclose(seq[0, 5:11], alone_b[0, :6], atol=1e-5)
    # Without segment ids the documents do see each other.
    mixed, _ = model.apply({"params": params}, packed, attention_mask=segments > 0, position_ids=positions)
    assert np.abs(mixed[0, :5] - alone_a[0, :5]).max() > 1e-3


def test_dropout_only_when_not_deterministic(small_params):
    config = bert.BertConfig(**SMALL)
    model = bert.BertForMaskedLM(config)
    params = _head_params(small_params, "masked_lm")
    ids, mask, types = _batch(config)

    def run(config, deterministic, seed):
        return bert.BertForMaskedLM(config).apply(
            {"params": params},
            ids,
            attention_mask=mask,
            token_type_ids=types,
            deterministic=deterministic,
            rngs={"dropout": jax.random.key(seed)},
        ).mlm_logits

    plain = model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types).mlm_logits
    np.testing.assert_array_equal(run(config, True, 1), plain)
    np.testing.assert_array_equal(run(config, True, 2), plain)
    train_1, train_2 = run(config, False, 1), run(config, False, 2)
    assert np.abs(train_1 - plain).max() > 1e-3 and np.abs(train_1 - train_2).max() > 1e-3
    np.testing.assert_array_equal(run(config, False, 1), train_1)  # same rng, same masks
    no_dropout = config.replace(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    np.testing.assert_allclose(run(no_dropout, False, 1), plain, atol=1e-6)


def test_sequence_longer_than_positions_is_refused(small_params):
    config = bert.BertConfig(**SMALL)
    model = bert.BertModel(config)
    params = small_params["bert"]
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.apply({"params": params}, np.ones((1, 25), np.int32))


def test_config_validation():
    with pytest.raises(ValueError, match="not divisible"):
        bert.BertConfig(hidden_size=100, num_attention_heads=3)
    with pytest.raises(ValueError, match="hidden_act"):
        bert.BertConfig(hidden_act="mish")
    with pytest.raises(ValueError, match="unknown model size"):
        bert.BertConfig.from_size("huge")


# --- The size table ----------------------------------------------------------------------------------------


def _count(config, head):
    shapes = jax.eval_shape(lambda k: bert.init_params(hf.model_for_head(config, head), k), jax.random.key(0))
    return sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))


def test_size_table_matches_the_published_models():
    # (layers, hidden) of Turc et al.'s miniatures and BERT-Base/Large; heads = hidden / 64, FFN = 4 * hidden.
    published = {"tiny": (2, 128), "mini": (4, 256), "small": (4, 512), "medium": (8, 512), "base": (12, 768)}
    published["large"] = (24, 1024)
    for size, (layers, hidden) in published.items():
        c = bert.BertConfig.from_size(size)
        assert (c.num_hidden_layers, c.hidden_size) == (layers, hidden)
        assert c.num_attention_heads * 64 == hidden and c.intermediate_size == 4 * hidden
    # Parameter counts of Google's bert-base-uncased / bert-large-uncased encoders (with pooler).
    assert _count(bert.BertConfig.from_size("base"), "encoder") == 109_482_240
    assert _count(bert.BertConfig.from_size("large"), "encoder") == 335_141_888


def test_size_table_counts_equal_hugging_face(torch):
    transformers = pytest.importorskip("transformers")
    classes = {
        "pretraining": transformers.BertForPreTraining,
        "masked_lm": transformers.BertForMaskedLM,
        "encoder": transformers.BertModel,
    }
    # base and large are checked against the published counts above; building them is slow even on "meta".
    cases = [(size, "pretraining") for size in ("tiny", "mini", "small", "medium")]
    cases += [("tiny", "masked_lm"), ("tiny", "encoder")]
    for size, head in cases:
        config = bert.BertConfig.from_size(size, vocab_size=8192)
        with torch.device("meta"):
            model = classes[head](transformers.BertConfig(**config.to_hf_dict()))
        # parameters() lists the tied decoder weight and bias once, as our tree holds them once.
        assert _count(config, head) == sum(p.numel() for p in model.parameters()), (size, head)


# --- Parity with Hugging Face's PyTorch BERT ---------------------------------------------------------------

PARITY_CONFIGS = {
    # hidden not a power of two, vocab not a multiple of 8, three token types, small eps, exact gelu.
    "h96_3heads_v1001": dict(
        vocab_size=1001, hidden_size=96, num_attention_heads=3, num_hidden_layers=2, intermediate_size=160,
        type_vocab_size=3, layer_norm_eps=1e-7, hidden_act="gelu", max_position_embeddings=40,
    ),
    "h64_gelu_new": dict(
        vocab_size=517, hidden_size=64, num_attention_heads=4, num_hidden_layers=3, intermediate_size=100,
        type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu_new", max_position_embeddings=32,
    ),
    "h48_relu_5types": dict(
        vocab_size=333, hidden_size=48, num_attention_heads=6, num_hidden_layers=1, intermediate_size=72,
        type_vocab_size=5, layer_norm_eps=1e-5, hidden_act="relu", max_position_embeddings=20,
    ),
}  # fmt: skip


def random_hf_model(torch, cls, fields, seed):
    """A transformers model (eager attention) with every weight random, LayerNorms and biases included."""
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.BertConfig(**fields, attn_implementation="eager")
    model = cls(hf_config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            # std 0.1 keeps attention far from uniform and logits O(1); LayerNorm scales stay around 1.
            p.copy_(1 + 0.2 * noise if name.endswith("LayerNorm.weight") else 0.1 * noise)
    return model


@pytest.mark.torch
@pytest.mark.parametrize("name", PARITY_CONFIGS)
def test_converted_weights_match_hugging_face(torch, tmp_path, name):
    transformers = pytest.importorskip("transformers")
    fields = PARITY_CONFIGS[name]
    torch_model = random_hf_model(torch, transformers.BertForPreTraining, fields, seed=len(name))
    torch_model.save_pretrained(tmp_path)
    config, params = hf.load_checkpoint(tmp_path)
    assert hf.head_of(params) == "pretraining"
    assert all(config.to_hf_dict()[k] == v for k, v in fields.items())

    ids, mask, types = _batch(config, length=13, seed=len(name))
    with torch.inference_mode():
        ref = torch_model(
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(types, dtype=torch.long),
        )
    model = bert.BertForPreTraining(config)
    out = model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types)
    ref_mlm = ref.prediction_logits.numpy()
    assert np.abs(ref_mlm).max() > 1.0  # the comparison is not between near-zero numbers
    np.testing.assert_allclose(out.mlm_logits, ref_mlm, rtol=0, atol=1e-5)
    np.testing.assert_allclose(out.nsp_logits, ref.seq_relationship_logits.numpy(), rtol=0, atol=1e-5)

    positions = np.array([[1, 4, 12], [0, 2, 9], [5, 5, 3]], np.int32)
    picked = model.apply(
        {"params": params}, ids, attention_mask=mask, token_type_ids=types, masked_positions=positions
    ).mlm_logits
    np.testing.assert_allclose(picked, np.take_along_axis(ref_mlm, positions[..., None], axis=1), rtol=0, atol=1e-5)


@pytest.mark.torch
def test_converted_classifier_matches_hugging_face(torch, tmp_path):
    transformers = pytest.importorskip("transformers")
    fields = dict(PARITY_CONFIGS["h96_3heads_v1001"], num_labels=4)
    torch_model = random_hf_model(torch, transformers.BertForSequenceClassification, fields, seed=5)
    torch_model.save_pretrained(tmp_path)
    config, params = hf.load_checkpoint(tmp_path)
    assert hf.head_of(params) == "classification" and hf.num_labels_of(params) == 4
    ids, mask, types = _batch(config, seed=5)
    with torch.inference_mode():
        ref = torch_model(
            input_ids=torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask),
            token_type_ids=torch.tensor(types, dtype=torch.long),
        ).logits.numpy()
    out = bert.BertForSequenceClassification(config, num_labels=4).apply(
        {"params": params}, ids, attention_mask=mask, token_type_ids=types
    )
    np.testing.assert_allclose(out.logits, ref, rtol=0, atol=1e-5)


def test_init_params_boxed_carries_logical_axes():
    config = bert.BertConfig(**SMALL)
    model = bert.BertForPreTraining(config)
    boxed = jax.eval_shape(lambda rng: bert.init_params(model, rng, boxed=True), jax.random.key(0))
    leaves = jax.tree.leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
    for x in leaves:
        assert len(x.names) == len(x.value.shape)
    word = boxed["bert"]["embeddings"]["word_embeddings"]["embedding"]
    assert word.names == ("vocab", "embed")

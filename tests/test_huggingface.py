"""Hugging Face checkpoint import/export: round trips, every accepted layout, clean errors, atomic saves,
and (with PyTorch) that transformers loads our exports with nothing missing or unexpected and the same logits."""

import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.flax
import safetensors.numpy

from sslm_jax.errors import CheckpointError
from sslm_jax.interop import huggingface as hf
from sslm_jax.models import bert

# Odd sizes on purpose: hidden 48 with 3 heads, vocab 37 (not a multiple of 8), three token types.
CONFIG = bert.BertConfig(
    vocab_size=37,
    hidden_size=48,
    num_hidden_layers=2,
    num_attention_heads=3,
    intermediate_size=40,
    max_position_embeddings=16,
    type_vocab_size=3,
    layer_norm_eps=1e-6,
    hidden_act="gelu_new",
    initializer_range=0.1,
)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "cafe", "the"]


def _random_params(model, seed):
    """Random values everywhere (LayerNorm scales and biases too), so a swapped or transposed weight shows.

    Drawn with numpy on the shapes init would make: compiling the real init is slow on busy CPUs.
    """
    rs = np.random.RandomState(seed)
    abstract = jax.eval_shape(lambda rng: bert.init_params(model, rng), jax.random.key(0))
    return jax.tree.map(lambda x: (0.1 * rs.randn(*x.shape)).astype(np.float32), abstract)


@pytest.fixture(scope="module")
def pretraining_params():
    params = _random_params(bert.BertForPreTraining(CONFIG), 1)
    # LayerNorm scales around 1, as trained ones are.
    return jax.tree_util.tree_map_with_path(lambda path, x: x + 1.0 if path[-1].key == "scale" else x, params)


def _params(pretraining_params, head, num_labels=3):
    """Each head's tree, cut from the pretraining parameters (plus a random classifier)."""
    p = pretraining_params
    if head == "pretraining":
        return p
    if head == "encoder":
        return p["bert"]
    if head == "masked_lm":
        return {"bert": {k: v for k, v in p["bert"].items() if k != "pooler"}, "predictions": p["predictions"]}
    rs = np.random.RandomState(num_labels)
    classifier = {"kernel": rs.randn(CONFIG.hidden_size, num_labels).astype(np.float32) * 0.1}
    classifier["bias"] = rs.randn(num_labels).astype(np.float32)
    return {"bert": p["bert"], "classifier": classifier}


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def _batch(seed=0):
    rs = np.random.RandomState(seed)
    ids = rs.randint(1, CONFIG.vocab_size, (3, 9))
    types = rs.randint(0, CONFIG.type_vocab_size, (3, 9))
    mask = np.ones((3, 9), np.int64)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    return ids, mask, types


def _edit_config(directory: pathlib.Path, **changes):
    d = json.loads((directory / "config.json").read_text())
    d.update(changes)
    (directory / "config.json").write_text(json.dumps(d))


def _rewrite_weights(directory: pathlib.Path, edit):
    file = directory / "model.safetensors"
    tensors = edit(safetensors.numpy.load_file(file))
    safetensors.numpy.save_file(tensors, file, metadata={"format": "pt"})


# --- Round trips (no PyTorch) ------------------------------------------------------------------------------


@pytest.mark.parametrize("head", hf.HEADS)
def test_save_then_load_round_trips_every_head(tmp_path, pretraining_params, head):
    params = _params(pretraining_params, head)
    hf.save_checkpoint(tmp_path / "out", CONFIG, params)
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["model_type"] == "bert" and written["architectures"] == [hf.ARCHITECTURES[head]]
    config, loaded = hf.load_checkpoint(tmp_path / "out")
    assert config == CONFIG
    assert hf.head_of(loaded) == head
    _assert_trees_equal(loaded, params)
    assert {x.dtype for x in jax.tree.leaves(loaded)} == {np.dtype(np.float32)}


def test_tied_decoder_weights_are_not_written(tmp_path, pretraining_params):
    hf.save_checkpoint(tmp_path / "out", CONFIG, pretraining_params)
    names = set(safetensors.numpy.load_file(tmp_path / "out" / "model.safetensors"))
    assert not any(n.startswith("cls.predictions.decoder") for n in names)
    assert {"bert.embeddings.word_embeddings.weight", "cls.predictions.bias", "cls.seq_relationship.weight"} <= names


def test_export_a_smaller_head(tmp_path, pretraining_params):
    hf.save_checkpoint(tmp_path / "mlm", CONFIG, pretraining_params, head="masked_lm")
    _, loaded = hf.load_checkpoint(tmp_path / "mlm")
    _assert_trees_equal(loaded, _params(pretraining_params, "masked_lm"))
    hf.save_checkpoint(tmp_path / "enc", CONFIG, pretraining_params, head="encoder")
    names = safetensors.numpy.load_file(tmp_path / "enc" / "model.safetensors")
    assert all(n.startswith(("embeddings.", "encoder.", "pooler.")) for n in names)  # BertModel's own layout
    _, loaded = hf.load_checkpoint(tmp_path / "enc")
    _assert_trees_equal(loaded, pretraining_params["bert"])
    with pytest.raises(CheckpointError, match="cannot be exported as head='pretraining'"):
        hf.save_checkpoint(tmp_path / "x", CONFIG, _params(pretraining_params, "masked_lm"), head="pretraining")


def test_load_a_head_from_a_richer_checkpoint(tmp_path, pretraining_params):
    hf.save_checkpoint(tmp_path / "out", CONFIG, pretraining_params)
    for head in ("masked_lm", "encoder"):
        _, loaded = hf.load_checkpoint(tmp_path / "out", head=head)
        _assert_trees_equal(loaded, _params(pretraining_params, head))


def test_missing_head_needs_init_heads(tmp_path, pretraining_params):
    hf.save_checkpoint(tmp_path / "mlm", CONFIG, _params(pretraining_params, "masked_lm"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*classifier.*init_heads=True"):
        hf.load_checkpoint(tmp_path / "mlm", head="classification", num_labels=5)
    _, loaded = hf.load_checkpoint(tmp_path / "mlm", head="classification", num_labels=5, init_heads=True)
    assert loaded["classifier"]["kernel"].shape == (CONFIG.hidden_size, 5) and hf.num_labels_of(loaded) == 5
    # The encoder comes from the checkpoint; the pooler (absent from a masked-LM checkpoint) is new.
    _assert_trees_equal(loaded["bert"]["encoder"], pretraining_params["bert"]["encoder"])
    assert not np.array_equal(loaded["bert"]["pooler"]["kernel"], pretraining_params["bert"]["pooler"]["kernel"])
    # From a pretraining checkpoint only the classifier is new.
    hf.save_checkpoint(tmp_path / "pt", CONFIG, pretraining_params)
    _, loaded = hf.load_checkpoint(tmp_path / "pt", head="classification", num_labels=5, init_heads=True, seed=3)
    _assert_trees_equal(loaded["bert"], pretraining_params["bert"])
    assert hf.num_labels_of(loaded) == 5


def test_classification_labels_must_agree(tmp_path, pretraining_params):
    hf.save_checkpoint(tmp_path / "out", CONFIG, _params(pretraining_params, "classification", 3), id2label="abc")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["id2label"] == {"0": "a", "1": "b", "2": "c"} and written["label2id"] == {"a": 0, "b": 1, "c": 2}
    with pytest.raises(CheckpointError, match="classifier has 3 labels, num_labels=4"):
        hf.load_checkpoint(tmp_path / "out", num_labels=4)
    _edit_config(tmp_path / "out", id2label={"0": "a", "1": "b"})
    with pytest.raises(CheckpointError, match="config.json says 2"):
        hf.load_checkpoint(tmp_path / "out")
    with pytest.raises(CheckpointError, match="3 distinct names"):
        hf.save_checkpoint(tmp_path / "y", CONFIG, _params(pretraining_params, "classification", 3), id2label="ab")
    with pytest.raises(CheckpointError, match="id2label applies to head='classification'"):
        hf.save_checkpoint(tmp_path / "z", CONFIG, pretraining_params, id2label="ab")


def test_bert_model_layout_without_prefix_and_legacy_names(tmp_path, pretraining_params):
    hf.save_checkpoint(tmp_path / "out", CONFIG, pretraining_params)

    def legacy(tensors):
        # BertModel's layout (no "bert." prefix), TF-era LayerNorm gamma/beta, and the tied decoder written out.
        out = {}
        for name, value in tensors.items():
            name = name.removeprefix("bert.").replace("LayerNorm.weight", "LayerNorm.gamma")
            out[name.replace("LayerNorm.bias", "LayerNorm.beta")] = value
        out["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
        out["embeddings.position_ids"] = np.arange(CONFIG.max_position_embeddings)[None]
        return out

    _rewrite_weights(tmp_path / "out", legacy)
    _, loaded = hf.load_checkpoint(tmp_path / "out")
    _assert_trees_equal(loaded, pretraining_params)

    def untied(tensors):
        return {**tensors, "cls.predictions.decoder.weight": tensors["cls.predictions.decoder.weight"] + 1}

    _rewrite_weights(tmp_path / "out", untied)
    with pytest.raises(CheckpointError, match="decoder.weight differs"):
        hf.load_checkpoint(tmp_path / "out")


def test_sharded_and_bfloat16_checkpoints(tmp_path, pretraining_params):
    directory = tmp_path / "out"
    hf.save_checkpoint(directory, CONFIG, pretraining_params)
    tensors = safetensors.numpy.load_file(directory / "model.safetensors")
    (directory / "model.safetensors").unlink()
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in halves.items():
        # bfloat16 through the flax writer: numpy has no bfloat16 of its own.
        safetensors.flax.save_file({n: jnp.asarray(tensors[n], jnp.bfloat16) for n in part}, directory / file)
    weight_map = {n: file for file, part in halves.items() for n in part}
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    _, loaded = hf.load_checkpoint(directory)
    rounded = jax.tree.map(lambda x: np.asarray(jnp.asarray(x, jnp.bfloat16), np.float32), pretraining_params)
    _assert_trees_equal(loaded, rounded)


def test_boxed_params_save_like_unboxed(tmp_path):
    model = bert.BertForMaskedLM(CONFIG)
    rs = np.random.RandomState(0)
    abstract = jax.eval_shape(lambda rng: bert.init_params(model, rng, boxed=True), jax.random.key(0))
    boxed = jax.tree.map(lambda x: rs.randn(*x.shape).astype(np.float32), abstract)  # keeps the boxes
    assert isinstance(boxed["predictions"]["bias"], nn.LogicallyPartitioned)
    hf.save_checkpoint(tmp_path / "out", CONFIG, boxed)
    _, loaded = hf.load_checkpoint(tmp_path / "out")
    _assert_trees_equal(loaded, nn.meta.unbox(boxed))


def test_auto_head_without_architectures_reads_the_weights(tmp_path, pretraining_params):
    for head in ("pretraining", "masked_lm", "classification", "encoder"):
        directory = tmp_path / head
        hf.save_checkpoint(directory, CONFIG, _params(pretraining_params, head))
        _edit_config(directory, architectures=None)
        assert hf.head_of(hf.load_checkpoint(directory)[1]) == head


# --- Bad checkpoints: one CheckpointError naming the file --------------------------------------------------


@pytest.fixture
def saved(tmp_path, pretraining_params):
    return hf.save_checkpoint(tmp_path / "ckpt", CONFIG, pretraining_params)


def test_missing_directory_or_config(tmp_path, saved):
    with pytest.raises(CheckpointError, match="nowhere: no such checkpoint directory"):
        hf.load_checkpoint(tmp_path / "nowhere")
    (saved / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        hf.load_checkpoint(saved)


def test_config_that_is_not_bert(saved):
    _edit_config(saved, model_type="roberta")
    with pytest.raises(CheckpointError, match=r"config\.json: model_type='roberta'"):
        hf.load_checkpoint(saved)
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: cannot be read as JSON"):
        hf.load_checkpoint(saved)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(is_decoder=True), "is_decoder=True is not supported"),
        (dict(position_embedding_type="relative_key"), "position_embedding_type='relative_key'"),
        (dict(tie_word_embeddings=False), "tie_word_embeddings=False"),
        (dict(hidden_act="mish"), "hidden_act='mish'"),
        (dict(architectures=["BertForQuestionAnswering"]), "has no sslm_jax counterpart"),
    ],
)
def test_config_features_we_cannot_compute(saved, changes, message):
    _edit_config(saved, **changes)
    with pytest.raises(CheckpointError, match=message) as info:
        hf.load_checkpoint(saved)
    assert "config.json" in str(info.value)


def test_shapes_that_disagree_with_config(saved):
    _edit_config(saved, vocab_size=40)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: .*word_embeddings.weight has shape \(37, 48\)"):
        hf.load_checkpoint(saved)
    _edit_config(saved, vocab_size=37, num_hidden_layers=1)
    with pytest.raises(CheckpointError, match=r"not described by config\.json: bert\.encoder\.layer\.1"):
        hf.load_checkpoint(saved)
    _edit_config(saved, num_hidden_layers=3)
    with pytest.raises(CheckpointError, match=r"missing encoder weights: bert\.encoder\.layer\.2"):
        hf.load_checkpoint(saved)


def test_truncated_safetensors(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable or truncated"):
        hf.load_checkpoint(saved)
    (saved / "model.safetensors").write_bytes(data[:5])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable or truncated"):
        hf.load_checkpoint(saved)


def test_pickle_needs_allow_pickle(saved):
    (saved / "model.safetensors").unlink()
    (saved / "pytorch_model.bin").write_bytes(b"not even read")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: a pickle file.*allow_pickle=True"):
        hf.load_checkpoint(saved)
    (saved / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        hf.load_checkpoint(saved)


def test_unknown_head_and_misplaced_options(saved):
    with pytest.raises(CheckpointError, match="head='nsp' is not one of"):
        hf.load_checkpoint(saved, head="nsp")
    with pytest.raises(CheckpointError, match="num_labels applies to head='classification'"):
        hf.load_checkpoint(saved, num_labels=3)


# --- Saving: validate first, write atomically --------------------------------------------------------------


def _entries(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_failed_saves_write_nothing(tmp_path, pretraining_params):
    out = tmp_path / "out"
    wrong = jax.tree.map(lambda x: x, pretraining_params)
    wrong["predictions"]["bias"] = np.zeros(CONFIG.vocab_size + 1, np.float32)
    with pytest.raises(CheckpointError, match=r"predictions/bias has shape \(38,\)"):
        hf.save_checkpoint(out, CONFIG, wrong)
    lacking = {"bert": pretraining_params["bert"], "predictions": {"bias": pretraining_params["predictions"]["bias"]}}
    with pytest.raises(CheckpointError, match="missing: predictions/transform"):
        hf.save_checkpoint(out, CONFIG, lacking)
    with pytest.raises(CheckpointError, match=r"pass variables\['params'\]"):
        hf.save_checkpoint(out, CONFIG, {"params": pretraining_params})
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(CheckpointError, match=r"vocab\.txt: lacks the special token\(s\) \[MASK\]"):
        hf.save_checkpoint(out, CONFIG, pretraining_params, vocab_file=tmp_path / "vocab.txt")
    (tmp_path / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB + [f"w{i}" for i in range(30)]))
    with pytest.raises(CheckpointError, match="40 tokens but the model's vocab_size is 37"):
        hf.save_checkpoint(out, CONFIG, pretraining_params, vocab_file=tmp_path / "vocab.txt")
    assert _entries(tmp_path) == ["vocab.txt"]


def test_failure_while_writing_leaves_nothing(tmp_path, pretraining_params, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.numpy, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        hf.save_checkpoint(tmp_path / "out", CONFIG, pretraining_params)
    assert _entries(tmp_path) == []


def test_existing_directory_needs_overwrite(tmp_path, pretraining_params):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="exists and is not empty: choose a new output directory"):
        hf.save_checkpoint(out, CONFIG, pretraining_params)
    assert _entries(out) == ["notes.txt"]
    hf.save_checkpoint(out, CONFIG, pretraining_params, overwrite=True)
    assert _entries(out) == ["config.json", "model.safetensors"]
    assert _entries(tmp_path) == ["out"]  # no temporary or backup directories left
    (tmp_path / "file").write_text("")
    with pytest.raises(CheckpointError, match="is a file, not a directory"):
        hf.save_checkpoint(tmp_path / "file", CONFIG, pretraining_params, overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    hf.save_checkpoint(empty, CONFIG, pretraining_params)
    assert _entries(empty) == ["config.json", "model.safetensors"]


# --- Against transformers (PyTorch) ------------------------------------------------------------------------


def _torch_logits(torch, model, batch):
    ids, mask, types = (torch.tensor(x, dtype=torch.long) for x in batch)
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=mask, token_type_ids=types)


@pytest.mark.torch
@pytest.mark.parametrize("head", hf.HEADS)
def test_transformers_loads_exports_cleanly_with_the_same_outputs(torch, tmp_path, pretraining_params, head):
    transformers = pytest.importorskip("transformers")
    classes = {
        "pretraining": transformers.BertForPreTraining,
        "masked_lm": transformers.BertForMaskedLM,
        "classification": transformers.BertForSequenceClassification,
        "encoder": transformers.BertModel,
    }
    params = _params(pretraining_params, head)
    labels = ["neg", "neu", "pos"] if head == "classification" else None
    hf.save_checkpoint(tmp_path / "out", CONFIG, params, id2label=labels)
    model, info = classes[head].from_pretrained(tmp_path / "out", output_loading_info=True, attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    if labels:
        assert model.config.id2label == dict(enumerate(labels)) and model.config.label2id["pos"] == 2

    batch = _batch()
    ref = _torch_logits(torch, model.eval(), batch)
    ids, mask, types = batch
    out = hf.model_for_head(CONFIG, head, num_labels=3).apply(
        {"params": params}, ids, attention_mask=mask, token_type_ids=types
    )
    if head == "pretraining":
        pairs = [(out.mlm_logits, ref.prediction_logits), (out.nsp_logits, ref.seq_relationship_logits)]
    elif head == "masked_lm":
        pairs = [(out.mlm_logits, ref.logits)]
    elif head == "classification":
        pairs = [(out.logits, ref.logits)]
    else:
        pairs = [(out[0], ref.last_hidden_state), (out[1], ref.pooler_output)]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-5)


@pytest.mark.torch
def test_pretraining_export_as_masked_lm_loads_cleanly(torch, tmp_path, pretraining_params):
    transformers = pytest.importorskip("transformers")
    hf.save_checkpoint(tmp_path / "out", CONFIG, pretraining_params, head="masked_lm")
    model, info = transformers.BertForMaskedLM.from_pretrained(
        tmp_path / "out", output_loading_info=True, attn_implementation="eager"
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids, mask, types = batch = _batch(1)
    ours = bert.BertForPreTraining(CONFIG).apply({"params": pretraining_params}, ids, mask, types).mlm_logits
    np.testing.assert_allclose(ours, _torch_logits(torch, model.eval(), batch).logits.numpy(), rtol=0, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("lower_case", [True, False])
def test_auto_tokenizer_loads_the_exported_vocabulary(torch, tmp_path, pretraining_params, lower_case):
    transformers = pytest.importorskip("transformers")
    (tmp_path / "vocab.txt").write_text("".join(f"{t}\n" for t in VOCAB))
    out = tmp_path / "out"
    hf.save_checkpoint(out, CONFIG, pretraining_params, vocab_file=tmp_path / "vocab.txt", do_lower_case=lower_case)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert (out / "vocab.txt").read_text().splitlines() == VOCAB
    ids = tokenizer("Hello worlds Café")["input_ids"]
    hello, cafe = (5, 8) if lower_case else (1, 1)  # cased: "Hello" and "Café" are unknown to this vocabulary
    assert ids == [2, hello, 6, 7, cafe, 3]
    assert (tokenizer.pad_token_id, tokenizer.mask_token_id) == (0, 4)


@pytest.mark.torch
@pytest.mark.parametrize("cls_name, head", [("BertForPreTraining", "pretraining"), ("BertModel", "encoder")])
def test_transformers_checkpoints_load_in_both_formats(torch, tmp_path, cls_name, head):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = getattr(transformers, cls_name)(transformers.BertConfig(**CONFIG.to_hf_dict()))
    model.save_pretrained(tmp_path / "st")
    # The pickle layout of older checkpoints: the full state dict, tied decoder weights included.
    (tmp_path / "pkl").mkdir()
    (tmp_path / "pkl" / "config.json").write_bytes((tmp_path / "st" / "config.json").read_bytes())
    torch.save(model.state_dict(), tmp_path / "pkl" / "pytorch_model.bin")
    config, from_safetensors = hf.load_checkpoint(tmp_path / "st")
    assert config == CONFIG and hf.head_of(from_safetensors) == head
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        hf.load_checkpoint(tmp_path / "pkl")
    _, from_pickle = hf.load_checkpoint(tmp_path / "pkl", allow_pickle=True)
    _assert_trees_equal(from_pickle, from_safetensors)
    word = model.state_dict()[("bert." if head != "encoder" else "") + "embeddings.word_embeddings.weight"]
    embeddings = from_safetensors["embeddings"] if head == "encoder" else from_safetensors["bert"]["embeddings"]
    np.testing.assert_array_equal(embeddings["word_embeddings"]["embedding"], word.numpy())


def test_a_multi_label_classifier_is_refused(tmp_path):
    """problem_type 'multi_label_classification' (a sigmoid per label) was loaded as a softmax classifier: predict
    returned one label and probabilities that sum to 1, without a word."""
    import _tiny_models
    from sslm_jax.inference.loading import load_model

    directory = _tiny_models.hf_dir(tmp_path, "classification")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "problem_type": "multi_label_classification"}))
    with pytest.raises(CheckpointError, match=r"is a multi-label classifier \(problem_type 'multi_label_classification"):
        load_model(directory)


def test_sentence_pairs_on_a_model_with_one_token_type_are_refused(tmp_path):
    """transformers raises on token type 1 past a one-row table; we looked it up silently and returned numbers."""
    import _tiny_models
    from sslm_jax.errors import SslmError
    from sslm_jax.inference import classify
    from sslm_jax.inference.loading import load_model

    config = _tiny_models.CONFIG.replace(type_vocab_size=1)
    params = bert.init_params(bert.BertForSequenceClassification(config, num_labels=2), jax.random.key(0))
    directory = hf.save_checkpoint(tmp_path / "one_type", config, jax.device_get(params),
                                   vocab_file=_tiny_models.vocab_file(tmp_path / "vocab"))  # fmt: skip
    loaded = load_model(directory)
    assert classify.predict(loaded, [("the movie",)]).shape == (1, 2)
    with pytest.raises(SslmError, match=r"type_vocab_size=1, no embedding for a pair's second segment"):
        classify.predict(loaded, [("the movie", "was fun")])

"""Fine-tuning pieces without training: step metrics from classification sums, exact eval summaries, per-example
rows gathered (not summed) under pmap, reading texts to classify, and settings adopted from init_from."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sslm_jax.errors import CheckpointError, DataError
from sslm_jax.interop import huggingface
from sslm_jax.models.bert import BertConfig, BertForPreTraining, init_params
from sslm_jax.objectives import glue_metrics
from sslm_jax.objectives.metrics import finalize, total_loss
from sslm_jax.tasks import classification
from sslm_jax.tasks.base import PER_EXAMPLE
from sslm_jax.checkpoints import transplant
from sslm_jax.training import runners


def test_finalize_knows_the_classification_sums():
    # The train step reports finalize(sums): fine-tuning's loss and accuracy must not read 0.
    out = finalize({"loss_sum": jnp.float32(3.0), "correct": jnp.float32(3.0), "count": jnp.float32(4.0)})
    assert float(out["loss"]) == pytest.approx(0.75)
    assert float(out["accuracy"]) == pytest.approx(0.75)
    regression = finalize({"loss_sum": jnp.float32(2.0), "count": jnp.float32(8.0)})
    assert float(regression["loss"]) == pytest.approx(0.25) and "accuracy" not in regression
    # An all-padding batch gives 0, not NaN; pretraining sums are untouched by the new term.
    assert float(finalize({"loss_sum": 0.0, "correct": 0.0, "count": 0.0})["accuracy"]) == 0.0
    assert float(total_loss({"mlm_loss_sum": 6.0, "mlm_weight": 4.0})) == pytest.approx(1.5)


def _output(pred, label, weight, loss_sum):
    weight = np.asarray(weight, np.float32)
    correct = float(np.sum((np.asarray(pred) == np.asarray(label)) * weight))
    return {
        "loss_sum": np.float32(loss_sum),
        "correct": np.float32(correct),
        "count": np.float32(weight.sum()),
        PER_EXAMPLE: {"prediction": np.asarray(pred), "label": np.asarray(label), "weight": weight},
    }


def test_summarize_is_exact_over_batches_and_ignores_padding():
    outputs = [_output([1, 0], [1, 1], [1, 1], 1.0), _output([1, 1], [0, 1], [1, 0], 2.0)]
    out = classification.summarize(outputs, metric_names=("f1", "matthews_corr", "accuracy"))
    assert list(out)[:3] == ["f1", "matthews_corr", "accuracy"]  # the headline metric first
    # Real rows: predictions [1, 0, 1], labels [1, 1, 0] (the 4th row is padding).
    expected = glue_metrics.compute_metrics(("f1", "matthews_corr", "accuracy"), [1, 0, 1], [1, 1, 0])
    for name, value in expected.items():
        assert out[name] == pytest.approx(value)
    assert out["accuracy"] == pytest.approx(1 / 3)
    assert out["loss"] == pytest.approx(3.0 / 3)
    assert out["examples"] == 3.0


def test_summarize_regression():
    rows = {"prediction": np.array([1.0, 2.0, 2.5, 9.0]), "label": np.array([1.5, 2.0, 4.0, 0.0])}
    output = {
        "loss_sum": np.float32(0.25 + 0.0 + 2.25),
        "count": np.float32(3.0),
        PER_EXAMPLE: {**rows, "weight": np.array([1.0, 1.0, 1.0, 0.0], np.float32)},
    }
    out = classification.summarize([output], metric_names=("pearson", "spearman"))
    assert out["pearson"] == pytest.approx(glue_metrics.pearson([1.0, 2.0, 2.5], [1.5, 2.0, 4.0]))
    assert out["spearman"] == pytest.approx(1.0)  # the padding row (9.0 vs 0.0) would break the monotony
    assert out["loss"] == pytest.approx(2.5 / 3) and "accuracy" not in out


def test_per_example_rows_are_gathered_in_order_under_pmap():
    n = jax.local_device_count()
    assert n == 8  # conftest's fake devices

    def eval_step(params, batch):
        x = batch["x"]
        return {"count": jnp.sum(x * 0 + 1.0), PER_EXAMPLE: {"row": x * params}}

    step = jax.pmap(runners.psum_outputs(eval_step, "batch"), axis_name="batch")
    rows = np.arange(2 * n, dtype=np.float32)
    out = step(jnp.ones(n), {"x": rows.reshape(n, 2)})
    first = jax.tree.map(lambda x: np.asarray(x[0]), out)
    assert float(first["count"]) == 2 * n  # sums are summed
    np.testing.assert_array_equal(first[PER_EXAMPLE]["row"], rows)  # rows are concatenated in batch order


@pytest.mark.parametrize(
    "name, content, fields, match",
    [
        ("in.tsv", "review\tlabel\ngood\t1\n", ("sentence",), r"no column 'sentence' \(it has review, label\)"),
        ("in.jsonl", '{"text": "a"}\n{"txt": "b"}\n', ("text",), r"in.jsonl:2: no field 'text'"),
        ("in.txt", "one text\n", ("premise", "hypothesis"), "plain text holds one text per line.*sentence pairs"),
        ("in.tsv", "sentence\tlabel\n", ("sentence",), "has no examples"),
        ("in.csv", "sentence,label\n\"a, b\",1,2\n", ("sentence",), "3 csv fields where the header has 2"),
    ],
)
def test_read_examples_errors(tmp_path, name, content, fields, match):
    from sslm_jax.inference import classify

    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=match) as e:
        classify.read_examples(path, text_fields=fields)
    assert "\n" not in str(e.value)


def test_read_examples_formats(tmp_path):
    from sslm_jax.inference import classify

    (tmp_path / "a.tsv").write_text('q\tsentence\tlabel\nwho "is" it ?\tme\t1\n')
    (tmp_path / "a.csv").write_text('sentence,label\n"a, quoted one",0\n')
    (tmp_path / "a.jsonl").write_text('{"q": "x", "sentence": "y"}\n\n')
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\n")
    assert classify.read_examples(tmp_path / "a.tsv", text_fields=("q", "sentence")) == [('who "is" it ?', "me")]
    assert classify.read_examples(tmp_path / "a.csv", text_fields=("sentence",)) == [("a, quoted one",)]
    assert classify.read_examples(tmp_path / "a.jsonl", text_fields=("q", "sentence")) == [("x", "y")]
    assert classify.read_examples(tmp_path / "a.txt", text_fields=("text",)) == [("first line",), ("second line",)]


def test_read_examples_through_gfile_and_gz(tmp_path):
    """`sslm predict` reads its input with the fine-tuning reader: tf.io.gfile URLs (ram:// here) and .gz."""
    import gzip

    import tensorflow as tf

    from sslm_jax.inference import classify

    with tf.io.gfile.GFile("ram://sslm_classify/in.tsv.gz", "wb") as f:
        f.write(gzip.compress(b"sentence\tlabel\ngood fun\t1\n"))
    with tf.io.gfile.GFile("ram://sslm_classify/in.txt", "w") as f:
        f.write("first\n\nsecond\n")
    assert classify.read_examples("ram://sslm_classify/in.tsv.gz", text_fields=("sentence",)) == [("good fun",)]
    assert classify.read_examples("ram://sslm_classify/in.txt", text_fields=("text",)) == [("first",), ("second",)]
    with pytest.raises(DataError, match="^input file ram://sslm_classify/none.tsv does not exist$"):
        classify.read_examples("ram://sslm_classify/none.tsv", text_fields=("sentence",))


def test_length_buckets():
    from sslm_jax.inference.classify import _bucket

    assert [_bucket(n, 128) for n in (1, 8, 9, 33, 64, 65, 200)] == [8, 8, 16, 64, 64, 128, 128]
    assert _bucket(30, 20) == 20


def test_init_from_settings_of_a_huggingface_directory(tmp_path):
    tokens = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(tokens + [f"w{i}" for i in range(46)]) + "\n")
    config = BertConfig.from_size("mini", vocab_size=150, max_position_embeddings=64)
    params = init_params(BertForPreTraining(config), jax.random.key(0))
    out = huggingface.save_checkpoint(tmp_path / "hf", config, params, vocab_file=vocab, do_lower_case=False)
    settings = transplant.init_from_settings(out)
    assert settings == {
        "model.size": "mini",
        "model.vocab_size": 150,
        "model.max_position_embeddings": 64,
        "model.type_vocab_size": 2,
        "model.hidden_act": "gelu",
        "data.lower_case": False,
    }
    # A shape that is none of the named sizes cannot start a run: one line naming config.json.
    hf_config = json.loads((out / "config.json").read_text())
    hf_config["num_hidden_layers"] = 3
    (out / "config.json").write_text(json.dumps(hf_config))
    with pytest.raises(CheckpointError, match=r"config.json: a BERT with .* is none of sslm_jax's model sizes"):
        transplant.init_from_settings(out)

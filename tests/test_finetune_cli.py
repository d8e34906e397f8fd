"""End to end on a tiny model: pretrain → `sslm finetune` (init_from the pretraining run) → `sslm eval` →
`sslm predict` → `sslm export-hf` → transformers, plus `sslm fill-mask`, and the one-line errors of bad input.

The pretraining and fine-tuning runs are `_shared_runs.tiny_classifier`, built once per session (test_deploy_cli.py
compresses the same ones); the tests here only read them. The labelled data are rows of the shared SST-2 files with
their labels renamed negative / positive; the dev file has 37 rows, so the last eval batch (8 rows) is padded.
"""

import json
import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

from _shared_runs import DEV_ROWS, write_tsv
from _sslm_runs import sslm, sslm_env, sslm_without_tensorflow
from sslm_jax.config_loading import load_config
from sslm_jax.errors import CheckpointError, DataError, SslmError

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tiny_classifier, tmp_path_factory):
    return {
        "train": tiny_classifier.train,
        "dev": tiny_classifier.dev,
        "dev_rows": tiny_classifier.dev_rows,
        "folder": tmp_path_factory.mktemp("sst2"),  # this file's outputs (the shared run's files are read-only)
    }


@pytest.fixture(scope="module")
def pretrained(tiny_classifier):
    return tiny_classifier.pretrained


@pytest.fixture(scope="module")
def finetuned(tiny_classifier):
    return tiny_classifier.finetuned


@pytest.fixture(scope="module")
def predictions(finetuned, data, tmp_path_factory):
    """`sslm predict` in a process that cannot import TensorFlow (one-shot inference tokenizes on the host); the
    tests below hold its output to `sslm eval` and to transformers."""
    output = data["folder"] / "predictions.jsonl"
    out = sslm_without_tensorflow(tmp_path_factory.mktemp("no_tf"), "predict", f"--workdir={finetuned}",
                                  f"--input={data['dev']}", f"--output={output}")  # fmt: skip
    assert f"wrote {DEV_ROWS} predictions" in out.stdout
    return [json.loads(line) for line in output.read_text().splitlines()]


@pytest.fixture(scope="module")
def exported(finetuned, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("export") / "sst2_classifier"
    sslm("export-hf", f"--workdir={finetuned}", f"--out={out_dir}")
    return out_dir


def _saved_config(workdir) -> dict:
    (step,) = sorted((pathlib.Path(workdir) / "checkpoints").glob("[0-9]*"))
    return json.loads((step / "config" / "config.json").read_text())


def test_finetune_saves_label_names_and_takes_the_model_from_init_from(finetuned):
    saved = _saved_config(finetuned)
    assert saved["task"] == "classify"
    assert saved["data"]["label_names"] == ["negative", "positive"] and saved["data"]["num_labels"] == 2
    assert saved["model"]["size"] == "tiny"  # the pretraining run's, though the command said mini
    logged = [json.loads(line) for line in (finetuned / "metrics.jsonl").read_text().splitlines()]
    train = [m for m in logged if "tokens_per_second" in m]
    evals = [m for m in logged if "eval_examples" in m]
    # The step metrics come from finalize(sums): a real loss and an accuracy, not the zeros of unknown keys.
    assert train and all(m["loss"] > 0.1 and 0 <= m["accuracy"] <= 1 for m in train)
    assert evals and evals[-1]["eval_examples"] == 16  # the smoke config's eval_steps=2 batches of 8


def test_eval_is_exact_and_agrees_with_predict(finetuned, predictions, data, tmp_path):
    """`sslm eval` of a classifier trained on files reads its eval file on the host: it runs where TensorFlow cannot
    be imported (data/host_finetuning.py; tests/test_host_finetuning.py holds its batches to the tf.data ones)."""
    out = sslm_without_tensorflow(tmp_path, "eval", f"--workdir={finetuned}")
    metrics = dict(re.findall(r"(\w+)=([-\d.e+]+)", out.stdout.strip().splitlines()[-1]))
    assert float(metrics["examples"]) == DEV_ROWS  # every dev row once, the padding of the last batch ignored
    labels = [label for _, label in data["dev_rows"]]
    accuracy = np.mean([p["label"] == label for p, label in zip(predictions, labels)])
    loss = -np.mean([math.log(p["probabilities"][label]) for p, label in zip(predictions, labels)])
    assert float(metrics["accuracy"]) == pytest.approx(accuracy, abs=1e-3)
    assert float(metrics["loss"]) == pytest.approx(loss, rel=1e-3)


def test_predict_writes_one_record_per_input(predictions, data):
    assert [p["text"] for p in predictions] == [sentence for sentence, _ in data["dev_rows"]]
    for p in predictions:
        assert set(p["probabilities"]) == {"negative", "positive"}
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)


@pytest.mark.torch
def test_exported_classifier_predicts_the_same_in_transformers(torch, exported, predictions, finetuned):
    import transformers

    model = transformers.BertForSequenceClassification.from_pretrained(exported).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(exported)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    # The exported tokenizer cuts texts where the run does (it cut at the 512 positions: long texts differed).
    assert tokenizer.model_max_length == _saved_config(finetuned)["data"]["max_seq_len"]
    texts = [p["text"] for p in predictions]
    encoded = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**encoded).logits, dim=-1).numpy()
    ours = np.array([[p["probabilities"][name] for name in ("negative", "positive")] for p in predictions])
    np.testing.assert_allclose(ours, probs, atol=1e-4)
    assert [model.config.id2label[i] for i in probs.argmax(-1)] == [p["label"] for p in predictions]


def test_fill_mask_cli_needs_no_tensorflow_and_equals_the_in_graph_tokenizer_and_the_hf_export(pretrained, tmp_path):
    """One-shot `sslm fill-mask` tokenizes on the host (HF `tokenizers`): it runs where TensorFlow cannot be
    imported, and its guesses are those of the in-graph tokenizer's ids (accents and casing included); the model
    exported for Hugging Face gives the same guesses and probabilities."""
    from sslm_jax.inference import fill_mask
    from sslm_jax.inference.export import export_hf
    from sslm_jax.inference.loading import load_model

    texts = ["the [MASK] is closed .", "a [MASK] of [MASK] .", "Héllo, THE [MASK] wörld!"]
    out = sslm_without_tensorflow(tmp_path, "fill-mask", f"--workdir={pretrained}", "--top-k=3", *texts)
    lines = out.stdout.strip().splitlines()
    assert [lines[0], lines[2], lines[5]] == texts
    assert [line.split(":")[0] for line in lines if line.startswith("  ")] == ["  [MASK] 1", "  [MASK] 1", "  [MASK] 2",
                                                                               "  [MASK] 1"]  # fmt: skip
    # "  [MASK] 1: file 0.412, list 0.101, , 0.050": tokens hold no space (and may be ",")
    host = [[token for token, _ in re.findall(r"(\S+) (\d+\.\d{3})(?:, |$)", line.split(": ", 1)[1])]
            for line in lines if line.startswith("  [MASK]")]  # fmt: skip
    live = load_model(pretrained)  # the in-graph WordPieceTokenizer
    assert type(live.tokenizer).__name__ == "WordPieceTokenizer"
    want = fill_mask.fill_mask(live.model, live.params, live.tokenizer, texts, top_k=3, max_seq_len=live.max_seq_len)
    assert host == [[token for token, _ in guesses] for row in want for guesses in row]

    hf_dir = export_hf(pretrained, tmp_path / "hf")
    texts = ["the [MASK] is closed .", "return the [MASK] ."]
    ours = fill_mask.fill_mask_from(pretrained, texts, top_k=4)
    theirs = fill_mask.fill_mask_from(hf_dir, texts, top_k=4)
    for a, b in zip(ours, theirs):
        for mask_a, mask_b in zip(a, b):
            assert [t for t, _ in mask_a] == [t for t, _ in mask_b]
            np.testing.assert_allclose([p for _, p in mask_a], [p for _, p in mask_b], atol=1e-6)
    with pytest.raises(SslmError, match=r"no \[MASK\] in"):
        fill_mask.fill_mask_from(hf_dir, ["nothing to fill"])


def test_eval_of_a_pretraining_run(pretrained):
    from sslm_jax.training.evaluation import evaluate_checkpoint

    step_dir, metrics = evaluate_checkpoint(pretrained, eval_steps=1)
    assert step_dir.name == "4"
    assert {"loss", "mlm_accuracy", "perplexity", "unigram_accuracy"} <= set(metrics)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["mlm_loss"]), rel=1e-4)


def test_fill_mask_and_eval_refuse_what_they_cannot_use(finetuned, tmp_path):
    from sslm_jax.inference.fill_mask import fill_mask_from
    from sslm_jax.training.evaluation import evaluate_checkpoint

    with pytest.raises(SslmError, match="classification model, which has no masked-LM head"):
        fill_mask_from(finetuned, ["the [MASK] ."])
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        evaluate_checkpoint(tmp_path)


# --- Bad input: one clear line, nothing trained -----------------------------------------------------------


def _finetune_in_process(workdir, init_from, train, dev, **overrides):
    from sslm_jax.training.loop import train_and_evaluate

    config = load_config(f"{ROOT}/configs/glue.py:files,smoke")
    config.init_from = str(init_from)
    config.data.train_files = str(train)
    config.data.eval_files = str(dev)
    config.total_steps = 1
    for key, value in overrides.items():
        section, field = key.split("__")
        config[section][field] = value
    return train_and_evaluate(config, workdir)


@pytest.mark.parametrize(
    "case, match",
    [
        ("label_outside_declared", r"dev.tsv:3: label 'neutral' is not one of data.label_names \(negative, positive\)"),
        ("missing_text_column", r"train.tsv:2: no column 'review' \(columns: sentence, label\)"),
        ("missing_label_column", r"train.tsv:2: no column 'stars'"),
        ("empty_eval_file", r"data.eval_files: .*empty_dev.tsv has no examples"),
        ("pair_task_one_column", r"no column 'sentence2' \(columns: sentence, label\)"),
        ("num_labels_other_than_the_data", r"data.num_labels=3 disagrees with the 2 labels"),
    ],
)
def test_bad_fine_tuning_input_is_one_line(case, match, pretrained, data, tmp_path):
    train, dev, overrides = data["train"], data["dev"], {}
    if case == "label_outside_declared":
        dev = write_tsv(tmp_path / "dev.tsv", [("fine", "positive"), ("meh", "neutral")])
        overrides = {"data__label_names": ("negative", "positive")}
    elif case == "missing_text_column":
        overrides = {"data__text_field": "review"}
    elif case == "missing_label_column":
        overrides = {"data__label_field": "stars"}
    elif case == "empty_eval_file":
        dev = write_tsv(tmp_path / "empty_dev.tsv", [])
    elif case == "pair_task_one_column":
        overrides = {"data__text_field": "sentence,sentence2"}
    elif case == "num_labels_other_than_the_data":
        overrides = {"data__num_labels": 3}
    with pytest.raises(SslmError, match=match) as e:
        _finetune_in_process(tmp_path / "run", pretrained, train, dev, **overrides)
    assert "\n" not in str(e.value)
    assert not list((tmp_path / "run").glob("checkpoints/[0-9]*"))


def test_classifier_head_of_another_size_is_one_line(finetuned, data, tmp_path):
    rows = [(s, "negative") for s, _ in data["dev_rows"][:10]] + [(s, label) for s, label in [("ok", "neutral")] * 4]
    rows += [(s, "positive") for s, _ in data["dev_rows"][10:20]]
    train = write_tsv(tmp_path / "three.tsv", rows)
    with pytest.raises(CheckpointError, match=r"classifier head for 2 labels, this task has 3") as e:
        _finetune_in_process(tmp_path / "run", finetuned, train, train)
    assert "\n" not in str(e.value)


def test_predict_errors_are_one_line_with_exit_status_2(finetuned, data, tmp_path):
    from sslm_jax.inference.classify import predict_file

    bad = write_tsv(tmp_path / "reviews.tsv", [("great",)], header=("review",))
    out = sslm("predict", f"--workdir={finetuned}", f"--input={bad}", check=False)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("sslm predict: error:")]
    assert len(errors) == 1 and "no column 'sentence' (it has review)" in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    # The same file with its column named works; a pair of columns for a single-text model does not.
    assert predict_file(finetuned, bad, tmp_path / "out.jsonl", text_fields=["review"]) == 1
    with pytest.raises(DataError, match=r"trained on single texts \(sentence\); .* name 2 column"):
        predict_file(finetuned, data["dev"], text_fields=["sentence", "label"])
    with pytest.raises(SslmError, match="not a classifier"):
        predict_file(_pretrain_dir(finetuned), data["dev"])


def _pretrain_dir(finetuned) -> str:
    return _saved_config(finetuned)["init_from"]


@pytest.mark.torch
def test_the_cold_start_bench_runs(pretrained, torch):
    """bench/cold_start.py (BENCHMARKS.md's cold-start figures) at one round, so that it cannot rot: both sides
    answer, with the same best guess (the same weights)."""
    command = [sys.executable, str(ROOT / "bench" / "cold_start.py"), f"--workdir={pretrained}", "--rounds=1",
               "--warmup=0"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, env=sslm_env())
    assert out.returncode == 0, out.stderr[-3000:]
    guesses = re.findall(r"^(sslm fill-mask|transformers pipeline): answer (.*)$", out.stdout, flags=re.M)
    assert len(guesses) == 2 and guesses[0][1] == guesses[1][1], out.stdout
    assert re.search(r"median \d+\.\d+ \(below 1: ours starts faster\)", out.stdout), out.stdout

"""The SST-2 lift experiment's pieces: its configs validate, and the files it derives from the shared data are
what its docstring says (the experiment itself takes ~25 minutes: `python bench/sst2_lift.py`)."""

import csv
import importlib.util
import pathlib

import pytest

from configs import sst2_lift
from sslm_jax.training import validation

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench" / "sst2_lift.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("sst2_lift_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant", ["pretrain", "finetune", "finetune,full"])
def test_configs_validate(variant):
    config = sst2_lift.get_config(variant)
    validation.validate(config)
    assert config.task == ("pretrain" if variant == "pretrain" else "classify")
    if variant.startswith("finetune"):
        epochs = sst2_lift.FINETUNE_EPOCHS_FULL if "full" in variant else sst2_lift.FINETUNE_EPOCHS_1000
        examples = 67_349 if "full" in variant else 1_000
        assert config.total_steps == epochs * -(-examples // config.batch_size)
        assert config.eval_steps == 0  # all of dev, each example once


@pytest.mark.parametrize("variant", ["", "finetune,smoke", "full"])
def test_unknown_variant_is_refused(variant):
    with pytest.raises(ValueError, match="sst2_lift.py"):
        sst2_lift.get_config(variant)


def test_corpus_holds_every_sentence_and_clean_wikitext(bench, shared_data, tmp_path):
    counts = bench.write_corpus(shared_data, tmp_path / "corpus.txt")
    lines = (tmp_path / "corpus.txt").read_text(encoding="utf-8").splitlines()
    assert counts["sst2_sentences"] == 67_349  # every train row, labels dropped
    assert len(lines) == counts["sst2_sentences"] + counts["wiki_paragraphs"]
    assert all(line.strip() == line and line for line in lines)  # one non-empty document per line
    wiki = lines[counts["sst2_sentences"] :]
    assert not any(marker in line for line in wiki for marker in ("<unk>", "@-@", "@,@", "@.@"))
    assert not any(line.startswith("=") for line in wiki)  # headings dropped


def test_labelled_subset_is_a_seeded_sample_of_train(bench, shared_data, tmp_path):
    info = bench.write_subset(shared_data, tmp_path / "a.tsv", 50, seed=3)
    bench.write_subset(shared_data, tmp_path / "b.tsv", 50, seed=3)
    bench.write_subset(shared_data, tmp_path / "c.tsv", 50, seed=4)
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    assert (tmp_path / "a.tsv").read_bytes() != (tmp_path / "c.tsv").read_bytes()
    with (tmp_path / "a.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    with (shared_data / "sst2" / "train.tsv").open(encoding="utf-8", newline="") as f:
        train = {(r["sentence"], r["label"]) for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}
    assert len(rows) == 50 and info == dict(rows=50, positive=sum(r["label"] == "1" for r in rows))
    assert all((r["sentence"], r["label"]) in train for r in rows)


def test_refuses_a_used_workdir(bench, shared_data, tmp_path, monkeypatch, capsys):
    (tmp_path / "old_run.txt").write_text("keep me")
    monkeypatch.setattr("sys.argv", ["sst2_lift.py", f"--workdir={tmp_path}", f"--data={shared_data}"])
    with pytest.raises(SystemExit) as exit_info:
        bench.main()
    assert exit_info.value.code == 2
    assert "is not empty" in capsys.readouterr().err
    assert (tmp_path / "old_run.txt").read_text() == "keep me"

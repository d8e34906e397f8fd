"""bench/objectives.py's pieces: its configs validate, its held-out text is unseen, and (slow) the whole protocol
runs end to end at a smoke scale. The measurement itself takes hours: `python bench/objectives.py`."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

from _sslm_runs import session_compile_cache, sslm_env
from configs import objectives
from sslm_jax.data.sources import sentences
from sslm_jax.training import validation

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "sst2" / "train.tsv").is_file(), reason=f"no shared data at {DATA}")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("objectives_bench", REPO / "bench" / "objectives.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("variant", [f"pretrain,{o}" for o in objectives.OBJECTIVES] + ["finetune"])
def test_configs_validate_and_differ_only_in_the_objective(variant):
    config = objectives.get_config(variant)
    validation.validate(config)
    base = objectives.CALIBRATED_AS.get(variant.partition(",")[2])
    if base:  # a learning-rate or temperature variant: its base objective's config but for those (same arithmetic)
        other = objectives.get_config(f"pretrain,{base}")
        assert config.learning_rate != other.learning_rate
        for field in objectives.SAME_ARITHMETIC:
            other[field] = config[field]
        assert config.to_dict() == other.to_dict()
    elif variant.startswith("pretrain"):
        reference = objectives.get_config("pretrain,mlm_token")
        for field in ("max_seq_len", "batch_size", "learning_rate", "vocab_size", "train_files", "segment_attention"):
            section = config.data if field in config.data else config
            assert section[field] == (reference.data if field in reference.data else reference)[field]
        assert config.model.size == reference.model.size


@pytest.mark.parametrize("variant", ["", "pretrain", "pretrain,bert", "finetune,mlm_token"])
def test_unknown_variant_is_refused(variant):
    with pytest.raises(ValueError, match="objectives.py"):
        objectives.get_config(variant)


@needs_data
def test_held_out_text_shares_no_sentence_with_training(bench, tmp_path):
    stats = bench.write_corpus(DATA, tmp_path, smoke=False)
    train = (tmp_path / "corpus_train.txt").read_text().splitlines()
    held_out = (tmp_path / "corpus_eval.txt").read_text().splitlines()
    assert stats["eval_lines"] == len(held_out) > 50 and stats["train_lines"] == len(train)
    seen = {s.lower() for line in train for s in sentences(line)}
    assert not any(s.lower() in seen for line in held_out for s in sentences(line))
    assert not set(held_out) & set(train)


@needs_data
@pytest.mark.slow
def test_the_protocol_runs_end_to_end_at_smoke_scale(tmp_path):
    command = [sys.executable, str(REPO / "bench" / "objectives.py"), f"--workdir={tmp_path}", "--smoke",
               "--budgets=0.1,0.2", "--draws=1", "--objectives=electra", "--poolings=cls"]  # fmt: skip
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1500,
                         env=sslm_env(cache_dir=session_compile_cache()))  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for start in ("electra@0.1", "electra@0.2", "random"):
        for pooling in ("mean", "cls"):  # the probes score both poolings; only [CLS] classifiers were fine-tuned
            assert 0.0 <= results[f"probe/{start}/0"][pooling] <= 1.0
        assert 0.0 <= results[f"finetune/{start}/cls/0"] <= 1.0 and f"finetune/{start}/mean/0" not in results
        (row,) = [line for line in out.stdout.splitlines() if line.startswith(f"| {start} |")]
        assert row.split(" | ")[-2] == "-", row  # the fine-tune-mean column
    points = results["pretrain/electra"]["points"]
    assert [p["budget"] for p in points.values()] == [0.1, 0.2]
    assert all(p["cpu_minutes"] > 0 and "rtd_accuracy" in p for p in points.values())
    assert "TF-IDF" in out.stdout

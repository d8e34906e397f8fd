"""End to end on a tiny GPT: `sslm pretrain --config=configs/gpt_demo.py:smoke` (BPE trained into the run) →
`sslm generate` (seeded, JSON lines) → `sslm finetune --config=configs/causal_sft.py:smoke`, and the one-line errors
of bad input. The export to `transformers` and its generation are README.md's GPT example, run and checked by
tests/test_readme.py."""

import json
import pathlib
import re

import pytest

from _sslm_runs import assert_cli_error, sslm, sslm_without_tensorflow, tree_digest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "gpt_demo.py"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("gpt") / "run"
    out = sslm("pretrain", f"--config={SMOKE}:smoke", f"--workdir={workdir}")
    assert out.stdout.count("sample: ") == 3, out.stdout  # the end-of-run greedy samples
    return workdir


def test_pretraining_reports_perplexity_against_the_unigram_baseline(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    assert {"loss", "next_token_accuracy", "eval_perplexity", "eval_unigram_perplexity"} <= set(last)
    assert (run / "vocab.json").is_file() and (run / "merges.txt").is_file()
    assert {"merges.txt", "vocab.json"} <= {p.name for p in (run / "checkpoints" / "6" / "vocab").iterdir()}


def test_generate_is_seeded_and_writes_json_lines(run, tmp_path):
    args = ["generate", f"--workdir={run}", "def f(x):", "import", "--max-new-tokens=6", "--temperature=0.9",
            "--top-k=20", "--num-samples=2"]  # fmt: skip
    first, again = sslm(*args, "--seed=1").stdout, sslm(*args, "--seed=1").stdout
    assert first == again and first.count("---") == 4
    out = tmp_path / "samples.jsonl"
    sslm(*args, "--seed=1", f"--output={out}")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == ["def f(x):", "import"] and all(len(r["samples"]) == 2 for r in rows)
    written = out.read_text()  # asked again for the same file: refused before generating, the file intact
    assert_cli_error(sslm(*args, f"--output={out}", check=False), "generate", "already exists: name a new file")
    assert_cli_error(sslm(*args, "--temperature=-1", check=False), "generate", "--temperature=-1.0 must be >= 0")
    assert out.read_text() == written


def _metrics(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(\w+)=([-\d.e+]+)", line)}


def test_prompt_to_response_finetuning_and_its_eval_without_tensorflow(run, tmp_path):
    """The fine-tune's final eval and `sslm eval` of its checkpoint, in a process that cannot import TensorFlow (the
    eval rows are numpy batches built on the host, tokenized by the host BPE), report the same metrics."""
    rows = [{"prompt": f"question {i}:", "response": f" answer {i % 3}"} for i in range(24)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = sslm("finetune", f"--config={ROOT / 'configs' / 'causal_sft.py'}:smoke", f"--workdir={tmp_path / 'sft'}",
               f"--config.init_from={run}", f"--config.data.train_files={data}")  # fmt: skip
    assert "final eval:" in out.stdout and "perplexity=" in out.stdout and out.stdout.count("sample: ") == 2
    final = _metrics(next(line for line in out.stdout.splitlines() if line.startswith("final eval:")))
    (tmp_path / "no_tf").mkdir()
    evaluated = sslm_without_tensorflow(tmp_path / "no_tf", "eval", f"--workdir={tmp_path / 'sft'}")
    again = _metrics(evaluated.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    assert again.keys() == final.keys() and "perplexity" in again
    assert again == pytest.approx(final, rel=1e-3)


def test_bad_input_is_one_line_and_writes_nothing(run, tmp_path):
    before = tree_digest(run)
    long_prompt = " ".join(["word"] * 300)
    assert_cli_error(sslm("generate", f"--workdir={run}", long_prompt, check=False), "generate", "exceeds the model's context")
    assert_cli_error(sslm("generate", f"--workdir={run}", "x", "--top-p=0", check=False), "generate", "--top-p=0.0")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a film\n")
    out = sslm("predict", f"--workdir={run}", f"--input={prompts}", check=False)  # says what to do with a GPT run
    assert_cli_error(out, "predict", "holds a causal language model, not a classifier: `sslm generate`")
    assert tree_digest(run) == before

    bpe = tmp_path / "bpe"
    bpe.mkdir()
    (bpe / "vocab.json").write_text((run / "vocab.json").read_text())
    workdir = tmp_path / "never"
    out = sslm("pretrain", f"--config={SMOKE}:smoke", f"--workdir={workdir}", f"--config.data.vocab_path={bpe}",
               check=False)  # fmt: skip
    assert_cli_error(out, "pretrain", "merges.txt does not exist")
    assert not workdir.exists()

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n" + json.dumps({"prompt": "c"}) + "\n")
    out = sslm("finetune", f"--config={ROOT / 'configs' / 'causal_sft.py'}:smoke", f"--workdir={tmp_path / 'sft'}",
               f"--config.init_from={run}", f"--config.data.train_files={bad}", check=False)  # fmt: skip
    assert_cli_error(out, "finetune", "bad.jsonl:2 has no text field 'response'")


def test_generate_on_a_bert_model_is_refused(tmp_path):
    import numpy as np

    import jax
    from sslm_jax.interop import huggingface
    from sslm_jax.models import bert

    tokens = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(tokens) + "\n")
    config = bert.BertConfig.from_size("tiny", vocab_size=len(tokens), max_position_embeddings=16)
    params = jax.tree.map(np.asarray, bert.init_params(bert.BertForPreTraining(config), jax.random.key(0)))
    out_dir = huggingface.save_checkpoint(tmp_path / "bert", config, params, vocab_file=vocab)
    assert_cli_error(sslm("generate", f"--workdir={out_dir}", "a b", check=False), "generate", "cannot generate text")


@pytest.mark.torch
def test_the_cold_start_bench_runs_for_generate(run, torch):
    """bench/cold_start.py --task=generate (BENCHMARKS.md's cold-start figures) at one round, so that it cannot rot:
    `sslm generate` and the transformers text-generation pipeline on the export give the same greedy text."""
    import re
    import subprocess
    import sys

    from _sslm_runs import sslm_env

    command = [sys.executable, str(ROOT / "bench" / "cold_start.py"), "--task=generate", f"--workdir={run}",
               "--rounds=1", "--warmup=0"]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, env=sslm_env())
    assert out.returncode == 0, out.stderr[-3000:]
    answers = re.findall(r"^(sslm generate|transformers pipeline): answer (.*)$", out.stdout, flags=re.M)
    assert len(answers) == 2 and answers[0][1] == answers[1][1], out.stdout
    assert answers[0][1].startswith("'def read_file(path):"), out.stdout
    assert re.search(r"median \d+\.\d+ \(below 1: ours starts faster\)", out.stdout), out.stdout

"""Does our pretraining pay on SST-2? Pretrain, fine-tune on 1,000 labels, compare with random initialisation.

    python bench/sst2_lift.py --workdir=/tmp/sslm_sst2_lift            # the whole experiment (~30 min, 2 cores)
    python bench/sst2_lift.py --workdir=/tmp/x --pretrain-steps=300 --no-full   # a quick look at the plumbing

Runs the `sslm` CLI with `configs/sst2_lift.py` (its docstring explains the recipe) in five runs, each a
subprocess whose command line is printed and whose log goes to WORKDIR/<run>.log:
  1. pretrain   the model on WORKDIR/corpus.txt: SST-2 train sentences (labels ignored) + WikiText-2 valid;
  2. ft_1000    fine-tune that checkpoint on 1,000 SST-2 train rows (WORKDIR/train_1000.tsv), score dev.tsv;
  3. rand_1000  the same architecture, vocabulary and fine-tuning budget from random initialisation;
  4. ft_full    fine-tune the checkpoint on all 67,349 train rows, and rand_full from random initialisation
               (both skipped with --no-full).
The data is read in place from --data (default ../shared/data, beside the checkout); only the derived
corpus.txt and train_1000.tsv are written, into WORKDIR. Ends with a markdown table: dev accuracy after the
last step (no selection on dev) and after each epoch, and each run's wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import random
import re
import subprocess
import sys
import time
from typing import NoReturn

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = "configs/sst2_lift.py"
PRETRAIN_LIMIT_S = 15 * 60


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="a new (or empty) folder for the corpus, the runs and the logs")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    p.add_argument("--labels", type=int, default=1000, help="labelled SST-2 train rows for the small fine-tunes")
    p.add_argument("--seed", type=int, default=0, help="draws the labelled rows; also the runs' config.seed")
    p.add_argument(
        "--pretrain-steps", type=int, default=0, help="override the config's total_steps, warmup an eighth (0: keep)"
    )
    p.add_argument("--size", default="", help="override the model size (pretraining and baseline)")
    p.add_argument("--no-full", action="store_true", help="skip the fine-tune on the full training set")
    return p.parse_args()


def fail(message: str) -> NoReturn:
    print(f"sst2_lift: {message}", file=sys.stderr)
    sys.exit(2)


# WikiText marks rare words as <unk> and splits hyphens/number separators as " @-@ ", " @,@ ", " @.@ ".
_WIKI_SEPARATOR = re.compile(r"\s*@([-,.])@\s*")


def missing_data(data: pathlib.Path) -> str | None:
    """The problem (one line) if `data` lacks a shared file these benches read, else None."""
    for needed in ("sst2/train.tsv", "sst2/dev.tsv", "wikitext2/valid.txt"):
        if not (data / needed).is_file():
            return f"{data / needed} is missing: pass --data=the shared data folder (see its README)"
    return None


def wiki_paragraphs(data: pathlib.Path) -> list[str]:
    """WikiText-2 valid's paragraphs, headings dropped, <unk> removed and its @-@ separators joined."""
    paragraphs = []
    for line in (data / "wikitext2" / "valid.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("="):  # " = Title = " lines are headings, not text
            continue
        line = _WIKI_SEPARATOR.sub(r"\1", line.replace("<unk>", ""))
        paragraphs.append(re.sub(r"\s+", " ", line).strip())
    return paragraphs


def write_corpus(data: pathlib.Path, out: pathlib.Path) -> dict[str, int]:
    """One document per line: the SST-2 train sentences, then WikiText-2 valid's paragraphs (headings dropped)."""
    sentences = [row["sentence"] for row in _tsv(data / "sst2" / "train.tsv")]
    paragraphs = wiki_paragraphs(data)
    out.write_text("".join(s + "\n" for s in sentences + paragraphs), encoding="utf-8")
    words = sum(len(s.split()) for s in sentences + paragraphs)
    return dict(sst2_sentences=len(sentences), wiki_paragraphs=len(paragraphs), words=words)


def write_subset(data: pathlib.Path, out: pathlib.Path, n: int, seed: int) -> dict[str, int]:
    rows = list(_tsv(data / "sst2" / "train.tsv"))
    chosen = random.Random(seed).sample(rows, n)
    with out.open("w", encoding="utf-8", newline="") as f:
        f.write("sentence\tlabel\n")
        f.writelines(f"{r['sentence']}\t{r['label']}\n" for r in chosen)
    return dict(rows=n, positive=sum(r["label"] == "1" for r in chosen))


def _tsv(path: pathlib.Path):
    with path.open(encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)


def run(name: str, args: list[str], workdir: pathlib.Path) -> float:
    """Runs `python -m sslm_jax ARGS` from the repository root; returns its wall time. Fails on a non-zero exit."""
    command = [sys.executable, "-m", "sslm_jax", *args]
    print(f"# {name}: sslm {' '.join(args)}", flush=True)
    log = workdir / f"{name}.log"
    start = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.call(command, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - start
    if code:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:]
        fail(f"{name} exited {code} after {elapsed:.0f} s ({tail[0] if tail else 'no output'}); see {log}")
    print(f"#   {elapsed:.0f} s", flush=True)
    return elapsed


def evals(run_dir: pathlib.Path, key: str) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[key]) for r in records if key in r]


def main():
    args = _parse()
    data = pathlib.Path(args.data)
    if problem := missing_data(data):
        fail(problem)
    work = pathlib.Path(args.workdir).resolve()
    if work.exists() and any(work.iterdir()):
        fail(f"{work} is not empty: give a new --workdir (this bench never reuses or overwrites runs)")
    work.mkdir(parents=True, exist_ok=True)

    corpus, subset = work / "corpus.txt", work / f"train_{args.labels}.tsv"
    print(f"# corpus: {write_corpus(data, corpus)}; labelled subset: {write_subset(data, subset, args.labels, args.seed)}")
    dev, full = str(data / "sst2" / "dev.tsv"), str(data / "sst2" / "train.tsv")
    common = [f"--config.seed={args.seed}"]
    size = [f"--config.model.size={args.size}"] if args.size else []
    pre_dir = work / "pretrain"
    # A shorter (or longer) pretraining keeps the config's warmup fraction: 150 of 1,200 steps.
    steps = []
    if args.pretrain_steps:
        steps = [f"--config.total_steps={args.pretrain_steps}", f"--config.warmup_steps={args.pretrain_steps // 8}"]

    times = {}
    times["pretrain"] = run(
        "pretrain",
        ["pretrain", f"--config={CONFIG}:pretrain", f"--workdir={pre_dir}", f"--config.data.train_files={corpus}",
         *steps, *size, *common],
        work,
    )  # fmt: skip
    # Each fine-tune: from the checkpoint, or from random initialisation with the same vocabulary (and size).
    init = {
        "pretrained": [f"--config.init_from={pre_dir}"],
        "random": [f"--config.data.vocab_path={pre_dir / 'vocab.txt'}", *size],
    }
    runs = {  # name -> (config variant, labelled train file, init, labels)
        "ft_1000": ("finetune", subset, "pretrained", args.labels),
        "rand_1000": ("finetune", subset, "random", args.labels),
    }
    if not args.no_full:
        runs["ft_full"] = ("finetune,full", full, "pretrained", 67_349)
        runs["rand_full"] = ("finetune,full", full, "random", 67_349)
    for name, (variant, train_files, start, _) in runs.items():
        times[name] = run(
            name,
            ["finetune", f"--config={CONFIG}:{variant}", f"--workdir={work / name}", *init[start],
             f"--config.data.train_files={train_files}", f"--config.data.eval_files={dev}", *common],
            work,
        )  # fmt: skip

    pre = evals(pre_dir, "eval_mlm_accuracy")
    print(f"\npretraining: {pre[-1][0]} steps in {times['pretrain']:.0f} s "
          f"({'within' if times['pretrain'] <= PRETRAIN_LIMIT_S else 'OVER'} the 15-minute limit); held-out "
          f"masked-token accuracy {pre[-1][1]:.3f}")  # fmt: skip
    print("\n| run | init | labels | dev accuracy (last step) | after each epoch | wall s |")
    print("|---|---|---|---|---|---|")
    accuracy = {}
    for name, (_, _, start, labels) in runs.items():
        history = evals(work / name, "eval_accuracy")
        accuracy[name] = history[-1][1]
        epochs = " ".join(f"{a:.3f}" for _, a in history)
        print(f"| {name} | {start} | {labels:,} | {accuracy[name]:.3f} | {epochs} | {times[name]:.0f} |")
    lift = 100 * (accuracy["ft_1000"] - accuracy["rand_1000"])
    print(f"\nlift from pretraining with {args.labels} labels: {lift:+.1f} points "
          f"(targets: >= 80 % dev accuracy and >= 10 points)")  # fmt: skip


if __name__ == "__main__":
    main()

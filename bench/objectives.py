"""Which self-supervised objective learns most per CPU-minute? BERT masked LM (token, whole-word and span masking)
and ELECTRA against random initialisation, at equal CPU time, measured by a linear probe and a fine-tune on SST-2.

    python bench/objectives.py --workdir=/tmp/sslm_objectives                      # budgets 10 and 30 CPU-minutes
    python bench/objectives.py --workdir=/tmp/x --budgets=1 --draws=1 --objectives=mlm_token,electra --smoke
    python bench/objectives.py --workdir=/tmp/x --poolings=mean                    # fine-tune mean-pooled only

Protocol (the rules of the comparison, each a choice made here):
- Corpus: every SST-2 train sentence (labels dropped) and WikiText-2 valid's paragraphs, minus 5 % of the
  paragraphs held out; the held-out text keeps only sentences that no training line contains, so held-out
  masked-token accuracy measures unseen text (SST-2 train rows are overlapping phrases of the same sentences:
  any split of them leaks). One WordPiece vocabulary, trained once on the training text, serves every run.
- Compute: a CPU-minute is 60 s of this process's CPU time (all threads: the input pipeline counts), read from
  the loop's `cpu_seconds_per_step`. On 2 idle cores one wall minute is about 2 CPU-minutes. A short calibration
  run measures each objective's CPU seconds per step; its run then gets the steps that fill the largest budget,
  with a checkpoint and a held-out evaluation at each budget (one run, one learning-rate schedule: the smaller
  budgets are points along it). The table reports the CPU time each checkpoint really used.
- Draws: `--draws` different 1,000-row samples of SST-2 train (seeds 0, 1, ...); SST-2 dev (872 rows) scores.
  Every figure is the mean ± sd over the draws.
- Linear probe: frozen features (the last layer mean-pooled over real tokens, and its [CLS] row), standardised,
  then an L2 logistic regression whose C is chosen by 5-fold cross-validation on the 1,000 labelled rows only.
- Fine-tune: `configs/objectives.py:finetune` (configs/sst2_lift.py's recipe: 10 epochs, lr 2e-4) from each
  checkpoint with a mean-pooled and a [CLS] classifier (`--poolings`); dev accuracy after the last step (no
  selection on dev).
- References: random initialisation (BERT-tiny, the same vocabulary) through the same probe and fine-tune, and a
  TF-IDF uni+bigram logistic regression on the same 1,000 rows.

Everything lands in WORKDIR (corpus files, vocab.txt, one run per objective, results.json). A rerun with the same
WORKDIR and settings skips what results.json already holds, so an interrupted bench resumes. Needs scikit-learn
(the `test` extra) for the probe and the TF-IDF reference. Ends with a markdown table (BENCHMARKS.md records it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import pathlib
import random
import statistics
import sys
import time
import warnings
from typing import NoReturn

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import sst2_lift  # noqa: E402 (after the path: the shared-data readers)

LABELS = 1000
CALIBRATION_STEPS, CALIBRATION_LOG = 40, 10
SMOKE_CALIBRATION_STEPS, SMOKE_CALIBRATION_LOG = 12, 3  # a median of 3 intervals: enough to size the smoke runs
POOLINGS = ("mean", "cls")


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="folder for the corpus, the runs and results.json (resumable)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    p.add_argument("--budgets", default="10,30", help="CPU-minutes, comma-separated, each a multiple of the first")
    p.add_argument("--draws", type=int, default=3, help="1,000-row SST-2 draws (seeds 0..draws-1)")
    p.add_argument("--objectives", default="mlm_token,mlm_word,mlm_span,electra")
    p.add_argument("--poolings", default=",".join(POOLINGS),
                   help="the fine-tuned classifiers' poolings (the probes score both from the same features)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny corpus, vocabulary and fine-tunes, 200 dev rows: checks the plumbing")  # fmt: skip
    return p.parse_args()


def fail(message: str) -> NoReturn:
    print(f"objectives: {message}", file=sys.stderr)
    sys.exit(2)


# --- Data (the shared files, read as bench/sst2_lift.py reads them) ----------------------------------------------

def _tsv(path: pathlib.Path) -> list[dict[str, str]]:
    return list(sst2_lift._tsv(path))  # read more than once below: a list, not sst2_lift's generator


def write_corpus(data: pathlib.Path, work: pathlib.Path, *, smoke: bool) -> dict[str, int]:
    """corpus_train.txt and corpus_eval.txt, one document per line; held-out text shares no sentence with training."""
    from sslm_jax.data.sources import sentences

    sst = [row["sentence"] for row in _tsv(data / "sst2" / "train.tsv")]
    paragraphs = sst2_lift.wiki_paragraphs(data)
    held = set(random.Random(0).sample(range(len(paragraphs)), len(paragraphs) // 20))
    train = sst + [p for i, p in enumerate(paragraphs) if i not in held]
    if smoke:
        train = train[::40]
    seen = {s.lower() for line in train for s in sentences(line)}
    seen_text = "\n".join(train).lower()  # SST-2 rows are phrases: a held-out sentence inside one is seen text too
    held_out = []
    for i in sorted(held):
        kept = [s for s in sentences(paragraphs[i]) if s.lower() not in seen and s.lower() not in seen_text]
        if kept:
            held_out.append(" ".join(kept))
    (work / "corpus_train.txt").write_text("".join(t + "\n" for t in train), encoding="utf-8")
    (work / "corpus_eval.txt").write_text("".join(t + "\n" for t in held_out), encoding="utf-8")
    return dict(train_lines=len(train), eval_lines=len(held_out), train_words=sum(len(t.split()) for t in train))


# --- Runs (in this process: the CPU clock and the compiled functions stay in one place) -------------------------


@contextlib.contextmanager
def _quiet():
    """Training prints a progress bar and fill-mask lines; the bench prints its own lines."""
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        absl_logging.set_verbosity(level)


def train(config, workdir: pathlib.Path) -> dict[str, float]:
    from sslm_jax.training.loop import train_and_evaluate

    with _quiet():
        return train_and_evaluate(config, workdir)


def records(run_dir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def pretrain_config(objective: str, work: pathlib.Path, *, smoke: bool):
    from configs import objectives

    c = objectives.get_config(f"pretrain,{objective}")
    c.data.train_files = str(work / "corpus_train.txt")
    c.data.eval_files = str(work / "corpus_eval.txt")
    c.data.vocab_path = str(work / "vocab.txt")
    if smoke:
        c.batch_size, c.data.shuffle_buffer, c.eval_steps = 16, 200, 2
    return c


def cpu_seconds_per_step(objective: str, work: pathlib.Path, *, smoke: bool) -> float:
    """The median CPU seconds per step of a short run, leaving out its first interval (compilation)."""
    c = pretrain_config(objective, work, smoke=smoke)
    steps, log = (SMOKE_CALIBRATION_STEPS, SMOKE_CALIBRATION_LOG) if smoke else (CALIBRATION_STEPS, CALIBRATION_LOG)
    c.total_steps, c.warmup_steps, c.log_every_steps = steps, min(5, steps // 2), log
    c.eval_every_steps = c.checkpoint_every_steps = 10 * steps
    train(c, work / "calibration" / objective)
    rates = [r["cpu_seconds_per_step"] for r in records(work / "calibration" / objective) if "cpu_seconds_per_step" in r]
    return statistics.median(rates[1:])


def pretrain(objective: str, work: pathlib.Path, budgets: list[float], budget_steps: list[int], *, smoke: bool):
    c = pretrain_config(objective, work, smoke=smoke)
    c.total_steps = budget_steps[-1]
    c.warmup_steps = max(1, c.total_steps // 8)  # configs/sst2_lift.py's fraction: 150 of 1,200
    c.checkpoint_every_steps = c.eval_every_steps = budget_steps[0]
    c.log_every_steps = max(1, budget_steps[0] // 10)
    c.keep_checkpoints = len(budget_steps) + 1
    run_dir = work / "runs" / objective
    start = time.perf_counter()
    train(c, run_dir)
    wall = time.perf_counter() - start
    history = records(run_dir)
    out = {"wall_s": wall, "points": {}}
    for budget, steps in zip(budgets, budget_steps):
        used, last = 0.0, 0
        for r in history:  # CPU time actually spent: each logged interval's rate times its steps
            if "cpu_seconds_per_step" in r and r["step"] <= steps:
                used += r["cpu_seconds_per_step"] * (r["step"] - last)
                last = r["step"]
        held = next((r for r in history if r["step"] == steps and "eval_mlm_accuracy" in r), {})
        out["points"][str(steps)] = {
            "budget": budget,
            "cpu_minutes": used / 60,
            **{k.removeprefix("eval_"): v for k, v in held.items() if k.startswith("eval_")},
        }
    return out


def finetune(init: dict, draw: pathlib.Path, dev: pathlib.Path, pooling: str, seed: int, work: pathlib.Path, name: str,
             *, smoke: bool) -> float:  # fmt: skip
    """Dev accuracy after fine-tuning on `draw` from `init` (init_from a checkpoint, or a random start's vocab)."""
    from configs import objectives

    c = objectives.get_config("finetune")
    c.update_from_flattened_dict(init)
    c.model.pooling = pooling
    c.seed = seed
    c.data.train_files, c.data.eval_files = str(draw), str(dev)
    if smoke:
        c.total_steps, c.warmup_steps, c.eval_every_steps = 4, 1, 4
    return train(c, work / "finetunes" / name)["accuracy"]


# --- Probe ----------------------------------------------------------------------------------------------------


def features(start: dict, texts: list[str], work: pathlib.Path) -> dict:
    """Frozen last-layer features of `texts`: {"mean": [N, H], "cls": [N, H]}."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from sslm_jax.data import tokenizers
    from sslm_jax.models import registry

    if "init_from" in start:
        from sslm_jax.inference.loading import load_model

        loaded = load_model(start["init_from"])
        family = registry.get(loaded.run_config.model.family)
        encoder = family.model(loaded.model_config, "encoder")
        params, tok, max_len = loaded.params[family.backbone], loaded.tokenizer, loaded.max_seq_len
    else:
        from configs import objectives

        c = objectives.get_config("pretrain,mlm_token")
        c.data.vocab_path = start["data.vocab_path"]
        tok = tokenizers.load(c.data, pathlib.Path(c.data.vocab_path))
        family = registry.get("bert")
        encoder = family.model(family.config_for(c.model, tok.vocab_size), "encoder")
        params = jax.jit(encoder.init)(jax.random.key(start["seed"]), jnp.zeros((1, 8), jnp.int32))["params"]
        max_len = c.data.max_seq_len

    @jax.jit
    def pooled(params, ids, mask):
        out = encoder.apply({"params": params}, ids, attention_mask=mask)
        hidden = (out[0] if isinstance(out, tuple) else out).astype(jnp.float32)
        weights = mask[..., None].astype(jnp.float32)
        return jnp.sum(hidden * weights, 1) / jnp.sum(weights, 1), hidden[:, 0]

    rows = [[tok.cls_id, *np.asarray(p).tolist()[: max_len - 2], tok.sep_id] for p in tok.tokenize(texts).to_list()]
    batch = 256  # one compiled shape: the last batch is padded with empty rows
    means, firsts = [], []
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        ids = np.full((batch, max_len), tok.pad_id, np.int32)
        lengths = np.ones(batch, np.int32)  # empty rows keep their [CLS] slot: no division by zero
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)], lengths[row] = seq, len(seq)
        mask = (np.arange(max_len)[None, :] < lengths[:, None]).astype(np.int32)
        mean, first = pooled(params, ids, mask)
        means.append(np.asarray(mean)[: len(chunk)])
        firsts.append(np.asarray(first)[: len(chunk)])
    return {"mean": np.concatenate(means), "cls": np.concatenate(firsts)}


def _logistic_cv():
    """L2 logistic regression, C from 10 values by 5-fold cross-validated accuracy."""
    from sklearn.linear_model import LogisticRegressionCV

    return LogisticRegressionCV(Cs=10, cv=5, max_iter=3000, scoring="accuracy")


def _fit_score(model, train_x, train_y, dev_x, dev_y) -> float:
    with warnings.catch_warnings():  # scikit-learn 1.8+ announces changes of LogisticRegressionCV's defaults
        warnings.simplefilter("ignore", FutureWarning)
        return float(model.fit(train_x, train_y).score(dev_x, dev_y))


def probe(train_x, train_y, dev_x, dev_y) -> float:
    """Dev accuracy of an L2 logistic regression on standardised features, C chosen by 5-fold CV on train only."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return _fit_score(make_pipeline(StandardScaler(), _logistic_cv()), train_x, train_y, dev_x, dev_y)


def tfidf(train_texts, train_y, dev_texts, dev_y) -> float:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), _logistic_cv())
    return _fit_score(model, train_texts, train_y, dev_texts, dev_y)


# --- Driver ---------------------------------------------------------------------------------------------------


class Results:
    """results.json: what is done, keyed by stage; each stage is computed once."""

    def __init__(self, path: pathlib.Path, settings: dict):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {"settings": settings}
        if self.data["settings"] != settings:
            fail(f"{path} was made with {self.data['settings']}, not {settings}: give a new --workdir")

    def get(self, key: str, compute):
        if key not in self.data:
            start = time.perf_counter()
            self.data[key] = compute()
            print(f"# {key}: {json.dumps(self.data[key])[:160]} ({time.perf_counter() - start:.0f} s)", flush=True)
            self.path.write_text(json.dumps(self.data, indent=1))
        return self.data[key]


def _stats(values: list[float]) -> str:
    if not values:  # a pooling left out by --poolings
        return "-"
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {sd:.3f}"


def main():
    args = _parse()
    data = pathlib.Path(args.data)
    if problem := sst2_lift.missing_data(data):
        fail(problem)
    try:
        budgets = [float(b) for b in args.budgets.split(",")]
        from configs import objectives as objective_configs

        names = objective_configs.validate_objectives([o for o in args.objectives.split(",") if o])
    except ValueError as e:
        fail(f"--budgets/--objectives: {e}")
    if any(b <= 0 or abs(b / budgets[0] - round(b / budgets[0])) > 1e-9 for b in budgets) or budgets != sorted(budgets):
        fail(f"--budgets={args.budgets}: positive, increasing, each a multiple of the first")
    work = pathlib.Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    poolings = [p for p in args.poolings.split(",") if p]
    if not poolings or set(poolings) - set(POOLINGS):
        fail(f"--poolings={args.poolings}: a comma-separated subset of {','.join(POOLINGS)}")
    settings = dict(budgets=budgets, draws=args.draws, smoke=args.smoke)
    results = Results(work / "results.json", settings)

    results.get("corpus", lambda: write_corpus(data, work, smoke=args.smoke))
    for seed in range(args.draws):
        sst2_lift.write_subset(data, work / f"draw_{seed}.tsv", LABELS, seed)

    def make_vocab():
        from sslm_jax.data.tokenizer import train_wordpiece

        size = 1000 if args.smoke else 8192
        with _quiet():
            train_wordpiece(str(work / "corpus_train.txt"), vocab_size=size, out_dir=work)
        return {"vocab_size": size}

    results.get("vocab", make_vocab)

    starts: dict[str, dict] = {}  # start name -> init settings for the fine-tune config
    for objective in names:
        measured = objective_configs.CALIBRATED_AS.get(objective, objective)
        rate = results.get(f"calibrate/{measured}", lambda: cpu_seconds_per_step(measured, work, smoke=args.smoke))
        unit = max(1, round(budgets[0] * 60 / rate))  # steps per first budget
        steps = [unit * round(b / budgets[0]) for b in budgets]
        results.get(f"pretrain/{objective}", lambda: pretrain(objective, work, budgets, steps, smoke=args.smoke))
        for budget, step in zip(budgets, steps):
            starts[f"{objective}@{budget:g}"] = {"init_from": str(work / "runs" / objective / "checkpoints" / str(step))}
    starts["random"] = {"data.vocab_path": str(work / "vocab.txt")}

    dev_file = data / "sst2" / "dev.tsv"
    if args.smoke:  # checks the plumbing, not the figures: 200 dev rows score as the 872 do, in a quarter of the time
        rows = dev_file.read_text(encoding="utf-8").splitlines(keepends=True)
        dev_file = work / "dev_smoke.tsv"
        dev_file.write_text("".join(rows[:201]), encoding="utf-8")
    dev = _tsv(dev_file)
    dev_texts, dev_y = [r["sentence"] for r in dev], [int(r["label"]) for r in dev]
    draws = {seed: _texts_labels(work / f"draw_{seed}.tsv") for seed in range(args.draws)}
    table: dict[str, dict[str, list[float]]] = {name: {} for name in starts}
    # Every probe first (seconds each), then the fine-tunes (minutes each) with random init and the largest budget
    # leading: an interrupted bench has already answered both targets' comparisons when it stops.
    for name, start in starts.items():
        for seed, (texts, y) in draws.items():

            def run_probe():
                init = {**start, "seed": seed}
                train_f, dev_f = features(init, texts, work), features(init, dev_texts, work)
                return {p: probe(train_f[p], y, dev_f[p], dev_y) for p in POOLINGS}

            got = results.get(f"probe/{name}/{seed}", run_probe)
            for p in POOLINGS:
                table[name].setdefault(f"probe_{p}", []).append(got[p])
    reference = [
        results.get(f"tfidf/{seed}", lambda: tfidf(*draws[seed], dev_texts, dev_y))
        for seed in range(args.draws)
    ]
    largest = f"@{budgets[-1]:g}"
    for name in sorted(starts, key=lambda n: (n != "random", not n.endswith(largest))):
        for p in poolings:
            for seed in draws:
                acc = results.get(
                    f"finetune/{name}/{p}/{seed}",
                    lambda: finetune(starts[name], work / f"draw_{seed}.tsv", dev_file, p, seed, work,
                                     f"{name}_{p}_{seed}".replace("@", "_"), smoke=args.smoke),
                )
                table[name].setdefault(f"finetune_{p}", []).append(acc)
    print_table(results.data, table, reference, names)


def _texts_labels(path: pathlib.Path):
    rows = _tsv(path)
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def print_table(data: dict, table: dict, reference: list[float], names) -> None:
    print(f"\ncorpus: {data['corpus']}; vocabulary {data['vocab']['vocab_size']}")
    print("\n| start | CPU-min used | steps | held-out masked-token acc | probe mean | probe [CLS] | fine-tune mean | fine-tune [CLS] |")
    print("|---|---|---|---|---|---|---|---|")
    for name, cols in table.items():
        used = steps = held = "-"
        if name != "random":
            objective = name.split("@")[0]
            for step, point in data[f"pretrain/{objective}"]["points"].items():
                if f"{objective}@{point.get('budget', 0):g}" == name:
                    used, steps = f"{point['cpu_minutes']:.1f}", step
                    held = f"{point.get('mlm_accuracy', float('nan')):.3f}"
                    if "rtd_accuracy" in point:
                        held += f" (RTD acc {point['rtd_accuracy']:.3f} vs {point['rtd_all_original_accuracy']:.3f})"
        row = [_stats(cols.get(k, [])) for k in ("probe_mean", "probe_cls", "finetune_mean", "finetune_cls")]
        print(f"| {name} | {used} | {steps} | {held} | {' | '.join(row)} |")
    print(f"| TF-IDF uni+bigram LR | - | - | - | {_stats(reference)} | | | |")
    for objective in names:
        from configs.objectives import CALIBRATED_AS

        measured = CALIBRATED_AS.get(objective, objective)
        print(f"calibration {objective}: {data[f'calibrate/{measured}']:.3f} CPU-s/step")


if __name__ == "__main__":
    main()

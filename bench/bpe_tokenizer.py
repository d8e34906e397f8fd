"""Byte-level BPE throughput on the shared data: sslm_jax's in-graph tokenizer in tf.data vs GPT2TokenizerFast.

    python bench/bpe_tokenizer.py        # --vocab-size=8192 --batch-size=256 --threads=2 --reps=3

Both tokenize the same ~72k documents (SST-2 train+dev sentences, WikiText-2 valid lines) with the same vocabulary
(trained here with `train_bpe`), in batches of `--batch-size` documents, on `--threads` threads:
  - sslm_jax: `Dataset.from_tensor_slices(texts).batch(B).map(tok.tokenize, num_parallel_calls=threads)` (in
    order) with a private tf.data pool of that size and TF's intra/inter-op pools set to it;
  - HF: `GPT2TokenizerFast.from_pretrained(dir)(batch)` per batch, Rust's pool sized by RAYON_NUM_THREADS.
Timed alternately after a warm-up; the median of `--reps` passes is reported, with process CPU seconds (less
sensitive than wall time to other load on the machine) and the number of documents whose ids differ.
"""

import argparse
import csv
import os
import pathlib
import statistics
import tempfile
import time

ARGS = argparse.ArgumentParser()
ARGS.add_argument("--vocab-size", type=int, default=8192)
ARGS.add_argument("--batch-size", type=int, default=256)
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--reps", type=int, default=3)
args = ARGS.parse_args()

# Thread pools are sized when the libraries start, so before importing them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["RAYON_NUM_THREADS"] = str(args.threads)
os.environ["TOKENIZERS_PARALLELISM"] = "true"

import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(args.threads)
tf.config.threading.set_inter_op_parallelism_threads(args.threads)

import transformers  # noqa: E402

from sslm_jax.data import bpe  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def documents() -> list[str]:
    out = []
    for name in ("train.tsv", "dev.tsv"):
        with open(DATA / "sst2" / name, encoding="utf-8", newline="") as f:
            out += [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return out + (DATA / "wikitext2" / "valid.txt").read_text(encoding="utf-8").split("\n")


def main():
    texts = documents()
    with tempfile.TemporaryDirectory() as tmp:
        directory = bpe.train_bpe(texts, vocab_size=args.vocab_size, out_dir=tmp)
        start = time.perf_counter()
        tok = bpe.load_bpe(directory)
        load_s = time.perf_counter() - start
        hf = transformers.GPT2TokenizerFast.from_pretrained(str(directory))

    options = tf.data.Options()
    options.threading.private_threadpool_size = args.threads
    dataset = tf.data.Dataset.from_tensor_slices(texts).batch(args.batch_size)
    dataset = dataset.map(tok.tokenize, num_parallel_calls=args.threads, deterministic=True)
    dataset = dataset.with_options(options)
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    # Timed: each tokenizer's own output (ragged tensors / lists of lists); compared: both as Python lists.
    runners = {
        "sslm_jax (tf.data)": lambda: list(dataset),
        "GPT2TokenizerFast": lambda: [hf(batch)["input_ids"] for batch in batches],
    }
    outputs = {name: run() for name, run in runners.items()}  # warm-up
    results = {name: [row for batch in out for row in (batch if isinstance(batch, list) else batch.to_list())]
               for name, out in outputs.items()}
    wall = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    for _ in range(args.reps):
        for name, run in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)

    reference = results["GPT2TokenizerFast"]
    tokens = sum(map(len, reference))
    print(
        f"{len(texts)} documents, {sum(map(len, texts)) / 1e6:.2f} M characters, {tokens / 1e6:.2f} M tokens; "
        f"vocab {tok.vocab_size}, batch {args.batch_size}, {args.threads} threads; load_bpe {load_s:.1f} s; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    header = ("s/pass", "cpu s", "k docs/s", "M tok/s", "vs HF", "differ")
    print(f"{'tokenizer':20s} " + " ".join(f"{h:>{w}s}" for h, w in zip(header, (7, 6, 9, 8, 6, 7))))
    hf_s = statistics.median(wall["GPT2TokenizerFast"])
    for name in runners:
        seconds = statistics.median(wall[name])
        differ = sum(a != b for a, b in zip(results[name], reference))
        print(
            f"{name:20s} {seconds:7.2f} {statistics.median(cpu[name]):6.2f} {len(texts) / seconds / 1e3:9.1f} "
            f"{tokens / seconds / 1e6:8.2f} {hf_s / seconds:5.2f}x {differ:7d}"
        )


if __name__ == "__main__":
    main()

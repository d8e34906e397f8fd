"""Tokenizer throughput on the shared data: sslm_jax's in-graph WordPiece vs tf_text's FastBertTokenizer vs HF.

    python bench/tokenizer.py            # --reps=3 --vocab-size=8000

All three tokenize the same ~72k sentences (SST-2 train+dev sentences, WikiText-2 valid lines) with the same
vocabulary (trained here with `train_wordpiece`, uncased), in one call each, timed alternately; the median of
`--reps` timings after a warm-up is reported with ratios against sslm_jax. The number of sentences whose ids
differ from HF's `transformers.BertTokenizer` is printed too: FastBertTokenizer is fast but not HF-exact.
"""

import argparse
import csv
import os
import pathlib
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402
import transformers  # noqa: E402

from sslm_jax.data import tokenizer as tokenization  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def sentences() -> list[str]:
    out = []
    for name in ("train.tsv", "dev.tsv"):
        with open(DATA / "sst2" / name, encoding="utf-8", newline="") as f:
            out += [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return out + (DATA / "wikitext2" / "valid.txt").read_text(encoding="utf-8").split("\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args()

    texts = sentences()
    with tempfile.TemporaryDirectory() as tmp:
        vocab_path = tokenization.train_wordpiece(iter(texts), vocab_size=args.vocab_size, out_dir=tmp)
        start = time.perf_counter()
        ours = tokenization.load_tokenizer(vocab_path)
        load_s = time.perf_counter() - start
        hf = transformers.BertTokenizer(str(vocab_path), do_lower_case=True)
        fast_bert = tf_text.FastBertTokenizer(
            vocab=ours.vocab, lower_case_nfd_strip_accents=True, token_out_type=tf.int32
        )
    strings = tf.constant(texts)
    runners = {
        "sslm_jax": lambda: ours.tokenize(strings).to_list(),
        "tf_text FastBertTokenizer": lambda: fast_bert.tokenize(strings).to_list(),
        "transformers BertTokenizer": lambda: hf(texts, add_special_tokens=False)["input_ids"],
    }
    results = {name: run() for name, run in runners.items()}  # warm-up, and the outputs to compare
    times = {name: [] for name in runners}
    for _ in range(args.reps):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    reference = results["transformers BertTokenizer"]
    num_chars = sum(map(len, texts))
    print(f"{len(texts)} sentences, {num_chars / 1e6:.2f} M characters; sslm_jax load_tokenizer: {load_s:.1f} s")
    print(f"{'tokenizer':28s} {'s/pass':>8s} {'k sent/s':>9s} {'vs sslm_jax':>11s} {'differ from HF':>15s}")
    ours_s = statistics.median(times["sslm_jax"])
    for name in runners:
        seconds = statistics.median(times[name])
        differ = sum(list(a) != list(b) for a, b in zip(results[name], reference))
        print(f"{name:28s} {seconds:8.2f} {len(texts) / seconds / 1e3:9.1f} {ours_s / seconds:10.2f}x {differ:15d}")


if __name__ == "__main__":
    main()

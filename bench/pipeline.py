"""Pretraining input pipeline throughput: sslm_jax's tf.data path against Hugging Face's, same text, same run.

    python bench/pipeline.py                 # defaults: max_seq_len 128, batch 128, 150 batches timed
    python bench/pipeline.py --masking=word  # whole-word masking in our path (the HF side stays token-level)
    python bench/pipeline.py --masking=span  # SpanBERT span masking in our path (HF: token-level, as above)
    python bench/pipeline.py --objective=causal                # GPT-2 style rows of 128 tokens, 150 batches of 128
    python bench/pipeline.py --objective=causal --batches=3 --warmup=1 --shuffle-buffer=500   # smoke

Text: the SST-2 train sentences (one document each) and the WikiText-2 validation paragraphs (one document per
non-blank line) from ../shared/data; the benchmark exits (status 0, with a SKIP line) when that folder is absent.
A WordPiece vocabulary (8,192 tokens) is trained on the same text first, with `sslm_jax.data.tokenizer`.

Both paths do tokenize -> pack (documents joined with [SEP], cut into [CLS] 126 tokens [SEP]) -> mask 15 %
(80/10/10) -> batches of numpy arrays:
  ours: `pretraining.pretraining_dataset(..., objective="mlm")`, the training split (shuffled, infinite),
        read through `PipelineIterator`, after a warm-up of a few batches (graph building is reported apart);
  HF:   `BertTokenizerFast` (Rust, batched calls of 1,000 documents), packing in Python as in transformers'
        run_mlm.py `group_texts`, then `DataCollatorForLanguageModeling(return_tensors="np")` per batch.
Our path also shuffles documents and rows (10,000-row buffer); the HF path does not shuffle.
Figures are sequences of max_seq_len per second (wall clock) and CPU seconds per 1,000 sequences (process time
over all threads, less sensitive to other load on the machine). The load average is printed: other processes
may share the CPUs. Two more lines: our tokenizer alone, and (for reference) our pipeline with tf_text's
FastBertTokenizer in place of ours, which shows how much of the time is tokenization.

--objective=causal: a byte-level BPE (8,192 tokens) is trained on the same text with `sslm_jax.data.bpe.train_bpe`;
both paths do tokenize -> append end-of-text to each document -> concatenate -> cut into rows of max_seq_len:
  ours: `causal_lm.causal_lm_dataset` (our in-graph BPE), training split, through `PipelineIterator` as above;
  HF:   `GPT2TokenizerFast.from_pretrained` on the same files (calls of 1,000 documents), then transformers'
        run_clm.py `group_texts` (input_ids and attention_mask concatenated and cut into blocks, labels = a copy;
        the remainder carried to the next 1,000 documents, not dropped) and `default_data_collator` per batch.
Rows per second are reported in wall time and per CPU second (process time of all threads), with both ratios,
plus our tokenizer alone; the first batch of our unshuffled (eval) path is checked to equal HF's first batch.
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import sys
import tempfile
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def read_documents(shared: pathlib.Path) -> list[str]:
    with open(shared / "sst2" / "train.tsv", encoding="utf-8", newline="") as f:
        sst2 = [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    wiki = [line.strip() for line in (shared / "wikitext2" / "valid.txt").read_text(encoding="utf-8").splitlines()]
    return sst2 + [line for line in wiki if line]


class Clock:
    """Wall and process (CPU) time since construction."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def elapsed(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def time_pipeline(build: Callable, args) -> dict[str, float]:
    """Builds our dataset, reads `args.warmup` batches (graph building and warm-up: `startup_s`), then times
    `args.batches` batches through `PipelineIterator`."""
    from sslm_jax.data import pretraining

    clock = Clock()
    it = pretraining.PipelineIterator(build())
    for _ in range(args.warmup):
        next(it)
    startup, _ = clock.elapsed()
    clock = Clock()
    for _ in range(args.batches):
        batch = next(it)
    wall, cpu = clock.elapsed()
    assert batch["input_ids"].shape == (args.batch, args.max_seq_len)
    n = args.batches * args.batch
    return {"seq_per_s": n / wall, "cpu_s_per_1k": 1000 * cpu / n, "startup_s": startup, "sequences": n}


def ours(documents, tokenizer, args) -> dict[str, float]:
    import tensorflow as tf

    from sslm_jax.data import pretraining

    return time_pipeline(
        lambda: pretraining.pretraining_dataset(
            tf.data.Dataset.from_tensor_slices(documents),
            tokenizer,
            objective="mlm",
            max_seq_len=args.max_seq_len,
            max_predictions_per_seq=args.max_predictions,
            mask_rate=0.15,
            masking=args.masking,
            short_seq_prob=0.1,
            train=True,
            per_host_batch=args.batch,
            seed=0,
            shuffle_buffer=args.shuffle_buffer,
        ),
        args,
    )


def ours_tokenize_only(documents, tokenizer, args, *, row_tokens: int) -> dict[str, float]:
    """The tokenizer alone over the whole text, called as the pipeline calls it (DOCUMENTS_PER_GROUP at a time);
    rows = tokens (one separator per document included, as packed) / `row_tokens` text tokens per row."""
    import tensorflow as tf

    from sslm_jax.data import pretraining

    group = pretraining.DOCUMENTS_PER_GROUP
    ds = tf.data.Dataset.from_tensor_slices(documents).batch(group)
    ds = ds.map(lambda d: tokenizer.tokenize(d).row_lengths(), num_parallel_calls=tf.data.AUTOTUNE)
    for _ in ds.take(2):
        pass
    clock = Clock()
    tokens = sum(int(x.numpy().sum()) + len(x) for x in ds)  # + one [SEP] / end-of-text per document, as packed
    wall, cpu = clock.elapsed()
    n = tokens / row_tokens
    return {"seq_per_s": n / wall, "cpu_s_per_1k": 1000 * cpu / n, "group": group, "tokens": tokens}


class FastBertReference:
    """tf_text's FastBertTokenizer behind our tokenizer's interface: a reference line showing how much of our
    time is the tokenizer (its normalisation is not exactly HF's, which is why the project does not use it)."""

    def __init__(self, tokenizer):
        import tensorflow as tf
        import tensorflow_text as tf_text

        for name in ("vocab", "vocab_size", "pad_id", "cls_id", "sep_id", "mask_id", "special_ids"):
            setattr(self, name, getattr(tokenizer, name))
        self._tokenizer = tf_text.FastBertTokenizer(
            tokenizer.vocab, token_out_type=tf.int32, lower_case_nfd_strip_accents=True
        )

    def tokenize(self, strings):
        return self._tokenizer.tokenize(strings)


def hugging_face(documents, vocab_path, args) -> dict[str, float]:
    from transformers import BertTokenizerFast, DataCollatorForLanguageModeling

    tok = BertTokenizerFast(str(vocab_path), do_lower_case=True)
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, return_tensors="np")
    chunk = args.max_seq_len - 2
    clock = Clock()
    stream, rows, n = [], [], 0
    for start in range(0, len(documents), 1000):
        for ids in tok(documents[start : start + 1000], add_special_tokens=False)["input_ids"]:
            stream += ids
            stream.append(tok.sep_token_id)
        cut = len(stream) // chunk * chunk
        rows += [[tok.cls_token_id, *stream[i : i + chunk], tok.sep_token_id] for i in range(0, cut, chunk)]
        del stream[:cut]
        while len(rows) >= args.batch:
            batch = collator(rows[: args.batch])
            del rows[: args.batch]
            n += args.batch
    wall, cpu = clock.elapsed()
    assert batch["input_ids"].shape == (args.batch, args.max_seq_len)
    return {"seq_per_s": n / wall, "cpu_s_per_1k": 1000 * cpu / n, "sequences": n}


def ours_causal(documents, tokenizer, args, *, train: bool = True):
    import tensorflow as tf

    from sslm_jax.data import causal_lm

    return causal_lm.causal_lm_dataset(
        tf.data.Dataset.from_tensor_slices(documents),
        tokenizer,
        max_seq_len=args.max_seq_len,
        train=train,
        per_host_batch=args.batch,
        seed=0,
        shuffle_buffer=args.shuffle_buffer,
    )


def hugging_face_causal(documents, tokenizer_dir, args, *, first_batch_only: bool = False) -> dict:
    """GPT2TokenizerFast + run_clm.py's group_texts + default_data_collator, one pass over the documents."""
    from transformers import GPT2TokenizerFast, default_data_collator

    tok = GPT2TokenizerFast.from_pretrained(str(tokenizer_dir))
    block = args.max_seq_len
    clock = Clock()
    stream = {"input_ids": [], "attention_mask": []}
    rows, n, first = [], 0, None
    for start in range(0, len(documents), 1000):
        encoded = tok(documents[start : start + 1000])
        for ids, mask in zip(encoded["input_ids"], encoded["attention_mask"]):
            stream["input_ids"] += ids + [tok.eos_token_id]
            stream["attention_mask"] += mask + [1]
        cut = len(stream["input_ids"]) // block * block
        grouped = {k: [v[i : i + block] for i in range(0, cut, block)] for k, v in stream.items()}
        grouped["labels"] = grouped["input_ids"].copy()
        rows += [dict(zip(grouped, values)) for values in zip(*grouped.values())]
        for v in stream.values():
            del v[:cut]
        while len(rows) >= args.batch:
            batch = default_data_collator(rows[: args.batch], return_tensors="np")
            del rows[: args.batch]
            n += args.batch
            if first is None:
                first = batch
                if first_batch_only:
                    return {"first": first}
    wall, cpu = clock.elapsed()
    assert batch["input_ids"].shape == (args.batch, args.max_seq_len)
    return {"seq_per_s": n / wall, "cpu_s_per_1k": 1000 * cpu / n, "sequences": n, "first": first}


def _rows(r: dict) -> str:
    """Rows per wall-clock second and per CPU second (and CPU seconds per 1,000 rows, as the MLM lines give)."""
    per_cpu_s = 1000 / r["cpu_s_per_1k"]
    return f"{r['seq_per_s']:8,.0f} rows/s  {per_cpu_s:8,.0f} rows/CPU-s  ({r['cpu_s_per_1k']:.2f} CPU s/1k)"


def main_causal(documents, args) -> int:
    from sslm_jax.data import bpe, pretraining

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        directory = bpe.train_bpe(documents, vocab_size=8192, out_dir=tmp)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        tokenizer = bpe.load_bpe(directory)
        load_s = time.perf_counter() - start
        load_before = os.getloadavg()
        theirs = hugging_face_causal(documents, directory, args)
        mine = time_pipeline(lambda: ours_causal(documents, tokenizer, args), args)
        tok_only = ours_tokenize_only(documents, tokenizer, args, row_tokens=args.max_seq_len)
        load_after = os.getloadavg()
        # Our unshuffled path (eval split) against HF's first batch: the same stream cut the same way.
        same = next(pretraining.PipelineIterator(ours_causal(documents, tokenizer, args, train=False)))
        hf_first = hugging_face_causal(documents, directory, args, first_batch_only=True)["first"]
    identical = all(
        (same[k] == hf_first[theirs_k]).all()
        for k, theirs_k in (("input_ids", "input_ids"), ("attention_mask", "attention_mask"), ("input_ids", "labels"))
    )

    print(f"text: {len(documents):,} documents, {tok_only['tokens']:,} tokens with one end-of-text each; rows of "
          f"{args.max_seq_len}, batch {args.batch}; BPE vocabulary {tokenizer.vocab_size:,} (train_bpe "
          f"{train_s:.1f} s, load_bpe {load_s:.1f} s); {os.cpu_count()} CPUs, load average {load_before[0]:.1f} "
          f"before / {load_after[0]:.1f} after")  # fmt: skip
    print(f"sslm_jax tf.data     {_rows(mine)}  ({mine['sequences']:,} rows; graph build + warm-up "
          f"{mine['startup_s']:.1f} s)")  # fmt: skip
    print(f"  tokenizer alone    {_rows(tok_only)}  (one pass over the text, {tok_only['group']} documents per call)")
    print(f"Hugging Face         {_rows(theirs)}  ({theirs['sequences']:,} rows, one pass)")
    print(f"ratio sslm_jax / HF: {mine['seq_per_s'] / theirs['seq_per_s']:.2f}x wall, "
          f"{theirs['cpu_s_per_1k'] / mine['cpu_s_per_1k']:.2f}x CPU")  # fmt: skip
    print(f"first batch of our unshuffled path equals HF's (input_ids, attention_mask, labels): {identical}")
    return 0 if identical else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--max-predictions", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=150, help="batches timed in our path")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--shuffle-buffer", type=int, default=10_000)
    parser.add_argument("--masking", choices=("token", "word", "span"), default="token",
                        help="our masking unit (config.data.masking); the HF side always masks tokens")  # fmt: skip
    parser.add_argument("--vocab", help="an existing vocab.txt (default: train 8,192 tokens on the text)")
    parser.add_argument("--objective", choices=("mlm", "causal"), default="mlm",
                        help="mlm: BERT packing + masking; causal: GPT-2 rows (byte-level BPE)")  # fmt: skip
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"SKIP: shared data folder {SHARED} is absent (SST-2 and WikiText-2 are needed)")
        return 0
    documents = read_documents(SHARED)
    if args.objective == "causal":
        return main_causal(documents, args)

    from sslm_jax.data import tokenizer as tokenizer_lib

    with tempfile.TemporaryDirectory() as tmp:
        vocab = pathlib.Path(args.vocab) if args.vocab else tokenizer_lib.train_wordpiece(
            iter(documents), vocab_size=8192, out_dir=tmp
        )
        tokenizer = tokenizer_lib.load_tokenizer(vocab)
        load_before = os.getloadavg()
        theirs = hugging_face(documents, vocab, args)
        mine = ours(documents, tokenizer, args)
        tok_only = ours_tokenize_only(documents, tokenizer, args, row_tokens=args.max_seq_len - 2)
        reference = ours(documents, FastBertReference(tokenizer), args)
        load_after = os.getloadavg()

    print(f"text: {len(documents):,} documents; max_seq_len {args.max_seq_len}, batch {args.batch}, "
          f"masking {args.masking!r} (HF: token); {os.cpu_count()} CPUs, "
          f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after")  # fmt: skip
    print(f"sslm_jax tf.data     {mine['seq_per_s']:8,.0f} seq/s  {mine['cpu_s_per_1k']:6.2f} CPU s/1k seq  "
          f"({mine['sequences']:,} sequences; graph build + warm-up {mine['startup_s']:.1f} s)")  # fmt: skip
    print(f"  tokenizer alone    {tok_only['seq_per_s']:8,.0f} seq/s  {tok_only['cpu_s_per_1k']:6.2f} CPU s/1k seq  "
          f"(one pass over the text, {tok_only['group']} documents per call)")  # fmt: skip
    print(f"Hugging Face         {theirs['seq_per_s']:8,.0f} seq/s  {theirs['cpu_s_per_1k']:6.2f} CPU s/1k seq  "
          f"({theirs['sequences']:,} sequences, one pass)")  # fmt: skip
    print(f"(reference) sslm_jax pipeline with tf_text.FastBertTokenizer: {reference['seq_per_s']:,.0f} seq/s  "
          f"{reference['cpu_s_per_1k']:.2f} CPU s/1k seq")  # fmt: skip
    print(f"ratio sslm_jax / HF: {mine['seq_per_s'] / theirs['seq_per_s']:.2f}x wall, "
          f"{theirs['cpu_s_per_1k'] / mine['cpu_s_per_1k']:.2f}x CPU")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

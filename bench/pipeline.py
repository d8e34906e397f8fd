"""Pretraining input pipeline throughput: sslm_jax's tf.data path against Hugging Face's, same text, same run.

    python bench/pipeline.py                 # defaults: max_seq_len 128, batch 128, 150 batches timed
    python bench/pipeline.py --whole-word    # whole-word masking in our path (the HF side stays token-level)

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
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import sys
import tempfile
import time

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


def ours(documents, tokenizer, args) -> dict[str, float]:
    import tensorflow as tf

    from sslm_jax.data import pretraining

    clock = Clock()
    ds = pretraining.pretraining_dataset(
        tf.data.Dataset.from_tensor_slices(documents),
        tokenizer,
        objective="mlm",
        max_seq_len=args.max_seq_len,
        max_predictions_per_seq=args.max_predictions,
        mask_rate=0.15,
        whole_word_masking=args.whole_word,
        short_seq_prob=0.1,
        train=True,
        per_host_batch=args.batch,
        seed=0,
        shuffle_buffer=args.shuffle_buffer,
    )
    it = pretraining.PipelineIterator(ds)
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


def ours_tokenize_only(documents, tokenizer, args) -> dict[str, float]:
    """The tokenizer alone over the whole text, called as the pipeline calls it (DOCUMENTS_PER_GROUP at a time)."""
    import tensorflow as tf

    from sslm_jax.data import pretraining

    group = pretraining.DOCUMENTS_PER_GROUP
    ds = tf.data.Dataset.from_tensor_slices(documents).batch(group)
    ds = ds.map(lambda d: tokenizer.tokenize(d).row_lengths(), num_parallel_calls=tf.data.AUTOTUNE)
    for _ in ds.take(2):
        pass
    clock = Clock()
    tokens = sum(int(x.numpy().sum()) + len(x) for x in ds)  # + one [SEP] per document, as packed
    wall, cpu = clock.elapsed()
    n = tokens / (args.max_seq_len - 2)
    return {"seq_per_s": n / wall, "cpu_s_per_1k": 1000 * cpu / n, "group": group}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--max-predictions", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=150, help="batches timed in our path")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--shuffle-buffer", type=int, default=10_000)
    parser.add_argument("--whole-word", action="store_true")
    parser.add_argument("--vocab", help="an existing vocab.txt (default: train 8,192 tokens on the text)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"SKIP: shared data folder {SHARED} is absent (SST-2 and WikiText-2 are needed)")
        return 0
    documents = read_documents(SHARED)

    from sslm_jax.data import tokenizer as tokenizer_lib

    with tempfile.TemporaryDirectory() as tmp:
        vocab = pathlib.Path(args.vocab) if args.vocab else tokenizer_lib.train_wordpiece(
            iter(documents), vocab_size=8192, out_dir=tmp
        )
        tokenizer = tokenizer_lib.load_tokenizer(vocab)
        load_before = os.getloadavg()
        theirs = hugging_face(documents, vocab, args)
        mine = ours(documents, tokenizer, args)
        tok_only = ours_tokenize_only(documents, tokenizer, args)
        reference = ours(documents, FastBertReference(tokenizer), args)
        load_after = os.getloadavg()

    print(f"text: {len(documents):,} documents; max_seq_len {args.max_seq_len}, batch {args.batch}, "
          f"whole-word masking {'on' if args.whole_word else 'off'}; {os.cpu_count()} CPUs, "
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

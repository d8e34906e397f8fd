"""Offline demo: a tiny BERT pretrained on the embedded standard-library corpus, on a laptop CPU.

Command (from the repository root, after the README's set-up):
    sslm pretrain --config=configs/bert_demo.py --workdir=/tmp/sslm_demo

Hardware: 2 CPU cores. Runtime: 3 min 48 s measured on 2 idle cores, vocabulary training included (BENCHMARKS.md,
"Offline demo").
Expected result: a held-out masked-token accuracy of about 0.26, on documents that share no sentence with the
training ones, against a unigram baseline (always the most frequent token) of 0.049; the fill-mask lines printed at
the end put "file", "instance" and "list" in their top 5.

`configs/bert_demo.py:smoke` shrinks everything to seconds, for tests.
"""

from configs import base


def get_config(arg: str | None = None):
    c = base.get_config()
    c.data.source = "stdlib"
    # Tuned on held-out text that shares no sentence with training (BENCHMARKS.md, "The offline demo"): a 2,048-piece
    # vocabulary and 25 % masking learn faster per step than 4,096 pieces and 15 % (held-out masked-token accuracy
    # 0.206 vs 0.202 after 1,200 steps, and the right word in the top 5 for 3 of 3 prompts vs 1 of 3).
    c.data.vocab_size = 2048
    c.data.max_seq_len = 64
    c.data.mask_rate = 0.25
    c.data.max_predictions_per_seq = 16
    c.data.shuffle_buffer = 2000
    c.data.eval_fraction = 0.05
    c.model.size = "tiny"
    c.model.hidden_dropout_prob = 0.0  # a few hundred steps on a small corpus: dropout only slows learning
    c.model.attention_probs_dropout_prob = 0.0
    # Batch 32 for 2,800 steps rather than 64 for 1,400: the same tokens and about the same CPU time, twice the
    # updates; held-out accuracy 0.264 instead of 0.227 (BENCHMARKS.md, "The offline demo"). Below its critical
    # batch size a model this small learns more per token from more, smaller steps.
    c.batch_size = 32
    c.total_steps = 2800
    c.learning_rate = 2e-3
    c.warmup_steps = 200
    c.weight_decay = 0.01
    c.log_every_steps = 100
    c.eval_every_steps = 700
    c.eval_steps = 8  # 256 rows: about all of the held-out text
    c.checkpoint_every_steps = 1400
    c.keep_checkpoints = 2
    c.fill_mask_examples = (
        "the [MASK] is closed when the file is no longer needed .",
        "return true if the object is an [MASK] of the class .",
        "this function returns a [MASK] of strings .",
    )
    if arg == "smoke":
        c.data.vocab_size = 600
        c.data.max_seq_len = 32
        c.data.max_predictions_per_seq = 5
        c.data.shuffle_buffer = 100
        c.batch_size = 8
        c.total_steps = 6
        c.warmup_steps = 2
        c.log_every_steps = 2
        c.eval_every_steps = 3
        c.eval_steps = 2
        c.checkpoint_every_steps = 3
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of bert_demo.py; use no variant or 'smoke'")
    return c

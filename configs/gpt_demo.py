"""Offline causal-LM demo: a tiny GPT pretrained on the embedded standard-library corpus, on a laptop CPU.

Command (from the repository root, after the README's set-up):
    sslm pretrain --config=configs/gpt_demo.py --workdir=/tmp/gpt_demo

Hardware: 2 CPU cores. Expected runtime: under 5 minutes, byte-level BPE training included (measured figures in
BENCHMARKS.md).
Expected result: held-out perplexity far below the unigram baseline (`unigram_perplexity`, the best a model that
ignores context can do on the same tokens). Ends by printing a generated continuation of each sample prompt.

`configs/gpt_demo.py:smoke` shrinks everything to seconds, for tests.
"""

from configs import base


def get_config(arg: str | None = None):
    c = base.get_config()
    c.task = "causal_lm"
    c.model.family = "gpt"
    c.model.size = "tiny"
    c.model.hidden_act = "gelu_new"
    c.model.max_position_embeddings = 128
    c.model.hidden_dropout_prob = 0.0  # a few minutes on a small corpus: dropout only slows learning
    c.model.attention_probs_dropout_prob = 0.0
    c.data.source = "stdlib"
    c.data.tokenizer = "bpe"
    c.data.vocab_size = 4096
    c.data.lower_case = False
    c.data.max_seq_len = 64
    c.data.segment_attention = True
    c.data.shuffle_buffer = 2000
    c.data.eval_fraction = 0.02
    c.batch_size = 32
    c.total_steps = 1000
    c.learning_rate = 2e-3
    c.warmup_steps = 100
    c.weight_decay = 0.01
    c.log_every_steps = 50
    c.eval_every_steps = 250
    c.eval_steps = 10
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 2
    c.sample_prompts = ("def read_file(path):\n", "class Parser:\n    def", "import os\nimport")
    c.sample_max_new_tokens = 32
    if arg == "smoke":
        c.data.vocab_size = 400
        c.data.max_seq_len = 32
        c.data.shuffle_buffer = 100
        c.batch_size = 8
        c.total_steps = 6
        c.warmup_steps = 2
        c.log_every_steps = 2
        c.eval_every_steps = 3
        c.eval_steps = 2
        c.checkpoint_every_steps = 3
        c.sample_max_new_tokens = 8
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of gpt_demo.py; use no variant or 'smoke'")
    return c

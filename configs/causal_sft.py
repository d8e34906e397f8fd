"""Fine-tune a causal LM on prompt -> response pairs (dialogue, summarisation, instructions).

Command (from the repository root; `init_from` is an sslm causal-LM run or a Hugging Face GPT-2 directory, whose
model size, vocabulary and tokenizer the run takes over):
    sslm finetune --config=configs/causal_sft.py --workdir=/tmp/sft --config.init_from=/tmp/gpt_demo \
        --config.data.train_files=train.jsonl --config.data.eval_files=dev.jsonl
Files: JSON lines with "prompt" and "response" fields (or tsv / csv with those columns and
--config.data.format=tsv); other field names with --config.data.text_field=question,answer. Without eval_files,
a fixed 5 % of the train rows is held out.

The loss counts response tokens only; eval reports the response perplexity. `:smoke` runs in seconds, for tests.
Hardware: any; a GPT-2-small fine-tune of a few thousand pairs is minutes on one GPU. Expected result: the response
perplexity falls well below its value at step 0 (it is reported at the first evaluation); not yet measured here.
"""

from configs import base


def get_config(arg: str | None = None):
    c = base.get_config()
    c.task = "causal_sft"
    c.model.family = "gpt"  # without init_from only: with it, the checkpoint's family and size are used
    c.model.hidden_act = "gelu_new"
    c.data.source = "files"
    c.data.tokenizer = "bpe"
    c.data.format = "jsonl"
    c.data.text_field = "prompt,response"
    c.data.eval_fraction = 0.05
    c.data.max_seq_len = 256
    c.batch_size = 16
    c.total_steps = 1000
    c.learning_rate = 5e-5
    c.warmup_steps = 50
    c.weight_decay = 0.0
    c.log_every_steps = 20
    c.eval_every_steps = 200
    c.eval_steps = 0
    c.checkpoint_every_steps = 200
    c.keep_checkpoints = 1
    c.sample_max_new_tokens = 48
    if arg == "smoke":
        c.data.max_seq_len = 32
        c.batch_size = 8
        c.total_steps = 6
        c.warmup_steps = 1
        c.log_every_steps = 2
        c.eval_every_steps = 3
        c.checkpoint_every_steps = 3
        c.sample_max_new_tokens = 8
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of causal_sft.py; use no variant or 'smoke'")
    return c

"""Does our pretraining pay? A small BERT pretrained on unlabelled SST-2 + WikiText-2 text, then fine-tuned on
1,000 SST-2 labels, against the same model fine-tuned from random initialisation. `bench/sst2_lift.py` runs the
whole experiment (it prepares the files named below and prints the table that BENCHMARKS.md records):
    python bench/sst2_lift.py --workdir=/tmp/sslm_sst2_lift

Variants (the bench sets the paths; the same runs by hand, from the repository root):
    sslm pretrain --config=configs/sst2_lift.py:pretrain --workdir=W/pretrain --config.data.train_files=W/corpus.txt
    sslm finetune --config=configs/sst2_lift.py:finetune --workdir=W/ft_1000 --config.init_from=W/pretrain \
        --config.data.train_files=W/train_1000.tsv --config.data.eval_files=../shared/data/sst2/dev.tsv
    (baseline: the same without init_from, with --config.data.vocab_path=W/pretrain/vocab.txt; the full training
    set: `:finetune,full` with --config.data.train_files=../shared/data/sst2/train.tsv)
`corpus.txt` holds one document per line: every SST-2 training sentence (labels dropped) and every paragraph of
WikiText-2's validation split. `train_1000.tsv` is 1,000 rows of SST-2 train drawn with a fixed seed.

Hardware: 2 CPU cores. Runtime: pretraining about 11.5 minutes there (sized to stay under 15), each 1,000-label
fine-tune about 1.5 minutes, each full-set one (one epoch) about 5.5; the results are in BENCHMARKS.md.
Result on that machine: no lift. 1,000 labels give ~64 % dev accuracy from this pretraining and from random
initialisation alike (all 67,349 labels: 82 % after one epoch); BENCHMARKS.md has the numbers and what would
raise them.
"""

from configs import base

# BERT-tiny (2 layers x 128): in 15 minutes on 2 cores it sees ~10 M tokens (~9 passes over the corpus). BERT-mini
# (4 x 256) managed 600 steps of half this batch in 13 minutes, reaching a held-out masked-token accuracy of 0.17
# against tiny's 0.25 (BENCHMARKS.md).
MODEL_SIZE = "tiny"
SEQ_LEN = 64  # SST-2 sentences are short (dev: at most ~60 WordPiece tokens); pretraining packs to this length.
FINETUNE_EPOCHS_1000 = 10
FINETUNE_EPOCHS_FULL = 1


def get_config(arg: str | None = None):
    variants = [v for v in (arg or "").split(",") if v]
    if not variants or variants[0] not in ("pretrain", "finetune") or set(variants[1:]) - {"full"}:
        raise ValueError(f"configs/sst2_lift.py:{arg or ''} - use 'pretrain', 'finetune' or 'finetune,full'")
    return _pretrain() if variants[0] == "pretrain" else _finetune(full="full" in variants)


def _pretrain():
    c = base.get_config()
    c.data.source = "files"
    c.data.format = "lines"
    c.data.train_files = ""  # required: the bench's corpus.txt
    c.data.eval_fraction = 0.01
    c.data.vocab_size = 8192
    c.data.max_seq_len = SEQ_LEN
    c.data.max_predictions_per_seq = 10
    c.data.masking = "word"
    c.data.segment_attention = True  # a packed row holds several sentences; fine-tuning sees one at a time
    c.data.shuffle_buffer = 20_000
    c.model.size = MODEL_SIZE
    c.model.max_position_embeddings = 128
    c.model.hidden_dropout_prob = 0.0  # a few epochs over the corpus: dropout would only slow learning
    c.model.attention_probs_dropout_prob = 0.0
    c.batch_size = 128
    c.total_steps = 1_200
    c.learning_rate = 2e-3
    c.warmup_steps = 150
    c.lr_schedule = "linear"
    c.log_every_steps = 100
    c.eval_every_steps = 400
    c.eval_steps = 20
    c.checkpoint_every_steps = 400
    c.keep_checkpoints = 1
    c.fill_mask_examples = (
        "the movie was [MASK] .",
        "one of the [MASK] films of the year .",
        "the acting is [MASK] , but the plot is thin .",
    )
    return c


def _finetune(*, full: bool):
    c = base.get_config()
    c.task = "classify"
    c.data.source = "files"
    c.data.format = "tsv"
    c.data.text_field = "sentence"
    c.data.label_field = "label"
    c.data.train_files = ""  # required
    c.data.eval_files = ""  # required: ../shared/data/sst2/dev.tsv
    c.data.metrics = "accuracy"
    c.data.max_seq_len = SEQ_LEN
    c.data.shuffle_buffer = 70_000
    c.model.size = MODEL_SIZE  # without init_from only (the random-init baseline); else the checkpoint's
    c.model.max_position_embeddings = 128
    c.batch_size = 32
    examples = 67_349 if full else 1_000
    epochs = FINETUNE_EPOCHS_FULL if full else FINETUNE_EPOCHS_1000
    steps_per_epoch = -(-examples // c.batch_size)
    c.total_steps = epochs * steps_per_epoch
    c.warmup_steps = c.total_steps // 10
    c.learning_rate = 2e-4  # small BERTs fine-tune best at higher rates than BERT-Base's 2e-5
    c.lr_schedule = "linear"
    c.weight_decay = 0.01
    c.eval_every_steps = steps_per_epoch
    c.eval_steps = 0  # all of dev, every example once
    c.log_every_steps = 50 if full else 10
    c.checkpoint_every_steps = c.total_steps
    c.keep_checkpoints = 1
    return c

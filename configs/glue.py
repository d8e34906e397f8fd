"""Fine-tune a pretrained BERT on a GLUE task (TFDS) or on your own labelled tsv / csv / jsonl files.

Commands (from the repository root; `init_from` is an sslm workdir/checkpoint or a Hugging Face BERT directory,
whose model size, vocabulary and casing the run takes over: `model.size` below only applies without init_from):
    sslm finetune --config=configs/glue.py:sst2 --workdir=/tmp/glue_sst2 \
        --config.init_from=/path/to/bert-base-uncased --config.data.tfds_data_dir=/path/to/tensorflow_datasets
    sslm finetune --config=configs/glue.py:files --workdir=/tmp/my_task --config.init_from=... \
        --config.data.train_files=train.tsv --config.data.eval_files=dev.tsv \
        --config.data.text_field=sentence --config.data.label_field=label
Tasks: cola, sst2, mrpc, qqp, stsb, mnli (scored on validation_matched), qnli, rte; `files` for your own data
(format tsv by default; pairs: --config.data.text_field=question,answer). Add `,smoke` for a seconds-long run
with a tiny model, e.g. on the shared SST-2 files after the demo pretraining (configs/bert_demo.py):
    sslm finetune --config=configs/glue.py:files,smoke --workdir=/tmp/sst2_smoke --config.init_from=/tmp/sslm_demo \
        --config.data.train_files=../shared/data/sst2/train.tsv --config.data.eval_files=../shared/data/sst2/dev.tsv

GLUE data is read from prepared TFDS data only (`tfds build glue/sst2 --data_dir=DIR` once, on a machine with
internet access). The recipe is BERT's: AdamW, lr 2e-5, 10 % linear warmup then linear decay, batch 32,
3 epochs, sequences of 128 tokens, evaluation on the whole dev split after every epoch.

Hardware: one GPU or TPU host. Runtime: not yet measured; for planning, BERT-Base at 128 tokens costs about
2.2e11 training FLOPs per sequence (sslm_jax/training/flops.py), so 3 epochs of SST-2 (202k sequences) are 4.4e16
FLOPs, about 1.5 minutes at 50 % MFU on one H100, and of MNLI (1.18M) about 9 minutes.
Expected result: not yet measured with this code. Published BERT-Base dev scores to compare with (Devlin et al.,
2019, and Hugging Face's run_glue): CoLA MCC ~0.55-0.59, SST-2 acc ~0.92-0.93, MRPC F1 ~0.88-0.90, QQP F1 ~0.88,
STS-B Pearson ~0.88-0.89, MNLI-m acc ~0.84, QNLI acc ~0.91, RTE acc ~0.65-0.70 (small tasks vary with the seed).
"""

import math

from configs import base
from sslm_jax.objectives.glue_metrics import GLUE_METRICS

# task -> (TFDS text features, in packing order; the labelled eval split; train examples, for the step count).
GLUE_TASKS = {
    "cola": ("sentence", "validation", 8_551),
    "sst2": ("sentence", "validation", 67_349),
    "mrpc": ("sentence1,sentence2", "validation", 3_668),
    "qqp": ("question1,question2", "validation", 363_846),
    "stsb": ("sentence1,sentence2", "validation", 5_749),
    "mnli": ("premise,hypothesis", "validation_matched", 392_702),
    "qnli": ("question,sentence", "validation", 104_743),
    "rte": ("sentence1,sentence2", "validation", 2_490),
}
EPOCHS = 3


def get_config(arg: str | None = None):
    variants = [v for v in (arg or "").split(",") if v]
    tasks = [v for v in variants if v in GLUE_TASKS or v == "files"]
    unknown = [v for v in variants if v not in tasks and v != "smoke"]
    if len(tasks) != 1 or unknown:
        raise ValueError(
            f"configs/glue.py:{arg or ''} - name one task ({', '.join(GLUE_TASKS)} or files), optionally ',smoke'"
        )
    task = tasks[0]

    c = base.get_config()
    c.task = "classify"
    c.model.size = "base"  # without init_from only: with it, the checkpoint's size is used
    c.data.max_seq_len = 128
    c.data.shuffle_buffer = 100_000  # the whole train set for all but QQP, MNLI and QNLI
    c.data.label_field = "label"
    c.batch_size = 32
    c.optimizer = "adamw"
    c.learning_rate = 2e-5
    c.lr_schedule = "linear"
    c.weight_decay = 0.01
    c.eval_steps = 0  # the whole dev split, every example counted once
    c.log_every_steps = 50
    c.keep_checkpoints = 1

    if task == "files":
        c.data.source = "files"
        c.data.format = "tsv"  # tsv | csv (header row) | jsonl
        c.data.text_field = "sentence"  # two comma-separated columns for sentence pairs
        c.data.train_files = ""  # required
        c.data.eval_files = ""  # "" holds out data.eval_fraction of the train rows
        c.data.eval_fraction = 0.1
        c.data.metrics = ""  # accuracy (pearson, spearman when data.num_labels=1); e.g. "f1,accuracy"
        c.total_steps = 2_000  # unknown data size: set it to about 3 epochs (3 * examples / batch_size)
        steps_per_epoch = 500
    else:
        text_fields, eval_split, train_examples = GLUE_TASKS[task]
        c.data.source = "tfds"
        c.data.tfds_name = f"glue/{task}"
        c.data.tfds_train_split = "train"
        c.data.tfds_eval_split = eval_split
        c.data.text_field = text_fields
        c.data.metrics = ",".join(GLUE_METRICS[task])  # GLUE's metrics, the first one selects the checkpoint
        c.data.num_labels = 1 if task == "stsb" else 0  # STS-B is regression on 0-5 similarity scores
        steps_per_epoch = math.ceil(train_examples / c.batch_size)
        c.total_steps = EPOCHS * steps_per_epoch
    c.warmup_steps = c.total_steps // 10
    c.eval_every_steps = steps_per_epoch
    c.checkpoint_every_steps = steps_per_epoch

    if "smoke" in variants:
        c.model.size = "tiny"
        c.data.max_seq_len = 32
        c.data.shuffle_buffer = 100
        c.batch_size = 8
        c.total_steps = 6
        c.warmup_steps = 1
        c.log_every_steps = 2
        c.eval_every_steps = 3
        c.eval_steps = 2
        c.checkpoint_every_steps = 3
    return c

"""BERT-Base pretraining on English Wikipedia (TFDS), seq 128: the BERT paper's phase-1 recipe.

Command (TPU VM v3-8 / v4-8, or one H100-class GPU; TFDS data prepared beforehand, see README):
    sslm pretrain --config=configs/bert_base_wikipedia.py --workdir=/mnt/BUCKET/bert_base \
        --config.data.tfds_data_dir=gs://BUCKET/tensorflow_datasets
Variants: `:c4` reads TFDS `c4/en` instead; `:lamb` uses LAMB with batch 8,192 (You et al., 2020) over 7,038 steps.

Hardware and expected runtime: not yet measured. For planning: BERT-Base at seq 128 costs about 2.2e11 model
FLOPs per sequence (3x forward, see sslm_jax/training/flops.py); 1M steps of batch 256 is 5.6e19 FLOPs,
about 33 hours at 50 % MFU on one H100 (989 TFLOP/s bf16 peak), about 40 hours on a v4-8 (4 chips at 275).
Expected result: masked-LM accuracy about 0.65-0.70 at the end of phase 1 (the published BERT-Base figure
after both phases is ~0.71); not yet measured with this code.
"""

from configs import base


def get_config(arg: str | None = None):
    c = base.get_config()
    c.data.source = "tfds"
    c.data.tfds_name = "wikipedia/20230601.en"
    c.data.text_field = "text"
    c.data.tfds_train_split = "train"
    c.data.tfds_eval_split = ""  # hold out eval_fraction of the articles
    c.data.eval_fraction = 0.005
    c.data.vocab_size = 30522  # trained on the corpus unless data.vocab_path points to BERT's vocab.txt
    c.data.max_seq_len = 128
    c.data.max_predictions_per_seq = 20
    c.data.objective = "nsp"
    c.data.masking = "word"
    c.data.shuffle_buffer = 100_000
    c.model.size = "base"
    c.model.dtype = "bfloat16"
    c.batch_size = 256
    c.total_steps = 1_000_000
    c.optimizer = "adamw"
    c.learning_rate = 1e-4
    c.warmup_steps = 10_000
    c.lr_schedule = "linear"
    c.weight_decay = 0.01
    c.log_every_steps = 200
    c.eval_every_steps = 10_000
    c.eval_steps = 100
    c.checkpoint_every_steps = 5_000
    c.keep_checkpoints = 3
    for variant in (arg or "").split(","):
        if variant == "c4":
            c.data.tfds_name = "c4/en"
            c.data.objective = "mlm"  # C4 documents are web pages: no reliable sentence order for NSP
        elif variant == "lamb":
            c.optimizer = "lamb"
            c.batch_size = 8192
            c.total_steps = 7_038
            c.learning_rate = 6e-3
            c.warmup_steps = 2_000
            c.weight_decay = 0.01
        elif variant:
            raise ValueError(f"unknown variant {variant!r} of bert_base_wikipedia.py; use c4 and/or lamb")
    return c

"""ELECTRA-Small, the paper's recipe (Clark et al. 2020, Table 6 / google-research/electra): batch 128, lr 5e-4,
10k warmup then linear decay, seq 128, 1 M steps, 15 % masking, disc_weight 50, generator 1/4 of the discriminator,
embedding size 128, AdamW (eps 1e-6, decay 0.01), dropout 0.1.

Command, on local OpenWebText files (TFDS has no openwebtext builder; use the extracted text, one document per
blank-line-separated block, e.g. from the openwebtext tarballs):
    sslm pretrain --config=configs/electra_small_owt.py --workdir=gs://BUCKET/electra_small \
        --config.data.train_files='/data/openwebtext/**/*.txt'
or on TFDS C4 (prepared once with `tfds build c4/en`):
    sslm pretrain --config=configs/electra_small_owt.py:c4 --workdir=... --config.data.tfds_data_dir=gs://BUCKET/tfds

Hardware: the paper trained ELECTRA-Small for 1 M steps on one V100 in ~4 days; 6.25 % of that (62.5k steps, ~6 h)
already gives GLUE ≈ 74.1. A TPU v3-8/v4-8 or one A100/H100 runs the full recipe in about a day in bf16
(`--config.model.dtype=bfloat16`, the default here). Not yet run with this code.
Expected result (the paper): GLUE dev score 79.9 for the full run (77.4 on the test set), vs BERT-Small 75.1.
The vocabulary: the paper uses BERT's uncased 30,522-token WordPiece vocabulary; set data.vocab_path to it, or
let the run train one of data.vocab_size on the corpus.
"""

from configs import base


def get_config(arg: str | None = None):
    c = base.get_config()
    c.task = "electra"
    c.model.family = "electra"
    c.model.size = "small"
    c.model.dtype = "bfloat16"
    c.model.generator_hidden_fraction = 0.25
    c.data.source = "files"
    c.data.format = "text"
    c.data.train_files = ""  # required: --config.data.train_files=...
    c.data.vocab_size = 30522
    c.data.max_seq_len = 128
    c.data.max_predictions_per_seq = 19  # 15 % of 128
    c.data.mask_rate = 0.15
    c.data.objective = "mlm"
    c.data.shuffle_buffer = 20_000
    c.batch_size = 128
    c.total_steps = 1_000_000
    c.learning_rate = 5e-4
    c.warmup_steps = 10_000
    c.lr_schedule = "linear"
    c.weight_decay = 0.01
    c.adam_eps = 1e-6
    c.max_grad_norm = 1.0
    c.disc_weight = 50.0
    c.checkpoint_every_steps = 10_000
    c.keep_checkpoints = 3
    c.eval_every_steps = 10_000
    c.eval_steps = 50
    c.log_every_steps = 100
    if arg == "c4":
        c.data.source = "tfds"
        c.data.tfds_name = "c4/en"
        c.data.text_field = "text"
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of electra_small_owt.py; use no variant or 'c4'")
    return c

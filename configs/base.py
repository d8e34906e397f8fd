"""Every field of an sslm_jax run, with its default and what it means. Experiments start from `get_config()`.

Other configs do `config = base.get_config()` and change fields; nothing in the trainer reads a default from
anywhere else. Validated once at start-up, section by section, before the workdir is touched
(`sslm_jax.training.validation.validate`).

Resuming a workdir with changed settings (`sslm_jax/training/resume_settings.py` holds the rule per field):
- [applied] from the resumed step on, with a log line "Resuming with a changed setting: total_steps: 6 -> 12":
  total_steps (and so where the learning-rate schedule ends), log/eval/checkpoint cadences, eval_steps,
  keep_checkpoints, the optimizer's hyperparameters (learning_rate, warmup_steps, lr_schedule, weight_decay, adam_*,
  max_grad_norm, disc_weight, replacement_temperature), the layout of the same computation (parallelism,
  mesh_shape, distributed, grad_accum_steps, model.dtype, model.remat, model.attention_implementation, dropout
  rates), end-of-run examples, and init_from / data.vocab_path / data.tfds_data_dir / data.metrics (not read on
  resume, or checked separately).
- [refused] with one line naming the field and both values, before anything is written: task, seed, batch_size,
  optimizer, every other data.* field (max_seq_len, masking, sources, vocab_size, ...: the saved data position belongs
  to the old pipeline) and every other model.* field (the shape of the train state).
Nothing is ignored: the config saved with the next checkpoint is the one that ran since the resume.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    del arg
    c = ml_collections.ConfigDict()

    # --- What to train -----------------------------------------------------------------------------------
    # A registered task (sslm_jax.tasks): "pretrain" (MLM [+ NSP/SOP]), "classify" (fine-tuning; configs/glue.py),
    # "causal_lm" (next-token pretraining; configs/gpt_demo.py), "causal_sft" (prompt -> response; causal_sft.py).
    c.task = "pretrain"
    c.seed = 0  # Seeds parameter init, dropout and the data pipeline (shuffling and masking).

    # --- Model ---------------------------------------------------------------------------------------------
    c.model = ml_collections.ConfigDict()
    c.model.family = "bert"  # a registered model family (sslm_jax.models.registry): "bert" | "gpt".
    c.model.head = ""  # set by the task ("pretraining", "classification", ...) and saved with checkpoints.
    c.model.size = "tiny"  # tiny | mini | small | medium | base | large (sslm_jax.models.bert.SIZES).
    c.model.vocab_size = 0  # 0: take it from the vocabulary file.
    c.model.max_position_embeddings = 512
    c.model.type_vocab_size = 2
    c.model.hidden_act = "gelu"
    c.model.hidden_dropout_prob = 0.1
    c.model.attention_probs_dropout_prob = 0.1
    c.model.dtype = "float32"  # compute dtype; "bfloat16" for mixed precision (parameters stay param_dtype).
    c.model.param_dtype = "float32"
    c.model.remat = False  # recompute layer activations in the backward pass (saves memory, costs ~1/3 FLOPs).
    c.model.pooling = "cls"  # classifiers: "cls" (HF's [CLS] pooler / ELECTRA's token 0) | "mean" (real tokens).
    c.model.attention_implementation = ""  # "" lets XLA choose; "cudnn" forces the fused GPU kernel.
    # ELECTRA: the generator's hidden size as a fraction of the discriminator's; 0 = the size's default (1/4 for
    # tiny/mini/small, 1/3 for base). It must give whole attention heads of the discriminator's head size.
    c.model.generator_hidden_fraction = 0.0

    # --- Data -----------------------------------------------------------------------------------------------
    c.data = ml_collections.ConfigDict()
    c.data.source = "stdlib"  # "stdlib" (embedded offline corpus) | "files" | "tfds".
    c.data.train_files = ""  # glob(s), comma-separated, for source="files".
    c.data.eval_files = ""  # glob(s) for the held-out split; "" holds out `eval_fraction` of the documents.
    c.data.format = "text"  # text (blank-line separated documents) | lines (one document per line) | jsonl | tsv | csv
    c.data.text_field = "text"  # jsonl field / tsv-csv column / TFDS feature holding the text.
    # (task="classify": one text column, or two comma-separated for sentence pairs: "sentence1,sentence2".)
    c.data.tfds_name = ""  # e.g. "wikipedia/20230601.en", "c4/en", "imdb_reviews/plain_text".
    c.data.tfds_train_split = "train"
    c.data.tfds_eval_split = ""  # "" holds out `eval_fraction` of the train split.
    c.data.tfds_data_dir = ""  # "" uses TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR).
    c.data.eval_fraction = 0.02  # documents held out for eval when no eval split/files are given.
    c.data.tokenizer = "wordpiece"  # a registered kind (sslm_jax.data.tokenizers): "wordpiece" | "bpe" (GPT-2's).
    # An existing vocabulary: vocab.txt (wordpiece) or vocab.json with merges.txt beside it (bpe); "" trains one of
    # `tokenizer` on the train corpus.
    c.data.vocab_path = ""
    c.data.vocab_size = 8192  # size of the vocabulary trained when vocab_path is "".
    c.data.lower_case = True
    c.data.max_seq_len = 128
    c.data.max_predictions_per_seq = 20
    c.data.mask_rate = 0.15  # fraction of (non-special) tokens selected for prediction.
    # What one masking unit is (sslm_jax/data/masking.py): "token" (BERT: single pieces) | "word" (whole words: a piece
    # and its "##" continuation pieces together) | "span" (SpanBERT: runs of whole words, lengths from a geometric
    # distribution, p = 0.2, at most 10 words, mean 3.8; needs tokenizer="wordpiece").
    c.data.masking = "token"
    c.data.objective = "mlm"  # "mlm": packed full sentences, no pair task | "nsp" | "sop": sentence pairs.
    c.data.short_seq_prob = 0.1  # google-research/bert: sometimes shorter pair sequences to reduce the skew.
    c.data.segment_attention = False  # packed sequences: attend only within each document.
    c.data.shuffle_buffer = 10_000  # examples (sequences) in the shuffle buffer.
    # Fine-tuning (task="classify"; sslm_jax/data/labelled_sources.py): labelled tfds data or tsv/csv/jsonl files.
    c.data.label_field = "label"  # tsv-csv column / jsonl field / TFDS feature holding the label.
    c.data.label_names = ()  # class names in label-id order; () = TFDS ClassLabel names or the train files' labels.
    c.data.num_labels = 0  # 0: as many as label names (a float TFDS label: regression); 1: regression; n: checked.
    c.data.metrics = ""  # glue_metrics names, comma-separated, first = headline; "" = GLUE's for the task, or accuracy.

    # --- Optimisation ---------------------------------------------------------------------------------------
    c.batch_size = 32  # global batch (sequences per step), split evenly over processes and data-parallel shards.
    c.grad_accum_steps = 1  # micro-batches per step; the optimizer sees their mean gradient.
    c.total_steps = 1000  # [applied on resume; every field below is applied or refused as the docstring says]
    c.optimizer = "adamw"  # "adamw" | "lamb"
    c.learning_rate = 1e-4  # peak learning rate after warmup.
    c.warmup_steps = 100
    c.lr_schedule = "linear"  # decay after warmup: "linear" (to 0) | "cosine" (to 0) | "constant"
    c.weight_decay = 0.01  # decoupled; not applied to LayerNorm scales and biases.
    c.adam_b1 = 0.9
    c.adam_b2 = 0.999
    c.adam_eps = 1e-6
    c.max_grad_norm = 1.0  # global-norm clipping; 0 disables.
    c.disc_weight = 50.0  # ELECTRA: weight of the replaced-token-detection loss next to the generator's MLM loss.
    # ELECTRA: the generator's softmax temperature when sampling replacements (the paper's 1; above 1 is closer to
    # uniform noise, easier to detect: see objectives/electra.py).
    c.replacement_temperature = 1.0

    # --- Parallelism ----------------------------------------------------------------------------------------
    c.parallelism = "jit"  # "jit" (sharded jit on a mesh) | "pmap" (data parallel only).
    # (data, fsdp, tensor); -1 in one axis takes the remaining devices. Product must equal the device count.
    c.mesh_shape = (-1, 1, 1)
    c.distributed = False  # call jax.distributed.initialize() (cloud TPU VMs, SLURM, multi-host GPUs).

    # --- Checkpoints, evaluation and logging ----------------------------------------------------------------
    c.init_from = ""  # params-only start: an sslm workdir or checkpoint, or a Hugging Face BERT directory.
    # (With init_from, model.family and the family's shape fields (BERT: size / vocab_size /
    # max_position_embeddings / type_vocab_size / hidden_act) and data.lower_case are taken from that checkpoint,
    # whatever the config says.)
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 3
    c.eval_every_steps = 500
    c.eval_steps = 20  # batches per evaluation; 0 evaluates the whole held-out split.
    c.log_every_steps = 50
    c.peak_tflops_per_device = 0.0  # for the MFU estimate; 0 looks the device kind up (TPUs, recent NVIDIA GPUs).
    c.fill_mask_examples = ()  # sentences with [MASK] whose top predictions are logged at the end.
    c.sample_prompts = ()  # causal LMs: prompts whose sampled continuations are printed at the end.
    c.sample_max_new_tokens = 32  # tokens generated per sample prompt.
    return c

"""Which self-supervised objective pays per CPU-minute: the runs of `bench/objectives.py` (its docstring has the
protocol; it sets the files, the step counts and the seeds):
    python bench/objectives.py --workdir=/tmp/sslm_objectives

Variants:
    pretrain,mlm_token | pretrain,mlm_word | pretrain,mlm_span   BERT-tiny masked LM, masking 15 % of the tokens
                                                                 token by token, by whole words, or by SpanBERT spans
    pretrain,electra                                             ELECTRA-tiny: a 1/4-wide generator + discriminator
    pretrain,electra_lr5e-4                                      the same at ELECTRA-Small's learning rate, 5e-4 (at
                                                                 the shared 2e-3 its discriminator calls every token
                                                                 original; BENCHMARKS.md, "ELECTRA demo")
    pretrain,electra_lr5e-4_t4                                   and replacements sampled at temperature 4 (at 1 the
                                                                 discriminator barely leaves "all original")
    finetune                                                     a classifier on 1,000 SST-2 rows (`model.pooling`
                                                                 cls or mean), scored on SST-2 dev

Every pretraining variant reads the same corpus and vocabulary with the same model width, sequence length, batch
and learning-rate schedule shape; only the objective differs. `total_steps`, `warmup_steps` and the checkpoint
cadence are the bench's (from each objective's measured CPU seconds per step).

Hardware: 2 CPU cores. Runtime and results: BENCHMARKS.md.
"""

from configs import sst2_lift

# What each pretraining variant changes in configs/sst2_lift.py's pretraining config: the objective, and for ELECTRA
# variants the learning rate or the replacements' sampling temperature.
_ELECTRA = {"task": "electra", "model.family": "electra", "disc_weight": 50.0}
VARIANTS: dict[str, dict] = {
    "mlm_token": {"data.masking": "token"},
    "mlm_word": {"data.masking": "word"},
    "mlm_span": {"data.masking": "span"},
    "electra": _ELECTRA,
    "electra_lr5e-4": {**_ELECTRA, "learning_rate": 5e-4},
    "electra_lr5e-4_t4": {**_ELECTRA, "learning_rate": 5e-4, "replacement_temperature": 4.0},
}
OBJECTIVES = tuple(VARIANTS)
# A learning rate or a sampling temperature changes no arithmetic: a variant that differs from another only in those
# runs the same program, so the bench reuses that one's CPU seconds per step instead of measuring them again.
SAME_ARITHMETIC = ("learning_rate", "replacement_temperature")
CALIBRATED_AS = {
    name: base
    for name, changes in VARIANTS.items()
    for base, base_changes in VARIANTS.items()
    if base != name
    and set(changes) & set(SAME_ARITHMETIC)
    and base_changes == {k: v for k, v in changes.items() if k not in SAME_ARITHMETIC}
}


def get_config(arg: str | None = None):
    kind, _, objective = (arg or "").partition(",")
    if kind == "finetune" and not objective:
        return sst2_lift.get_config("finetune")
    if kind != "pretrain" or objective not in VARIANTS:
        raise ValueError(
            f"configs/objectives.py:{arg or ''} - use 'finetune' or 'pretrain,OBJECTIVE' with OBJECTIVE one of "
            f"{', '.join(OBJECTIVES)}"
        )
    c = sst2_lift.get_config("pretrain")
    c.data.masking = "token"
    for field, value in VARIANTS[objective].items():
        section, _, name = field.rpartition(".")
        setattr(c[section] if section else c, name, value)
    c.fill_mask_examples = ()
    c.keep_checkpoints = 10
    return c


def validate_objectives(names) -> tuple[str, ...]:
    unknown = sorted(set(names) - set(OBJECTIVES))
    if unknown:
        raise ValueError(f"unknown objective(s) {', '.join(unknown)}; choose from {', '.join(OBJECTIVES)}")
    return tuple(names)


"""ELECTRA pretraining: a generator (small MLM) and a discriminator (replaced-token detection) trained together on
the masked-LM pipeline's batches, sharing their embeddings (models/electra.py, objectives/electra.py).

    task = tasks.get("electra").build(config, tokenizer, process_index=0, process_count=1)

Evaluation reports the generator's masked-LM means and `unigram_accuracy` (as the BERT task does) and the
discriminator's accuracy, precision and recall on replaced tokens next to `rtd_all_original_accuracy`, the
accuracy of calling every token original. The end of a run prints the generator's fill-mask guesses.
"""

from __future__ import annotations

from sslm_jax.errors import ConfigError
from sslm_jax.objectives.electra import make_electra_loss
from sslm_jax.tasks import pretraining
from sslm_jax.tasks.base import Task, register


def validate(config) -> None:
    if config.disc_weight < 0:
        raise ConfigError(f"config.disc_weight={config.disc_weight} must be >= 0 (ELECTRA: 50)")
    if not config.replacement_temperature > 0:
        raise ConfigError(f"config.replacement_temperature={config.replacement_temperature} must be > 0 (ELECTRA: 1)")
    if config.model.family != "electra":
        raise ConfigError(f"task='electra' trains model.family='electra', not {config.model.family!r}")
    pretraining.validate(config)


@register("electra", command="pretrain", validate=validate)
def build(config, tokenizer, *, process_index: int, process_count: int) -> Task:
    # The joint model's output carries the generator's mlm_logits: fill-mask at the end of a run shows what the
    # generator learned, and the eval's MLM means and unigram baseline are the generator's.
    return pretraining.masked_lm_task(
        config,
        tokenizer,
        lambda model: make_electra_loss(
            model,
            disc_weight=config.disc_weight,
            mask_id=tokenizer.mask_id,
            segment_attention=config.data.segment_attention,
            temperature=config.replacement_temperature,
        ),
        progress_keys=("loss", "mlm_accuracy", "rtd_accuracy"),
        process_index=process_index,
        process_count=process_count,
    )

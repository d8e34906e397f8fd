"""ELECTRA pretraining: a generator (small MLM) and a discriminator (replaced-token detection) trained together on
the masked-LM pipeline's batches, sharing their embeddings (models/electra.py, objectives/electra.py).

    task = tasks.get("electra").build(config, tokenizer, process_index=0, process_count=1)

Evaluation reports the generator's masked-LM means and `unigram_accuracy` (as the BERT task does) and the
discriminator's accuracy, precision and recall on replaced tokens next to `rtd_all_original_accuracy`, the
accuracy of calling every token original. The end of a run prints the generator's fill-mask guesses.
"""

from __future__ import annotations

import functools

from sslm_jax.errors import ConfigError
from sslm_jax.inference.fill_mask import print_fill_mask
from sslm_jax.models import registry
from sslm_jax.objectives import make_eval_step
from sslm_jax.objectives.electra import make_electra_loss
from sslm_jax.tasks import pretraining
from sslm_jax.tasks.base import Task, register

HEAD = "pretraining"


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
    from sslm_jax.data import pretraining as pipeline

    d = config.data
    family = registry.get(config.model.family)
    model_config = family.config_for(config.model, tokenizer.vocab_size)
    model = family.model(model_config, HEAD)
    loss_fn = make_electra_loss(
        model, disc_weight=config.disc_weight, mask_id=tokenizer.mask_id, segment_attention=d.segment_attention,
        temperature=config.replacement_temperature,
    )  # fmt: skip
    dataset = functools.partial(
        pipeline.create_dataset,
        d,
        tokenizer,
        per_host_batch=config.batch_size // process_count,
        seed=config.seed,
        max_position_embeddings=model_config.max_position_embeddings,
        process_index=process_index,
        process_count=process_count,
    )
    examples = tuple(config.fill_mask_examples)
    return Task(
        model=model,
        loss_fn=loss_fn,
        train_data=functools.partial(dataset, split="train"),
        eval_data=functools.partial(dataset, split="eval"),
        eval_step=functools.partial(pretraining.eval_step, make_eval_step(loss_fn), model_config.vocab_size),
        summarize=functools.partial(pretraining.summarize, loss_fn.finalize),
        seq_len=d.max_seq_len,
        flops_per_sequence=family.train_flops(model_config, d.max_seq_len, d.max_predictions_per_seq),
        progress_keys=("loss", "mlm_accuracy", "rtd_accuracy"),
        metadata={"model.vocab_size": model_config.vocab_size, "model.head": HEAD},
        # The joint model's output carries the generator's mlm_logits: fill-mask shows what the generator learned.
        end_of_run=functools.partial(print_fill_mask, model, tokenizer, examples, d.max_seq_len) if examples else None,
        description=f"{family.name}-{config.model.size} {model_config}",
    )

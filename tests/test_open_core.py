"""The core is open: a task, objective and model defined here, in tests/ only, train through `train_and_evaluate`
with checkpoints and exact resume, touching no library file.

The toy objective: predict each token's parity bit (id mod 2) from a BERT encoder's output at that token.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow as tf

from configs import base
from sslm_jax import tasks
from sslm_jax.checkpoints import layout, transplant
from sslm_jax.data.tokenizer import BERT_RESERVED_TOKENS
from sslm_jax.models import bert
from sslm_jax.objectives.base import Objective, make_eval_step
from sslm_jax.objectives.metrics import LossTerm, safe_divide
from sslm_jax.training.loop import train_and_evaluate

SEQ, VOCAB = 16, 160


def _finalize_parity(sums):
    return {"parity_accuracy": safe_divide(sums["parity_correct"], sums["parity_count"])}


PARITY = LossTerm("parity_loss_sum", "parity_count", metrics=_finalize_parity)


class ParityModel(nn.Module):
    config: bert.BertConfig

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, deterministic: bool = True):
        x, _ = bert.BertModel(self.config, add_pooling_layer=False, name="bert")(
            input_ids, attention_mask, deterministic=deterministic
        )
        return nn.Dense(2, name="parity")(x)


@dataclasses.dataclass(frozen=True)
class ParityLoss(Objective):
    model: nn.Module
    terms = (PARITY,)

    def denominators(self, batch):
        return {"parity_count": jnp.sum(batch["attention_mask"].astype(jnp.float32))}

    def __call__(self, params, batch, rng=None, deterministic=False, *, denominators=None):
        logits = self.model.apply(
            {"params": params}, batch["input_ids"], batch["attention_mask"], deterministic=deterministic,
            rngs=None if deterministic or rng is None else {"dropout": rng},
        ).astype(jnp.float32)  # fmt: skip
        labels, weights = batch["input_ids"] % 2, batch["attention_mask"].astype(jnp.float32)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        sums = {
            "parity_loss_sum": jnp.sum(nll * weights),
            "parity_correct": jnp.sum((jnp.argmax(logits, -1) == labels) * weights),
            "parity_count": jnp.sum(weights),
        }
        return self.loss(sums, self.denominators(batch) if denominators is None else denominators), sums


def _batches(*, rows: int, seed: int, count: int | None) -> tf.data.Dataset:
    """Random token rows keyed by (seed, batch index): stateless, so the iterator's position is the whole state."""

    def make(index):
        key = tf.stack([tf.cast(seed, tf.int64), index])
        ids = tf.random.stateless_uniform((rows, SEQ), key, minval=5, maxval=VOCAB, dtype=tf.int64)
        return {"input_ids": tf.cast(ids, tf.int32), "attention_mask": tf.ones((rows, SEQ), tf.int32)}

    ds = tf.data.Dataset.range(count) if count is not None else tf.data.Dataset.range(2**62)
    return ds.map(make)


def _summarize(finalize, outputs):
    totals = {k: np.sum([np.asarray(o[k], np.float64) for o in outputs]) for k in outputs[0]}
    return {k: float(v) for k, v in finalize(totals).items()}


@tasks.register("parity", command="pretrain")
def _build(config, tokenizer, *, process_index, process_count):
    model_config = bert.BertConfig.from_size(
        config.model.size, vocab_size=tokenizer.vocab_size, max_position_embeddings=SEQ,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    model = ParityModel(model_config)
    loss_fn = ParityLoss(model)
    rows = config.batch_size // process_count
    return tasks.Task(
        model=model,
        loss_fn=loss_fn,
        train_data=functools.partial(_batches, rows=rows, seed=config.seed, count=None),
        eval_data=functools.partial(_batches, rows=rows, seed=config.seed + 1000, count=2),
        eval_step=make_eval_step(loss_fn),
        summarize=functools.partial(_summarize, loss_fn.finalize),
        seq_len=SEQ,
        flops_per_sequence=1.0,
        progress_keys=("loss", "parity_accuracy"),
        metadata={"model.vocab_size": tokenizer.vocab_size, "model.head": "parity"},
    )


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    tokens = list(BERT_RESERVED_TOKENS) + [f"t{i}" for i in range(VOCAB - len(BERT_RESERVED_TOKENS))]
    path.write_text("\n".join(tokens[:VOCAB]) + "\n")
    return path


def _config(vocab_file, **overrides):
    c = base.get_config()
    c.task = "parity"
    c.data.vocab_path = str(vocab_file)
    c.model.max_position_embeddings = SEQ
    # A constant rate after warmup: the schedule must not depend on total_steps, which the resumed run raises.
    c.batch_size, c.learning_rate, c.warmup_steps, c.weight_decay = 16, 3e-3, 2, 0.0
    c.lr_schedule = "constant"
    c.log_every_steps, c.eval_every_steps, c.checkpoint_every_steps = 1, 6, 6
    c.update(overrides)
    return c


def _params(workdir, step):
    step_dir = layout.latest_checkpoint(workdir / "checkpoints" / str(step))
    tree = transplant.ocp.PyTreeCheckpointHandler().restore(step_dir / layout.STATE_ITEM)
    return jax.tree.map(np.asarray, tree["params"])


def test_a_task_defined_outside_the_library_trains_checkpoints_and_resumes_exactly(tmp_path, vocab_file):
    total = 24
    whole = tmp_path / "whole"
    final = train_and_evaluate(_config(vocab_file, total_steps=total), whole)
    records = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == total
    assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[:4]), losses  # the parity bit is learnable: the loss falls
    assert final["parity_accuracy"] > 0.6 and "eval_parity_accuracy" in records[-1]
    assert layout.load_config(layout.latest_checkpoint(whole)).model.head == "parity"

    # Stopped after 12 steps, then resumed to the end: the same parameters, bit for bit.
    split = tmp_path / "split"
    train_and_evaluate(_config(vocab_file, total_steps=12), split)
    train_and_evaluate(_config(vocab_file, total_steps=total), split)
    jax.tree.map(np.testing.assert_array_equal, _params(split, total), _params(whole, total))

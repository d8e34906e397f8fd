"""Optimizers for BERT pretraining as optax chains: clip → AdamW or LAMB (masked weight decay) → schedule.

    tx, schedule = make_optimizer(config)            # from configs/base.py's top-level fields
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)

or the pieces, optax style:

    schedule = warmup_decay_schedule(peak_value=1e-4, warmup_steps=10_000, total_steps=1_000_000)
    tx = adamw(learning_rate=schedule, weight_decay=0.01, max_grad_norm=1.0)

Weight decay (and LAMB's layer-wise trust ratio) skip LayerNorm scales and all biases, as google-research/bert
does: they are not "weights" whose size should be pulled towards zero.
"""

from __future__ import annotations

from typing import Any

import jax
import optax

from sslm_jax.errors import ConfigError

# Flax names a LayerNorm's parameters `scale` and `bias`, a Dense's `kernel` and `bias`, an Embed's `embedding`.
_NO_DECAY_LEAF_NAMES = frozenset({"bias", "scale"})


def weight_decay_mask(params: Any) -> Any:
    """A tree of bools like `params`: True for parameters that are decayed (kernels, embeddings).

    Args:
      params: a parameter tree (plain arrays, or flax's boxed `nn.LogicallyPartitioned` leaves).

    Returns:
      The same structure with bool leaves: False for every leaf named `bias` or `scale` (LayerNorm scales,
      Dense and LayerNorm biases, the MLM output bias), True otherwise.

    Example:
      >>> weight_decay_mask({"dense": {"kernel": k, "bias": b}, "LayerNorm": {"scale": s, "bias": b2}})
      {'dense': {'kernel': True, 'bias': False}, 'LayerNorm': {'scale': False, 'bias': False}}
    """

    def decayed(path, _):
        # Only dict keys name parameters; flax's metadata boxes add attribute keys (`.value`) that we skip.
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return not names or names[-1] not in _NO_DECAY_LEAF_NAMES

    return jax.tree_util.tree_map_with_path(decayed, params)


def warmup_decay_schedule(
    *, peak_value: float, warmup_steps: int, total_steps: int, decay: str = "linear"
) -> optax.Schedule:
    """Linear warmup from 0 to `peak_value`, then linear or cosine decay to 0 at `total_steps` (or constant).

    Args:
      peak_value: learning rate reached at step `warmup_steps`.
      warmup_steps: steps of linear warmup (0: start at the peak).
      total_steps: the step at which "linear"/"cosine" reach 0 (and stay there).
      decay: "linear" | "cosine" | "constant".

    Returns:
      An optax schedule: step count -> learning rate.

    Example:
      >>> s = warmup_decay_schedule(peak_value=1e-3, warmup_steps=10, total_steps=110)
      >>> s(0), s(5), s(10), s(60), s(110)
      (0.0, 5e-4, 1e-3, 5e-4, 0.0)
    """
    if decay not in ("linear", "cosine", "constant"):
        raise ConfigError(f"lr_schedule={decay!r} is not supported; use 'linear', 'cosine' or 'constant'")
    if warmup_steps < 0 or total_steps <= 0:
        raise ConfigError(f"warmup_steps={warmup_steps} and total_steps={total_steps} must be >= 0 and > 0")
    if decay != "constant" and warmup_steps > total_steps:
        raise ConfigError(f"warmup_steps={warmup_steps} exceeds total_steps={total_steps}; lower warmup_steps")
    decay_steps = max(total_steps - warmup_steps, 1)
    if decay == "linear":
        after = optax.linear_schedule(peak_value, 0.0, decay_steps)
    elif decay == "cosine":
        after = optax.cosine_decay_schedule(peak_value, decay_steps, alpha=0.0)
    else:
        after = optax.constant_schedule(peak_value)
    if warmup_steps == 0:
        return after
    warmup = optax.linear_schedule(0.0, peak_value, warmup_steps)
    return optax.join_schedules([warmup, after], boundaries=[warmup_steps])


def _clipping(max_grad_norm: float) -> list[optax.GradientTransformation]:
    if max_grad_norm < 0:
        raise ConfigError(f"max_grad_norm={max_grad_norm} must be >= 0 (0 disables clipping)")
    return [optax.clip_by_global_norm(max_grad_norm)] if max_grad_norm > 0 else []


def adamw(
    *,
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
) -> optax.GradientTransformation:
    """BERT's AdamW: global-norm clipping, Adam, decoupled weight decay on kernels/embeddings only.

    Args:
      learning_rate: a float or an optax schedule (e.g. `warmup_decay_schedule(...)`).
      b1, b2, eps: Adam's moment decay rates and denominator epsilon (BERT: 0.9, 0.999, 1e-6).
      weight_decay: decoupled decay rate, applied where `weight_decay_mask` is True.
      max_grad_norm: clip the global gradient norm to this value before Adam; 0 disables.

    Returns:
      An `optax.GradientTransformation`.

    Example:
      >>> tx = adamw(learning_rate=1e-4)
      >>> state = tx.init(params); updates, state = tx.update(grads, state, params)
    """
    return optax.chain(
        *_clipping(max_grad_norm),
        optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=weight_decay_mask),
    )


def lamb(
    *,
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = 0.01,
    max_grad_norm: float = 1.0,
) -> optax.GradientTransformation:
    """LAMB (You et al., 2020) for large batches (BERT with batch 8,192 / 32,768), clipping first.

    Like google-research/bert's LAMB, LayerNorm scales and biases get neither weight decay nor the layer-wise
    trust ratio (their Adam update is used as is).

    Args:
      learning_rate: a float or an optax schedule.
      b1, b2, eps: Adam moment rates and epsilon.
      weight_decay: decoupled decay rate on kernels/embeddings.
      max_grad_norm: global-norm clipping before the moments; 0 disables.

    Returns:
      An `optax.GradientTransformation`.

    Example:
      >>> tx = lamb(learning_rate=warmup_decay_schedule(peak_value=6e-3, warmup_steps=2000, total_steps=7038))
    """
    return optax.chain(
        *_clipping(max_grad_norm),
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        optax.add_decayed_weights(weight_decay, mask=weight_decay_mask),
        optax.masked(optax.scale_by_trust_ratio(), weight_decay_mask),
        optax.scale_by_learning_rate(learning_rate),
    )


OPTIMIZERS = {"adamw": adamw, "lamb": lamb}


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optimizer and learning-rate schedule of a run, from configs/base.py's top-level fields.

    Args:
      config: a ConfigDict with optimizer, learning_rate, warmup_steps, lr_schedule, total_steps,
        weight_decay, adam_b1, adam_b2, adam_eps, max_grad_norm.

    Returns:
      (tx, schedule): the gradient transformation and the schedule it uses (step -> learning rate), so the
      train step can report the learning rate of each step.

    Example:
      >>> tx, schedule = make_optimizer(configs.base.get_config())
    """
    if config.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer={config.optimizer!r} is not supported; use one of {', '.join(OPTIMIZERS)}")
    if config.learning_rate <= 0:
        raise ConfigError(f"learning_rate={config.learning_rate} must be > 0")
    schedule = warmup_decay_schedule(
        peak_value=config.learning_rate,
        warmup_steps=config.warmup_steps,
        total_steps=config.total_steps,
        decay=config.lr_schedule,
    )
    tx = OPTIMIZERS[config.optimizer](
        learning_rate=schedule,
        b1=config.adam_b1,
        b2=config.adam_b2,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
    )
    return tx, schedule

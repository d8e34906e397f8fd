"""The pure train step of every objective; compiled (jit with shardings, or pmap) in `partitioning.py`.

    tx, schedule = optim.make_optimizer(config)
    loss_fn = make_pretraining_loss(model, use_nsp=False, segment_attention=True)
    train_step = make_train_step(tx, loss_fn, schedule=schedule, grad_accum_steps=2)
    state, metrics = train_step(state, batch, rng)     # rng: the run's base key; folded with state.step

The step is plain JAX: under `jax.jit` on a mesh the batch and parameters are global sharded arrays and XLA
inserts the collectives; under `jax.pmap` (built with `axis_name=`) it sees one device's share of the batch and
sums gradients and statistics with `lax.psum` over that axis.

Exactness: every piece of a step (micro-batch, pmap device) divides its loss sums by the denominators of the
WHOLE step's batch (total prediction weight, example count), so the pieces' gradients and statistics simply add
up to the full batch's, whatever the number of masked tokens in each piece.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from sslm_jax.training.state import TrainState

Array = jax.Array
Batch = Mapping[str, Array]
# An objective: loss_fn(params, batch, rng, deterministic=False, *, denominators=None) -> (loss, sums), with
# loss_fn.denominators(batch) and loss_fn.finalize(sums); see sslm_jax.objectives.base.
LossFn = Any


def split_micro_batches(batch: Batch, num: int) -> Batch:
    """[B, ...] arrays -> [num, B / num, ...]; micro-batch i holds rows i, i + num, i + 2 num, ...

    Strided rather than contiguous on purpose: a batch sharded in contiguous blocks over D devices keeps every
    micro-batch spread evenly over all D devices (each device slices its own rows; no data moves).

    Example: rows [0 1 2 3 4 5] with num=2 -> micro-batches [0 2 4] and [1 3 5].
    """

    def split(x):
        if x.shape[0] % num:
            raise ValueError(f"batch dimension {x.shape[0]} is not divisible by grad_accum_steps={num}")
        x = x.reshape(x.shape[0] // num, num, *x.shape[1:]).swapaxes(0, 1)
        # With a mesh and logical rules active this keeps each micro-batch sharded like a batch.
        return nn.with_logical_constraint(x, (None, "batch") + (None,) * (x.ndim - 2))

    return {k: split(v) for k, v in batch.items()}


def _psum(tree, axis_name: str | None):
    return tree if axis_name is None else jax.lax.psum(tree, axis_name)


def make_train_step(
    tx: optax.GradientTransformation,
    loss_fn: LossFn,
    *,
    schedule: optax.Schedule | None = None,
    grad_accum_steps: int = 1,
    axis_name: str | None = None,
) -> Callable[[TrainState, Batch, Array], tuple[TrainState, dict[str, Array]]]:
    """A pure `train_step(state, batch, rng) -> (state, metrics)`.

    Args:
      tx: the optimizer (e.g. from `optim.make_optimizer`).
      loss_fn: an objective (`sslm_jax.objectives.base`): `loss_fn(params, batch, rng, deterministic=False, *,
        denominators=None) -> (loss, sums)` with `denominators(batch)` and `finalize(sums)`, e.g.
        `objectives.make_pretraining_loss(...)`; one whose `uses_step` is True also gets `step=state.step`.
      schedule: the optimizer's learning-rate schedule, reported as `learning_rate`; None omits it.
      grad_accum_steps: micro-batches per step (lax.scan; activations of one micro-batch live at a time). The
        optimizer sees exactly the gradient of the whole batch (for the same random draws: each micro-batch folds
        its index into the key, so its dropout masks and ELECTRA's samples differ from one big batch's).
      axis_name: the pmap axis to sum gradients and statistics over; None under jit (global arrays).

    Returns:
      `train_step(state, batch, rng)`: `rng` is the run's base key, folded with `state.step` (and the pmap device
      index) for dropout. metrics: `loss_fn.finalize(sums)` (loss, mlm_loss, mlm_accuracy, ... for MLM),
      grad_norm (before clipping), param_norm (after the update), learning_rate, and the raw sums — all scalars,
      identical on every device.
    """
    if grad_accum_steps < 1:
        raise ValueError(f"grad_accum_steps={grad_accum_steps} must be >= 1")

    def train_step(state: TrainState, batch: Batch, rng: Array) -> tuple[TrainState, dict[str, Array]]:
        rng = jax.random.fold_in(rng, state.step)
        if axis_name is not None:
            rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
        denominators = _psum(loss_fn.denominators(batch), axis_name)
        progress = {"step": state.step} if getattr(loss_fn, "uses_step", False) else {}

        def grads_and_sums(params, micro_batch, micro_rng):
            loss_of = lambda p: loss_fn(p, micro_batch, micro_rng, denominators=denominators, **progress)  # noqa: E731
            return jax.grad(loss_of, has_aux=True)(params)

        if grad_accum_steps == 1:
            grads, sums = grads_and_sums(state.params, batch, rng)
        else:
            micro_batches = split_micro_batches(batch, grad_accum_steps)

            def accumulate(carry, xs):
                index, micro_batch = xs
                new = grads_and_sums(state.params, micro_batch, jax.random.fold_in(rng, index))
                return jax.tree.map(jnp.add, carry, new), None

            first = jax.tree.map(lambda x: x[0], micro_batches)
            zeros = jax.tree.map(
                lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(grads_and_sums, state.params, first, rng)
            )
            (grads, sums), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(grad_accum_steps), micro_batches))

        grads, sums = _psum((grads, sums), axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)

        out = {**loss_fn.finalize(sums), **sums}
        out["grad_norm"] = optax.global_norm(grads)
        out["param_norm"] = optax.global_norm(params)
        if schedule is not None:
            # optax's schedules are indexed by the number of updates already applied, i.e. state.step.
            out["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
        return new_state, out

    return train_step

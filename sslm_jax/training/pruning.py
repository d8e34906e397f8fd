"""`sslm prune`: one-shot magnitude pruning, or pruning while fine-tuning (fixed magnitude mask, or movement).

    prune_run("runs/sst2", "runs/sst2-p70", sparsity=0.7, method="magnitude")              # one shot
    prune_run("runs/sst2", "runs/sst2-p70ft", sparsity=0.7, method="magnitude", steps=500)  # + fine-tune, mask fixed
    prune_run("runs/sst2", "runs/sst2-mv70", sparsity=0.7, method="movement", steps=500)    # learn what to keep

Fine-tuning runs the one training loop on the source run's own config (data, optimizer, eval split) from its
checkpoint (`init_from`), for `steps` steps, through a task that wraps the run's task (registered on the fly, the
open-core way: the loop and the train step learn nothing about pruning):

  - the model's `init` adds, for movement pruning, a score tensor per prunable kernel under `mask_scores/...`
    (a fresh leaf for `init_from`, trained by the same optimizer);
  - the objective and the eval step see `masked(params)`: each prunable kernel times its mask. Magnitude: a
    constant mask. Movement (Sanh et al., 2020): mask = top-k of |W| + S (per kernel or global), with a
    straight-through gradient dL/dS = dL/dM = (dL/dW') * W, so S grows where the loss wants the weight to grow
    away from zero. S starts at 0, so ties and the first pruned weights go by magnitude; with Adam, S moves by
    about the learning rate per step, so after some tens of steps it outweighs |W| (BERT kernels are ~0.02) and
    the mask follows the movement.
  - movement's sparsity follows Sanh et al.'s (and Zhu & Gupta's) cubic schedule: nothing is pruned for the
    first 10 % of the steps (the scores gather movement on the whole network), then the sparsity rises as
    s * (1 - (1 - t)^3) to the target at 70 % of the steps, and the last 30 % train at the target (recovery).
    The objective reads the step (`uses_step`, objectives/base.py); evaluation and the saved masks use the target.

The result is the compressed directory of `sslm_jax.inference.compressed_dir`: masked weights (bitmask + kept
values), masks, per-layer sparsity, and the source run's config, so `sslm eval` reports it on the same split.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pathlib
import shutil
import tempfile
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sslm_jax import tasks
from sslm_jax.errors import SslmError
from sslm_jax.inference import compress, compressed_dir, prune
from sslm_jax.inference.loading import load_model

SCORES = "mask_scores"
METHODS = ("magnitude", "movement")


def _get(tree, name: str):
    for part in name.split("/"):
        tree = tree[part]
    return tree


def _set(tree, name: str, value):
    """A copy of nested dict `tree` with the leaf at `name` replaced."""
    head, *rest = name.split("/")
    return {**tree, head: _set(tree[head], "/".join(rest), value) if rest else value}


def _top_k_masks(scores: dict[str, jax.Array], sparsity, scope: str) -> dict[str, jax.Array]:
    """Keep-masks (float 0/1) of the largest (1 - sparsity) fraction of each score tensor, or of all together.
    `sparsity` may be traced (a schedule's value at the current step)."""

    def keep(values, flat):
        drop = jnp.floor(sparsity * flat.size).astype(jnp.int32)
        threshold = jnp.sort(flat)[jnp.maximum(drop - 1, 0)]
        return jnp.where(drop > 0, values > threshold, True).astype(values.dtype)

    if scope == "global":
        flat = jnp.concatenate([s.ravel() for s in scores.values()])
        return {n: keep(s, flat) for n, s in scores.items()}
    return {n: keep(s, s.ravel()) for n, s in scores.items()}


@dataclasses.dataclass(frozen=True, eq=False)  # compared and hashed by identity (it holds arrays)
class MaskRule:
    """How prunable kernels are masked: `masked(params)` -> the parameters the model computes with."""

    names: tuple[str, ...]
    sparsity: float
    scope: str
    fixed: Any = None  # {name: 0/1 array}: magnitude pruning's constant masks; None: movement scores in params
    steps: int = 0  # movement: the fine-tune's length, for the cubic schedule; 0: the target from the first step

    def sparsity_at(self, step):
        """The sparsity at `step` (traced): 0 until 10 % of `steps`, cubic up to the target at 70 %, then flat."""
        if step is None or not self.steps:
            return self.sparsity
        start, end = 0.1 * self.steps, 0.7 * self.steps
        progress = jnp.clip((step - start) / (end - start), 0.0, 1.0)
        return self.sparsity * (1.0 - (1.0 - progress) ** 3)

    def masks(self, params, step=None) -> dict[str, jax.Array]:
        if self.fixed is not None:
            return {n: jnp.asarray(m) for n, m in self.fixed.items()}
        kernels = {n: _get(params, n) for n in self.names}
        scores = {n: _get(params[SCORES], n) for n in self.names}
        hard = _top_k_masks(
            {n: jax.lax.stop_gradient(jnp.abs(kernels[n])) + scores[n] for n in self.names},
            self.sparsity_at(step),
            self.scope,
        )
        # Straight-through: the forward value is the hard mask, the gradient reaches the scores as dL/dM.
        return {n: hard[n] + scores[n] - jax.lax.stop_gradient(scores[n]) for n in self.names}

    def masked(self, params, step=None):
        masks = self.masks(params, step)
        model_params = {k: v for k, v in params.items() if k != SCORES}
        for n in self.names:
            model_params = _set(model_params, n, _get(model_params, n) * masks[n].astype(_get(model_params, n).dtype))
        return model_params


class MaskedModel:
    """The wrapped task's model, whose `init` adds movement scores and whose `apply` masks the kernels."""

    def __init__(self, module: nn.Module, rule: MaskRule):
        self.module, self.rule = module, rule

    def init(self, *args, **kwargs):
        variables = dict(self.module.init(*args, **kwargs))
        if self.rule.fixed is None:
            params = dict(variables["params"])
            scores = {}
            for n in self.rule.names:  # boxed like the kernel (same logical axes), zero
                kernel = _get(params, n)
                zero = kernel.replace_boxed(jnp.zeros_like(kernel.unbox())) if hasattr(kernel, "unbox") else (
                    jnp.zeros_like(kernel)
                )  # fmt: skip
                scores = _set_new(scores, n, zero)
            params[SCORES] = scores
            variables["params"] = params
        return variables

    def apply(self, variables, *args, **kwargs):
        variables = {**variables, "params": self.rule.masked(variables["params"])}
        return self.module.apply(variables, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)

    def __hash__(self):
        return hash((self.module, self.rule))


def _set_new(tree, name: str, value):
    head, *rest = name.split("/")
    return {**tree, head: _set_new(tree.get(head, {}), "/".join(rest), value) if rest else value}


@dataclasses.dataclass(frozen=True, eq=False)
class MaskedObjective:
    """The wrapped task's objective on `rule.masked(params)` (denominators, finalize, terms: the objective's own)."""

    objective: Any
    rule: MaskRule
    uses_step: bool = True  # the train step passes `step=`: the rule's sparsity schedule reads it

    def __call__(self, params, *args, step=None, **kwargs):
        return self.objective(self.rule.masked(params, step), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.objective, name)


def _wrapping_task(inner: str, rule: MaskRule, keep: Callable[[Any], None]) -> str:
    """Registers (once per rule) a task that is `inner` with masked kernels; returns its name."""
    spec = tasks.get(inner)
    name = f"{inner}+pruning{id(rule)}"

    def build(config, tokenizer, **kwargs):
        task = spec.build(config, tokenizer, **kwargs)
        eval_step = task.eval_step
        return dataclasses.replace(
            task,
            model=MaskedModel(task.model, rule),
            loss_fn=MaskedObjective(task.loss_fn, rule),
            eval_step=lambda params, batch: eval_step(rule.masked(params), batch),
            end_of_run=keep,
        )

    tasks.register(name, command=spec.command, validate=spec.validate)(build)
    return name


def _fine_tune(loaded, rule: MaskRule, steps: int, work: pathlib.Path):
    """Trains the source run's task under `rule` for `steps` steps from its checkpoint; returns the final params."""
    from sslm_jax.training.loop import train_and_evaluate

    final: list[Any] = []
    config = copy.deepcopy(loaded.run_config)
    with config.unlocked():
        config.task = _wrapping_task(loaded.run_config.task, rule, final.append)
        config.init_from = os.fspath(loaded.path)
        config.total_steps = steps
        config.warmup_steps = min(config.warmup_steps, steps // 10)
        config.checkpoint_every_steps = steps
        config.eval_every_steps = steps
    train_and_evaluate(config, work)
    if not final:
        raise SslmError("the pruning fine-tune ended before its last step (preempted?); nothing was written")
    return jax.device_get(final[0])


def prune_run(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    sparsity: float,
    method: str = "magnitude",
    scope: str = "global",
    steps: int = 0,
) -> tuple[pathlib.Path, dict[str, float]]:
    """Prunes `path`'s model to `sparsity` (see the module docstring) into the new directory `out`.

    Returns (out, {kernel path: fraction pruned, "total": ...}). Bad settings are refused before anything is read.
    """
    prune.check_sparsity(sparsity)
    if method not in METHODS:
        raise SslmError(f"--method={method} is unknown; use one of {', '.join(METHODS)}")
    if scope not in prune.SCOPES:
        raise SslmError(f"--scope={scope} is unknown; use one of {', '.join(prune.SCOPES)}")
    if steps < 0:
        raise SslmError(f"--steps={steps} must be >= 0 (fine-tuning steps with the mask applied)")
    if method == "movement" and steps == 0:
        raise SslmError(f"--steps={steps}: movement pruning learns its mask while fine-tuning; give --steps > 0")
    out = compressed_dir.check_out_dir(out)
    if steps == 0:
        return compress.prune_model(path, out, sparsity=sparsity, method=method, scope=scope)
    loaded = load_model(path)
    if loaded.kind != "sslm":
        raise SslmError(f"{path}: fine-tuning (--steps) needs an sslm run, whose config names its training data")
    names = tuple(prune.prunable(compress.layouts(loaded)))
    fixed = None
    if method == "magnitude":
        fixed = prune.magnitude_masks(loaded.params, names, sparsity, scope=scope)
        fixed = {n: m.astype(np.float32) for n, m in fixed.items()}
    rule = MaskRule(names=names, sparsity=sparsity, scope=scope, fixed=fixed, steps=steps if fixed is None else 0)
    work = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.train.", dir=out.parent))
    try:
        trained = _fine_tune(loaded, rule, steps, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    masks = {n: np.asarray(m) > 0.5 for n, m in jax.device_get(rule.masks(trained)).items()}
    params = prune.apply_masks({k: v for k, v in trained.items() if k != SCORES}, masks)
    report = prune.per_layer_sparsity(masks)
    record = {"pruning": {"method": method, "scope": scope, "sparsity": sparsity, "steps": steps, "per_layer": report}}
    if rule.steps:
        record["pruning"]["schedule"] = "cubic: 0 until 10 % of the steps, the target from 70 %"
    return compressed_dir.write(out, loaded, params, record=record, masks=masks), report

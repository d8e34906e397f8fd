"""Where arrays live: the (data, fsdp, tensor) mesh, the logical-axis rules, sharded state, compiled steps.

    mesh = create_mesh(config.mesh_shape)                               # e.g. (-1, 1, 1): pure data parallel
    state, shardings = create_train_state(model, tx, rng, mesh, seq_len=128)
    step = jit_train_step(train_step, shardings, batch_sharding(mesh), mesh)
    state, metrics = step(state, batch, rng)                            # batch: global arrays or numpy

The model names every parameter and activation axis (`batch, length, embed, heads, kv, mlp, vocab`, see
`sslm_jax/models/layers.py`); `LOGICAL_RULES` maps the names onto mesh axes. One table covers the usual layouts
by the mesh shape alone: (N, 1, 1) is pure data parallelism, (1, N, 1) FSDP/ZeRO-3 (parameters and optimizer
state sharded over `fsdp`, the batch too), (1, 1, N) Megatron-style tensor parallelism, and any mix.

The same pure step also runs under `jax.pmap` (data parallel only): `pmap_train_step` with `replicate` /
`shard_batch` / `unreplicate`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.jax_utils
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from sslm_jax.errors import ConfigError
from sslm_jax.training.state import TrainState

MESH_AXES = ("data", "fsdp", "tensor")

# Logical axis -> mesh axes. Rules are tried in order and a mesh axis is used at most once per array: an
# activation [batch, length, embed] takes (data, fsdp) for `batch`, so its `embed` stays unsharded, while a
# parameter [vocab, embed] or [embed, mlp] is sharded over fsdp (and tensor) — FSDP without extra names.
LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
    ("embed", "fsdp"),
)


def resolve_mesh_shape(mesh_shape: Sequence[int], device_count: int) -> tuple[int, int, int]:
    """(data, fsdp, tensor) with at most one -1 replaced by the devices left over; checks the product.

    Example: resolve_mesh_shape((-1, 2, 1), 8) -> (4, 2, 1); (3, 1, 1) on 8 devices raises ConfigError.
    """
    try:  # from the command line it may be any string: "abc" is a ConfigError, not a traceback
        shape = tuple(int(s) for s in mesh_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ConfigError(
            f"mesh_shape={tuple(mesh_shape)} must be 3 positive sizes (data, fsdp, tensor), one of them may be -1"
        )
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if device_count % known:
            raise ConfigError(f"mesh_shape={shape}: {device_count} devices cannot be split into multiples of {known}")
        shape = tuple(device_count // known if s == -1 else s for s in shape)
    if math.prod(shape) != device_count:
        raise ConfigError(
            f"mesh_shape={shape} needs {math.prod(shape)} devices but {device_count} are available; "
            "make the product equal the device count (or use -1 for one axis)"
        )
    return shape


def create_mesh(mesh_shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A `Mesh` with axes ("data", "fsdp", "tensor") over `devices` (default: all), in a topology-aware order.

    Args:
      mesh_shape: (data, fsdp, tensor); one entry may be -1 (fills the remaining devices).
      devices: the devices to use; default `jax.devices()`.

    Returns:
      The mesh (axis types Auto: XLA propagates shardings from the constraints we give).
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = resolve_mesh_shape(mesh_shape, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def data_parallel_size(mesh: Mesh) -> int:
    """The number of batch shards: data × fsdp."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def validate_batch_size(batch_size: int, data_parallel: int, *, grad_accum_steps: int = 1) -> None:
    """ConfigError unless `batch_size` splits evenly into data-parallel shards × micro-batches.

    Args:
      batch_size: the global batch (sequences per step).
      data_parallel: `data_parallel_size(mesh)`, or the device count under pmap.
      grad_accum_steps: micro-batches per step.
    """
    if grad_accum_steps < 1:
        raise ConfigError(f"grad_accum_steps={grad_accum_steps} must be >= 1")
    if batch_size % data_parallel:
        raise ConfigError(
            f"batch_size={batch_size} is not divisible by the data-parallel size {data_parallel} "
            "(mesh data × fsdp, or the device count under pmap); use a multiple of it"
        )
    if batch_size % (data_parallel * grad_accum_steps):
        raise ConfigError(
            f"batch_size={batch_size} is not divisible by data-parallel size {data_parallel} × "
            f"grad_accum_steps={grad_accum_steps}; each device needs whole micro-batches"
        )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of every batch array: leading (batch) axis split over data × fsdp, the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp")))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def _boxed_init_fn(model: nn.Module, tx, seq_len: int) -> Callable[[jax.Array], TrainState]:
    def init(rng: jax.Array) -> TrainState:
        ids = jnp.zeros((1, seq_len), jnp.int32)
        params = model.init({"params": rng, "dropout": rng}, ids)["params"]
        # tx.init maps over the boxed parameters, so Adam's moments inherit their logical axis names.
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    return init


def _check_divisible(abstract_state: Any, specs: Any, mesh: Mesh) -> None:
    def check(path, leaf, spec):
        for size, axes in zip(leaf.shape, tuple(spec)):
            axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
            parts = math.prod(mesh.shape[a] for a in axes)
            if size % parts:
                raise ConfigError(
                    f"parameter {jax.tree_util.keystr(path)} {tuple(leaf.shape)}: a dimension of {size} cannot be "
                    f"split over mesh axes {axes} ({parts} devices); change mesh_shape (or the model size/vocab_size)"
                )

    jax.tree_util.tree_map_with_path(check, abstract_state, specs)


def _state_shardings(model, tx, mesh, *, seq_len, rules):
    init = _boxed_init_fn(model, tx, seq_len)
    boxed = jax.eval_shape(init, jax.random.key(0))
    specs = nn.logical_to_mesh(nn.get_partition_spec(boxed), rules)
    abstract = nn.meta.unbox(boxed)
    _check_divisible(abstract, specs, mesh)
    shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs)
    return init, abstract, shardings


def abstract_train_state(
    model: nn.Module, tx, mesh: Mesh, *, seq_len: int = 16, rules: Sequence = LOGICAL_RULES
) -> TrainState:
    """The TrainState as `jax.ShapeDtypeStruct`s carrying their target `.sharding`: Orbax's restore target.

    Args:
      model: the Flax model (parameters annotated with logical axis names).
      tx: the optimizer (its state's structure depends on it).
      mesh: from `create_mesh`.
      seq_len: length of the dummy input used to trace `model.init` (parameters do not depend on it).
      rules: logical-axis rules.

    Returns:
      A TrainState of ShapeDtypeStructs; nothing is computed or allocated.
    """
    _, abstract, shardings = _state_shardings(model, tx, mesh, seq_len=seq_len, rules=rules)
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)


def create_train_state(
    model: nn.Module, tx, rng: jax.Array, mesh: Mesh, *, seq_len: int = 16, rules: Sequence = LOGICAL_RULES
) -> tuple[TrainState, TrainState]:
    """A freshly initialised TrainState, created directly in its sharded layout (never whole on one device).

    Args:
      model, tx, mesh, seq_len, rules: as for `abstract_train_state`.
      rng: the parameter-init key.

    Returns:
      (state, state_shardings): the state, and a TrainState-shaped tree of NamedShardings for `jit_train_step`.
    """
    init, _, shardings = _state_shardings(model, tx, mesh, seq_len=seq_len, rules=rules)
    state = jax.jit(lambda r: nn.meta.unbox(init(r)), out_shardings=shardings)(rng)
    return state, shardings


def _with_mesh_and_rules(jitted: Callable, mesh: Mesh, rules: Sequence) -> Callable:
    # The model's nn.with_logical_constraint calls only act while a mesh and rules are set at trace time.
    def call(*args):
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            return jitted(*args)

    def lower(*args):
        with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
            return jitted.lower(*args)

    call.jitted = jitted  # e.g. `step.jitted._cache_size()`: one compilation for the whole run
    call.lower = lower  # `step.lower(state, batch, rng).compile().cost_analysis()`
    return call


def jit_train_step(
    train_step: Callable,
    state_shardings: TrainState,
    batch_sharding: NamedSharding,
    mesh: Mesh,
    rules: Sequence = LOGICAL_RULES,
) -> Callable:
    """`train_step` compiled for `mesh`: explicit in/out shardings, the input state donated.

    Args:
      train_step: from `step.make_train_step` (axis_name=None).
      state_shardings: from `create_train_state`.
      batch_sharding: `batch_sharding(mesh)` (one sharding for every batch array).
      mesh: the mesh.
      rules: logical-axis rules for the activations' constraints.

    Returns:
      `step(state, batch, rng) -> (state, metrics)`; metrics are replicated scalars. The input state's buffers
      are reused for the output: do not use `state` after the call.
    """
    replicated = replicated_sharding(mesh)
    jitted = jax.jit(
        train_step,
        in_shardings=(state_shardings, batch_sharding, replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=0,
    )
    return _with_mesh_and_rules(jitted, mesh, rules)


def jit_eval_step(
    eval_step: Callable,
    params_shardings: Any,
    batch_sharding: NamedSharding,
    mesh: Mesh,
    rules: Sequence = LOGICAL_RULES,
) -> Callable:
    """`eval_step` compiled for `mesh`; pass `state_shardings` with a TrainState or `state_shardings.params`
    with bare params. Returns `eval(params_or_state, batch) -> sums` (replicated scalars)."""
    jitted = jax.jit(
        eval_step,
        in_shardings=(params_shardings, batch_sharding),
        out_shardings=replicated_sharding(mesh),
    )
    return _with_mesh_and_rules(jitted, mesh, rules)


# --- pmap (data parallel only) ------------------------------------------------------------------------------

PMAP_AXIS = "batch"


def pmap_train_step(train_step: Callable, *, axis_name: str = PMAP_AXIS) -> Callable:
    """`train_step` (built with the same `axis_name`) under `jax.pmap`, the replicated state donated.

    Call it as `step(replicate(state), shard_batch(batch), replicate(rng))`; metrics come back per device
    (identical after the psum; take `unreplicate(metrics)`).
    """
    return jax.pmap(train_step, axis_name=axis_name, donate_argnums=0)


def pmap_eval_step(eval_step: Callable, *, axis_name: str = PMAP_AXIS) -> Callable:
    """`eval_step` (built with the same `axis_name`) under `jax.pmap`."""
    return jax.pmap(eval_step, axis_name=axis_name)


def replicate(tree: Any, devices: Sequence[jax.Device] | None = None) -> Any:
    """A copy of `tree` on every local device, stacked on a new leading axis (pmap's layout)."""
    return flax.jax_utils.replicate(tree, devices=devices)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of a replicated tree."""
    return flax.jax_utils.unreplicate(tree)


def shard_batch(batch: Any, num_devices: int | None = None) -> Any:
    """[B, ...] host arrays -> [num_devices, B / num_devices, ...] (contiguous rows per device) for pmap.

    Example: 8 rows on 4 devices -> shape [4, 2, ...]; device 0 gets rows 0 and 1.
    """
    num_devices = num_devices or jax.local_device_count()

    def split(x):
        x = np.asarray(x)
        if x.shape[0] % num_devices:
            raise ConfigError(f"per-host batch of {x.shape[0]} is not divisible by the {num_devices} local devices")
        return x.reshape(num_devices, x.shape[0] // num_devices, *x.shape[1:])

    return jax.tree.map(split, batch)

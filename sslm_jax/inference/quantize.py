"""int8 post-training quantization of any Linen model built from `nn.DenseGeneral` and `nn.Embed`.

    layouts = dense_layouts(model, params, input_ids)          # which leaves are kernels, and their input axes
    qparams = quantize_params(params, layouts)                 # kernels and tables -> QTensor(int8, scale)
    with quantized("dynamic"):                                 # or "weights"
        logits = model.apply({"params": qparams}, input_ids)   # the unchanged model, int8 inside

Scales are per output channel and symmetric (absmax / 127): a kernel keeps one scale per output feature, an
embedding table one per row (which is also its output channel when the table is tied to the MLM decoder).

Modes (`MATMULS`):
  weights   int8 storage; each kernel is dequantized into the matmul's dtype and the matmul is the float one
            (the numbers are those of the dequantized model: a weights-only model evaluates exactly).
  dynamic   int8 x int8 -> int32 dot_general: activations are quantized per token (one absmax scale per row of
            the contraction) at run time, rescaled by token scale x channel scale afterwards. XLA:CPU lowers this
            to a real `s8 x s8 -> s32` dot (tests/test_quantize.py checks the compiled HLO).

The model is not rewritten: `quantized(mode)` is a `flax.linen.intercept_methods` context that replaces
`DenseGeneral.__call__`, `Embed.__call__` and `Embed.attend` of modules whose parameter is a `QTensor`. It
applies at trace time, so a task's eval step, `jax.jit` or `jax.export` traced inside the context use it.

Why not qwix (the maintained JAX quantization library)? Tried: qwix 0.1.8 quantizes our BERT with
`qwix.quantize_model(model, PtqProvider(rules))` and the result exports with symbolic shapes (measured, Nov 2026).
It did not fit three ways: (1) it returns a new module class (a subclass generated per model), while our tasks and
their eval steps close over the model they built, so `sslm eval` would have to rebuild every task; an interceptor
context changes no object; (2) it quantizes only dot_general operands: the word table (used by the tied decoder's
`attend`) was stored transposed with the logical names ("vocab", "embed") on a [embed, vocab] array, and the
position and token-type tables stayed float; (3) its parameter tree carries `WithAux`/`HowToQuantize` metadata
that would become our on-disk format. This file is the ~150 lines we need instead.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sslm_jax.errors import SslmError

Array = jax.Array
Path = tuple[str, ...]
INT8_MAX = 127.0


@flax.struct.dataclass
class QTensor:
    """A tensor stored as int8 `values` (the float tensor's shape) times float32 `scale` (1 along reduced axes)."""

    values: Array
    scale: Array

    @property
    def shape(self):
        return self.values.shape

    def dequantize(self, dtype=jnp.float32) -> Array:
        return (self.values.astype(jnp.float32) * self.scale).astype(dtype)


def quantize(x: Array, reduce_axes: tuple[int, ...]) -> QTensor:
    """Symmetric int8 with one scale per slice over `reduce_axes`.

    Example: quantize([[1., -2.], [0.5, 0.25]], reduce_axes=(1,)) -> scale [[2/127], [0.5/127]], values
    [[64, -127], [127, 64]]: each row's largest magnitude maps to 127. All-zero slices get scale 1.
    """
    x = jnp.asarray(x, jnp.float32)
    absmax = jnp.max(jnp.abs(x), axis=reduce_axes, keepdims=True)
    scale = jnp.where(absmax > 0, absmax / INT8_MAX, 1.0)
    values = jnp.clip(jnp.round(x / scale), -INT8_MAX, INT8_MAX).astype(jnp.int8)
    return QTensor(values=values, scale=scale.astype(jnp.float32))


# --- Which leaves are kernels: recorded from one abstract forward pass --------------------------------------------


def dense_layouts(model: nn.Module, params, *inputs, **kwargs) -> dict[Path, int]:
    """{parameter path: number of leading input axes} of every DenseGeneral kernel and Embed table `model` uses.

    A kernel's shape alone does not say which axes are inputs ([embed, heads, kv] for a query projection,
    [heads, kv, embed] for the attention output), so one abstract forward pass (`jax.eval_shape`, no FLOPs)
    records each module's `axis`. Tables are [rows, features]: the feature axis is the reduced one (0 input axes
    is how this map marks them). Example: {("bert", "encoder", "layer_0", "attention", "query", "kernel"): 1,
    ("bert", "embeddings", "word_embeddings", "embedding"): 0, ...}.
    """
    found: dict[Path, int] = {}

    def record(next_fun, args, kw, context):
        module = context.module
        if isinstance(module, nn.DenseGeneral) and context.method_name == "__call__":
            axis = module.axis if isinstance(module.axis, tuple) else (module.axis,)
            found[(*module.path, "kernel")] = len(axis)
        elif isinstance(module, nn.Embed) and context.method_name in ("__call__", "attend"):
            found[(*module.path, "embedding")] = 0
        return next_fun(*args, **kw)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda p: model.apply({"params": p}, *inputs, **kwargs), params)
    return found


def quantize_params(params, layouts: Mapping[Path, int]):
    """`params` with every leaf named in `layouts` replaced by a QTensor (per output channel); others unchanged."""

    def convert(path, leaf):
        key = tuple(getattr(k, "key", str(k)) for k in path)
        if key not in layouts:
            return leaf
        n_in = layouts[key]
        reduce_axes = tuple(range(n_in)) if n_in else (leaf.ndim - 1,)
        return quantize(leaf, reduce_axes)

    return jax.tree_util.tree_map_with_path(convert, params)


def dequantize_params(params, dtype=jnp.float32):
    """The float tree a quantized one stands for (QTensor leaves dequantized; others unchanged)."""
    return jax.tree.map(
        lambda x: x.dequantize(dtype) if isinstance(x, QTensor) else x, params, is_leaf=lambda x: isinstance(x, QTensor)
    )


def is_quantized(params) -> bool:
    return any(isinstance(leaf, QTensor) for leaf in jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, QTensor)))


# --- The matmuls of each mode -------------------------------------------------------------------------------------


def _weights_matmul(x: Array, w: QTensor, contract: tuple[tuple[int, ...], tuple[int, ...]], dtype) -> Array:
    """Float matmul against the dequantized kernel (weights-only quantization)."""
    return jax.lax.dot_general(x.astype(dtype), w.dequantize(dtype), (contract, ((), ())))


def _dynamic_matmul(x: Array, w: QTensor, contract: tuple[tuple[int, ...], tuple[int, ...]], dtype) -> Array:
    """int8 x int8 -> int32 dot_general; activations quantized per token over the contracted axes."""
    x_axes, w_axes = contract
    qx = quantize(x, x_axes)
    y = jax.lax.dot_general(qx.values, w.values, (contract, ((), ())), preferred_element_type=jnp.int32)
    # Output axes: x's free axes, then w's free axes. Both scales broadcast once their reduced axes are dropped.
    x_scale = jnp.squeeze(qx.scale, axis=x_axes)
    w_scale = jnp.squeeze(w.scale, axis=w_axes)
    x_scale = x_scale.reshape(x_scale.shape + (1,) * w_scale.ndim)
    return (y.astype(jnp.float32) * x_scale * w_scale).astype(dtype)


MATMULS: dict[str, Callable[..., Array]] = {"weights": _weights_matmul, "dynamic": _dynamic_matmul}


def _dense(module: nn.DenseGeneral, matmul, inputs: Array) -> Array:
    kernel = module.get_variable("params", "kernel")
    if module.batch_dims:
        raise SslmError(f"{'/'.join(module.path)}: DenseGeneral with batch_dims cannot be quantized")
    axis = module.axis if isinstance(module.axis, tuple) else (module.axis,)
    axis = tuple(a % inputs.ndim for a in axis)
    dtype = module.dtype or inputs.dtype
    y = matmul(inputs, kernel, (axis, tuple(range(len(axis)))), dtype)
    if module.use_bias:
        bias = module.get_variable("params", "bias")
        y = y + jnp.asarray(bias, dtype)
    return y


def _embed_lookup(module: nn.Embed, inputs: Array) -> Array:
    table = module.get_variable("params", "embedding")
    rows = jnp.take(table.values, inputs, axis=0).astype(jnp.float32) * jnp.take(table.scale, inputs, axis=0)
    return rows.astype(module.dtype or jnp.float32)


def _embed_attend(module: nn.Embed, matmul, query: Array) -> Array:
    table = module.get_variable("params", "embedding")
    transposed = QTensor(values=table.values.T, scale=table.scale.T)  # [features, rows]: rows are output channels
    return matmul(query, transposed, ((query.ndim - 1,), (0,)), module.dtype or query.dtype)


def _holds_qtensor(module: nn.Module, name: str) -> bool:
    return module.has_variable("params", name) and isinstance(module.get_variable("params", name), QTensor)


@contextlib.contextmanager
def quantized(mode: str):
    """Within this context, modules whose kernel / table is a QTensor run int8 (`mode`: a key of MATMULS)."""
    if mode not in MATMULS:
        raise SslmError(f"quantization mode {mode!r} is unknown; use one of {', '.join(MATMULS)}")
    matmul = MATMULS[mode]

    def intercept(next_fun, args, kwargs, context):
        module, method = context.module, context.method_name
        if isinstance(module, nn.DenseGeneral) and method == "__call__" and _holds_qtensor(module, "kernel"):
            return _dense(module, matmul, *args, **kwargs)
        if isinstance(module, nn.Embed) and _holds_qtensor(module, "embedding"):
            if method == "__call__":
                return _embed_lookup(module, *args, **kwargs)
            if method == "attend":
                return _embed_attend(module, matmul, *args, **kwargs)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(intercept):
        yield


class QuantizedModel:
    """A model whose `apply` runs inside `quantized(mode)`; everything else is the wrapped module's.

    Inference code (`classify.predict`, `fill_mask`, the portable export) calls `model.apply(...)` and needs no
    change. Hashable like a module, so it can be a static argument of `jax.jit`.
    """

    def __init__(self, module: nn.Module, mode: str):
        if mode not in MATMULS:
            raise SslmError(f"quantization mode {mode!r} is unknown; use one of {', '.join(MATMULS)}")
        self.module, self.mode = module, mode

    def apply(self, variables, *args, **kwargs):
        with quantized(self.mode):
            return self.module.apply(variables, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)

    def __hash__(self):
        return hash((self.module, self.mode))

    def __eq__(self, other):
        return isinstance(other, QuantizedModel) and (self.module, self.mode) == (other.module, other.mode)


def nbytes(params) -> int:
    """Bytes of the arrays of a (possibly quantized) parameter tree."""
    return int(sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(params)))

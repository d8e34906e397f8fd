"""One runner per HTTP route: a batch of rows in, one result (or `RowError`) per row out, at pre-compiled shapes.

    runner = ClassifyRunner(loaded, ServeShapes(max_batch=32, max_top_k=50, max_new_tokens=256))
    runner.warm_up()                        # compiles every (batch bucket, length bucket) pair; returns the count
    runner.run([("a gripping film",), ("dull", "and overlong")])
    # [{"label": "positive", "probabilities": {...}}, ...]    (no "text": the client has it, logs must not)

Rows: classify (text,) or (a, b); fill-mask (text, top_k); embed (text, "mean" | "cls"); generate `GenerateRow`.
Texts are encoded as the library encodes them (`classify.encode`, `fill_mask.encode_with_masks`,
`text_generation.encode_prompts`), so the service's answers are the library's. Everything a row's result needs is
computed inside one jitted function per route (softmax, top-k, pooling), so after warm-up the host only pads,
copies and formats: nothing else reaches XLA.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sslm_jax.errors import SslmError
from sslm_jax.inference import batch_generate, classify, fill_mask, generate, text_generation
from sslm_jax.inference.batching import RowError, bucket_for, size_buckets
from sslm_jax.inference.loading import LoadedModel, family_name
from sslm_jax.models import bert, registry
from sslm_jax.objectives.classification import make_predict_fn

MIN_LENGTH = 8  # the shortest encoder bucket, as in classify._bucket


@dataclasses.dataclass(frozen=True)
class ServeShapes:
    """The limits that fix compiled shapes: rows per batch, fill-mask's largest top_k, generate's max_new_tokens."""

    max_batch: int = 32
    max_top_k: int = 50
    max_new_tokens: int = 256


@dataclasses.dataclass(frozen=True)
class GenerateRow:
    prompt: str
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    seed: int


def _warm(fn: Callable, shapes: Sequence[tuple[int, int]], make_args: Callable, should_stop: Callable[[], bool]) -> int:
    """Compiles `fn` at each (batch, length) until `should_stop()`; returns how many shapes it compiled."""
    for done, (batch, length) in enumerate(shapes):
        if should_stop():
            return done
        jax.block_until_ready(fn(*make_args(batch, length)))
    return len(shapes)


class _EncoderRunner:
    """Shared by classify and embed: rows of texts, packed as fine-tuning packs them, padded to a bucket pair."""

    def __init__(self, loaded: LoadedModel, shapes: ServeShapes, fn: Callable, params: Any):
        self.loaded, self._fn, self._params = loaded, jax.jit(fn), params
        self.batch_buckets = size_buckets(shapes.max_batch)
        self.length_buckets = size_buckets(loaded.max_seq_len, minimum=min(MIN_LENGTH, loaded.max_seq_len))

    def _forward(self, texts: Sequence[tuple[str, ...]]):
        inputs = {}
        for width in sorted({len(t) for t in texts}):  # a batch may mix single texts and pairs of other requests
            where = [i for i, t in enumerate(texts) if len(t) == width]
            for key, value in classify.encode(self.loaded, [texts[i] for i in where]).items():
                inputs.setdefault(key, np.zeros((len(texts), value.shape[1]), value.dtype))[where] = value
        # One forward pass per length bucket present: a batch padded to its longest row would spend most of its
        # FLOPs on padding (SST-2 sentences of 10 and 60 tokens in one batch of 32: 2,048 positions, not ~700).
        buckets = np.array([bucket_for(int(n), self.length_buckets) for n in inputs["attention_mask"].sum(axis=1)])
        groups = [np.flatnonzero(buckets == length) for length in np.unique(buckets)]
        results = [  # dispatched back to back (jax is asynchronous), read after
            self._fn(self._params, _pad_rows({k: v[rows] for k, v in inputs.items()},
                                             bucket_for(len(rows), self.batch_buckets), int(buckets[rows[0]])))
            for rows in groups
        ]  # fmt: skip
        outputs = None
        for rows, result in zip(groups, results):
            result = jax.tree.map(lambda x: np.asarray(x)[: len(rows)], result)
            if outputs is None:
                outputs = jax.tree.map(lambda x: np.zeros((len(texts),) + x.shape[1:], x.dtype), result)
            for out, part in zip(jax.tree.leaves(outputs), jax.tree.leaves(result)):
                out[rows] = part
        return outputs

    def warm_up(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        pairs = [(b, n) for b in self.batch_buckets for n in self.length_buckets]
        keys = ("input_ids", "attention_mask", "token_type_ids")
        args = lambda b, n: (self._params, _pad_rows({k: np.zeros((0, n), np.int32) for k in keys}, b, n))  # noqa: E731
        return _warm(self._fn, pairs, args, should_stop)


def _pad_rows(inputs: dict[str, np.ndarray], batch: int, length: int) -> dict[str, np.ndarray]:
    """Each [N, >= length] array cut to `length` and padded with zero rows to `batch`; padding rows attend to their
    first position, so no row is wholly masked."""
    out = {}
    for key, value in inputs.items():
        padded = np.zeros((batch, length), value.dtype)
        padded[: len(value)] = value[:, :length]
        out[key] = padded
    out["attention_mask"][len(inputs["attention_mask"]) :, 0] = 1
    return out


class ClassifyRunner(_EncoderRunner):
    route = "classify"

    @staticmethod
    def supports(loaded: LoadedModel) -> bool:
        return loaded.head == "classification"

    def __init__(self, loaded: LoadedModel, shapes: ServeShapes):
        predict = make_predict_fn(loaded.model)
        if loaded.is_regression:
            fn = lambda params, batch: predict(params, batch)[:, 0]  # noqa: E731
        else:
            fn = lambda params, batch: jax.nn.softmax(predict(params, batch), axis=-1)  # noqa: E731
        super().__init__(loaded, shapes, fn, loaded.params)

    def run(self, rows: Sequence[tuple[str, ...]]) -> list:
        outputs = self._forward(rows)
        return [{k: v for k, v in r.items() if k != "text"} for r in classify.records(self.loaded, rows, outputs)]


# family -> loaded model -> (the bare encoder module, its parameters): what /v1/embed runs.
def _bert_encoder(loaded: LoadedModel):
    params = loaded.params if loaded.head == "encoder" else loaded.params["bert"]
    return bert.BertModel(loaded.model_config, add_pooling_layer=False), {k: v for k, v in params.items() if k != "pooler"}


ENCODERS: dict[str, Callable[[LoadedModel], tuple[Any, Any]]] = {"bert": _bert_encoder}
POOLINGS = ("mean", "cls")


class EmbedRunner(_EncoderRunner):
    """Pooled last-layer hidden states: the mean over the text's tokens ([CLS] and [SEP] included), or [CLS]'s."""

    route = "embed"

    @staticmethod
    def supports(loaded: LoadedModel) -> bool:
        return family_name(loaded) in ENCODERS and loaded.head != "causal_lm"

    def __init__(self, loaded: LoadedModel, shapes: ServeShapes):
        module, params = ENCODERS[family_name(loaded)](loaded)

        def embed(params, batch):
            hidden, _ = module.apply(
                {"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
            )
            hidden = hidden.astype(jnp.float32)
            mask = batch["attention_mask"][..., None].astype(jnp.float32)
            mean = (hidden * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)
            return {"mean": mean, "cls": hidden[:, 0]}

        super().__init__(loaded, shapes, embed, params)

    def run(self, rows: Sequence[tuple[str, str]]) -> list:
        pooled = self._forward([(text,) for text, _ in rows])
        return [pooled[pooling][i].tolist() for i, (_, pooling) in enumerate(rows)]


class FillMaskRunner:
    """The top-k tokens per [MASK]; k up to `max_top_k`, a compile-time constant (each row then keeps its own k)."""

    route = "fill-mask"

    @staticmethod
    def supports(loaded: LoadedModel) -> bool:
        return family_name(loaded) == "bert" and loaded.head in ("pretraining", "masked_lm")

    def __init__(self, loaded: LoadedModel, shapes: ServeShapes):
        self.loaded, model, k = loaded, loaded.model, min(shapes.max_top_k, loaded.tokenizer.vocab_size)
        num_tokens = len(loaded.tokenizer.vocab)

        def top_tokens(params, input_ids, attention_mask):
            logits = model.apply({"params": params}, input_ids, attention_mask=attention_mask).mlm_logits
            return jax.lax.top_k(fill_mask.token_probabilities(logits, num_tokens), k)

        self._fn = jax.jit(top_tokens)
        self.batch_buckets = size_buckets(shapes.max_batch)
        self.length_buckets = size_buckets(loaded.max_seq_len, minimum=min(MIN_LENGTH, loaded.max_seq_len))

    def run(self, rows: Sequence[tuple[str, int]]) -> list:
        tok, results = self.loaded.tokenizer, [None] * len(rows)
        encoded = {}
        for i, (text, _) in enumerate(rows):
            try:
                encoded[i] = fill_mask.encode_with_masks(tok, text, self.loaded.max_seq_len)
            except SslmError as e:
                results[i] = RowError(str(e))
        if encoded:
            order = list(encoded)
            length = bucket_for(max(len(ids) for ids in encoded.values()), self.length_buckets)
            inputs = {"input_ids": np.full((len(order), length), tok.pad_id, np.int32)}
            inputs["attention_mask"] = np.zeros((len(order), length), np.int32)
            for row, i in enumerate(order):
                inputs["input_ids"][row, : len(encoded[i])] = encoded[i]
                inputs["attention_mask"][row, : len(encoded[i])] = 1
            batch = _pad_rows(inputs, bucket_for(len(order), self.batch_buckets), length)
            scores, ids = map(np.asarray, self._fn(self.loaded.params, batch["input_ids"], batch["attention_mask"]))
            for row, i in enumerate(order):
                top_k = rows[i][1]
                masks = np.flatnonzero(np.asarray(encoded[i]) == tok.mask_id)
                results[i] = [
                    [{"token": tok.vocab[t], "score": float(s)} for t, s in zip(ids[row, p, :top_k], scores[row, p, :top_k])]
                    for p in masks
                ]
        return results

    def warm_up(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        pairs = [(b, n) for b in self.batch_buckets for n in self.length_buckets]
        args = lambda b, n: (self.loaded.params, np.zeros((b, n), np.int32), np.ones((b, n), np.int32))  # noqa: E731
        return _warm(self._fn, pairs, args, should_stop)


class GenerateRunner:
    """Continuations of prompts with per-row settings (`batch_generate`); greedy rows equal `sslm generate`'s."""

    route = "generate"

    @staticmethod
    def supports(loaded: LoadedModel) -> bool:
        return loaded.head == "causal_lm" and registry.get(family_name(loaded)).init_cache is not None

    def __init__(self, loaded: LoadedModel, shapes: ServeShapes):
        self.loaded = loaded
        self.context = generate.model_context(loaded.model)
        self.capacity = min(shapes.max_new_tokens, self.context - 1)
        self._fn = batch_generate.compiled_row_generate(
            loaded.model, init_cache=registry.get(family_name(loaded)).init_cache, capacity=self.capacity,
            eos_id=loaded.tokenizer.eot_id, context_length=self.context,
        )  # fmt: skip
        self.batch_buckets = size_buckets(shapes.max_batch)
        self.prompt_buckets = size_buckets(self.context, minimum=min(generate.MIN_BUCKET, self.context))

    def run(self, rows: Sequence[GenerateRow]) -> list:
        ids, lengths = text_generation.encode_prompts(self.loaded.tokenizer, [r.prompt for r in rows])
        results: list[Any] = [None] * len(rows)
        order = []
        for i, (row, length) in enumerate(zip(rows, lengths)):
            if length + row.max_new_tokens > self.context:
                results[i] = RowError(
                    f"{length} prompt tokens + max_new_tokens {row.max_new_tokens} is more than the model's "
                    f"context of {self.context}"
                )
            else:
                order.append(i)
        if order:
            batch = bucket_for(len(order), self.batch_buckets)
            width = bucket_for(int(lengths[order].max()), self.prompt_buckets)
            prompt_ids = np.zeros((batch, width), np.int32)
            keep = min(width, ids.shape[1])
            prompt_ids[: len(order), :keep] = ids[order, :keep]
            out = self._fn(self.loaded.params, prompt_ids, _padded(lengths[order], batch, 1), self._settings([rows[i] for i in order], batch))
            texts = text_generation.decode_new_tokens(
                self.loaded.tokenizer, np.asarray(out.tokens)[: len(order)], np.asarray(out.lengths)[: len(order)]
            )
            for i, text in zip(order, texts):
                results[i] = {"text": text}
        return results

    @staticmethod
    def _settings(rows: Sequence[GenerateRow], batch: int) -> batch_generate.RowSettings:
        """Per-row settings padded to `batch`; padding rows decode one greedy token."""

        def column(name, dtype, fill):
            return _padded(np.array([getattr(r, name) for r in rows], dtype), batch, fill)

        return batch_generate.RowSettings(
            seeds=column("seed", np.uint32, 0), max_new_tokens=column("max_new_tokens", np.int32, 1),
            temperature=column("temperature", np.float32, 0.0), top_k=column("top_k", np.int32, 0),
            top_p=column("top_p", np.float32, 1.0),
        )  # fmt: skip

    def warm_up(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        pairs = [(b, n) for b in self.batch_buckets for n in self.prompt_buckets]
        dummy = GenerateRow("", 1, 0.0, 0, 1.0, 0)
        return _warm(
            self._fn, pairs,
            lambda b, n: (self.loaded.params, np.zeros((b, n), np.int32), np.ones((b,), np.int32), self._settings([dummy], b)),
            should_stop,
        )  # fmt: skip


def _padded(values: np.ndarray, size: int, fill) -> np.ndarray:
    out = np.full((size,), fill, values.dtype)
    out[: len(values)] = values
    return out


# route -> its runner; the backend offers the routes whose runner `supports` the loaded model.
RUNNERS = {r.route: r for r in (ClassifyRunner, FillMaskRunner, EmbedRunner, GenerateRunner)}

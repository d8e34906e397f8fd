"""The request and response shapes of `sslm serve`, and the limits every request is held to.

    POST /v1/classify   {"texts": [...]} or {"text_pairs": [[a, b], ...]}
                        -> {"results": [{"label": ..., "probabilities": {name: p}}, ...]}   (regression: "score")
    POST /v1/fill-mask  {"texts": [...], "top_k": 5} -> {"results": [[[{"token": t, "score": s}, ...] per mask] per text]}
    POST /v1/embed      {"texts": [...], "pooling": "mean" | "cls"} -> {"embeddings": [[...], ...]}
    POST /v1/generate   {"prompts": [...], "max_new_tokens": N, "temperature": t, "top_k": k, "top_p": p, "seed": s}
                        -> {"results": [{"text": ...}, ...]}

Results are in request order. Parsing is strict (pydantic, `extra="forbid"`): a mistyped field or a string where a
number belongs is a 422 naming the field, not a silent default. Malformed JSON, or a body that is not a JSON object,
is a 400; a body over `max_body_bytes` a 413; a limit below (rows, characters, top_k, max_new_tokens) a 422.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Literal

import pydantic

from sslm_jax.inference.route_runners import GenerateRow, ServeShapes


@dataclasses.dataclass(frozen=True)
class ServeSettings:
    """Batching and limits of one service.

    Attributes:
      max_batch: rows per forward pass (also the largest compiled batch).
      max_wait_ms: how long a batch's first row waits for more rows; 0 with max_batch 1 turns batching off.
      max_body_bytes: request bodies above this answer 413.
      max_rows: texts / pairs / prompts per request.
      max_text_chars: characters per text or prompt.
      max_top_k: fill-mask's largest top_k (a compiled shape).
      max_new_tokens: generate's largest max_new_tokens (a compiled shape: the token buffer).
      drain_timeout_s: on SIGTERM, how long in-flight requests may take before connections are closed.
    """

    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_body_bytes: int = 1 << 20
    max_rows: int = 64
    max_text_chars: int = 10_000
    max_top_k: int = 50
    max_new_tokens: int = 256
    drain_timeout_s: float = 30.0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, (int, float)) and value >= (0 if field.name == "max_wait_ms" else 1)):
                raise ValueError(f"{field.name}={value!r} must be a number >= {0 if field.name == 'max_wait_ms' else 1}")

    def shapes(self) -> ServeShapes:
        return ServeShapes(max_batch=self.max_batch, max_top_k=self.max_top_k, max_new_tokens=self.max_new_tokens)


class Rejected(Exception):
    """A request the service refuses: HTTP `status` with a JSON body {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class _Request(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)


class ClassifyRequest(_Request):
    texts: list[str] | None = None
    text_pairs: list[tuple[str, str]] | None = None


class FillMaskRequest(_Request):
    texts: list[str]
    top_k: int = 5


class EmbedRequest(_Request):
    texts: list[str]
    pooling: Literal["mean", "cls"] = "mean"


class GenerateRequest(_Request):
    prompts: list[str]
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


def _check_texts(name: str, texts: list, settings: ServeSettings) -> None:
    if not texts:
        raise Rejected(422, f"{name} is empty: give at least one")
    if len(texts) > settings.max_rows:
        raise Rejected(422, f"{name} has {len(texts)} entries; the limit is {settings.max_rows} per request")
    for i, text in enumerate(texts):
        for part in (text,) if isinstance(text, str) else text:
            if len(part) > settings.max_text_chars:
                raise Rejected(422, f"{name}[{i}] has {len(part)} characters; the limit is {settings.max_text_chars}")


def _in_range(name: str, value, low, high) -> None:
    if not (low <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
        raise Rejected(422, f"{name}={value} must be in [{low}, {high}]")


def _classify_rows(r: ClassifyRequest, settings: ServeSettings) -> list:
    if (r.texts is None) == (r.text_pairs is None):
        raise Rejected(422, "give exactly one of texts (single texts) or text_pairs ([a, b] pairs)")
    name, rows = ("texts", [(t,) for t in r.texts]) if r.texts is not None else ("text_pairs", list(r.text_pairs))
    _check_texts(name, r.texts if r.texts is not None else r.text_pairs, settings)
    return rows


def _fill_mask_rows(r: FillMaskRequest, settings: ServeSettings) -> list:
    _check_texts("texts", r.texts, settings)
    _in_range("top_k", r.top_k, 1, settings.max_top_k)
    return [(text, r.top_k) for text in r.texts]


def _embed_rows(r: EmbedRequest, settings: ServeSettings) -> list:
    _check_texts("texts", r.texts, settings)
    return [(text, r.pooling) for text in r.texts]


def _generate_rows(r: GenerateRequest, settings: ServeSettings) -> list:
    _check_texts("prompts", r.prompts, settings)
    _in_range("max_new_tokens", r.max_new_tokens, 1, settings.max_new_tokens)
    _in_range("temperature", r.temperature, 0.0, 100.0)
    _in_range("top_k", r.top_k, 0, 1 << 30)
    if not 0.0 < r.top_p <= 1.0:
        raise Rejected(422, f"top_p={r.top_p} must be in (0, 1]")
    _in_range("seed", r.seed, 0, (1 << 32) - 1)
    return [GenerateRow(p, r.max_new_tokens, r.temperature, r.top_k, r.top_p, r.seed) for p in r.prompts]


@dataclasses.dataclass(frozen=True)
class RouteSpec:
    """schema: the request model; rows(request, settings) -> the runner's rows (Rejected on a limit); respond(results
    in order) -> the response body; field: the request field whose entries the rows are, named in a row's error."""

    schema: type[_Request]
    rows: Callable[[Any, ServeSettings], list]
    respond: Callable[[list], dict]
    field: str


ROUTE_SPECS = {
    # Classification and embedding truncate long inputs: their rows never fail one by one ("texts" or "text_pairs").
    "classify": RouteSpec(ClassifyRequest, _classify_rows, lambda results: {"results": results}, "texts"),
    "fill-mask": RouteSpec(FillMaskRequest, _fill_mask_rows, lambda results: {"results": results}, "texts"),
    "embed": RouteSpec(EmbedRequest, _embed_rows, lambda results: {"embeddings": results}, "texts"),
    "generate": RouteSpec(GenerateRequest, _generate_rows, lambda results: {"results": results}, "prompts"),
}


def parse(route: str, body: bytes, settings: ServeSettings) -> list:
    """The rows of a request body for `route`; Rejected 400 (not a JSON object) or 422 (a field or a limit)."""
    spec = ROUTE_SPECS[route]
    try:
        request = spec.schema.model_validate_json(body)
    except pydantic.ValidationError as e:
        errors = e.errors(include_url=False, include_input=False)  # never echo request texts into logs or errors
        if any(err["type"] in ("json_invalid", "model_type", "model_attributes_type") for err in errors):
            raise Rejected(400, "the body must be a JSON object: " + errors[0]["msg"]) from None
        where = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in errors[:3])
        raise Rejected(422, where) from None
    return spec.rows(request, settings)

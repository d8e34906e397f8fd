"""What `sslm serve` serves: a model backend, i.e. a runner for each route the model supports.

    backend = open_backend("runs/sst2", ServeShapes(max_batch=32))
    backend.runners                # {"classify": ClassifyRunner, "embed": EmbedRunner}
    backend.runners["classify"].run([("a gripping film",)])

Backends come from a registry of kinds, consulted newest first; the built-in "checkpoint" kind, registered first,
opens anything `loading.load_model` opens (an sslm run or a Hugging Face directory) and says why when it cannot.
Another artifact, e.g. a portable `jax.export` directory, plugs in with a few lines, no change to the service:

    def open_portable(path, shapes):
        model = portable.load(path)
        return ModelBackend(description={"kind": "portable", ...}, runners={"classify": MyRunner(model, shapes)})

    register_backend(BackendKind("portable", accepts=lambda p: (p / "manifest.json").is_file(), open=open_portable))

A runner is anything with `run(rows) -> list` (one result or `batching.RowError` per row, in order) and
`warm_up(should_stop) -> int` (compiles every shape `run` will meet, checking `should_stop()` between shapes so that a
SIGTERM during warm-up is not kept waiting for all of them; returns how many it compiled); route_runners.py has the
built-in ones.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Callable, Mapping, Protocol, Sequence

from sslm_jax.errors import SslmError
from sslm_jax.inference.loading import family_name
from sslm_jax.inference.route_runners import RUNNERS, ServeShapes

ROUTES = ("classify", "fill-mask", "embed", "generate")


class Runner(Protocol):
    def run(self, rows: Sequence[Any]) -> list: ...

    def warm_up(self, should_stop: Callable[[], bool]) -> int: ...


@dataclasses.dataclass(frozen=True)
class ModelBackend:
    """description: what /healthz reports about the model (no file paths); runners: route name -> its runner."""

    description: Mapping[str, Any]
    runners: Mapping[str, Runner]


@dataclasses.dataclass(frozen=True)
class BackendKind:
    """name; accepts(path) -> whether this kind opens `path`; open(path, shapes) -> ModelBackend (SslmError, one
    line, when the artifact is broken)."""

    name: str
    accepts: Callable[[pathlib.Path], bool]
    open: Callable[[pathlib.Path, ServeShapes], ModelBackend]


_KINDS: dict[str, BackendKind] = {}


def register_backend(kind: BackendKind) -> BackendKind:
    """Adds (or replaces) a kind; kinds registered later are asked first."""
    _KINDS.pop(kind.name, None)
    _KINDS[kind.name] = kind
    return kind


def open_backend(path: str | os.PathLike, shapes: ServeShapes) -> ModelBackend:
    """The backend of the newest registered kind that accepts `path`."""
    path = pathlib.Path(path)
    for kind in reversed(list(_KINDS.values())):
        if kind.accepts(path):
            backend = kind.open(path, shapes)
            unknown = set(backend.runners) - set(ROUTES)
            if unknown or not backend.runners:
                raise SslmError(f"backend {kind.name!r} for {path} offers routes {sorted(backend.runners)}; "
                                f"it must offer some of {', '.join(ROUTES)}")  # fmt: skip
            return backend
    raise SslmError(f"{path}: no model backend opens it (kinds: {', '.join(_KINDS)})")


def _open_checkpoint(path: pathlib.Path, shapes: ServeShapes) -> ModelBackend:
    from sslm_jax.inference.loading import load_model

    loaded = load_model(path, host_tokenizer=True)  # a service never needs TensorFlow for tokenizing
    runners = {route: cls(loaded, shapes) for route, cls in RUNNERS.items() if cls.supports(loaded)}
    if not runners:
        raise SslmError(f"{loaded.path} holds a {family_name(loaded)} {loaded.head} model; no route serves it")
    description = {"kind": "checkpoint", "family": family_name(loaded), "head": loaded.head}
    if loaded.label_names:
        description["labels"] = list(loaded.label_names)
    return ModelBackend(description=description, runners=runners)


register_backend(BackendKind("checkpoint", accepts=lambda path: True, open=_open_checkpoint))

"""`sslm serve`: the model behind an HTTP API, with dynamic batching, bearer-key auth, health and Prometheus metrics.

    app = create_app("runs/sst2", settings=ServeSettings(max_batch=32), api_keys=("s3cret",))   # an ASGI app
    uvicorn.run(app, host="127.0.0.1", port=8080)          # or mount it in your own service; or:
    serve("runs/sst2", host="127.0.0.1", port=8080)        # what `sslm serve` runs (SIGTERM drains, exits 0)

Routes: POST /v1/classify, /v1/fill-mask, /v1/embed, /v1/generate (shapes in service_schemas.py), each answered when
the model supports it and 404 with the reason otherwise; GET or HEAD /healthz (200 once warm; 503 while warming up,
draining or failed, with the state in the body: any answer means the process is live); GET /metrics (Prometheus text).

Why FastAPI + uvicorn, not litserve: litserve runs inference in worker processes fed through multiprocessing queues,
which pickle every request (this service uses no pickle), and brings its own batching loop, where ours must pad to
the shapes compiled at warm-up. FastAPI/Starlette is the most widely deployed ASGI stack, so `create_app` drops into
existing services and test tools; uvicorn (uvloop/httptools when installed) drains in-flight requests on shutdown.

How a request runs: the front middleware (`_Front`) times it, checks the bearer key in constant time (every route but
/healthz), counts it and logs one JSON line (id, route, status, milliseconds, rows, characters: never a text or a
key). The handler reads at most `max_body_bytes`, parses strictly, enforces the limits, and submits its rows to the
route's `Batcher`; one executor thread runs each batch on the model (route_runners.py) at a warm-up-compiled shape.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hmac
import json
import logging
import os
import pathlib
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Sequence

import fastapi
import uvicorn
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from sslm_jax.errors import SslmError
from sslm_jax.inference.backends import ROUTES, ModelBackend, open_backend
from sslm_jax.inference.batching import Batcher, RowError, size_buckets
from sslm_jax.inference.service_metrics import ServiceMetrics
from sslm_jax.inference.service_schemas import ROUTE_SPECS, Rejected, ServeSettings, parse

logger = logging.getLogger("sslm_jax.serve")
CLIENT_CLOSED = 499
OPEN_PATHS = ("/healthz",)  # answered without a key: load balancers probe it
KNOWN_PATHS = tuple(f"/v1/{route}" for route in ROUTES) + ("/healthz", "/metrics")


def log_event(event: str, **fields) -> None:
    """One JSON line on the service's logger."""
    logger.info(json.dumps({"time": round(time.time(), 3), "event": event, **fields}))


class _Service:
    """The state of one app: backend, batchers, the executor thread, metrics and the warm-up state."""

    def __init__(self, backend: ModelBackend, settings: ServeSettings, api_keys: Sequence[str]):
        self.backend, self.settings = backend, settings
        self.keys = tuple(k.encode() for k in api_keys)
        self.metrics = ServiceMetrics(size_buckets(settings.max_batch))
        self.state = "warming_up"  # -> ready | failed; -> draining on SIGTERM
        self.batchers: dict[str, Batcher] = {}
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.on_failure = lambda: None
        self._warm_task: asyncio.Task | None = None
        # Set on SIGTERM or stop: warm-up stops after the shape it is compiling (the executor cannot be interrupted).
        self._stopping = threading.Event()

    async def start(self) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sslm-model")
        for route, runner in self.backend.runners.items():
            self.batchers[route] = Batcher(
                runner.run, max_batch=self.settings.max_batch, max_wait_s=self.settings.max_wait_ms / 1000,
                executor=self.executor, on_batch=self.metrics.batch_rows.labels(route=route).observe,
                on_depth=self.metrics.queue_rows.labels(route=route).set,
            )  # fmt: skip
            self.batchers[route].start()
        self._warm_task = asyncio.get_running_loop().create_task(self._warm_up())

    async def _warm_up(self) -> None:
        loop, start, shapes = asyncio.get_running_loop(), time.monotonic(), 0
        try:
            for runner in self.backend.runners.values():
                shapes += await loop.run_in_executor(self.executor, runner.warm_up, self._stopping.is_set)
        except Exception as e:  # noqa: BLE001 - reported, then the server is told to stop
            self.state = "failed"
            log_event("warm_up_failed", error=type(e).__name__, where=_where(e))
            logger.error("warm-up failed:\n%s", "".join(traceback.format_exception(e)))
            self.on_failure()
            return
        if self._stopping.is_set():
            return
        if self.state == "warming_up":
            self.state = "ready"
            self.metrics.ready.set(1)
        log_event("ready", routes=list(self.backend.runners), compiled_shapes=shapes,
                  seconds=round(time.monotonic() - start, 2))  # fmt: skip

    def begin_drain(self) -> None:
        self._stopping.set()
        self.state = "draining"
        self.metrics.ready.set(0)
        log_event("draining")

    async def stop(self) -> None:
        self._stopping.set()
        if self._warm_task is not None:
            self._warm_task.cancel()
            await asyncio.gather(self._warm_task, return_exceptions=True)
        for batcher in self.batchers.values():
            await batcher.stop()
        if self.executor is not None:  # waits for a batch still running, off the event loop
            await asyncio.get_running_loop().run_in_executor(None, self.executor.shutdown)

    def authorized(self, header: str | None) -> bool:
        if not self.keys:
            return True
        scheme, _, token = (header or "").partition(" ")
        given = token.strip().encode()
        matched = False
        for key in self.keys:  # every key compared, each in constant time
            matched |= hmac.compare_digest(given, key)
        return scheme.lower() == "bearer" and matched


def _where(e: BaseException) -> str:
    frame = traceback.extract_tb(e.__traceback__)[-1:] if e.__traceback__ else []
    return f"{pathlib.Path(frame[0].filename).name}:{frame[0].lineno}" if frame else ""


def _json(status: int, body: dict, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


class _Front:
    """ASGI middleware around every request: id, auth, metrics, one JSON log line; a crash becomes a JSON 500."""

    def __init__(self, app, service: _Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, request_id = time.perf_counter(), uuid.uuid4().hex[:16]
        path = scope["path"]
        route = path if path in KNOWN_PATHS else "other"
        scope.setdefault("state", {})
        status, started = 500, False

        async def send_with_id(message):
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            headers = dict((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
            if path not in OPEN_PATHS and not self.service.authorized(headers.get("authorization")):
                response = _json(401, {"error": "missing or wrong API key: send Authorization: Bearer <key>"},
                                 {"WWW-Authenticate": "Bearer"})  # fmt: skip
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client went away before its body arrived: nothing to answer, and not the server's fault (a 500
            # would page whoever alerts on 5xx). Counted as 499, nginx's "client closed request".
            status = CLIENT_CLOSED
        except Exception as e:  # noqa: BLE001 - logged by type and place (its message may quote a text)
            log_event("error", id=request_id, route=route, error=type(e).__name__, where=_where(e))
            if not started:
                await _json(500, {"error": f"internal error ({type(e).__name__}); request id {request_id}"})(
                    scope, receive, send_with_id
                )
        finally:
            seconds = time.perf_counter() - start
            self.service.metrics.observe(route, status, seconds)
            state = scope["state"]
            log_event("request", id=request_id, method=scope["method"], route=route, status=status,
                      ms=round(seconds * 1000, 2), rows=state.get("rows"), chars=state.get("chars"))  # fmt: skip


async def _read_body(request: fastapi.Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Rejected(413, f"the body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _characters(rows: list) -> int:
    def chars(row) -> int:
        if isinstance(row, str):
            return len(row)
        if isinstance(row, tuple):
            return sum(chars(x) for x in row)
        return len(getattr(row, "prompt", ""))

    return sum(chars(row) for row in rows)


def create_app(
    model: str | os.PathLike | ModelBackend,
    *,
    settings: ServeSettings = ServeSettings(),
    api_keys: Sequence[str] = (),
    routes: Sequence[str] | None = None,
) -> fastapi.FastAPI:
    """The ASGI app serving `model` (an sslm run, a Hugging Face directory, any path a registered backend kind opens,
    or an opened `ModelBackend`). Warm-up starts with the app's lifespan; /healthz says when it is done.

    Args:
      settings: batching and limits (`ServeSettings`).
      api_keys: accepted bearer keys; empty: no auth.
      routes: serve only these of the model's routes (less to compile at start-up); None: all it supports.
    """
    backend = model if isinstance(model, ModelBackend) else open_backend(model, settings.shapes())
    if routes is not None:
        missing = [r for r in routes if r not in backend.runners]
        if missing or not routes:
            raise SslmError(f"routes {', '.join(routes) or '(none)'}: the model serves {', '.join(backend.runners)}")
        backend = dataclasses.replace(backend, runners={r: backend.runners[r] for r in routes})
    service = _Service(backend, settings, api_keys)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = fastapi.FastAPI(title="sslm serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service

    @app.exception_handler(Rejected)
    async def rejected(request, e: Rejected):
        return _json(e.status, {"error": e.message})

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        reason = f"no route {request.url.path}; routes: {', '.join(KNOWN_PATHS)}" if e.status_code == 404 else e.detail
        return _json(e.status_code, {"error": reason}, getattr(e, "headers", None))

    @app.api_route("/healthz", methods=["GET", "HEAD"])  # load balancers probe with either
    async def healthz():
        body = {"status": service.state, "model": dict(backend.description), "routes": list(backend.runners)}
        return _json(200 if service.state == "ready" else 503, body)

    @app.get("/metrics")
    async def metrics():
        content, media_type = service.metrics.exposition()
        return Response(content, media_type=media_type)

    def add_route(route: str):
        async def handle(request: fastapi.Request):
            if route not in backend.runners:
                raise Rejected(404, f"this model ({backend.description.get('head', 'model')}) does not serve "
                                    f"/v1/{route}; it serves {', '.join('/v1/' + r for r in backend.runners)}")  # fmt: skip
            if service.state in ("warming_up", "failed"):
                raise Rejected(503, f"the model is not ready ({service.state}); poll /healthz")
            rows = parse(route, await _read_body(request, settings.max_body_bytes), settings)
            request.state.rows, request.state.chars = len(rows), _characters(rows)
            results = await service.batchers[route].submit(rows)
            failed = [(i, r) for i, r in enumerate(results) if isinstance(r, RowError)]
            if failed:
                # Runners see a batch that may mix requests: the request's own index is known only here.
                field = ROUTE_SPECS[route].field
                errors = [{"index": i, "error": f"{field}[{i}]: {r}"} for i, r in failed]
                return _json(422, {"error": errors[0]["error"], "errors": errors})
            return _json(200, ROUTE_SPECS[route].respond(results))

        app.post(f"/v1/{route}", name=route)(handle)

    for route in ROUTES:
        add_route(route)
    app.add_middleware(_Front, service=service)
    return app


# --- The process: `sslm serve` ----------------------------------------------------------------------------------------


def read_api_keys(path: str | os.PathLike) -> tuple[str, ...]:
    """The keys of an API-key file: one per line; blank lines and lines starting with # are skipped."""
    path = pathlib.Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise SslmError(f"--api-key-file={path}: cannot be read ({e.strerror})") from None
    keys = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))
    if not keys:
        raise SslmError(f"--api-key-file={path} holds no key (one key per line)")
    if any(len(k.split()) != 1 for k in keys):
        raise SslmError(f"--api-key-file={path}: a key contains whitespace")
    if not all(k.isascii() and k.isprintable() for k in keys):
        # HTTP header bytes are read as Latin-1, so a UTF-8 key could never match what a client sends.
        raise SslmError(f"--api-key-file={path}: a key has a non-ASCII or control character; use printable ASCII")
    return keys


class _Server(uvicorn.Server):
    """uvicorn's server, except that SIGTERM / SIGINT mark the service draining (/healthz 503) and the process then
    exits 0 once in-flight requests are answered (uvicorn re-raises the signal after shutdown, which would kill the
    process with the signal's status)."""

    def __init__(self, config: uvicorn.Config, on_signal):
        super().__init__(config)
        self._on_signal = on_signal

    @contextlib.contextmanager
    def capture_signals(self):
        def handle(sig, frame):
            if not self.should_exit:
                self._on_signal()
            self.handle_exit(sig, frame)

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)  # connections made before uvicorn's loop starts wait in the backlog, none is refused
    except OSError as e:
        raise SslmError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    sock.set_inheritable(True)
    return sock


def serve(
    model: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_key_file: str | os.PathLike | None = None,
    settings: ServeSettings = ServeSettings(),
    routes: Sequence[str] | None = None,
) -> int:
    """Serves `model` until SIGTERM / SIGINT, then drains and returns 0 (1 if warm-up failed). Port 0 picks a free
    port; the first JSON log line ("listening") says which. SslmError (one line) on a bad model, key file or port."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # our JSON events say started / ready / stopped
    if not 0 <= port <= 65535:  # getaddrinfo would wrap it (99999 -> 34463) instead of refusing
        raise SslmError(f"--port={port} must be between 0 and 65535 (0: any free port)")
    keys = read_api_keys(api_key_file) if api_key_file is not None else ()
    sock = _bind(host, port)
    app = create_app(model, settings=settings, api_keys=keys, routes=routes)
    service: _Service = app.state.service
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=settings.drain_timeout_s
    )
    server = _Server(config, on_signal=service.begin_drain)
    service.on_failure = lambda: setattr(server, "should_exit", True)
    bound_host, bound_port = sock.getsockname()[:2]
    log_event("listening", host=bound_host, port=bound_port, auth=bool(keys), routes=list(service.backend.runners))
    server.run(sockets=[sock])
    log_event("stopped", state=service.state)
    return 1 if service.state == "failed" else 0

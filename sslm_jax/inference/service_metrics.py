"""The Prometheus metrics of `sslm serve`, one registry per app (so two apps in one process count apart).

    sslm_requests_total{route, status}           requests answered (route: the route template, or "other")
    sslm_request_duration_seconds{route}         latency histogram, from the first byte read to the response
    sslm_batch_rows{route}                       rows per executed batch (histogram)
    sslm_queue_rows{route}                       rows waiting for a batch (gauge)
    sslm_ready                                   1 once every shape is compiled, 0 while warming up or draining
    sslm_xla_compilations_total                  XLA compilations of this process; flat after warm-up

prometheus_client rather than hand-written text: it gets the exposition format (escaping, histogram _bucket/_sum/
_count, content type) right and is what scrapers are tested against.
"""

from __future__ import annotations

import threading

import jax
import prometheus_client as prom

prom.disable_created_metrics()  # the *_created series say nothing a scraper needs and double the text

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class _CompileCounter:
    """Counts XLA backend compilations process-wide through jax.monitoring (one listener, installed once)."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, duration: float, **kwargs) -> None:
        if event == _BACKEND_COMPILE_EVENT:
            with self._lock:
                self.count += 1


_COUNTER: _CompileCounter | None = None
_COUNTER_LOCK = threading.Lock()


def compilations() -> int:
    """XLA compilations in this process since the first call (which installs the listener)."""
    global _COUNTER
    with _COUNTER_LOCK:
        if _COUNTER is None:
            _COUNTER = _CompileCounter()
    return _COUNTER.count


class ServiceMetrics:
    def __init__(self, batch_buckets: tuple[int, ...]):
        compilations()  # start counting before warm-up
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter(
            "sslm_requests", "Requests answered, by route and HTTP status.", ["route", "status"], registry=self.registry
        )
        self.latency = prom.Histogram(
            "sslm_request_duration_seconds", "Request latency in seconds.", ["route"], buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.batch_rows = prom.Histogram(
            "sslm_batch_rows", "Rows per executed batch.", ["route"], buckets=batch_buckets, registry=self.registry
        )
        self.queue_rows = prom.Gauge("sslm_queue_rows", "Rows waiting for a batch.", ["route"], registry=self.registry)
        self.ready = prom.Gauge("sslm_ready", "1 when warm and accepting requests.", registry=self.registry)
        compiled = prom.Gauge(
            "sslm_xla_compilations_total", "XLA compilations in this process (flat after warm-up).",
            registry=self.registry,
        )  # fmt: skip
        compiled.set_function(lambda: float(compilations()))

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST

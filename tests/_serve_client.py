"""HTTP helpers for the service tests: a stdlib client, and a uvicorn server on 127.0.0.1 in a thread of the test
process (real sockets, real HTTP, without the seconds a new process spends importing jax)."""

from __future__ import annotations

import http.client
import json
import threading
import time

import uvicorn


def call(port: int, method: str, path: str, body=None, *, key: str | None = None, raw: bytes | None = None,
         headers: dict | None = None, timeout: float = 300):  # fmt: skip
    """(status, parsed JSON or text, response headers) of one request on a fresh connection."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["Authorization"] = f"Bearer {key}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        text = response.read().decode()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(text) if kind.startswith("application/json") and text else text, dict(response.getheaders())
    finally:
        connection.close()


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample of Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        sample, _, label_text = series.partition("{")
        found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if sample == name and found == want:
            return float(value)
    return 0.0


class ThreadServer:
    """`app` served by uvicorn on 127.0.0.1:<free port> in a daemon thread; `wait_ready` polls /healthz."""

    def __init__(self, app):
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def wait_ready(self, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status, body, _ = call(self.port, "GET", "/healthz")
            if status == 200:
                return body
            assert body["status"] == "warming_up", body
            assert time.monotonic() < deadline, "the service did not warm up in time"
            time.sleep(0.1)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=120)

"""`sslm serve` in process: the ASGI app of `create_app` behind uvicorn on 127.0.0.1 (real HTTP), on tiny BERTs built
from random weights. Each route's answers equal the library's (`classify.predict`, `fill_mask.fill_mask`, the encoder
itself); auth, limits and malformed input answer their status with a JSON error; 50 concurrent requests each get
their own answer; /metrics counts what was sent; and no request compiles anything after warm-up.
(The `sslm serve` process, SIGTERM and generation: tests/test_serve_cli.py.)"""

import concurrent.futures
import json
import time

import jax
import numpy as np
import pytest

from _serve_client import ThreadServer, call, metric
from _serve_models import bert_dir
from sslm_jax.errors import SslmError
from sslm_jax.inference import classify, fill_mask
from sslm_jax.inference.loading import load_model
from sslm_jax.inference.backends import ModelBackend
from sslm_jax.inference.service import _Service, create_app, read_api_keys
from sslm_jax.inference.service_metrics import compilations
from sslm_jax.inference.service_schemas import ServeSettings
from sslm_jax.models import bert

KEY = "test-key-7f3a"
SETTINGS = ServeSettings(max_batch=4, max_wait_ms=20, max_body_bytes=4096, max_rows=8, max_text_chars=200, max_top_k=5)
TEXTS = ["the movie was good", "a dull film", "not very funny and boring", "great actors", "the plot", "fun"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    path = bert_dir(tmp_path_factory.mktemp("models"), "classification")
    server = ThreadServer(create_app(path, settings=SETTINGS, api_keys=[KEY, "second-key"]))
    health = server.wait_ready()
    yield server, load_model(path), health
    server.stop()


@pytest.fixture(scope="module")
def masked_lm(tmp_path_factory):
    path = bert_dir(tmp_path_factory.mktemp("models"), "pretraining")
    server = ThreadServer(create_app(path, settings=SETTINGS))
    server.wait_ready()
    yield server, load_model(path)
    server.stop()


def post(server, route, body, key=KEY):
    return call(server.port, "POST", f"/v1/{route}", body, key=key)[:2]


def test_healthz_reports_the_model_and_its_routes(classifier):
    _, _, health = classifier
    assert health["status"] == "ready"
    assert health["routes"] == ["classify", "embed"]
    assert health["model"]["labels"] == ["negative", "positive"]


def test_routes_narrows_what_is_served(classifier):
    _, loaded, _ = classifier
    assert list(create_app(loaded.path, routes=["embed"]).state.service.backend.runners) == ["embed"]
    with pytest.raises(SslmError, match="the model serves classify, embed"):
        create_app(loaded.path, routes=["generate"])


def test_a_service_of_wordpiece_models_needs_no_tensorflow(classifier, masked_lm, tmp_path):
    """A WordPiece model's service tokenizes on the host: it starts and answers where TensorFlow cannot be imported."""
    import os
    import subprocess
    import sys

    import _blocked_imports

    (tmp_path / "sitecustomize.py").write_text(_blocked_imports.source(("tensorflow", "tensorflow_text")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    code = (
        "import sys\n"
        "from sslm_jax.inference.service import create_app\n"
        "for path in sys.argv[1:]:\n"
        "    runners = create_app(path).state.service.backend.runners\n"
        "    print(sorted(runners))\n"
        "print('tensorflow' in sys.modules)\n"
    )
    paths = [str(classifier[1].path), str(masked_lm[1].path)]
    out = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "False" and "'classify'" in out.stdout and "'fill-mask'" in out.stdout


def test_classify_equals_the_library(classifier):
    server, loaded, _ = classifier
    status, body = post(server, "classify", {"texts": TEXTS})
    assert status == 200
    expected = classify.records(loaded, [(t,) for t in TEXTS], classify.predict(loaded, [(t,) for t in TEXTS]))
    for got, want in zip(body["results"], expected):
        assert got["label"] == want["label"] and set(got) == {"label", "probabilities"}
        np.testing.assert_allclose(list(got["probabilities"].values()), list(want["probabilities"].values()), atol=1e-5)
    pairs = [["the movie", "was good"], ["dull", "boring"]]
    status, body = post(server, "classify", {"text_pairs": pairs})
    want = classify.predict(loaded, [tuple(p) for p in pairs])
    got = [[r["probabilities"][n] for n in loaded.label_names] for r in body["results"]]
    assert status == 200 and np.allclose(got, want, atol=1e-5)


def test_embed_mean_and_cls_are_the_encoders_last_layer(classifier):
    server, loaded, _ = classifier
    texts = ["the movie was good", "fun"]
    inputs = classify.encode(loaded, [(t,) for t in texts])
    params = {k: v for k, v in loaded.params["bert"].items() if k != "pooler"}
    hidden, _ = bert.BertModel(loaded.model_config, add_pooling_layer=False).apply(
        {"params": params}, inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"]
    )
    hidden, mask = np.asarray(hidden), inputs["attention_mask"][..., None]
    for pooling, want in (("mean", (hidden * mask).sum(1) / mask.sum(1)), ("cls", hidden[:, 0])):
        status, body = post(server, "embed", {"texts": texts, "pooling": pooling})
        assert status == 200 and np.allclose(body["embeddings"], want, atol=1e-4), pooling


def test_fill_mask_equals_the_library(masked_lm):
    server, loaded = masked_lm
    texts = ["the movie was [MASK] .", "[MASK] film and [MASK] plot"]
    status, body = post(server, "fill-mask", {"texts": texts, "top_k": 3}, key=None)
    want = fill_mask.fill_mask(loaded.model, loaded.params, loaded.tokenizer, texts, top_k=3, max_seq_len=16)
    assert status == 200 and [len(per_text) for per_text in body["results"]] == [1, 2]
    for got_text, want_text in zip(body["results"], want):
        for got_mask, want_mask in zip(got_text, want_text):
            assert [g["token"] for g in got_mask] == [t for t, _ in want_mask]
            assert np.allclose([g["score"] for g in got_mask], [p for _, p in want_mask], atol=1e-5)


def test_a_row_error_is_a_422_naming_the_row(masked_lm):
    server, _ = masked_lm
    status, body = post(server, "fill-mask", {"texts": ["the [MASK] film", "no mask here", " ".join(["fun"] * 30) + " [MASK]"]})
    assert status == 422 and [e["index"] for e in body["errors"]] == [1, 2]
    assert "no [MASK]" in body["errors"][0]["error"] and "at most 16" in body["errors"][1]["error"]
    assert [e["error"][:10] for e in body["errors"]] == ["texts[1]: ", "texts[2]: "] and body["error"].startswith("texts[1]")


def test_auth(classifier):
    server, _, _ = classifier
    body = {"texts": ["fun"]}
    for key in (None, "wrong", KEY + "x", ""):
        status, answer = post(server, "classify", body, key=key)
        assert status == 401 and "API key" in answer["error"], key
    assert call(server.port, "GET", "/metrics")[0] == 401
    assert call(server.port, "GET", "/no/such/path")[0] == 401  # no route is revealed without a key
    assert call(server.port, "POST", "/v1/classify", body, headers={"Authorization": f"Basic {KEY}"})[0] == 401
    assert post(server, "classify", body)[0] == 200 and post(server, "classify", body, key="second-key")[0] == 200
    assert call(server.port, "GET", "/healthz")[0] == 200
    assert call(server.port, "HEAD", "/healthz")[0] == 200  # load balancers probe with HEAD too


@pytest.mark.parametrize(
    "route, raw, status, fragment",
    [
        ("classify", b'{"texts": ["fun"', 400, "JSON"),
        ("classify", b'["fun"]', 400, "JSON object"),
        ("classify", json.dumps({"texts": ["fun " * 2000]}).encode(), 413, "limit is 4096"),
        ("classify", json.dumps({"texts": ["fun"] * 9}).encode(), 422, "limit is 8"),
        ("classify", json.dumps({"texts": ["f" * 201]}).encode(), 422, "texts[0] has 201 characters"),
        ("classify", json.dumps({"texts": []}).encode(), 422, "empty"),
        ("classify", json.dumps({"texts": ["a"], "text_pairs": [["a", "b"]]}).encode(), 422, "exactly one"),
        ("classify", json.dumps({"text": ["fun"]}).encode(), 422, "text: Extra inputs"),
        ("classify", json.dumps({"texts": [1]}).encode(), 422, "texts.0"),
        ("embed", json.dumps({"texts": ["fun"], "pooling": "max"}).encode(), 422, "pooling"),
        ("fill-mask", json.dumps({"texts": ["[MASK]"]}).encode(), 404, "does not serve /v1/fill-mask"),
        ("generate", json.dumps({"prompts": ["a"]}).encode(), 404, "it serves /v1/classify, /v1/embed"),
    ],
)
def test_bad_requests_answer_a_json_error(classifier, route, raw, status, fragment):
    server, _, _ = classifier
    got, body, headers = call(server.port, "POST", f"/v1/{route}", raw=raw, key=KEY)
    assert got == status and fragment in body["error"], body
    assert headers["content-type"] == "application/json" and len(headers["x-request-id"]) == 16


def test_unknown_paths_and_methods_answer_json(classifier):
    server, _, _ = classifier
    status, body, _ = call(server.port, "GET", "/v2/classify", key=KEY)
    assert status == 404 and "/v1/classify" in body["error"]
    status, body, _ = call(server.port, "GET", "/v1/classify", key=KEY)
    assert status == 405 and body["error"]


def test_limits_of_fill_mask_top_k(masked_lm):
    server, _ = masked_lm
    status, body = post(server, "fill-mask", {"texts": ["[MASK]"], "top_k": 6}, key=None)
    assert status == 422 and "top_k=6 must be in [1, 5]" in body["error"]


def test_fifty_concurrent_requests_each_get_their_own_answers_in_order(classifier):
    server, loaded, _ = classifier
    rs = np.random.RandomState(0)
    requests = [[TEXTS[j] for j in rs.randint(0, len(TEXTS), rs.randint(1, 4))] for _ in range(50)]
    want = {t: p for t, p in zip(TEXTS, classify.predict(loaded, [(t,) for t in TEXTS]))}
    before = call(server.port, "GET", "/metrics", key=KEY)[1]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda texts: post(server, "classify", {"texts": texts}), requests))
    after = call(server.port, "GET", "/metrics", key=KEY)[1]
    for texts, (status, body) in zip(requests, answers):
        assert status == 200 and len(body["results"]) == len(texts)
        got = [[r["probabilities"][n] for n in loaded.label_names] for r in body["results"]]
        assert np.allclose(got, [want[t] for t in texts], atol=1e-5)
    rows = sum(map(len, requests))
    batches = metric(after, "sslm_batch_rows_count", route="classify") - metric(before, "sslm_batch_rows_count", route="classify")
    assert metric(after, "sslm_batch_rows_sum", route="classify") - metric(before, "sslm_batch_rows_sum", route="classify") == rows
    assert batches < 50, "concurrent requests shared batches"
    assert metric(after, "sslm_queue_rows", route="classify") == 0


def test_metrics_count_requests_by_route_and_status(classifier):
    server, _, _ = classifier
    before = call(server.port, "GET", "/metrics", key=KEY)[1]
    for _ in range(3):
        post(server, "classify", {"texts": ["fun"]})
    post(server, "classify", {"texts": []})
    post(server, "embed", {"texts": ["fun"]}, key="wrong")
    after = call(server.port, "GET", "/metrics", key=KEY)[1]

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("sslm_requests_total", route="/v1/classify", status="200") == 3
    assert delta("sslm_requests_total", route="/v1/classify", status="422") == 1
    assert delta("sslm_requests_total", route="/v1/embed", status="401") == 1
    assert delta("sslm_requests_total", route="/metrics", status="200") == 1  # the first /metrics call
    assert delta("sslm_request_duration_seconds_count", route="/v1/classify") == 4
    assert metric(after, "sslm_ready") == 1


def test_no_request_compiles_after_warm_up(classifier, masked_lm):
    server, _, _ = classifier
    before = compilations()
    for rows in (1, 2, 3, 4, 5, 8):  # every batch bucket, and requests split over batches
        texts = [" ".join(["fun"] * (1 + 2 * i % 12)) for i in range(rows)]  # lengths across every length bucket
        assert post(server, "classify", {"texts": texts})[0] == 200
        assert post(server, "embed", {"texts": texts, "pooling": "cls"})[0] == 200
        assert post(masked_lm[0], "fill-mask", {"texts": [t + " [MASK]" for t in texts], "top_k": rows % 5 + 1}, key=None)[0] == 200
    assert compilations() == before


def test_a_client_that_leaves_mid_body_is_a_499_not_a_server_error(classifier):
    """A body cut short by the client is nothing the server did wrong: no 500 for alerts on 5xx to fire on."""
    import socket

    server, _, _ = classifier
    before = metric(call(server.port, "GET", "/metrics", key=KEY)[1], "sslm_requests_total", route="/v1/classify", status="500")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"texts\""
        )  # fmt: skip
    for _ in range(100):  # the server notices the closed socket on its own schedule
        text = call(server.port, "GET", "/metrics", key=KEY)[1]
        if metric(text, "sslm_requests_total", route="/v1/classify", status="499"):
            break
        time.sleep(0.05)
    assert metric(text, "sslm_requests_total", route="/v1/classify", status="499") == 1
    assert metric(text, "sslm_requests_total", route="/v1/classify", status="500") == before


def test_api_key_files_refuse_keys_no_client_could_send(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# comment\n  key-one  \n\nkey-two\n", encoding="utf-8")
    assert read_api_keys(keys) == ("key-one", "key-two")
    for bad, why in (("clé-ü", "non-ASCII"), ("two words", "whitespace"), ("", "holds no key")):
        keys.write_text(f"{bad}\n", encoding="utf-8")
        with pytest.raises(SslmError, match=why):
            read_api_keys(keys)


def test_stopping_during_warm_up_stops_after_the_shape_being_compiled():
    """SIGTERM while warming up: the service stops once the current shape is compiled, not after all of them (a big
    model's warm-up can outlast a scheduler's kill grace period)."""
    import asyncio
    import threading

    compiled, first_started = [], threading.Event()

    class SlowRunner:
        def run(self, rows):
            return rows

        def warm_up(self, should_stop):
            for shape in range(50):
                if should_stop():
                    break
                first_started.set()
                time.sleep(0.05)  # one shape's compilation
                compiled.append(shape)
            return len(compiled)

    backend = ModelBackend(description={"head": "test"}, runners={"embed": SlowRunner()})

    async def main():
        service = _Service(backend, SETTINGS, api_keys=())
        await service.start()
        await asyncio.get_running_loop().run_in_executor(None, first_started.wait)
        service.begin_drain()
        await service.stop()
        return service.state

    assert asyncio.run(main()) == "draining"
    assert 1 <= len(compiled) <= 2, compiled

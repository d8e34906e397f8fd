"""`sslm serve` as a process on 127.0.0.1: generation over HTTP equals the library's, SIGTERM during load answers every
accepted request and exits 0, logs are JSON lines without texts or keys, and bad command lines fail in one line."""

import concurrent.futures
import json
import signal
import sys
import time

import pytest

from _serve_client import call, metric
from _serve_models import bert_dir, gpt_dir
from _sslm_runs import Run, assert_cli_error, session_compile_cache, sslm, sslm_env
from sslm_jax.inference import text_generation
from sslm_jax.inference.loading import load_model
from sslm_jax.models import gpt

pytestmark = pytest.mark.slow
KEY = "cli-key-91c2"
SECRET_TEXT = "the plot was fun"  # sent in requests; must never appear in the logs


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    return {"gpt": gpt_dir(folder), "classifier": bert_dir(folder, "classification"), "folder": folder}


def start(workdir, logs, *flags) -> tuple[Run, int]:
    args = [sys.executable, "-m", "sslm_jax", "serve", f"--workdir={workdir}", "--port=0", *flags]
    run = Run(args, env=sslm_env(cache_dir=session_compile_cache()), logs=logs)
    port = []

    def listening():
        for line in run.stderr.splitlines():
            if line.startswith("{") and json.loads(line)["event"] == "listening":
                port.append(json.loads(line)["port"])
                return True
        return False

    run.wait_for(listening, what="the listening log line", timeout=300)
    run.wait_for(lambda: call(port[0], "GET", "/healthz")[0] == 200, what="readiness", timeout=600, poll_s=0.2)
    return run, port[0]


def test_generate_equals_the_library_and_sampling_ignores_batch_mates(models, tmp_path):
    run, port = start(models["gpt"], tmp_path / "logs", "--max-batch=4", "--max-new-tokens-limit=12")
    try:
        prompts = ["the movie was", "def read_file(path):", ""]
        status, body, _ = call(port, "POST", "/v1/generate", {"prompts": prompts, "max_new_tokens": 8, "temperature": 0})
        loaded = load_model(models["gpt"])
        want = text_generation.complete(loaded.model, loaded.params, loaded.tokenizer, prompts, init_cache=gpt.init_cache,
                                        max_new_tokens=8, temperature=0.0)  # fmt: skip
        assert status == 200 and [r["text"] for r in body["results"]] == [w[0] for w in want]
        sample = {"max_new_tokens": 6, "temperature": 1.0, "top_k": 20, "top_p": 0.9, "seed": 5}
        alone = call(port, "POST", "/v1/generate", {"prompts": ["a dull film"], **sample})[1]["results"]
        mates = call(port, "POST", "/v1/generate", {"prompts": ["x", "a dull film", "the"], **sample})[1]["results"]
        assert alone[0] == mates[1]
        status, body, _ = call(port, "POST", "/v1/generate", {"prompts": ["a"], "max_new_tokens": 13})
        assert status == 422 and "max_new_tokens=13 must be in [1, 12]" in body["error"]
        # A row's error names its index in the request, not in the batch it ran in (5 prompts, batches of 4).
        too_long = ["a"] * 4 + ["the movie was good and fun " * 20]
        status, body, _ = call(port, "POST", "/v1/generate", {"prompts": too_long, "max_new_tokens": 4})
        assert status == 422 and [e["index"] for e in body["errors"]] == [4], body
        assert body["error"].startswith("prompts[4]: ") and "context of 64" in body["error"], body
        assert call(port, "POST", "/v1/classify", {"texts": ["a"]})[0] == 404
        assert metric(call(port, "GET", "/metrics")[1], "sslm_requests_total", route="/v1/generate", status="200") == 3
    finally:
        run.process.send_signal(signal.SIGTERM)
    assert run.wait() == 0, run.stderr[-3000:]


def test_sigterm_during_load_answers_every_accepted_request_and_exits_0(models, tmp_path):
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# serving keys\n{KEY}\n")
    run, port = start(models["classifier"], tmp_path / "logs", f"--api-key-file={key_file}", "--max-batch=64",
                      "--max-wait-ms=400")  # fmt: skip
    body = {"texts": [SECRET_TEXT, "a dull film"]}
    for _ in range(3):
        assert call(port, "POST", "/v1/classify", body, key=KEY)[0] == 200
    counted = call(port, "GET", "/metrics", key=KEY)[1]
    assert metric(counted, "sslm_requests_total", route="/v1/classify", status="200") == 3

    def one(_):
        try:
            return call(port, "POST", "/v1/classify", body, key=KEY, timeout=120)[0]
        except ConnectionRefusedError:
            return "refused"  # never accepted: the server had stopped listening

    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        answers = [pool.submit(one, i) for i in range(40)]
        time.sleep(0.15)  # the requests are waiting for their batch (max-wait 400 ms) when SIGTERM comes
        run.process.send_signal(signal.SIGTERM)
        statuses = [a.result() for a in answers]
    assert run.wait() == 0, run.stderr[-3000:]
    assert set(statuses) <= {200, "refused"} and statuses.count(200) >= 1, statuses
    events = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    drained = [e for e in events[names.index("draining") :] if e["event"] == "request" and e["status"] == 200]
    assert drained, "requests in flight at SIGTERM were answered after it"
    assert sum(1 for e in events if e["event"] == "request" and e["route"] == "/v1/classify") == 3 + statuses.count(200)
    assert SECRET_TEXT not in run.stderr and KEY not in run.stderr


def test_bad_command_lines_fail_in_one_line(models, tmp_path):
    assert_cli_error(sslm("serve", f"--workdir={tmp_path / 'none'}", check=False), "serve", "does not exist")
    assert_cli_error(sslm("serve", f"--workdir={models['gpt']}", "--max-batch=0", check=False), "serve", "--max-batch=0")
    # getaddrinfo would wrap 99999 to port 34463 and serve there
    assert_cli_error(sslm("serve", f"--workdir={models['gpt']}", "--port=99999", check=False), "serve", "between 0 and 65535")
    assert_cli_error(
        sslm("serve", f"--workdir={models['gpt']}", f"--api-key-file={tmp_path / 'k'}", check=False), "serve", "cannot be read"
    )

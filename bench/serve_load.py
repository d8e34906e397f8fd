"""Load test of `sslm serve`: requests/s and latency of a BERT-mini SST-2 classifier, batching on vs off, same run.

    python bench/serve_load.py             # BERT-mini (4 x 256), concurrency 1, 8, 32, 30 s each, both modes (~6 min)
    python bench/serve_load.py --smoke     # BERT-tiny, 2 s per level: checks the script runs

The model: BERT-mini's shape with a 2-label head and an 8,192-token WordPiece vocabulary trained on the SST-2 train
sentences (../shared/data/sst2), weights random (a trained classifier costs exactly the same per request). It runs as
two `sslm serve` processes on 127.0.0.1 one after the other: batching on (--max-batch=32 --max-wait-ms=5) and off
(--max-batch=1 --max-wait-ms=0), each serving /v1/classify only. For each concurrency level, that many client threads
each send one SST-2 dev sentence per request on a kept-alive connection, back to back, for --seconds; the script
reports requests/s, p50/p90/p99 latency seen by the clients, and the mean rows per executed batch from the server's
/metrics. Bounded: 127.0.0.1 only, at most --seconds per level, --max-requests per level. The clients run on the same
cores as the server (Python threads), so absolute numbers understate a server with cores of its own; the on/off
ratio is the point.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2"
MODES = {"on": ("--max-batch=32", "--max-wait-ms=5"), "off": ("--max-batch=1", "--max-wait-ms=0")}


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="BERT-tiny, 2 s per level")
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    p.add_argument("--seconds", type=float, default=30.0, help="per concurrency level and mode")
    p.add_argument("--max-requests", type=int, default=200_000, help="per level: a bound on the load sent")
    return p.parse_args()


def build_model(folder: pathlib.Path, size: str) -> pathlib.Path:
    from sslm_jax.interop import huggingface
    from sslm_jax.models import bert

    vocab_dir = folder / "vocab"
    subprocess.run(
        [sys.executable, "-m", "sslm_jax", "train-tokenizer", f"--input={SST2 / 'train.tsv'}", "--format=tsv",
         "--text-field=sentence", "--vocab-size=8192", f"--out={vocab_dir}"],
        check=True, cwd=ROOT, capture_output=True,
    )  # fmt: skip
    vocab = (vocab_dir / "vocab.txt").read_text().splitlines()
    config = bert.BertConfig.from_size(size, vocab_size=len(vocab), max_position_embeddings=128)
    model = bert.BertForSequenceClassification(config, num_labels=2)
    abstract = jax.eval_shape(lambda rng: bert.init_params(model, rng), jax.random.key(0))
    rs = np.random.RandomState(0)
    params = jax.tree.map(lambda a: (0.02 * rs.randn(*a.shape)).astype(np.float32), abstract)
    return huggingface.save_checkpoint(
        folder / "model", config, params, vocab_file=vocab_dir / "vocab.txt", id2label=["negative", "positive"]
    )


def start_server(model: pathlib.Path, flags, logs: pathlib.Path) -> tuple[subprocess.Popen, int, float]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    err = logs.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "sslm_jax", "serve", f"--workdir={model}", "--port=0", "--routes=classify", *flags],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err,
    )  # fmt: skip
    start, port = time.monotonic(), None
    while port is None or _get(port, "/healthz")[0] != 200:
        if process.poll() is not None:
            raise SystemExit(f"sslm serve ended (exit {process.returncode}); see {logs}")
        if port is None:
            for line in logs.read_text().splitlines():
                if line.startswith('{"') and json.loads(line)["event"] == "listening":
                    port = json.loads(line)["port"]
        time.sleep(0.2)
    return process, port, time.monotonic() - start


def _get(port: int, path: str):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return None, ""
    finally:
        connection.close()


def _batch_totals(port: int) -> tuple[float, float]:
    text = _get(port, "/metrics")[1]
    values = {}
    for line in text.splitlines():
        for name in ("sslm_batch_rows_sum", "sslm_batch_rows_count"):
            if line.startswith(name + "{"):
                values[name] = float(line.rsplit(" ", 1)[1])
    return values.get("sslm_batch_rows_sum", 0.0), values.get("sslm_batch_rows_count", 0.0)


def load(port: int, sentences: list[str], clients: int, seconds: float, max_requests: int) -> dict:
    deadline = time.monotonic() + seconds
    budget = iter(range(max_requests))

    def client(offset: int) -> tuple[list[float], int]:
        connection, latencies, errors = http.client.HTTPConnection("127.0.0.1", port, timeout=60), [], 0
        i = offset
        while time.monotonic() < deadline and next(budget, None) is not None:
            body = json.dumps({"texts": [sentences[i % len(sentences)]]})
            start = time.perf_counter()
            connection.request("POST", "/v1/classify", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            latencies.append(time.perf_counter() - start)
            errors += response.status != 200
            i += clients
        connection.close()
        return latencies, errors

    rows_before, batches_before = _batch_totals(port)
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    elapsed = time.monotonic() - start
    rows_after, batches_after = _batch_totals(port)
    latencies = sorted(x for lat, _ in results for x in lat)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {
        "requests": len(latencies), "errors": sum(e for _, e in results), "rps": len(latencies) / elapsed,
        "p50": q[49], "p90": q[89], "p99": q[98],
        "mean_batch": (rows_after - rows_before) / max(batches_after - batches_before, 1),
    }  # fmt: skip


def main():
    args = _parse()
    if not SST2.is_dir():
        raise SystemExit(f"{SST2} is absent: the load test sends SST-2 dev sentences")
    sentences = [line.split("\t")[0] for line in (SST2 / "dev.tsv").read_text().splitlines()[1:] if line.strip()]
    levels = [int(c) for c in args.concurrency.split(",")]
    seconds = 2.0 if args.smoke else args.seconds
    print(f"machine: {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f} at start (shared machine); "
          f"jax {jax.__version__}", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(pathlib.Path(tmp), "tiny" if args.smoke else "mini")
        table = {}
        for mode, flags in MODES.items():
            process, port, warm = start_server(model, flags, pathlib.Path(tmp) / f"serve_{mode}.log")
            print(f"batching {mode}: warm-up (load + compile every shape) {warm:.1f} s", flush=True)
            try:
                for clients in levels:
                    table[mode, clients] = r = load(port, sentences, clients, seconds, args.max_requests)
                    print(f"  concurrency {clients:3d}: {r['requests']:6d} requests ({r['errors']} errors), "
                          f"{r['rps']:7.1f} req/s, p50 {r['p50'] * 1e3:7.1f} ms, p90 {r['p90'] * 1e3:7.1f} ms, "
                          f"p99 {r['p99'] * 1e3:7.1f} ms, mean batch {r['mean_batch']:.2f}", flush=True)  # fmt: skip
            finally:
                process.send_signal(signal.SIGTERM)
                code = process.wait(timeout=120)
            if code != 0:
                raise SystemExit(f"sslm serve exited {code} after SIGTERM")
    print("batching on / off, requests/s: " + ", ".join(
        f"concurrency {c}: {table['on', c]['rps'] / table['off', c]['rps']:.2f}x" for c in levels), flush=True)  # fmt: skip
    print(f"load average at end {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()

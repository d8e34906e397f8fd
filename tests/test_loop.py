"""End-to-end runs of the trainer: `python -m sslm_jax pretrain --config=configs/bert_demo.py:smoke` in subprocesses.

One uninterrupted run (the module fixture `reference`, which also trains the vocabulary every other run reuses) is
checked for sanity: its metrics, TensorBoard events, curves, checkpoints and printed results agree with each other and
with the schedule. Each run costs start-up and compilation (tens of seconds on two cores), so the runs share one jax
compilation cache and each test checks as much as one run can show. Interrupted runs (kill -9 at 20 points, SIGTERM,
SIGINT) and their exact resume are tests/test_operations.py's.

Why metrics are compared to 1e-6 and states bit for bit: see `_sslm_runs.assert_same_metrics`.
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import socket
import struct
import sys

import numpy as np
import pytest

from _sslm_runs import (
    ROOT,
    Run,
    assert_one_line_error,
    assert_same_metrics,
    checkpoint_steps,
    pretrain_args,
    read_metrics,
    run,
    session_compile_cache,
    sslm_env,
)

pytestmark = pytest.mark.slow  # every test here trains in a subprocess

# Every step logged, so that every record is checked against TensorBoard's; 200 steps, for the loss to fall clearly.
SCHEDULE = dict(total_steps=200, log_every_steps=1, checkpoint_every_steps=20, eval_every_steps=50)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> pathlib.Path:
    """The session's compilation cache (conftest.py): other test files run the same smoke programs."""
    return session_compile_cache() or tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_dir) -> Run:
    """One uninterrupted smoke run of SCHEDULE, which trains its vocabulary into its workdir."""
    base = tmp_path_factory.mktemp("reference")
    result = run(pretrain_args(base / "run", **SCHEDULE), env=sslm_env(cache_dir=cache_dir), logs=base / "logs")
    result.workdir = base / "run"
    return result


def tensorboard_scalars(folder: pathlib.Path) -> dict[tuple[int, str], float]:
    """{(step, tag): value} of every event file in `folder`, read from the TFRecord framing (length, crc, data,
    crc) with tensorboardX's Event proto: no TensorFlow or TensorBoard needed."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for file in sorted(folder.glob("events.out.tfevents.*")):
        data, i = file.read_bytes(), 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + length])
            i += 12 + length + 4
            for value in event.summary.value:
                scalars[(event.step, value.tag)] = value.simple_value
    return scalars


def test_outputs_of_a_run(reference):
    """metrics.jsonl, TensorBoard, curves.png, checkpoints and the printed results of a finished run agree with each
    other and with the schedule; the model learned something."""
    workdir, total = reference.workdir, SCHEDULE["total_steps"]
    records = read_metrics(workdir)
    assert [r["step"] for r in records] == list(range(1, total + 1))
    eval_steps = [s for s in range(1, total + 1) if s % SCHEDULE["eval_every_steps"] == 0 or s == total]
    for r in records:
        for key in ("loss", "mlm_accuracy", "mlm_loss", "perplexity", "grad_norm", "param_norm", "learning_rate"):
            assert math.isfinite(r[key]), (r["step"], key)
        assert 0.0 <= r["mlm_accuracy"] <= 1.0
        eval_keys = {k for k in r if k.startswith("eval_")}
        if r["step"] in eval_steps:
            assert {"eval_loss", "eval_mlm_accuracy", "eval_perplexity", "eval_unigram_accuracy"} <= eval_keys
            assert r["eval_perplexity"] == pytest.approx(math.exp(r["eval_mlm_loss"]), rel=1e-5)
        else:
            assert not eval_keys, r
    losses = [r["loss"] for r in records]
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 0.3, "200 steps of the demo should lower the loss"

    train = tensorboard_scalars(workdir / "tensorboard" / "train")
    evals = tensorboard_scalars(workdir / "tensorboard" / "eval")
    for r in records:
        assert train[(r["step"], "loss")] == pytest.approx(r["loss"], rel=1e-6)
        if r["step"] in eval_steps:
            assert evals[(r["step"], "mlm_accuracy")] == pytest.approx(r["eval_mlm_accuracy"], rel=1e-6)
    assert sorted({step for step, _ in evals}) == eval_steps

    png = (workdir / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert not list(workdir.glob("*.tmp*")), "temporary files are renamed into place"

    keep = 2  # configs/bert_demo.py keeps the two latest checkpoints
    steps = checkpoint_steps(workdir)
    every = SCHEDULE["checkpoint_every_steps"]
    assert steps == list(range(total - (keep - 1) * every, total + 1, every))
    for step in steps:
        folder = workdir / "checkpoints" / str(step)
        assert (folder / "vocab" / "vocab.txt").read_text() == (workdir / "vocab.txt").read_text()
        saved = json.loads((folder / "config" / "config.json").read_text())
        assert saved["model"]["vocab_size"] == len((workdir / "vocab.txt").read_text().splitlines())
        assert (folder / "data" / "process_0-of-1" / "data_position_process0.index").is_file()
        assert (folder / "state").is_dir()

    final = dict(re.findall(r"(\w+)=([-\d.e+]+)", re.search(r"^final eval: (.*)$", reference.stdout, re.M)[1]))
    assert float(final["mlm_accuracy"]) == pytest.approx(records[-1]["eval_mlm_accuracy"], rel=1e-3)
    assert reference.stdout.count("fill-mask: ") == 3  # one per example sentence of configs/bert_demo.py


def test_non_finite_loss_halts_naming_the_step_and_last_good_checkpoint(reference, cache_dir, tmp_path):
    """A learning rate of 1e30 blows the parameters up at the first step that applies it: the run stops there with
    one line naming the step and the newest checkpoint (every step is checkpointed), which holds finite values."""
    workdir = tmp_path / "run"
    args = pretrain_args(
        workdir,
        learning_rate=1e30,
        checkpoint_every_steps=1,
        log_every_steps=1,
        **{"data.vocab_path": reference.workdir / "vocab.txt"},
    )
    result = Run(args, env=sslm_env(cache_dir=cache_dir), logs=tmp_path / "logs")
    line = assert_one_line_error(result, "at step", "last good checkpoint:")
    match = re.search(r"(?:loss|param_norm) is (?:nan|inf|-inf).* at step (\d+); last good checkpoint: (\S+) \(", line)
    assert match, line
    step, good = int(match[1]), pathlib.Path(match[2])
    assert good == workdir / "checkpoints" / str(step - 1)
    assert checkpoint_steps(workdir) == list(range(1, step)), "nothing saved at or after the diverged step"
    records = read_metrics(workdir)
    assert [r["step"] for r in records] == list(range(1, step))
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["param_norm"]) for r in records)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_with_two_devices(reference, cache_dir, tmp_path):
    """Two local processes (jax.distributed over gloo, one CPU device each) against one process with two devices.

    What can be equal: the input pipeline shards documents per host by design, so two hosts read other rows than
    one host does, and whole-loop losses cannot match. The training step given the same global batch can: each
    process feeds its half of a fixed global batch through the loop's JitRunner (`make_array_from_process_local_data`)
    and the train state after the steps must equal the one-process run's bit for bit (a sum over two data shards
    does not depend on the order), their metrics too (to the rounding of a reduction, see the module docstring).
    The full trainer runs too, in both processes: `config.distributed=True`
    makes `train_and_evaluate` call `jax.distributed.initialize()`, which reads the Open MPI variables `mpirun` would
    set; it trains 4 steps, then resumes to 6, each process saving and restoring its own data position.
    """
    vocab = reference.workdir / "vocab.txt"
    driver = [sys.executable, str(ROOT / "tests" / "_two_process_driver.py"), f"--vocab={vocab}"]
    workdir, port = tmp_path / "run", _free_port()
    pair = []
    for rank in range(2):
        mpi = dict(
            OMPI_MCA_orte_hnp_uri="4096.0;tcp://127.0.0.1:1",  # the launcher's address: the coordinator's host
            JAX_COORDINATOR_PORT=str(port),
            OMPI_COMM_WORLD_SIZE="2",
            OMPI_COMM_WORLD_RANK=str(rank),
            OMPI_COMM_WORLD_LOCAL_RANK=str(rank),
            JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
        )
        args = driver + [f"--out={tmp_path / f'rank{rank}.json'}", f"--workdir={workdir}"]
        pair.append(Run(args, env=sslm_env(cache_dir=cache_dir, **mpi), logs=tmp_path / f"rank{rank}"))
    single = Run(
        driver + [f"--out={tmp_path / 'single.json'}"],
        env=sslm_env(devices=2, cache_dir=cache_dir),
        logs=tmp_path / "single",
    )
    for process in (*pair, single):
        process.check(0)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    one = json.loads((tmp_path / "single.json").read_text())

    assert [(r["process_index"], r["process_count"], r["device_count"]) for r in ranks] == [(0, 2, 2), (1, 2, 2)]
    assert (one["process_count"], one["device_count"]) == (1, 2)
    assert ranks[0]["state_digest"] == ranks[1]["state_digest"] == one["state_digest"]
    assert_same_metrics(ranks[0]["steps"], one["steps"])
    assert_same_metrics(ranks[1]["steps"], one["steps"])
    assert len({r["loss"] for r in one["steps"]}) == len(one["steps"]), "the steps change the model"

    # The trainer: both processes evaluated the same global model, resumed, and saved one data folder each.
    assert ranks[0]["first_eval"] == ranks[1]["first_eval"] and ranks[0]["resumed_eval"] == ranks[1]["resumed_eval"]
    for rank in pair:
        assert "Start: fresh at step 0." in rank.stderr and "Start: resumed at step 4." in rank.stderr
    records = read_metrics(workdir)
    assert [r["step"] for r in records] == list(range(1, 7))
    assert all(math.isfinite(r["loss"]) for r in records)
    assert checkpoint_steps(workdir) == [4, 6]
    for step in (4, 6):
        data = workdir / "checkpoints" / str(step) / "data"
        for rank in range(2):
            assert (data / f"process_{rank}-of-2" / f"data_position_process{rank}.index").is_file()

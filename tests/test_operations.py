"""What operators do to a run, as real `sslm` subprocesses (issue 11): a second writer, a damaged checkpoint (truncated
or deleted files), a torn metrics.jsonl, changed settings on resume, a full disk, SIGINT and SIGTERM at any moment.

One tiny run (`trained`: smoke config, a ready-made vocabulary, steps 3 and 6 saved) is trained once per session
(_shared_runs.tiny_pretraining_run); each test works on its own copy of it. Each asserts the one line the user sees
(the error or the fallback), the exit status, and that the files that existed before are unchanged (sha256 before and
after), except what the fault itself moved aside. The runs that need nothing but the copy are started together by
one fixture, since each is mostly start-up time. The fast suite has the runs that train no step (refusals, fallbacks
of readers, repairs on resume); those that train (a resume after a damaged step, a full disk, signals, two writers,
20 kill -9 points) are marked slow.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from _shared_runs import PRETRAINING_SETTINGS, copy_of, tiny_pretraining_run
from _sslm_runs import (
    ROOT,
    Run,
    assert_one_line_error,
    assert_same_metrics,
    checkpoint_steps,
    partial_checkpoints,
    pretrain_args,
    read_metrics,
    run,
    saved_state,
    session_compile_cache,
    sslm_env,
    tree_digest,
    without_timing,
    write_tiny_vocab,
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> pathlib.Path:
    """The session's compilation cache (conftest.py): other test files run the same smoke programs."""
    return session_compile_cache() or tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def trained() -> pathlib.Path:
    """A finished 6-step smoke run with checkpoints 3 and 6 (its workdir; the vocabulary is beside it), built once
    per session (test_cli.py uses it too): every test here works on a copy."""
    workdir = tiny_pretraining_run()
    assert checkpoint_steps(workdir) == [3, 6]
    return workdir


def pretrain(workdir: pathlib.Path, **overrides) -> list[str]:
    vocab = workdir.parent / "vocab.txt"
    if not vocab.exists():
        vocab.parent.mkdir(parents=True, exist_ok=True)
        write_tiny_vocab(vocab)
    return pretrain_args(workdir, **{**PRETRAINING_SETTINGS, "data.vocab_path": vocab, **overrides})


def biggest_state_file(step_dir: pathlib.Path) -> pathlib.Path:
    return max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def without(digest: dict[str, str], *prefixes: str) -> dict[str, str]:
    return {k: v for k, v in digest.items() if not k.startswith(prefixes)}


def sslm_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sslm_jax", *args]


def catches(pid: int, sig: int) -> bool:
    """Whether process `pid` has a handler for `sig` (Linux: the SigCgt mask of /proc/<pid>/status)."""
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(mask >> (sig - 1) & 1)


def last_line(result: Run) -> str:
    return [line for line in result.stderr.splitlines() if line.strip()][-1]


# --- The runs started together ---------------------------------------------------------------------------------


def _truncate_newest_state(workdir):
    target = biggest_state_file(workdir / "checkpoints" / "6")
    os.truncate(target, target.stat().st_size // 3)


def _delete_newest_vocab(workdir):
    (workdir / "checkpoints" / "6" / "vocab" / "vocab.txt").unlink()


def _damage_every_step(workdir):
    os.truncate(workdir / "checkpoints" / "3" / "config" / "config.json", 10)
    biggest_state_file(workdir / "checkpoints" / "6").unlink()


def _tear_metrics_tail(workdir):
    with (workdir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 7, "loss": 6.1')  # a kill or a full disk in the middle of a line


def _truncated_workdir_vocab(workdir):
    """As if the run had trained its vocabulary into the workdir, and the file was then cut short."""
    saved = (workdir / "checkpoints" / "6" / "vocab" / "vocab.txt").read_bytes()
    (workdir / "vocab.txt").write_bytes(saved[: len(saved) // 2])


def _stale_lock(workdir):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (workdir / "sslm.lock").write_text(f"{socket.gethostname()} {int(dead.stdout)} 2026-11-30T00:00:00Z\n")


# name -> (damage(workdir) or None, command(workdir) -> argv). These train no step: they are the fast suite's.
FAULTS = {
    "deleted_vocab_eval": (_delete_newest_vocab, lambda w: sslm_command("eval", f"--workdir={w}", "--eval-steps=1")),
    "deleted_vocab_fill_mask": (
        _delete_newest_vocab, lambda w: sslm_command("fill-mask", f"--workdir={w}", "a [MASK] .")
    ),
    "nothing_intact_pretrain": (_damage_every_step, lambda w: pretrain(w)),
    "nothing_intact_eval": (_damage_every_step, lambda w: sslm_command("eval", f"--workdir={w}")),
    "torn_metrics": (_tear_metrics_tail, lambda w: pretrain(w)),
    "truncated_workdir_vocab": (_truncated_workdir_vocab, lambda w: pretrain(w, **{"data.vocab_path": ""})),
    "stale_lock": (_stale_lock, lambda w: pretrain(w)),
    "changed_batch_size": (None, lambda w: pretrain(w, batch_size=16)),
    "changed_max_seq_len": (None, lambda w: pretrain(w, **{"data.max_seq_len": 48})),
    "changed_vocab_size": (None, lambda w: pretrain(w, **{"data.vocab_size": 700})),
    "long_fill_mask_input": (None, lambda w: sslm_command("fill-mask", f"--workdir={w}", "word " * 800)),
}  # fmt: skip
# These train a few steps (slow).
TRAINING_FAULTS = {
    "truncated_state": (_truncate_newest_state, lambda w: pretrain(w)),
    "changed_cadence": (None, lambda w: pretrain(w, total_steps=8, log_every_steps=1, checkpoint_every_steps=4)),
}


def _start_all(faults, trained, cache_dir, tmp):
    """{name: (run, workdir, digest of the workdir after the damage, before the run)}, all started at once."""
    started = {}
    for name, (damage, command) in faults.items():
        workdir = copy_of(trained, tmp / name)
        if damage is not None:
            damage(workdir)
        digest = tree_digest(workdir)
        started[name] = (Run(command(workdir), env=sslm_env(cache_dir=cache_dir), logs=tmp / name / "logs"), workdir,
                         digest)  # fmt: skip
    for process, _, _ in started.values():
        process.wait()
    return started


@pytest.fixture(scope="module")
def faults(trained, cache_dir, tmp_path_factory):
    return _start_all(FAULTS, trained, cache_dir, tmp_path_factory.mktemp("faults"))


@pytest.fixture(scope="module")
def training_faults(trained, cache_dir, tmp_path_factory):
    return _start_all(TRAINING_FAULTS, trained, cache_dir, tmp_path_factory.mktemp("training_faults"))


@pytest.mark.slow
def test_truncated_newest_step_is_moved_aside_and_the_run_resumes_from_the_previous(training_faults, trained):
    process, workdir, before = training_faults["truncated_state"]
    process.check(0)
    damaged = workdir / "checkpoints" / "6"
    (aside,) = [p for p in (workdir / "checkpoints").iterdir() if p.name.startswith("6.corrupt-")]
    warnings = [line for line in process.stderr.splitlines() if "is damaged" in line]
    assert len(warnings) == 1 and f"Checkpoint {damaged} is damaged (state/" in warnings[0]
    assert f" bytes, " in warnings[0] and f"expected): moved it to {aside}." in warnings[0]
    assert "Start: resumed at step 3." in process.stderr
    after = tree_digest(workdir)
    moved = {k.replace("checkpoints/6/", f"checkpoints/{aside.name}/", 1): v
             for k, v in before.items() if k.startswith("checkpoints/6/")}  # fmt: skip
    assert {k: after[k] for k in moved} == moved, "moved whole, never deleted or changed"
    unchanged = without(before, "checkpoints/6", "metrics.jsonl", "tensorboard", "curves.png", "sslm.lock")
    assert {k: after[k] for k in unchanged} == unchanged
    # Steps 4-6 trained again from step 3 give the same state, bit for bit, as the original run's step 6.
    assert saved_state(workdir / "checkpoints" / "6") == saved_state(trained / "checkpoints" / "6")
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)), "metrics.jsonl was cut back to step 3: no step twice"


@pytest.mark.parametrize("command", ["eval", "fill_mask"])
def test_readers_take_the_newest_intact_step_and_say_which(faults, command):
    process, workdir, before = faults[f"deleted_vocab_{command}"]
    process.check(0)
    assert f"Skipping damaged checkpoint {workdir}/checkpoints/6: vocab/vocab.txt is missing." in process.stderr
    assert f"Using {workdir}/checkpoints/3, the newest intact checkpoint." in process.stderr
    if command == "eval":
        assert process.stdout.startswith(f"eval of {workdir}/checkpoints/3: ")
    assert tree_digest(workdir) == before, "readers never move or change anything"


@pytest.mark.parametrize("command", ["pretrain", "eval"])
def test_no_intact_step_is_one_line_and_exit_2(faults, command):
    process, workdir, before = faults[f"nothing_intact_{command}"]
    line = last_line(process)
    assert process.wait() == 2 and "Traceback" not in process.stderr
    assert line.startswith(f"sslm {command}: error: no intact checkpoint in {workdir}/checkpoints"), line
    assert "config/config.json is 10 bytes" in line or command == "eval"
    assert tree_digest(workdir) == before


def test_torn_metrics_tail_is_dropped_on_resume(faults, trained):
    process, workdir, _ = faults["torn_metrics"]
    process.check(0)
    assert "metrics.jsonl: line" in process.stderr and "is not a complete record" in process.stderr
    assert "Start: resumed at step 6." in process.stderr
    assert (workdir / "metrics.jsonl").read_bytes() == (trained / "metrics.jsonl").read_bytes()


def test_damaged_workdir_vocabulary_is_put_back_from_the_checkpoint(faults):
    process, workdir, before = faults["truncated_workdir_vocab"]
    process.check(0)
    (aside,) = workdir.glob("vocab.txt.corrupt-*")
    assert (f"Vocabulary {workdir}/vocab.txt differs from the copy saved with {workdir}/checkpoints/6: moved it to "
            f"{aside}; put back the copy saved with") in process.stderr  # fmt: skip
    assert (workdir / "vocab.txt").read_bytes() == (workdir / "checkpoints" / "6" / "vocab" / "vocab.txt").read_bytes()
    assert tree_digest(workdir)[aside.name] == before["vocab.txt"], "moved aside, not lost"
    assert "Start: resumed at step 6." in process.stderr


def test_stale_lock_of_a_dead_process_is_taken_over(faults):
    process, workdir, before = faults["stale_lock"]
    process.check(0)
    assert f"Taking over the stale lock {workdir}/sslm.lock of pid" in process.stderr
    assert (workdir / "sslm.lock").read_text() == "", "released at the end"
    assert without(tree_digest(workdir), "sslm.lock", "tensorboard", "curves.png") == without(
        before, "sslm.lock", "tensorboard", "curves.png"
    )


@pytest.mark.parametrize(
    "name, fragments",
    [
        ("changed_batch_size", ("config.batch_size=16", "was trained with batch_size=8", "set batch_size=8")),
        ("changed_max_seq_len", ("config.data.max_seq_len=48", "data.max_seq_len=32")),
        ("changed_vocab_size", ("config.data.vocab_size=700", "data.vocab_size=600")),
    ],
)
def test_changed_data_position_settings_are_refused(faults, name, fragments):
    process, workdir, before = faults[name]
    assert_one_line_error(process, "cannot change on resume", *fragments)
    assert tree_digest(workdir) == before


@pytest.mark.slow
def test_changed_cadence_is_applied_logged_and_saved(training_faults):
    process, workdir, before = training_faults["changed_cadence"]
    process.check(0)
    for change in ("total_steps: 6 -> 8", "log_every_steps: 2 -> 1", "checkpoint_every_steps: 3 -> 4"):
        assert f"Resuming with a changed setting: {change}" in process.stderr
    assert checkpoint_steps(workdir) == [3, 6, 8]
    saved = json.loads((workdir / "checkpoints" / "8" / "config" / "config.json").read_text())
    assert (saved["total_steps"], saved["log_every_steps"], saved["checkpoint_every_steps"]) == (8, 1, 4)
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps[-2:] == [7, 8] and steps == sorted(set(steps))
    old = without(before, "metrics.jsonl", "tensorboard", "curves.png", "sslm.lock")
    assert {k: v for k, v in tree_digest(workdir).items() if k in old} == old


def test_echoed_input_is_cut_at_200_characters(faults):
    process, _, _ = faults["long_fill_mask_input"]
    line = last_line(process)
    assert process.wait() == 2 and "Traceback" not in process.stderr
    assert line.startswith("sslm fill-mask: error: no [MASK] in 'word word") and "(4000 characters)" in line
    assert len(line) < 400, len(line)


# --- Runs that need a moment of their own ----------------------------------------------------------------------


def test_second_writer_is_refused_naming_the_holder(trained, cache_dir, tmp_path):
    workdir = copy_of(trained, tmp_path / "held")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom sslm_jax.training.workdir_lock import WorkdirLock\n"
         f"WorkdirLock({str(workdir)!r}).acquire(); print('locked', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env=sslm_env(),
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = tree_digest(workdir)
        second = Run(pretrain(workdir), env=sslm_env(cache_dir=cache_dir), logs=tmp_path / "second")
        assert_one_line_error(second, f"workdir {workdir} is in use by pid {holder.pid} on host {socket.gethostname()}")
        assert tree_digest(workdir) == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_full_disk_is_one_line_keeps_the_last_step_and_a_rerun_resumes(trained, cache_dir, tmp_path):
    """A file-size limit (`ulimit -f`, EFBIG) below the size of a checkpoint's data position and arrays: the save of
    step 9 fails; steps 3 and 6 stay as they were; the same command with room resumes from step 6."""
    workdir = copy_of(trained, tmp_path / "full")
    before = tree_digest(workdir)
    args = pretrain(workdir, total_steps=9)
    limited = ["bash", "-c", 'ulimit -f 500 && exec "$@"', "bash", *args]  # 500 KiB per file
    full = Run(limited, env=sslm_env(cache_dir=cache_dir), logs=tmp_path / "full_logs")
    line = assert_one_line_error(full, "file size limit reached writing", "a checkpoint of this run takes")
    assert f"{workdir}/checkpoints/9.orbax-checkpoint-tmp" in line and "rerun the same command" in line
    assert len(line) < 500
    kept = {k: v for k, v in before.items() if k.startswith(("checkpoints/3", "checkpoints/6"))}
    assert {k: v for k, v in tree_digest(workdir).items() if k in kept} == kept
    assert checkpoint_steps(workdir) == [3, 6]

    rerun = run(args, env=sslm_env(cache_dir=cache_dir), logs=tmp_path / "rerun_logs")
    assert "Start: resumed at step 6." in rerun.stderr
    assert checkpoint_steps(workdir) == [3, 6, 9] and partial_checkpoints(workdir) == []


@pytest.mark.slow
def test_sigint_saves_and_exits_130_without_traceback(trained, cache_dir, tmp_path):
    workdir = copy_of(trained, tmp_path / "interrupted")
    interrupted = Run(pretrain(workdir, total_steps=400, log_every_steps=1), env=sslm_env(cache_dir=cache_dir),
                      logs=tmp_path / "logs")  # fmt: skip
    metrics = workdir / "metrics.jsonl"
    interrupted.wait_for(lambda: '"step": 7' in metrics.read_text(), what="a step after the resumed one")
    interrupted.process.send_signal(signal.SIGINT)
    assert interrupted.wait() == 130, interrupted.stderr[-3000:]
    assert "Traceback" not in interrupted.stderr
    line = last_line(interrupted)
    assert line.startswith("sslm pretrain: interrupted: saved step ") and "run the same command to resume" in line
    saved = int(line.split("saved step ")[1].split(";")[0])
    assert saved > 6 and saved in checkpoint_steps(workdir)


@pytest.mark.slow
@pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="reads /proc/<pid>/status")
def test_sigterm_while_starting_or_compiling_exits_0(trained, cache_dir, tmp_path):
    """SIGTERM while Python imports (nothing written at all), and while the first step compiles (that step saved)."""
    starting = Run(pretrain(tmp_path / "starting" / "run"), env=sslm_env(cache_dir=cache_dir), logs=tmp_path / "s")
    # As soon as the process catches SIGTERM (its first lines do, before importing jax and TensorFlow).
    starting.wait_for(lambda: catches(starting.process.pid, signal.SIGTERM), what="a SIGTERM handler", poll_s=0.005)
    starting.process.send_signal(signal.SIGTERM)
    starting.check(0)
    assert "Preempted (SIGTERM) before the first step: nothing new to save" in starting.stderr
    assert not (tmp_path / "starting" / "run").exists()

    workdir = tmp_path / "compiling" / "run"
    compiling = Run(pretrain(workdir, total_steps=50), env=sslm_env(), logs=tmp_path / "c")  # no cache: it compiles
    compiling.wait_for(lambda: "Start: fresh at step 0." in compiling.stderr, what="the start of training")
    compiling.process.send_signal(signal.SIGTERM)
    compiling.check(0)
    assert "Traceback" not in compiling.stderr
    assert "Preempted (SIGTERM): saved step 1, exiting." in compiling.stderr
    assert checkpoint_steps(workdir) == [1]


@pytest.mark.slow
def test_two_writers_at_once_one_runs_one_is_refused(cache_dir, tmp_path):
    workdir = tmp_path / "run"
    args = pretrain(workdir, total_steps=12)
    runs = [Run(args, env=sslm_env(cache_dir=cache_dir), logs=tmp_path / str(i)) for i in range(2)]
    codes = [r.wait() for r in runs]
    assert sorted(codes) == [0, 2], [r.stderr[-2000:] for r in runs]
    winner, loser = (runs[0], runs[1]) if codes[0] == 0 else (runs[1], runs[0])
    assert_one_line_error(loser, f"workdir {workdir} is in use by pid {winner.process.pid}")
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 12
    assert checkpoint_steps(workdir) == [6, 9, 12] and partial_checkpoints(workdir) == []  # keep_checkpoints=3


@pytest.mark.slow
def test_twenty_random_kill_9_points_and_a_sigterm_end_bit_identical(cache_dir, tmp_path):
    """kill -9 at 20 random points (5 while starting, 15 at random steps, one of them while a save is being written,
    others sometimes), and once SIGTERM (which saves the current step and exits 0), restarting each time: every
    restart resumes from the newest intact step, the saves cut short are cleaned away, and the finished run equals an
    uninterrupted run: its state bit for bit, its metrics.jsonl record for record (values to the rounding of a
    reduction, timings left out)."""
    import random

    from sslm_jax.checkpoints import integrity

    schedule = dict(total_steps=40, checkpoint_every_steps=2, log_every_steps=1, eval_every_steps=1000)
    env = sslm_env(cache_dir=cache_dir)
    reference = tmp_path / "reference" / "run"
    run(pretrain(reference, **schedule), env=env, logs=tmp_path / "reference_logs")

    workdir = tmp_path / "killed" / "run"
    args = pretrain(workdir, **schedule)
    rng = random.Random(11)
    targets = sorted(rng.sample(range(2, schedule["total_steps"]), 15))
    points: list[tuple[str, float]] = [("step", t) for t in targets]
    points[0] = ("saving", 0)  # aimed at a save in progress, after a complete one
    for position in (0, 4, 8, 12, 16):  # start-up kills (imports, restore, compilation) between the others
        points.insert(position, ("starting", rng.uniform(0.5, 6.0)))
    points.insert(10, ("sigterm", 0))  # not a kill: stops at the first new step, saving it

    def last_step() -> int:
        lines = (workdir / "metrics.jsonl").read_text().splitlines() if (workdir / "metrics.jsonl").exists() else []
        complete = [json.loads(line) for line in lines if line.endswith("}")]
        return complete[-1]["step"] if complete else 0

    for i, (kind, where) in enumerate(points):
        intact_before = [int(p.name) for p in integrity.committed_steps(workdir / "checkpoints")]
        victim = Run(args, env=env, logs=tmp_path / f"run_{i}")
        if kind == "starting":
            time.sleep(where)
        else:
            victim.wait_for(lambda: "Start: " in victim.stderr, what="the start of training")
            resumed = int(victim.stderr.split("Start: ")[1].split("at step ")[1].split(".")[0])
            assert resumed == max(intact_before, default=0), "resumed from the newest intact step"
            if kind == "saving":
                victim.wait_for(lambda: checkpoint_steps(workdir) and partial_checkpoints(workdir), poll_s=0.002,
                                what="a save after a complete checkpoint")  # fmt: skip
            else:
                victim.wait_for(lambda: last_step() >= max(where, resumed + 1), what=f"step {where}")
            if kind == "sigterm":
                victim.process.send_signal(signal.SIGTERM)
                victim.check(0)
                saved = int(victim.stderr.split("Preempted (SIGTERM): saved step ")[1].split(",")[0])
                assert resumed < saved < schedule["total_steps"] and saved in checkpoint_steps(workdir)
                continue
            if kind == "step":
                time.sleep(rng.uniform(0.0, 0.3))  # sometimes in the middle of a save
        victim.process.send_signal(signal.SIGKILL)
        victim.wait()
        for step_dir in integrity.committed_steps(workdir / "checkpoints"):
            assert integrity.verify(step_dir) is None, f"point {i} ({kind} {where}) damaged {step_dir}"

    finished = run(args, env=env, logs=tmp_path / "finished")
    assert "Start: resumed at step" in finished.stderr
    assert partial_checkpoints(workdir) == [], "the temporary folders of the saves cut short are removed"
    last = schedule["total_steps"]
    assert checkpoint_steps(workdir) == checkpoint_steps(reference)
    assert saved_state(workdir / "checkpoints" / str(last)) == saved_state(reference / "checkpoints" / str(last))
    assert_same_metrics(without_timing(read_metrics(workdir)), without_timing(read_metrics(reference)))

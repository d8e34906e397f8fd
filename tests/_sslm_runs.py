"""Helpers for tests that run the `sslm` command line in subprocesses (tests/test_loop.py, tests/test_cli.py)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMOKE = f"{ROOT / 'configs' / 'bert_demo.py'}:smoke"
TIMEOUT_S = 900  # one run on two busy cores takes 1-3 minutes; a hang must still end the test
SESSION_CACHE_VARIABLE = "SSLM_TEST_COMPILE_CACHE"  # set by conftest.py
SHARED_RUNS_VARIABLE = "SSLM_TEST_SHARED_RUNS"  # set by conftest.py: _shared_runs.built_once's folder
# XLA:CPU's LLVM optimisation level for every subprocess of the tests (`sslm` runs, the README examples, the
# notebooks, the benches' smoke modes), as conftest.py sets it for the in-process tests. Level 0 compiles the smoke
# programs about 3x sooner (bert_demo.py:smoke, a cold cache: 32 -> 10 s of compilation) and runs their steps slower
# (200 steps from a warm cache: 30 -> 41 s); the tests' runs are short and mostly compile, so the README examples went
# from 480 to 415 s alone. It changes the machine code XLA emits, not the semantics of any op, and every comparison
# of two runs (bit-exact resume, eval against training) compares runs under the same flags.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"


def session_compile_cache() -> pathlib.Path | None:
    """The test session's jax compilation cache (made by conftest.py, shared by both xdist workers): the `sslm`,
    notebook and bench subprocesses of different test files compile the same smoke-size programs."""
    folder = os.environ.get(SESSION_CACHE_VARIABLE)
    return pathlib.Path(folder) if folder else None


def compile_cache_env(cache_dir: pathlib.Path) -> dict[str, str]:
    """The variables that give a jax process its persistent compilation cache in `cache_dir`, every program kept."""
    return {"JAX_COMPILATION_CACHE_DIR": str(cache_dir), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def sslm_env(*, devices: int = 1, cache_dir: pathlib.Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a CPU run with `devices` fake devices (conftest's 8 are replaced).

    `cache_dir`: jax's persistent compilation cache, e.g. shared by the runs of one test module so that only the
    first compiles (XLA's output for the same program is the same, cached or not); None: no cache, the run compiles.
    """
    env = dict(os.environ)
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {TEST_XLA_FLAGS}",
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONUNBUFFERED="1",
    )
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if cache_dir is not None:
        env.update(compile_cache_env(cache_dir))
    env.update(extra)
    return env


def pretrain_args(workdir: pathlib.Path, **overrides) -> list[str]:
    """`python -m sslm_jax pretrain --config=configs/bert_demo.py:smoke --workdir=W --config.k=v ...`."""
    args = [sys.executable, "-m", "sslm_jax", "pretrain", f"--config={SMOKE}", f"--workdir={workdir}"]
    return args + [f"--config.{k}={v}" for k, v in overrides.items()]


class Run:
    """One `sslm` subprocess, its stdout/stderr in files (a pipe nobody reads would fill up and block it)."""

    def __init__(self, args: list[str], *, env: dict[str, str], logs: pathlib.Path):
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = logs / "stdout.txt", logs / "stderr.txt"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.process = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=ROOT)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait(self, timeout: float = TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"run did not end within {timeout} s; stderr ends:\n{self.stderr[-3000:]}") from None

    def wait_for(self, condition, *, what: str, timeout: float = TIMEOUT_S, poll_s: float = 0.02) -> None:
        """Polls `condition()` until it holds; fails if the process ends first (naming `what` it waited for)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"run ended (exit {self.process.returncode}) before {what}; stderr ends:\n{self.stderr[-3000:]}"
                )
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"no {what} within {timeout} s")
            time.sleep(poll_s)

    def check(self, returncode: int = 0) -> "Run":
        """Waits and asserts the exit status, showing the end of stderr otherwise."""
        code = self.wait()
        assert code == returncode, f"exit {code}, expected {returncode}; stderr ends:\n{self.stderr[-3000:]}"
        return self


def run(args: list[str], *, env: dict[str, str], logs: pathlib.Path, returncode: int = 0) -> Run:
    return Run(args, env=env, logs=logs).check(returncode)


def assert_one_line_error(result: Run, *fragments: str) -> str:
    """The run failed as bad input does: exit 2, no traceback, and stderr's last line is `sslm <cmd>: error: ...`
    containing every fragment. Returns that line."""
    code = result.wait()
    stderr = result.stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, f"exit {code}, expected 2; stderr ends:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
    assert lines and lines[-1].startswith("sslm pretrain: error: "), stderr[-3000:]
    assert [line for line in lines if ": error: " in line] == [lines[-1]], "the error is said once"
    for fragment in fragments:
        assert fragment in lines[-1], f"{fragment!r} not in {lines[-1]!r}"
    return lines[-1]


def tree_digest(path: pathlib.Path) -> dict[str, str]:
    """{relative path: sha256 of the file, or "dir"} for everything under `path` ({} if it does not exist)."""
    if not path.exists():
        return {}
    digest = {}
    for item in sorted(path.rglob("*")):
        key = str(item.relative_to(path))
        digest[key] = "dir" if item.is_dir() else hashlib.sha256(item.read_bytes()).hexdigest()
    return digest


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
    """The finalized checkpoint steps: Orbax writes a step into a temporary folder and renames it when complete."""
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def partial_checkpoints(workdir: pathlib.Path) -> list[str]:
    """Orbax's temporary step folders ("40.orbax-checkpoint-tmp-<time>"): saves in progress, or cut short."""
    folder = workdir / "checkpoints"
    return sorted(p.name for p in folder.iterdir() if ".orbax-checkpoint-tmp" in p.name) if folder.is_dir() else []


# Clock measurements in metrics.jsonl: left out when two runs' records are compared.
TIMING_KEYS = ("tokens_per_second", "mfu", "cpu_seconds_per_step")


def read_metrics(workdir: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def assert_same_metrics(records: list[dict], expected: list[dict]) -> None:
    """The same records (steps and keys), every value equal to 1e-6 relative: the metrics of the same steps were
    identical in every pair of runs but one, where a whole uninterrupted run logged losses and gradient norms one
    float32 ulp off at most steps (its parameters stayed identical). The rounding of a metric's reduction can vary
    between processes; the trajectory does not. A resume that read another batch or restored another state moves
    every later loss by far more (~1e-2)."""
    assert [sorted(r) for r in records] == [sorted(e) for e in expected]
    for r, e in zip(records, expected):
        for key, value in e.items():
            assert math.isclose(r[key], value, rel_tol=1e-6), (r["step"], key, r[key], value)


def saved_state(step_dir: pathlib.Path) -> dict[str, bytes]:
    """{leaf path: raw bytes} of the TrainState saved in a checkpoint."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    tree = ocp.PyTreeCheckpointer().restore(step_dir / "state")
    return {jax.tree_util.keystr(k): np.asarray(v).tobytes() for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


# A WordPiece vocabulary with BERT's special-token ids, so that runs need not spend time training one.
SPECIALS = ["[PAD]", *(f"[unused{i}]" for i in range(99)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CHARACTERS = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,;:!?'\"()[]{}-_=+*/<>@#$%&|\\`~^")
WORDS = ["the", "of", "and", "to", "is", "in", "return", "def", "class", "object", "file", "string", "list", "value"]


def write_tiny_vocab(path: pathlib.Path) -> pathlib.Path:
    path.write_text("\n".join(SPECIALS + CHARACTERS + ["##" + c for c in CHARACTERS[:36]] + WORDS) + "\n")
    return path


def sslm(*args, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m sslm_jax ARGS` from the repository root, output captured; with `check`, exit 0 is asserted. One CPU
    device, as on a user's machine (conftest's 8 fake devices are for the in-process sharding tests), and the
    session's compilation cache."""
    out = subprocess.run(
        [sys.executable, "-m", "sslm_jax", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=900,
        env=sslm_env(cache_dir=session_compile_cache()),
    )  # fmt: skip
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def sslm_without_tensorflow(folder: pathlib.Path, *args) -> subprocess.CompletedProcess:
    """`sslm` as `sslm(...)` runs it (exit 0 asserted), in a process that cannot import TensorFlow: a
    sitecustomize.py written into `folder` makes it look uninstalled."""
    import _blocked_imports

    (folder / "sitecustomize.py").write_text(
        _blocked_imports.source(("tensorflow", "tensorflow_text", "tensorflow_datasets"))
    )
    env = sslm_env(cache_dir=session_compile_cache())
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "sslm_jax", *map(str, args)], cwd=ROOT, capture_output=True,
                         text=True, timeout=TIMEOUT_S, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def assert_cli_error(out: subprocess.CompletedProcess, command: str, fragment: str) -> None:
    """`out` failed as bad input does: exit 2, no traceback, last line `sslm <command>: error: ...` with `fragment`."""
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert lines[-1].startswith(f"sslm {command}: error: ") and fragment in lines[-1], lines[-1]

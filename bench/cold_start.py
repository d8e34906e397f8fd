"""Cold start of one-shot inference: `sslm fill-mask` as a fresh process against transformers' fill-mask pipeline.

    python bench/cold_start.py                       # pretrains configs/bert_demo.py:smoke first (about a minute)
    python bench/cold_start.py --workdir=/tmp/sslm_smoke --rounds=5

What a user waits for when one sentence goes through a fresh process: imports, loading the run and its vocabulary,
compiling and running the model. Ours is `sslm fill-mask --workdir=RUN TEXT`; the reference is the `transformers`
fill-mask pipeline (PyTorch, CPU) on the same run exported with `sslm export-hf`, built and called in a fresh
`python -c`; a bare `python -c "import tensorflow"` is shown for scale. One untimed call of each comes first (it
fills the OS file cache and our tokenizer-table cache, as any second use would find them). Then the commands
alternate, round after round, so that a machine shared with other jobs slows them alike; the result is the
median of the per-round ratios (ours / theirs: below 1 means ours starts faster). The load average before and
after is printed: on a loaded machine every figure grows, the ratio much less. Both sides' best guess for the
[MASK] is printed too (the same weights, so they should agree).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEXT = "the [MASK] is closed when the file is no longer needed ."
HF_PIPELINE = (
    "import sys; from transformers import pipeline; "
    "print(pipeline('fill-mask', model=sys.argv[1], device='cpu')(sys.argv[2])[0]['token_str'])"
)


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", help="a pretraining run (masked LM); default: pretrain bert_demo.py:smoke into a temp dir")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds, each running every command once")
    p.add_argument("--text", default=TEXT, help="the sentence, with one [MASK]")
    return p.parse_args()


def _sslm() -> list[str]:
    """The installed console script, as a user types it; `python -m sslm_jax` from a checkout without one."""
    script = shutil.which("sslm", path=str(pathlib.Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "sslm_jax"]


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} ... failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return seconds, out.stdout


def _best_guess(stdout: str) -> str:
    """The first prediction's token from either side's output (ours: '  [MASK] 1: token 0.123'; theirs: the token)."""
    for line in stdout.splitlines():
        if line.strip().startswith("[MASK] 1:"):
            return line.split(":", 1)[1].split()[0]
    return stdout.strip().splitlines()[-1] if stdout.strip() else ""


def main():
    args = _parse()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory() as tmp:
        run = pathlib.Path(args.workdir) if args.workdir else pathlib.Path(tmp) / "run"
        if not args.workdir:
            print("pretraining configs/bert_demo.py:smoke ...", flush=True)
            _run([*_sslm(), "pretrain", "--config=configs/bert_demo.py:smoke", f"--workdir={run}"], env)
        hf_dir = pathlib.Path(tmp) / "hf"
        _run([*_sslm(), "export-hf", f"--workdir={run}", f"--out={hf_dir}"], env)
        commands = {
            "sslm fill-mask": [*_sslm(), "fill-mask", f"--workdir={run}", args.text, "--top-k=1"],
            "transformers pipeline": [sys.executable, "-c", HF_PIPELINE, str(hf_dir), args.text],
            "import tensorflow": [sys.executable, "-c", "import tensorflow"],
        }
        for name, cmd in commands.items():  # untimed: file cache and our table cache, as a second use finds them
            _, stdout = _run(cmd, env)
            if name != "import tensorflow":
                print(f"{name}: best guess {_best_guess(stdout)!r}")
        load_before = os.getloadavg()[0]
        times = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                times[name].append(_run(cmd, env)[0])
        load_after = os.getloadavg()[0]
    ratios = [a / b for a, b in zip(times["sslm fill-mask"], times["transformers pipeline"])]
    print(f"\nload average (1 min): {load_before:.1f} before, {load_after:.1f} after; {os.cpu_count()} cores")
    print(f"{'command':24s} {'wall s per round':40s} median")
    for name, seconds in times.items():
        print(f"{name:24s} {', '.join(f'{s:.2f}' for s in seconds):40s} {statistics.median(seconds):.2f}")
    print(f"\nsslm fill-mask / transformers pipeline, per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f} (below 1: ours starts faster)")  # fmt: skip


if __name__ == "__main__":
    main()

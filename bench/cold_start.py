"""Cold start of one-shot inference: `sslm fill-mask` / `sslm generate` as a fresh process against transformers'
pipeline on the same weights.

    python bench/cold_start.py                       # pretrains configs/bert_demo.py:smoke first (about a minute)
    python bench/cold_start.py --workdir=/tmp/sslm_smoke --rounds=5
    python bench/cold_start.py --task=generate       # pretrains configs/gpt_demo.py:smoke first

What a user waits for when one sentence goes through a fresh process: imports, loading the run and its vocabulary,
compiling and running the model. Ours is `sslm fill-mask --workdir=RUN TEXT` (or `sslm generate --workdir=RUN
PROMPT --temperature=0 --max-new-tokens=16`); the reference is the `transformers` fill-mask (text-generation)
pipeline (PyTorch, CPU) on the same run exported with `sslm export-hf`, built and called in a fresh `python -c`; a
bare `python -c "import tensorflow"` is shown for scale. One untimed call of each comes first (it fills the OS file
cache and our tokenizer-table cache, as any second use would find them; `--warmup=0` skips it). Then the commands
alternate, round after round, so that a machine shared with other jobs slows them alike; the result is the median of
the per-round ratios (ours / theirs: below 1 means ours starts faster). The load average before and after is printed:
on a loaded machine every figure grows, the ratio much less. Both sides' answer (the best guess for the [MASK], the
greedy continuation) is printed too: the same weights, so they should agree.
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
from typing import Callable, NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
NEW_TOKENS = 16


class Task(NamedTuple):
    config: str  # what --workdir defaults to: this smoke config, pretrained into a temp dir
    text: str  # the default --text
    ours: Callable[[pathlib.Path, str], list[str]]  # (run, text) -> the sslm arguments
    pipeline: str  # python -c code: argv[1] the exported directory, argv[2] the text; prints the answer
    answer: Callable[[str], str]  # our stdout -> the answer the pipeline prints


def _first_guess(stdout: str) -> str:
    """'  [MASK] 1: token 0.123, ...' -> 'token'."""
    for line in stdout.splitlines():
        if line.strip().startswith("[MASK] 1:"):
            return line.split(":", 1)[1].split()[0]
    return ""


TASKS = {
    "fill-mask": Task(
        "configs/bert_demo.py:smoke",
        "the [MASK] is closed when the file is no longer needed .",
        lambda run, text: ["fill-mask", f"--workdir={run}", text, "--top-k=1"],
        "import sys; from transformers import pipeline; "
        "print(pipeline('fill-mask', model=sys.argv[1], device='cpu')(sys.argv[2])[0]['token_str'])",
        _first_guess,
    ),
    "generate": Task(
        "configs/gpt_demo.py:smoke",
        "def read_file(path):",
        lambda run, text: ["generate", f"--workdir={run}", text, "--temperature=0", f"--max-new-tokens={NEW_TOKENS}"],
        "import sys; from transformers import pipeline; "
        "out = pipeline('text-generation', model=sys.argv[1], device='cpu')(sys.argv[2], do_sample=False, "
        f"max_new_tokens={NEW_TOKENS}, return_full_text=True)[0]['generated_text']; "
        "print(repr(out))",
        lambda stdout: repr(stdout.rsplit("\n---\n", 1)[0]),  # "PROMPT+continuation\n---\n"
    ),
}


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="fill-mask", choices=sorted(TASKS), help="the one-shot command to time")
    p.add_argument("--workdir", help="a pretraining run of the task's kind; default: pretrain its smoke config")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds, each running every command once")
    p.add_argument("--warmup", type=int, default=1, choices=(0, 1),
                   help="untimed rounds first (0: the tests, which only check that both sides answer alike)")
    p.add_argument("--text", help="fill-mask: the sentence, with one [MASK]; generate: the prompt")
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


def main():
    args = _parse()
    task = TASKS[args.task]
    text = args.text or task.text
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    ours = f"sslm {args.task}"
    with tempfile.TemporaryDirectory() as tmp:
        run = pathlib.Path(args.workdir) if args.workdir else pathlib.Path(tmp) / "run"
        if not args.workdir:
            print(f"pretraining {task.config} ...", flush=True)
            _run([*_sslm(), "pretrain", f"--config={task.config}", f"--workdir={run}"], env)
        hf_dir = pathlib.Path(tmp) / "hf"
        _run([*_sslm(), "export-hf", f"--workdir={run}", f"--out={hf_dir}"], env)
        commands = {
            ours: [*_sslm(), *task.ours(run, text)],
            "transformers pipeline": [sys.executable, "-c", task.pipeline, str(hf_dir), text],
            "import tensorflow": [sys.executable, "-c", "import tensorflow"],
        }
        load_before = os.getloadavg()[0]
        times = {name: [] for name in commands}
        # The warm-up round is untimed: file cache and our table cache, as a second use finds them.
        for round_ in range(args.warmup + args.rounds):
            for name, cmd in commands.items():
                seconds, stdout = _run(cmd, env)
                if round_ == 0 and name != "import tensorflow":
                    answer = task.answer(stdout) if name == ours else stdout.strip().splitlines()[-1]
                    print(f"{name}: answer {answer}")
                if round_ >= args.warmup:
                    times[name].append(seconds)
        load_after = os.getloadavg()[0]
    ratios = [a / b for a, b in zip(times[ours], times["transformers pipeline"])]
    print(f"\nload average (1 min): {load_before:.1f} before, {load_after:.1f} after; {os.cpu_count()} cores")
    print(f"{'command':24s} {'wall s per round':40s} median")
    for name, seconds in times.items():
        print(f"{name:24s} {', '.join(f'{s:.2f}' for s in seconds):40s} {statistics.median(seconds):.2f}")
    print(f"\n{ours} / transformers pipeline, per round: {', '.join(f'{r:.2f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.2f} (below 1: ours starts faster)")  # fmt: skip


if __name__ == "__main__":
    main()

"""What int8 quantization and pruning cost in accuracy and buy in size and speed, on an SST-2 classifier.

    python bench/compress.py --workdir=/tmp/sslm_compress                     # BERT-mini, one epoch of SST-2
    python bench/compress.py --workdir=/tmp/x --train-steps=300 --prune-steps=100 --sparsities=0.5,0.9  # quick

Steps (each `sslm` command is printed; logs go to WORKDIR/<name>.log):
  1. a WordPiece vocabulary (8,192) trained on the SST-2 train sentences;
  2. fp32: `sslm finetune --config=configs/sst2_lift.py:finetune,full` with model.size=mini (4 x 256) from random
     initialisation on all 67,349 train rows (or --train-steps steps), evaluated on all 872 dev rows;
  3. int8-weights and int8-dynamic (`sslm quantize`);
  4. for each sparsity: magnitude one-shot (`sslm prune`), magnitude with --prune-steps of fine-tuning under the
     fixed mask, and movement pruning trained for the same steps; each pruned model is also quantized (int8
     values + bitmask) for its smallest size.
For every row: dev accuracy (`sslm eval`), the parameters' size on disk (params.npz; fp32: the same arrays
uncompressed), and CPU time of the live model (jit) and of the portable export (`sslm export`, run through
`sslm_jax.inference.portable`): latency at batch 1 and throughput at batch 32, both at length 128 (the median of
--repeats timed calls after one warm-up call). Ends with the markdown table BENCHMARKS.md records.
"""

from __future__ import annotations

import argparse
import csv
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="the folder for the runs, the logs and the table (a rerun on it keeps the finished steps)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the shared data folder")
    p.add_argument("--size", default="mini", help="BERT size of the classifier")
    p.add_argument("--train-steps", type=int, default=0, help="fine-tuning steps (0: the config's one epoch)")
    p.add_argument("--prune-steps", type=int, default=300, help="fine-tuning steps of the trained pruning rows")
    p.add_argument("--sparsities", default="0.3,0.5,0.7,0.9", help="comma-separated pruning sparsities")
    p.add_argument("--repeats", type=int, default=20,
                   help="timed calls per latency / throughput figure (0: no timings, for a run on a busy machine)")
    return p.parse_args()


def sslm(workdir: pathlib.Path, name: str, *args: str, writes: pathlib.Path | None = None) -> float:
    """Runs `sslm ARGS`, logging to WORKDIR/NAME.log; returns its wall time. Exits on failure. A command whose output
    folder `writes` already exists (a rerun of the bench on the same --workdir) is skipped: it ran before."""
    if writes is not None and writes.exists():
        print(f"(kept from an earlier run: {writes})", flush=True)
        return float("nan")
    command = [sys.executable, "-m", "sslm_jax", *args]
    print("$ sslm " + " ".join(args), flush=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    with (workdir / f"{name}.log").open("w") as log:
        done = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    if done.returncode:
        sys.exit(f"compress: `sslm {args[0]}` failed (exit {done.returncode}); see {workdir / name}.log")
    return time.perf_counter() - start


def _median_s(fn, repeats: int) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


TIMINGS = ("live_b1_ms", "export_b1_ms", "live_b32_rows_s", "export_b32_rows_s")


def timings(path: pathlib.Path, exported: pathlib.Path, repeats: int) -> dict[str, float]:
    """Batch-1 latency (ms) and batch-32 throughput (rows/s) at length 128, live and exported."""
    import jax

    from sslm_jax.inference import portable
    from sslm_jax.inference.loading import load_model

    live = load_model(path)
    logits = jax.jit(lambda p, i, m, t: live.model.apply({"params": p}, i, attention_mask=m, token_type_ids=t).logits)
    model = portable.load(exported)
    out = {}
    for batch in (1, 32):
        ids = np.random.default_rng(batch).integers(5, 8000, (batch, 128)).astype(np.int32)
        mask, types = np.ones_like(ids), np.zeros_like(ids)
        live_s = _median_s(lambda: logits(live.params, ids, mask, types).block_until_ready(), repeats)
        exported_s = _median_s(lambda: model.classify(ids, mask, types), repeats)
        if batch == 1:
            out["live_b1_ms"], out["export_b1_ms"] = 1e3 * live_s, 1e3 * exported_s
        else:
            out["live_b32_rows_s"], out["export_b32_rows_s"] = batch / live_s, batch / exported_s
    return out


def fp32_size(run: pathlib.Path, out: pathlib.Path) -> int:
    """Bytes of the run's float parameters as one uncompressed .npz (what params.npz holds for compressed rows)."""
    import jax

    from sslm_jax.inference.loading import load_model

    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(load_model(run).params))[0]
    with out.open("wb") as f:
        np.savez(f, **{"/".join(k.key for k in path): np.asarray(x) for path, x in flat})
    return out.stat().st_size


def main():
    args = _parse()
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)  # a rerun on the same folder resumes: finished steps are kept
    (workdir / "export").mkdir(exist_ok=True)
    data = pathlib.Path(args.data) / "sst2"
    if not (data / "train.tsv").is_file():
        sys.exit(f"compress: {data / 'train.tsv'} is missing (the shared data folder; see its README)")
    with (data / "train.tsv").open(encoding="utf-8") as f:
        sentences = [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    (workdir / "sentences.txt").write_text("".join(s + "\n" for s in sentences))
    clock = {}
    clock["vocab"] = sslm(workdir, "vocab", "train-tokenizer", f"--input={workdir / 'sentences.txt'}",
                          "--vocab-size=8192", f"--out={workdir / 'vocab'}", writes=workdir / "vocab")  # fmt: skip
    train = [
        "finetune", "--config=configs/sst2_lift.py:finetune,full", f"--workdir={workdir / 'fp32'}",
        f"--config.model.size={args.size}", f"--config.data.vocab_path={workdir / 'vocab' / 'vocab.txt'}",
        f"--config.data.train_files={data / 'train.tsv'}", f"--config.data.eval_files={data / 'dev.tsv'}",
    ]  # fmt: skip
    if args.train_steps:
        train += [f"--config.total_steps={args.train_steps}", f"--config.warmup_steps={args.train_steps // 10}",
                  f"--config.eval_every_steps={args.train_steps}", f"--config.checkpoint_every_steps={args.train_steps}"]  # fmt: skip
    clock["fp32"] = sslm(workdir, "fp32", *train)
    run = workdir / "fp32"
    rows = {"fp32": run}
    for mode in ("weights", "dynamic"):
        clock[f"int8-{mode}"] = sslm(workdir, f"int8-{mode}", "quantize", f"--workdir={run}",
                                     f"--out={workdir / f'int8-{mode}'}", f"--mode={mode}",
                                     writes=workdir / f"int8-{mode}")  # fmt: skip
        rows[f"int8-{mode}"] = workdir / f"int8-{mode}"
    for s in [float(x) for x in args.sparsities.split(",") if x]:
        pct = round(100 * s)
        variants = {
            f"magnitude {pct}%": [],
            f"magnitude {pct}% + {args.prune_steps} steps": [f"--steps={args.prune_steps}"],
            f"movement {pct}% ({args.prune_steps} steps)": ["--method=movement", f"--steps={args.prune_steps}"],
        }
        for label, extra in variants.items():
            # The steps are in the name, so a rerun with another --prune-steps on this --workdir trains anew.
            name = label.replace(" + ", "_ft").replace(" (", "_").replace(")", "").replace(" ", "_").replace("%", "")
            clock[name] = sslm(workdir, name, "prune", f"--workdir={run}", f"--out={workdir / name}",
                               f"--sparsity={s}", *extra, writes=workdir / name)  # fmt: skip
            sslm(workdir, name + "_q", "quantize", f"--workdir={workdir / name}", f"--out={workdir / (name + '_q')}",
                 writes=workdir / (name + "_q"))  # fmt: skip
            rows[label] = workdir / name
    from sslm_jax.inference import compressed_dir
    from sslm_jax.training.compressed_eval import evaluate_any

    table = []
    sizes = {"fp32": fp32_size(run, workdir / "fp32_params.npz")}
    for label, path in rows.items():
        exported = workdir / "export" / path.name
        sslm(workdir, f"export_{path.name}", "export", f"--workdir={path}", f"--out={exported}", writes=exported)
        _, metrics = evaluate_any(path)
        size = sizes.get(label) or compressed_dir.size_on_disk(path)
        int8_sparse = path.parent / (path.name + "_q")
        table.append({
            "model": label,
            "accuracy": metrics["accuracy"],
            "size_mb": size / 1e6,
            "sparse_int8_mb": compressed_dir.size_on_disk(int8_sparse) / 1e6 if int8_sparse.is_dir() else None,
            **(timings(path, exported, args.repeats) if args.repeats else dict.fromkeys(TIMINGS, float("nan"))),
        })  # fmt: skip
        print(table[-1], flush=True)
    base = table[0]
    print(f"\nload average at the end: {os.getloadavg()}; cores: {os.cpu_count()}")
    print("| model | dev acc. | size MB (x smaller) | + int8 values + bitmask | live b1 ms | export b1 ms | "
          "live b32 rows/s | export b32 rows/s |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in table:
        sparse = f"{r['sparse_int8_mb']:.2f} ({base['size_mb'] / r['sparse_int8_mb']:.1f}x)" if r["sparse_int8_mb"] else ""
        print(f"| {r['model']} | {100 * r['accuracy']:.2f} | {r['size_mb']:.2f} ({base['size_mb'] / r['size_mb']:.1f}x) | "
              f"{sparse} | {r['live_b1_ms']:.1f} | {r['export_b1_ms']:.1f} | {r['live_b32_rows_s']:.0f} | "
              f"{r['export_b32_rows_s']:.0f} |")  # fmt: skip
    print("\nwall time per command (s): " + ", ".join(f"{k} {v:.0f}" for k, v in clock.items()))


if __name__ == "__main__":
    main()

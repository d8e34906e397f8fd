"""Forward-pass throughput: sslm_jax's BERT (jitted, fp32) against transformers' PyTorch BertForMaskedLM.

    python bench/forward.py                       # tiny, mini, base; batch 8 x 128; ~4.5 min on 2 shared cores
    python bench/forward.py --sizes=base --batch=16 --reps=10

Both models get the same weights (a random transformers model converted with `sslm_jax.interop.huggingface`),
the same batch (padding in it, mixed token types), compute full [B, T, vocab] logits in float32, and run on the
same CPU threads (torch: `torch.set_num_threads(--threads)` under `inference_mode`; XLA: its own pool, sized to
the machine). Timings alternate between the two models, so a machine shared with other jobs slows both alike;
each row reports median seconds per batch and the ratio measured in that same run
(speed-up = torch seconds / sslm_jax seconds; above 1 means sslm_jax is faster).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import jax
import numpy as np


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="tiny,mini,base", help="comma-separated sslm_jax.models.bert.SIZES names")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--vocab", type=int, default=30522)
    p.add_argument("--reps", type=int, default=5, help="timed forward passes per model and size")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    return p.parse_args()


def _batch(batch: int, seq: int, vocab: int, rs: np.random.RandomState):
    ids = rs.randint(5, vocab, (batch, seq))
    mask = np.ones((batch, seq), np.int64)
    for row in range(1, batch, 2):  # every other sequence padded to between a quarter and all of its length
        mask[row, rs.randint(seq // 4, seq) :] = 0
    types = (np.arange(seq)[None] >= rs.randint(1, seq, (batch, 1))).astype(np.int64)
    return ids * mask, mask, types


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_size(size: str, args, torch, transformers) -> dict:
    from sslm_jax.interop import huggingface as hf
    from sslm_jax.models import bert

    config = bert.BertConfig.from_size(size, vocab_size=args.vocab, max_position_embeddings=max(512, args.seq))
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(**config.to_hf_dict(), attn_implementation="eager")
    torch_model = transformers.BertForMaskedLM(hf_config).eval()
    with tempfile.TemporaryDirectory() as d:
        torch_model.save_pretrained(d)
        config, params = hf.load_checkpoint(d, head="masked_lm")
    params = jax.device_put(params)
    model = bert.BertForMaskedLM(config)

    @jax.jit
    def forward(params, ids, mask, types):
        return model.apply({"params": params}, ids, attention_mask=mask, token_type_ids=types).mlm_logits

    ids, mask, types = _batch(args.batch, args.seq, args.vocab, np.random.RandomState(0))
    j_inputs = [jax.device_put(x.astype(np.int32)) for x in (ids, mask, types)]
    t_inputs = dict(
        input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), token_type_ids=torch.from_numpy(types)
    )

    def run_jax():
        return forward(params, *j_inputs).block_until_ready()

    def run_torch():
        with torch.inference_mode():
            return torch_model(**t_inputs).logits

    # Warm-up (compilation, allocator) and a check that both compute the same thing.
    ours, theirs = np.asarray(run_jax()), run_torch().numpy()
    valid = mask.astype(bool)
    max_diff = float(np.abs(ours - theirs)[valid].max())
    j_times, t_times = [], []
    for _ in range(args.reps):
        j_times.append(_time(run_jax))
        t_times.append(_time(run_torch))
    tokens = args.batch * args.seq
    j, t = statistics.median(j_times), statistics.median(t_times)
    return dict(size=size, jax_s=j, torch_s=t, jax_tps=tokens / j, torch_tps=tokens / t, max_diff=max_diff)


def main():
    args = _parse()
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; jax {jax.__version__} ({jax.default_backend()}), "
        f"torch {torch.__version__} ({args.threads} threads), transformers {transformers.__version__}"
    )
    print(f"# BertForMaskedLM forward, fp32, batch {args.batch} x {args.seq}, vocab {args.vocab}, {args.reps} reps")
    print("| size | sslm_jax s/batch | torch s/batch | sslm_jax tok/s | torch tok/s | speed-up | max abs Δlogit |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        r = bench_size(size, args, torch, transformers)
        print(
            f"| {r['size']} | {r['jax_s']:.4f} | {r['torch_s']:.4f} | {r['jax_tps']:,.0f} | {r['torch_tps']:,.0f} "
            f"| {r['torch_s'] / r['jax_s']:.2f}x | {r['max_diff']:.1e} |",
            flush=True,
        )
    print(f"# load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

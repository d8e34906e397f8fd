"""Greedy generation speed: sslm_jax.inference.generate against transformers' GPT2LMHeadModel.generate.

    python bench/generate.py            # GPT-2 small shape (12 x 768, vocab 50257), prompt 32, 128 new, batch 1 and 8
    python bench/generate.py --smoke    # a tiny model and a few tokens: checks the script runs (seconds)

Both sides get the same random weights (`sslm_jax.models.gpt` initialises them, `hf_gpt2.save_checkpoint` exports
them, transformers' `GPT2LMHeadModel.from_pretrained` loads that directory), the same prompts, greedy decoding of
exactly --new tokens (no EOS), float32, and the same CPU threads (torch: `torch.set_num_threads(--threads)` under
`inference_mode`; XLA: its own pool, sized to the machine). Timings alternate between the two, so a machine shared
with other jobs slows both alike. Each row reports median seconds, new tokens per second, time to first token
(generation of one new token: the prefill plus one step), the ratio in the same run (speed-up = HF seconds / our
seconds; above 1 means sslm_jax is faster), and the fraction of generated tokens on which both agree (random weights
have near-ties; float32 rounding may flip one and the rest of that row then diverges).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
import time

import jax
import numpy as np

from sslm_jax.inference import generate as gen
from sslm_jax.interop import hf_gpt2
from sslm_jax.models import gpt


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="a tiny model and a few tokens")
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=128, help="new tokens per row")
    p.add_argument("--reps", type=int, default=3, help="timed generations per model and batch size")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    return p.parse_args()


def build_models(config: gpt.GPTConfig, transformers):
    """Our GPT-2 with random parameters, and transformers' GPT2LMHeadModel loaded from their export (eval mode)."""
    model = gpt.GPTLMHeadModel(config)
    params = jax.jit(functools.partial(gpt.init_params, model))(jax.random.key(0))
    with tempfile.TemporaryDirectory() as tmp:
        hf_gpt2.save_checkpoint(tmp, config, params)
        transformers.utils.logging.disable_progress_bar()
        torch_model = transformers.GPT2LMHeadModel.from_pretrained(tmp).eval()
    return model, params, torch_model


def _time(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_batch(batch, args, model, params, torch_model, torch):
    vocab = model.config.vocab_size
    prompt = np.random.RandomState(batch).randint(0, vocab, (batch, args.prompt)).astype(np.int32)
    t_prompt = torch.from_numpy(prompt.astype(np.int64))
    t_mask = torch.ones_like(t_prompt)

    def ours(new):
        out = gen.generate(
            model, params, prompt, None, max_new_tokens=new, init_cache=gpt.init_cache, temperature=0.0, eos_id=None
        )
        return np.asarray(out.tokens)  # waits for the device

    def theirs(new):
        with torch.inference_mode():
            out = torch_model.generate(
                t_prompt, attention_mask=t_mask, do_sample=False, max_new_tokens=new, min_new_tokens=new,
                pad_token_id=0, eos_token_id=None,
            )  # fmt: skip
        return out[:, args.prompt :].numpy()

    # Warm-up: compilation (ours: once per max_new_tokens), allocator, and the agreement check.
    compile_s, mine = _time(lambda: ours(args.new))
    ours(1)
    hf = theirs(args.new)
    theirs(1)
    assert mine.shape == hf.shape == (batch, args.new), (mine.shape, hf.shape)
    agree = float(np.mean(mine == hf))
    times = {"ours": [], "hf": [], "ours_ttft": [], "hf_ttft": []}
    for _ in range(args.reps):
        times["ours"].append(_time(lambda: ours(args.new))[0])
        times["hf"].append(_time(lambda: theirs(args.new))[0])
        times["ours_ttft"].append(_time(lambda: ours(1))[0])
        times["hf_ttft"].append(_time(lambda: theirs(1))[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    return dict(batch=batch, compile_s=compile_s, agree=agree, **med)


def main():
    args = _parse()
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    if args.smoke:
        config = gpt.GPTConfig(vocab_size=1000, max_position_embeddings=128, hidden_size=64, num_hidden_layers=2,
                               num_attention_heads=4, bos_token_id=0, eos_token_id=0)  # fmt: skip
        args.prompt, args.new, args.reps = 8, 8, 1
    else:
        config = gpt.GPTConfig.from_size("small")  # vocab 50257, 1024 positions
    torch.manual_seed(0)
    model, params, torch_model = build_models(config, transformers)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; jax {jax.__version__} ({jax.default_backend()}), "
        f"torch {torch.__version__} ({args.threads} threads, attention {torch_model.config._attn_implementation}), "
        f"transformers {transformers.__version__}"
    )
    print(
        f"# GPT-2 {config.num_hidden_layers}x{config.hidden_size}, vocab {config.vocab_size}, fp32, greedy; prompt "
        f"{args.prompt}, {args.new} new tokens; median of {args.reps}; TTFT = generating 1 token"
    )
    print(
        "| batch | sslm_jax s | HF s | sslm_jax new tok/s | HF new tok/s | speed-up | sslm_jax TTFT s | HF TTFT s "
        "| TTFT speed-up | tokens agreeing | sslm_jax first call (compile) s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for batch in map(int, args.batches.split(",")):
        r = bench_batch(batch, args, model, params, torch_model, torch)
        new = batch * args.new
        print(
            f"| {batch} | {r['ours']:.3f} | {r['hf']:.3f} | {new / r['ours']:,.0f} | {new / r['hf']:,.0f} "
            f"| {r['hf'] / r['ours']:.2f}x | {r['ours_ttft']:.4f} | {r['hf_ttft']:.4f} "
            f"| {r['hf_ttft'] / r['ours_ttft']:.2f}x | {r['agree']:.1%} | {r['compile_s']:.1f} |",
            flush=True,
        )
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

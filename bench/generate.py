"""Greedy generation speed: sslm_jax.inference.generate against transformers' GPT2LMHeadModel.generate.

    python bench/generate.py            # GPT-2 small shape (12 x 768, vocab 50257), prompt 32, 128 new, batch 1 and 8
    python bench/generate.py --smoke    # a tiny model and a few tokens: checks the script runs (seconds)

Both sides get the same random weights (a transformers GPT2LMHeadModel built from a GPT2Config, its state dict
converted to our parameter tree), the same prompts, greedy decoding of exactly --new tokens (no EOS), float32, and
the same CPU threads (torch: `torch.set_num_threads(--threads)` under `inference_mode`; XLA: its own pool, sized to
the machine). Timings alternate between the two, so a machine shared with other jobs slows both alike. Each row
reports median seconds, new tokens per second, time to first token (generation of one new token: the prefill plus
one step), the ratio in the same run (speed-up = HF seconds / our seconds; above 1 means sslm_jax is faster), and
the fraction of generated tokens on which both agree (random weights have near-ties; float32 rounding may flip one
and the rest of that row then diverges).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from sslm_jax.inference import generate as gen


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="a tiny model and a few tokens")
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--new", type=int, default=128, help="new tokens per row")
    p.add_argument("--reps", type=int, default=3, help="timed generations per model and batch size")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    return p.parse_args()


# --- TEMPORARY until sslm_jax.models.gpt and sslm_jax.interop.hf_gpt2 are merged ------------------------------------
# A GPT-2 LM head built from the shared blocks (as tests/test_generate.py's stand-in) and a state-dict conversion.
# Replace both with `gpt.GPT2LMHeadModel` / `gpt.init_cache` and `hf_gpt2.load_checkpoint` once they land.

import flax  # noqa: E402
import flax.linen as nn  # noqa: E402

from sslm_jax.models import layers, transformer  # noqa: E402


@dataclasses.dataclass(frozen=True)
class _GPT2Config:
    vocab_size: int
    max_position_embeddings: int
    stack: transformer.TransformerConfig


def _init_cache(config: _GPT2Config, batch: int, max_length: int):
    return transformer.init_cache(config.stack, batch, max_length)


@flax.struct.dataclass
class _LMOutput:
    logits: jax.Array
    cache: tuple | None


class _GPT2LM(nn.Module):
    config: _GPT2Config

    def setup(self):
        c = self.config
        self.embeddings = layers.Embeddings(c.vocab_size, c.stack.hidden_size, max_positions=c.max_position_embeddings)
        self.decoder = transformer.Transformer(c.stack, embeddings=self.embeddings)

    def __call__(self, input_ids, attention_mask=None, deterministic=True, cache=None):
        out = self.decoder(input_ids, attention_mask=attention_mask, deterministic=deterministic, cache=cache)
        h, cache = out if cache is not None else (out, None)
        return _LMOutput(logits=self.embeddings.attend(h), cache=cache)


def _from_hf(hf_config, state_dict) -> tuple[_GPT2LM, dict]:
    """Our model and params from a transformers GPT2LMHeadModel's config and state dict (Conv1D: [in, out])."""
    e, n = hf_config.n_embd, hf_config.n_head
    d = e // n
    stack = transformer.TransformerConfig(
        hidden_size=e, num_layers=hf_config.n_layer, num_heads=n, intermediate_size=hf_config.n_inner or 4 * e,
        hidden_act=hf_config.activation_function, dropout_rate=0.0, attention_dropout_rate=0.0,
        layer_norm_eps=hf_config.layer_norm_epsilon, pre_layer_norm=True, causal=True, final_layer_norm=True,
    )  # fmt: skip
    config = _GPT2Config(hf_config.vocab_size, hf_config.n_positions, stack)
    sd = {k.removeprefix("transformer."): v.detach().float().numpy() for k, v in state_dict.items()}
    ln = lambda p: {"scale": sd[f"{p}.weight"], "bias": sd[f"{p}.bias"]}  # noqa: E731
    decoder = {"final_layer_norm": ln("ln_f")}
    for i in range(hf_config.n_layer):
        h = f"h.{i}"
        qkv_w = np.split(sd[f"{h}.attn.c_attn.weight"], 3, axis=1)
        qkv_b = np.split(sd[f"{h}.attn.c_attn.bias"], 3)
        attention = {
            name: {"kernel": w.reshape(e, n, d), "bias": b.reshape(n, d)}
            for name, w, b in zip(("query", "key", "value"), qkv_w, qkv_b)
        }
        attention["output"] = {
            "kernel": sd[f"{h}.attn.c_proj.weight"].reshape(n, d, e),
            "bias": sd[f"{h}.attn.c_proj.bias"],
        }
        decoder[f"layer_{i}"] = {
            "attention": attention,
            "attention_layer_norm": ln(f"{h}.ln_1"),
            "output_layer_norm": ln(f"{h}.ln_2"),
            "intermediate": {"kernel": sd[f"{h}.mlp.c_fc.weight"], "bias": sd[f"{h}.mlp.c_fc.bias"]},
            "output": {"kernel": sd[f"{h}.mlp.c_proj.weight"], "bias": sd[f"{h}.mlp.c_proj.bias"]},
        }
    embeddings = {
        "word_embeddings": {"embedding": sd["wte.weight"]},
        "position_embeddings": {"embedding": sd["wpe.weight"]},
    }
    params = {"embeddings": embeddings, "decoder": decoder}
    model = _GPT2LM(config)
    expected = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 4), jnp.int32))["params"], jax.random.key(0))
    expected = jax.tree.map(lambda x: x.shape, nn.meta.unbox(expected))
    assert jax.tree.map(np.shape, params) == expected, "converted GPT-2 parameters do not match the model's tree"
    return model, jax.device_put(params)


# --- end TEMPORARY ---------------------------------------------------------------------------------------------------


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
            model, params, prompt, None, max_new_tokens=new, init_cache=_init_cache, temperature=0.0, eos_id=None
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
        shape = dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1000, n_positions=128, bos_token_id=0, eos_token_id=0)
        args.prompt, args.new, args.reps = 8, 8, 1
    else:
        shape = dict(n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024)
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(**shape)
    torch_model = transformers.GPT2LMHeadModel(hf_config).eval()
    model, params = _from_hf(hf_config, torch_model.state_dict())
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; jax {jax.__version__} ({jax.default_backend()}), "
        f"torch {torch.__version__} ({args.threads} threads, attention {torch_model.config._attn_implementation}), "
        f"transformers {transformers.__version__}"
    )
    print(
        f"# GPT-2 {shape['n_layer']}x{shape['n_embd']}, vocab {shape['vocab_size']}, fp32, greedy; prompt "
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

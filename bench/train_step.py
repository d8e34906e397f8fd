"""Training-step throughput: sslm_jax's train step (jit, fp32, AdamW) against transformers' PyTorch model + torch
AdamW on the same batch, and the step's achieved FLOP/s against a large `jnp.dot` in the same run.

    python bench/train_step.py                          # BERT MLM: tiny, mini, small (batch 32) and base (batch 8)
    python bench/train_step.py --sizes=base --steps=5
    python bench/train_step.py --model=gpt              # GPT-2 causal LM: tiny (batch 16) and small (batch 8)
    python bench/train_step.py --model=gpt --sizes=tiny --batch=4 --steps=1 --matmul=256   # smoke (seconds)

--model=bert (masked LM, vocabulary 30,522): sequences of 128 tokens, 15 % of the positions (20) to predict.
sslm_jax gets them as `masked_positions` (the model runs its last layer and the vocabulary projection on those 20
rows only); transformers' `BertForMaskedLM` (sdpa attention) gets `labels` with the original id there and -100
elsewhere (its head projects all 128 rows).

--model=gpt (causal LM, GPT-2's vocabulary of 50,257): full rows of 128 random ids, every token but the first a
target (127 per row) on both sides. sslm_jax: `models.gpt.GPTLMHeadModel` with
`objectives.make_causal_lm_loss(segment_attention=False)` (a row is one window of the stream, as in HF's run_clm);
transformers: `GPT2LMHeadModel` (sdpa attention) with `labels=input_ids` (it shifts them itself). Both compute the
same matmuls (the head at every position), so the FLOP ratio is 1 and any speed-up is efficiency per FLOP.

Both models: dropout 0.1 (GPT-2: embeddings, residuals and attention), global-norm clipping at 1.0, AdamW (lr 1e-4,
betas 0.9/0.999, eps 1e-6, weight decay 0.01 on everything but biases and LayerNorms), fp32. sslm_jax:
`training.step.make_train_step` compiled by `partitioning.jit_train_step` (state donated) on a one-device mesh; XLA
on one CPU device with its own thread pool over the machine's cores. torch runs on
`torch.set_num_threads(--threads)`.

Each round times one sslm_jax step, one torch step and a few fp32 `jnp.dot`s, so a busy machine slows all three
alike; rows give median seconds, and the medians over rounds of the per-round ratios: speed-up = torch s /
sslm_jax s, and "of jnp.dot" = the sslm_jax step's FLOP/s (matmul FLOPs of forward + backward as computed,
counted analytically: 3 x forward) / the matmuls' FLOP/s. "FLOP ratio" = transformers' step's matmul FLOPs /
ours, counted the same way: the speed-up that equal efficiency per FLOP would give. "P" = positions per row that
the loss reads.
"""

from __future__ import annotations

import os
import re

# One CPU device: drop any forced device count inherited from the environment (the tests force 8).
os.environ["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from sslm_jax.models import bert, gpt  # noqa: E402
from sslm_jax.objectives import make_pretraining_loss  # noqa: E402
from sslm_jax.objectives.causal_lm import make_causal_lm_loss  # noqa: E402
from sslm_jax.training import optim, partitioning  # noqa: E402
from sslm_jax.training.step import make_train_step  # noqa: E402

DEFAULT_SIZES = {"bert": "tiny,mini,small,base", "gpt": "tiny,small"}
DEFAULT_BATCH = {
    "bert": {"tiny": 32, "mini": 32, "small": 32, "medium": 32, "base": 8, "large": 8},
    # GPT-2's [batch, 128, 50257] fp32 logits (and their gradient) are 26 MB per row. 16 rows at tiny and 8 at small
    # keep a full run (both sizes, 5 steps) within ~5 minutes on 2 cores, and far inside 24 GB.
    "gpt": {"tiny": 16, "mini": 16, "small": 8, "medium": 4, "large": 2},
}
DEFAULT_VOCAB = {"bert": 30522, "gpt": 50257}
LR, WD, EPS, CLIP = 1e-4, 0.01, 1e-6, 1.0


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(DEFAULT_SIZES), default="bert", help="bert: masked LM; gpt: causal LM")
    p.add_argument("--sizes", help="comma-separated sizes of the model's SIZES table; default: " + str(DEFAULT_SIZES))
    p.add_argument("--batch", type=int, default=0, help="sequences per step; 0: " + str(DEFAULT_BATCH))
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--mask-rate", type=float, default=0.15, help="bert only")
    p.add_argument("--vocab", type=int, default=0, help="0: " + str(DEFAULT_VOCAB))
    p.add_argument("--steps", type=int, default=5, help="timed steps per side and size (after one warm-up)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--matmul", type=int, default=2048, help="side of the square fp32 matmul used as the peak")
    p.add_argument("--matmul-repeats", type=int, default=5, help="matmuls timed after each step")
    args = p.parse_args()
    args.sizes = args.sizes or DEFAULT_SIZES[args.model]
    args.vocab = args.vocab or DEFAULT_VOCAB[args.model]
    return args


def make_batch(batch: int, seq: int, predictions: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Full-length rows (packed pretraining), `predictions` distinct positions per row, 80 % of them [MASK]."""
    rs = np.random.RandomState(seed)
    original = rs.randint(999, vocab, (batch, seq)).astype(np.int32)
    original[:, 0], original[:, -1] = 101, 102
    positions = np.sort(np.stack([rs.choice(np.arange(1, seq - 1), predictions, replace=False) for _ in range(batch)]))
    ids = original.copy()
    rows = np.arange(batch)[:, None]
    ids[rows, positions] = np.where(rs.rand(batch, predictions) < 0.8, 103, original[rows, positions])
    ones = np.ones((batch, seq), np.int32)
    return dict(
        input_ids=ids,
        attention_mask=ones,
        token_type_ids=np.zeros_like(ones),
        segment_ids=ones,
        masked_positions=positions.astype(np.int32),
        masked_ids=original[rows, positions],
        masked_weights=np.ones((batch, predictions), np.float32),
        nsp_label=np.zeros(batch, np.int32),
    )


def train_flops(c: bert.BertConfig, batch: int, seq: int, predictions: int) -> float:
    """Matmul FLOPs that one sslm_jax training step performs (forward + backward = 3 x forward).

    Counted as computed: every layer on all T rows except the last, whose queries, attention output and FFN
    run on the P predicted rows only (keys and values on all T); the head (transform and the tied vocabulary
    projection) on the P rows.
    """
    h, i, v, t, p = c.hidden_size, c.intermediate_size, c.vocab_size, seq, predictions
    layer = 2 * t * (4 * h * h + 2 * h * i) + 2 * 2 * t * t * h  # projections, FFN, scores + context
    last = 2 * t * 2 * h * h + 2 * p * (2 * h * h + 2 * h * i) + 2 * 2 * p * t * h
    head = 2 * p * (h * h + h * v)
    return 3.0 * batch * ((c.num_hidden_layers - 1) * layer + last + head)


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def matmul_step(n: int, repeats: int):
    """`repeats` jitted fp32 n x n matmuls (2 n^3 FLOPs each), timed next to each train step: the attainable peak.

    Repeated so that the peak is measured over a second or more, like the steps, not over one short burst.
    """
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()

    def run():
        for _ in range(repeats):
            dot(a, b).block_until_ready()

    return run


@dataclasses.dataclass
class Case:
    """One model size, ready to time: a step on each side (each returns its loss) and the FLOPs they compute."""

    batch: int
    predictions: int  # positions per row that the loss reads
    run_jax: Callable[[], float]
    run_torch: Callable[[], float]
    flops: float  # matmul FLOPs of one sslm_jax step
    torch_flops: float  # of one transformers step


def jax_step(model, loss_fn, batch: dict) -> Callable[[], float]:
    """`make_train_step` + AdamW for `model` and `loss_fn`, jitted with the state donated; each call is one step."""
    tx = optim.adamw(learning_rate=LR, weight_decay=WD, eps=EPS, max_grad_norm=CLIP)
    mesh = partitioning.create_mesh((1, 1, 1), devices=jax.devices()[:1])
    state, shardings = partitioning.create_train_state(model, tx, jax.random.key(0), mesh, seq_len=8)
    sharding = partitioning.batch_sharding(mesh)
    step = partitioning.jit_train_step(make_train_step(tx, loss_fn), shardings, sharding, mesh)
    device_batch = jax.device_put(batch, sharding)
    rng = jax.random.key(1)
    box = {"state": state}

    def run():
        box["state"], metrics = step(box["state"], device_batch, rng)
        return float(metrics["loss"])  # waits for the step

    return run


def torch_step(model, inputs: dict, no_decay: Callable[[str], bool], torch) -> Callable[[], float]:
    """One training step of a transformers model called as `model(**inputs).loss`: clipping, then torch AdamW with
    no weight decay on the parameters whose names `no_decay` picks (biases and LayerNorms)."""
    model.train()
    named = list(model.named_parameters())  # tied weights once
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": WD},
         {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}],
        lr=LR, betas=(0.9, 0.999), eps=EPS,
    )  # fmt: skip

    def run():
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return run


def _as_torch(torch, **arrays) -> dict:
    return {k: torch.from_numpy(np.asarray(v, np.int64)) for k, v in arrays.items()}


def bert_case(size: str, args, torch, transformers) -> Case:
    batch_size = args.batch or DEFAULT_BATCH["bert"][size]
    predictions = round(args.mask_rate * args.seq / 5) * 5 or 1  # 15 % of 128 -> 20 (google-research/bert)
    config = bert.BertConfig.from_size(size, vocab_size=args.vocab, max_position_embeddings=max(512, args.seq))
    batch = make_batch(batch_size, args.seq, predictions, args.vocab)
    model = bert.BertForMaskedLM(config)
    run_jax = jax_step(model, make_pretraining_loss(model, use_nsp=False, segment_attention=False), batch)
    torch.manual_seed(0)
    hf_config = transformers.BertConfig(**config.to_hf_dict(), attn_implementation="sdpa")
    labels = np.full(batch["input_ids"].shape, -100, np.int64)
    np.put_along_axis(labels, batch["masked_positions"], batch["masked_ids"], axis=1)
    inputs = _as_torch(torch, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"], labels=labels)  # fmt: skip
    run_torch = torch_step(
        transformers.BertForMaskedLM(hf_config), inputs, lambda n: n.endswith("bias") or "LayerNorm" in n, torch
    )
    return Case(
        batch=batch_size,
        predictions=predictions,
        run_jax=run_jax,
        run_torch=run_torch,
        flops=train_flops(config, batch_size, args.seq, predictions),
        # transformers runs every layer and the whole head on all rows: the model FLOPs with no masked positions.
        torch_flops=batch_size * bert.train_flops_per_sequence(config, args.seq, None),
    )


def make_causal_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Full rows of random ids (one window of a token stream each, as HF's run_clm cuts them): all real, every
    token but a row's first a target."""
    ones = np.ones((batch, seq), np.int32)
    return dict(
        input_ids=np.random.RandomState(seed).randint(0, vocab, (batch, seq)).astype(np.int32),
        attention_mask=ones,
        segment_ids=ones,
        position_ids=np.broadcast_to(np.arange(seq, dtype=np.int32), (batch, seq)).copy(),
        loss_weights=ones.astype(np.float32),
    )


def gpt_case(size: str, args, torch, transformers) -> Case:
    batch_size = args.batch or DEFAULT_BATCH["gpt"][size]
    config = gpt.GPTConfig.from_size(size, vocab_size=args.vocab, max_position_embeddings=max(1024, args.seq))
    batch = make_causal_batch(batch_size, args.seq, args.vocab)
    model = gpt.GPTLMHeadModel(config)
    run_jax = jax_step(model, make_causal_lm_loss(model, segment_attention=False), batch)
    torch.manual_seed(0)
    hf_config = transformers.GPT2Config(**config.to_hf_dict(), attn_implementation="sdpa")
    inputs = _as_torch(torch, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       labels=batch["input_ids"])  # fmt: skip
    # GPT-2's LayerNorms are ln_1, ln_2 and ln_f.
    run_torch = torch_step(
        transformers.GPT2LMHeadModel(hf_config), inputs, lambda n: n.endswith("bias") or ".ln_" in n, torch
    )
    flops = batch_size * gpt.train_flops_per_sequence(config, args.seq)  # the same on both sides
    return Case(batch_size, args.seq - 1, run_jax, run_torch, flops=flops, torch_flops=flops)


CASES = {"bert": bert_case, "gpt": gpt_case}


def bench_size(size: str, args, run_dot, torch, transformers) -> dict:
    case = CASES[args.model](size, args, torch, transformers)
    start = time.perf_counter()
    first_jax = case.run_jax()  # compiles
    compile_s = time.perf_counter() - start
    first_torch = case.run_torch()
    dot_flops = 2.0 * args.matmul**3 * args.matmul_repeats
    j_times, t_times, d_times = [], [], []
    for _ in range(args.steps):  # interleaved, so that a change of load hits all three alike
        j_times.append(_time(case.run_jax))
        t_times.append(_time(case.run_torch))
        d_times.append(_time(run_dot))
    # Ratios are taken per round (the three timings of a round saw the same neighbours), then the median.
    speedup = statistics.median(t / j for j, t in zip(j_times, t_times))
    of_peak = statistics.median((case.flops / j) / (dot_flops / d) for j, d in zip(j_times, d_times))
    j, t, d = (statistics.median(x) for x in (j_times, t_times, d_times))
    tokens = case.batch * args.seq
    return dict(size=size, batch=case.batch, P=case.predictions, jax_s=j, torch_s=t, jax_tps=tokens / j,
                torch_tps=tokens / t, speedup=speedup, flops_s=case.flops / j, peak=dot_flops / d, of_peak=of_peak,
                flop_ratio=case.torch_flops / case.flops, compile_s=compile_s,
                loss=(first_jax, first_torch))  # fmt: skip


def main():
    args = _parse()
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}; jax {jax.__version__} ({jax.device_count()} "
        f"{jax.default_backend()} device), torch {torch.__version__} ({args.threads} threads), "
        f"transformers {transformers.__version__}"
    )
    run_dot = matmul_step(args.matmul, args.matmul_repeats)
    objective = {"bert": "BERT masked LM", "gpt": "GPT-2 causal LM"}[args.model]
    print(f"# {objective}: seq {args.seq}, vocab {args.vocab}, {args.steps} timed steps per side; peak = fp32 "
          f"jnp.dot {args.matmul}x{args.matmul} timed between the steps")  # fmt: skip
    print("| size | batch | P | sslm_jax s/step | torch s/step | sslm_jax tok/s | torch tok/s | speed-up "
          "| FLOP ratio | sslm_jax GFLOP/s | jnp.dot GFLOP/s | of jnp.dot | first loss (jax / torch) | compile s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes.split(","):
        r = bench_size(size, args, run_dot, torch, transformers)
        print(
            f"| {r['size']} | {r['batch']} | {r['P']} | {r['jax_s']:.4f} | {r['torch_s']:.4f} | {r['jax_tps']:,.0f} "
            f"| {r['torch_tps']:,.0f} | {r['speedup']:.2f}x | {r['flop_ratio']:.2f} | {r['flops_s'] / 1e9:.1f} "
            f"| {r['peak'] / 1e9:.1f} | {100 * r['of_peak']:.0f} % | {r['loss'][0]:.2f} / {r['loss'][1]:.2f} "
            f"| {r['compile_s']:.1f} |",
            flush=True,
        )
    print(f"# load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

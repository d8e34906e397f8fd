"""One-shot accelerator benchmark for a GPU host or a TPU VM: sslm_jax's train steps and generation, next to
transformers' PyTorch on the same device, in one run of a few minutes.

    python bench/accelerator.py --json=/tmp/accelerator.json    # on the GPU / TPU host (under 8 minutes)
    python bench/accelerator.py --smoke                         # tiny shapes on CPU in seconds (tests run this)
    python bench/accelerator.py --sections=bert --bert-seqs=128 --ablations=nodropout,rbg,cudnn --no-torch

Needs only jax, flax, optax and numpy (plus torch and transformers for the reference rows, skipped when absent),
never TensorFlow: the input pipeline is measured elsewhere (bench/pipeline.py), batches here are synthetic. A
typical GPU image ships jax, flax, optax, orbax, torch and transformers but no TensorFlow, and this repository
arrives as source: run it from the checkout root (it puts the checkout on sys.path).

Rows (one JSON line each, then a table; `--json` also writes them all to a file):
  - bert_train: BERT-base masked-LM train step (AdamW, clipping; 15 % of positions predicted, the head on those
    only) at seq 128 and 512, bf16 compute with fp32 parameters, without and with remat.
  - hf_bert_train: transformers' BertForMaskedLM on the same batch and device, bf16 autocast (its head runs on
    every position), and `torch.compile` of it when it compiles within --compile-budget-s.
  - gpt_train / hf_gpt_train: GPT-2 small causal-LM train step at seq 512, the same way.
  - gpt_generate / hf_gpt_generate: greedy decoding from GPT-2 small, bf16, batch 8, prompt 64, 256 new tokens.
  - bert_ablation (--ablations): the bert_train step (no remat) with one thing changed, to attribute its time on a
    device: `nodropout` (no dropout at all: no random bits, and attention takes jax.nn.dot_product_attention),
    `rbg` (dropout bits from the `rbg` PRNG instead of threefry), `cudnn` (nodropout with cuDNN's fused attention;
    GPU only). The BERT step was 2.3x slower than transformers' on an H200 (BENCHMARKS.md): these rows say where.
tokens_per_s counts input tokens per second (train) or new tokens per second (generation). mfu = model FLOPs
(`train_flops_per_sequence`: forward + backward, remat recomputation not credited) / step time / the chip's
dense bf16 peak (`sslm_jax.training.flops`); null where the peak is unknown (CPUs). ratio_vs_hf = our tokens/s
over transformers' eager bf16 tokens/s in the same run. Timings are medians over --steps after a warm-up step
(the compile); the time each side took to compile is reported too.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import pathlib
import platform
import statistics
import sys
import time
import traceback
from typing import Callable

# JAX would otherwise reserve 75 % of the GPU at start-up, leaving transformers' reference rows too little.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout, when sslm_jax is not installed (a GPU host gets it as source)

import jax  # noqa: E402
import numpy as np  # noqa: E402

from sslm_jax.inference import generate as gen  # noqa: E402
from sslm_jax.models import bert, gpt  # noqa: E402
from sslm_jax.objectives import make_pretraining_loss  # noqa: E402
from sslm_jax.objectives.causal_lm import make_causal_lm_loss  # noqa: E402
from sslm_jax.training import flops, optim, partitioning  # noqa: E402
from sslm_jax.training.step import make_train_step  # noqa: E402

LR, WD, EPS, CLIP = 1e-4, 0.01, 1e-6, 1.0
MASK_RATE = 0.15


@dataclasses.dataclass(frozen=True)
class Shapes:
    """What one run measures: the full set on an accelerator, or `--smoke`'s tiny one."""

    bert_size: str
    gpt_size: str
    bert_runs: tuple[tuple[int, int], ...]  # (seq, batch)
    gpt_run: tuple[int, int]
    generate: tuple[int, int, int]  # (batch, prompt, new tokens)
    vocab: int | None  # None: the size's own (30,522 / 50,257)


FULL = Shapes("base", "small", ((128, 256), (512, 64)), (512, 32), (8, 64, 256), None)
SMOKE = Shapes("tiny", "tiny", ((32, 2),), (32, 2), (2, 8, 4), 512)  # 4 compilations: seconds each


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny shapes, 2 steps, no torch.compile: seconds on a CPU")
    p.add_argument("--steps", type=int, default=10, help="timed steps per row after the warm-up")
    p.add_argument("--json", default="", help="also write every row to this file (a JSON list)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="override the chip's bf16 peak (TFLOP/s)")
    p.add_argument("--compile-budget-s", type=float, default=120.0, help="skip torch.compile rows after this")
    p.add_argument("--no-torch", action="store_true", help="sslm_jax rows only")
    p.add_argument("--torch-compile", choices=("all", "first", "none"), default="all",
                   help="which transformers rows also get a torch.compile row (on CUDA): each compile takes minutes")
    p.add_argument("--generate-steps", type=int, default=3, help="timed generations per side (each is seconds long)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {', '.join(SECTIONS)}")
    p.add_argument("--bert-seqs", default="", help="comma-separated BERT sequence lengths to run (default: all)")
    p.add_argument("--ablations", default="", help=f"comma-separated bert_ablation rows: {', '.join(ABLATIONS)}")
    p.add_argument("--deadline-s", type=float, default=0.0,
                   help="start no further row after this many seconds (0: none); later rows are listed as skipped, "
                        "so that a run on a rented device fits its lease and still prints its table")
    args = p.parse_args()
    for flag, given, known in (("--sections", args.sections, SECTIONS), ("--ablations", args.ablations, ABLATIONS)):
        unknown = sorted(set(filter(None, given.split(","))) - set(known))
        if unknown:
            p.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    args.sections = [name for name in SECTIONS if name in args.sections.split(",")]
    args.ablations = [name for name in ABLATIONS if name in args.ablations.split(",")]
    args.bert_seqs = {int(x) for x in args.bert_seqs.split(",") if x}
    args.start, args.compiles = time.perf_counter(), 0
    if args.smoke:
        args.steps, args.generate_steps = min(args.steps, 2), min(args.generate_steps, 2)
    return args


# --- Timing ----------------------------------------------------------------------------------------------------


def _timed(run: Callable[[], object], steps: int) -> tuple[float, float]:
    """(first call's seconds, i.e. compile + one step; median seconds of `steps` further calls)."""
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def _late(args) -> bool:
    return bool(args.deadline_s) and time.perf_counter() - args.start > args.deadline_s


def _skipped(bench: str, impl: str, why: str, **info) -> dict:
    row = dict(bench=bench, impl=impl, skipped=why, **info)
    _emit(row)
    return row


def _row(bench: str, impl: str, *, tokens: int, step_s: float, first_s: float, model_flops: float | None,
         peak: float | None, reference: list[dict] = (), **extra) -> dict:  # fmt: skip
    """One result. `reference`: transformers' rows of the same shapes; its eager row gives ratio_vs_hf."""
    row = dict(bench=bench, impl=impl, tokens_per_s=tokens / step_s, step_s=step_s, first_call_s=first_s,
               mfu=model_flops / step_s / peak if model_flops and peak else None, **extra)  # fmt: skip
    eager = [r for r in reference if r.get("impl") == "transformers" and "tokens_per_s" in r]
    if eager:
        row["ratio_vs_hf"] = row["tokens_per_s"] / eager[0]["tokens_per_s"]
    return row


def matmul_flops(n: int, steps: int) -> float:
    """FLOP/s of one jitted [n, n] @ [n, n] bf16 product on random data: the ceiling this chip reaches here, beside
    the datasheet peak that MFU is taken against."""
    a, b = (jax.random.normal(k, (n, n), jax.numpy.bfloat16) for k in jax.random.split(jax.random.key(0)))
    product = jax.jit(lambda x, y: x @ y)
    _, step = _timed(lambda: product(a, b).block_until_ready(), max(steps, 3))
    return 2 * n**3 / step


# --- sslm_jax --------------------------------------------------------------------------------------------------


def _jax_train_step(model, loss_fn, batch: dict, rng=None) -> Callable[[], float]:
    """`make_train_step` + AdamW, jitted with the state donated on a one-device mesh; each call is one step."""
    tx = optim.adamw(learning_rate=LR, weight_decay=WD, eps=EPS, max_grad_norm=CLIP)
    mesh = partitioning.create_mesh((1, 1, 1), devices=jax.devices()[:1])
    state, shardings = partitioning.create_train_state(model, tx, jax.random.key(0), mesh, seq_len=8)
    sharding = partitioning.batch_sharding(mesh)
    step = partitioning.jit_train_step(make_train_step(tx, loss_fn), shardings, sharding, mesh)
    device_batch = jax.device_put(batch, sharding)
    box = {"state": state}
    rng = jax.random.key(1) if rng is None else rng

    def run():
        box["state"], metrics = step(box["state"], device_batch, rng)
        return float(metrics["loss"])  # waits for the step

    return run


def mlm_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Full rows (packed pretraining) with 15 % of the positions to predict, 80 % of those replaced by [MASK]."""
    rs = np.random.RandomState(seed)
    predictions = max(1, round(MASK_RATE * seq))
    original = rs.randint(999 if vocab > 2000 else 5, vocab, (batch, seq)).astype(np.int32)
    positions = np.sort(np.stack([rs.choice(np.arange(1, seq - 1), predictions, replace=False) for _ in range(batch)]))
    rows = np.arange(batch)[:, None]
    ids = original.copy()
    ids[rows, positions] = np.where(rs.rand(batch, predictions) < 0.8, 3, original[rows, positions])
    ones = np.ones((batch, seq), np.int32)
    return dict(input_ids=ids, attention_mask=ones, token_type_ids=np.zeros_like(ones), segment_ids=ones,
                masked_positions=positions.astype(np.int32), masked_ids=original[rows, positions],
                masked_weights=np.ones((batch, predictions), np.float32), nsp_label=np.zeros(batch, np.int32))  # fmt: skip


def causal_batch(batch: int, seq: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    ones = np.ones((batch, seq), np.int32)
    return dict(input_ids=np.random.RandomState(seed).randint(0, vocab, (batch, seq)).astype(np.int32),
                attention_mask=ones, segment_ids=ones, loss_weights=ones.astype(np.float32),
                position_ids=np.broadcast_to(np.arange(seq, dtype=np.int32), (batch, seq)).copy())  # fmt: skip


def bert_config(shapes: Shapes, seq: int, *, remat: bool) -> bert.BertConfig:
    vocab = {"vocab_size": shapes.vocab} if shapes.vocab else {}
    return bert.BertConfig.from_size(shapes.bert_size, max_position_embeddings=max(512, seq), dtype="bfloat16",
                                     remat=remat, **vocab)  # fmt: skip


def gpt_config(shapes: Shapes, seq: int) -> gpt.GPTConfig:
    # A smaller vocabulary than GPT-2's has no id 50256: its first token stands for end-of-text.
    vocab = {"vocab_size": shapes.vocab, "bos_token_id": 0, "eos_token_id": 0} if shapes.vocab else {}
    return gpt.GPTConfig.from_size(shapes.gpt_size, max_position_embeddings=max(1024, seq), dtype="bfloat16",
                                   **vocab)  # fmt: skip


# --- transformers (PyTorch) ------------------------------------------------------------------------------------


def _torch_train_step(model, inputs: dict, torch, device: str) -> Callable[[], float]:
    """transformers' step: bf16 autocast forward + backward, clipping, torch AdamW (fused on CUDA)."""
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=EPS, weight_decay=WD,
                            fused=device == "cuda")  # fmt: skip
    inputs = {k: v.to(device) for k, v in inputs.items()}

    def run():
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())  # waits for the device

    return run


def _torch_inputs(torch, **arrays) -> dict:
    return {k: torch.from_numpy(np.asarray(v, np.int64)) for k, v in arrays.items()}


# --- The benchmarks -------------------------------------------------------------------------------------------


# name -> (BertConfig overrides, the PRNG implementation of the step's key, the backends it can run on or None).
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
ABLATIONS: dict[str, tuple[dict, str, tuple[str, ...] | None]] = {
    "nodropout": (NO_DROPOUT, "threefry2x32", None),
    "rbg": ({}, "rbg", None),
    "cudnn": ({**NO_DROPOUT, "attention_implementation": "cudnn"}, "threefry2x32", ("gpu", "cuda")),
}


def _bert_row(bench: str, shapes: Shapes, config: bert.BertConfig, batch: dict, rng, args, peak, reference,
              **info) -> dict:  # fmt: skip
    """One timed sslm_jax BERT masked-LM step of `config` on `batch`, as a row (emitted)."""
    model = bert.BertForMaskedLM(config)
    loss_fn = make_pretraining_loss(model, use_nsp=False, segment_attention=False)
    first, step = _timed(_jax_train_step(model, loss_fn, batch, rng), args.steps)
    batch_size, seq = batch["input_ids"].shape
    model_flops = batch_size * bert.train_flops_per_sequence(config, seq, batch["masked_positions"].shape[1])
    row = _row(bench, "sslm_jax", tokens=batch_size * seq, step_s=step, first_s=first, model_flops=model_flops,
               peak=peak, reference=reference, size=shapes.bert_size, seq=seq, batch=batch_size, dtype="bfloat16",
               params="float32", remat=config.remat, **info)  # fmt: skip
    _emit(row)
    return row


def _ablation_rows(shapes: Shapes, args, peak, seq: int, batch_size: int, batch: dict, reference) -> list[dict]:
    rows = []
    for name in args.ablations:
        overrides, prng, backends = ABLATIONS[name]
        info = dict(seq=seq, batch=batch_size, variant=name)
        if backends and jax.default_backend() not in backends:
            rows.append(_skipped("bert_ablation", "sslm_jax", f"needs a {'/'.join(backends)} backend", **info))
            continue
        if _late(args):
            rows.append(_skipped("bert_ablation", "sslm_jax", "past --deadline-s", **info))
            continue
        config = dataclasses.replace(bert_config(shapes, seq, remat=False), **overrides)
        try:  # a variant the device cannot run (cuDNN's attention on an old GPU) is a row, not the section's end
            rows.append(_bert_row("bert_ablation", shapes, config, batch, jax.random.key(1, impl=prng), args, peak,
                                  reference, variant=name))  # fmt: skip
        except Exception as e:  # noqa: BLE001
            rows.append(_skipped("bert_ablation", "sslm_jax", f"failed: {type(e).__name__}: {e}"[:300], **info))
    return rows


def bench_bert(shapes: Shapes, args, peak, torch, transformers, device) -> list[dict]:
    rows = []
    for seq, batch_size in shapes.bert_runs:
        if args.bert_seqs and seq not in args.bert_seqs:
            continue
        config = bert_config(shapes, seq, remat=False)
        batch = mlm_batch(batch_size, seq, config.vocab_size)
        reference = []
        if torch is not None:  # first, so that our rows carry the ratio when they are printed
            labels = np.full(batch["input_ids"].shape, -100, np.int64)
            np.put_along_axis(labels, batch["masked_positions"], batch["masked_ids"], axis=1)
            inputs = _torch_inputs(torch, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   token_type_ids=batch["token_type_ids"], labels=labels)  # fmt: skip
            hf_flops = batch_size * bert.train_flops_per_sequence(config, seq, None)  # its head runs on every row

            def hf_model(hf_dict=config.to_hf_dict()):  # bound now: `config` is rebound below, before the compile row
                torch.manual_seed(0)
                return transformers.BertForMaskedLM(transformers.BertConfig(**hf_dict, attn_implementation="sdpa"))

            hf_info = dict(size=shapes.bert_size, seq=seq, batch=batch_size)
            reference = _torch_row("hf_bert_train", hf_model, inputs, hf_flops, batch_size * seq, args, peak, torch,
                                   device, hf_info, compiled=False)  # fmt: skip
        rows += reference
        for remat in (False, True):
            if _late(args):
                rows.append(_skipped("bert_train", "sslm_jax", "past --deadline-s", seq=seq, batch=batch_size,
                                     remat=remat))  # fmt: skip
                continue
            config = bert_config(shapes, seq, remat=remat)
            rows.append(_bert_row("bert_train", shapes, config, batch, None, args, peak, reference))
        rows += _ablation_rows(shapes, args, peak, seq, batch_size, batch, reference)
        if torch is not None:  # last: a compile takes minutes, and the rows above matter more when time is short
            rows += _torch_row("hf_bert_train", hf_model, inputs, hf_flops, batch_size * seq, args, peak, torch, device,
                               hf_info, compiled=True)  # fmt: skip
    return rows


def bench_gpt(shapes: Shapes, args, peak, torch, transformers, device) -> list[dict]:
    seq, batch_size = shapes.gpt_run
    config = gpt_config(shapes, seq)
    batch = causal_batch(batch_size, seq, config.vocab_size)
    model_flops = batch_size * gpt.train_flops_per_sequence(config, seq)  # the same on both sides
    reference = []
    if torch is not None:
        inputs = _torch_inputs(torch, input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               labels=batch["input_ids"])  # fmt: skip

        def hf_model():
            torch.manual_seed(0)
            return transformers.GPT2LMHeadModel(
                transformers.GPT2Config(**config.to_hf_dict(), attn_implementation="sdpa")
            )

        hf_info = dict(size=shapes.gpt_size, seq=seq, batch=batch_size)
        reference = _torch_row("hf_gpt_train", hf_model, inputs, model_flops, batch_size * seq, args, peak, torch,
                               device, hf_info, compiled=False)  # fmt: skip
    if _late(args):
        return reference + [_skipped("gpt_train", "sslm_jax", "past --deadline-s", seq=seq, batch=batch_size)]
    model = gpt.GPTLMHeadModel(config)
    first, step = _timed(_jax_train_step(model, make_causal_lm_loss(model, segment_attention=False), batch), args.steps)
    row = _row("gpt_train", "sslm_jax", tokens=batch_size * seq, step_s=step, first_s=first, model_flops=model_flops,
               peak=peak, reference=reference, size=shapes.gpt_size, seq=seq, batch=batch_size, dtype="bfloat16",
               params="float32", remat=False)  # fmt: skip
    _emit(row)
    compiled = []
    if torch is not None:
        compiled = _torch_row("hf_gpt_train", hf_model, inputs, model_flops, batch_size * seq, args, peak, torch, device,
                              hf_info, compiled=True)  # fmt: skip
    return reference + [row] + compiled


def _torch_row(bench, make_model, inputs, model_flops, tokens, args, peak, torch, device, info, *,
               compiled: bool) -> list[dict]:  # fmt: skip
    """transformers' eager bf16 step, or (on CUDA, per --torch-compile) its `torch.compile`d step: [] or one row.
    A compile that fails or takes longer than --compile-budget-s is reported as skipped, not fatal (the eager row is
    the reference)."""
    impl = "transformers+torch.compile" if compiled else "transformers"
    if compiled and (args.smoke or device != "cuda" or args.torch_compile == "none"
                     or (args.torch_compile == "first" and args.compiles)):  # fmt: skip
        return []  # torch.compile is measured on the GPU only
    if _late(args):
        return [_skipped(bench, impl, "past --deadline-s", **info)]
    model = make_model()
    run = _torch_train_step(torch.compile(model) if compiled else model, inputs, torch, device)
    compile_s = None
    if compiled:
        args.compiles += 1
        start = time.perf_counter()
        try:
            run()
        except Exception as e:  # noqa: BLE001 - see the docstring
            skipped = f"{type(e).__name__}: {e}"[:300]
        else:
            compile_s = time.perf_counter() - start
            skipped = f"compiled in {compile_s:.0f} s > --compile-budget-s" if compile_s > args.compile_budget_s else ""
        if skipped:
            del run, model
            _release(torch, device)
            return [_skipped(bench, impl, skipped, **info)]
    first, step = _timed(run, args.steps)
    del run, model
    _release(torch, device)
    row = _row(bench, impl, tokens=tokens, step_s=step, first_s=compile_s or first, model_flops=model_flops, peak=peak,
               dtype="bfloat16 autocast", params="float32", device=device, **info)  # fmt: skip
    _emit(row)
    return [row]


def bench_generate(shapes: Shapes, args, peak, torch, transformers, device) -> list[dict]:
    """Greedy decoding of exactly `new` tokens per row (no EOS), the same random weights and prompts on both sides."""
    batch_size, prompt_len, new = shapes.generate
    config = gpt_config(shapes, prompt_len + new)
    model = gpt.GPTLMHeadModel(config)
    params = jax.jit(functools.partial(gpt.init_params, model))(jax.random.key(0))
    prompt = np.random.RandomState(0).randint(0, config.vocab_size, (batch_size, prompt_len)).astype(np.int32)
    info = dict(size=shapes.gpt_size, batch=batch_size, prompt=prompt_len, new_tokens=new, dtype="bfloat16")
    reference = []
    if torch is not None and _late(args):
        reference = [_skipped("hf_gpt_generate", "transformers", "past --deadline-s", **info)]
    elif torch is not None:
        import tempfile

        from sslm_jax.interop import hf_gpt2

        with tempfile.TemporaryDirectory() as tmp:  # our weights, exported (in fp32; loaded as bf16)
            hf_gpt2.save_checkpoint(tmp, dataclasses.replace(config, dtype="float32"), jax.device_get(params))
            hf = transformers.GPT2LMHeadModel.from_pretrained(tmp, dtype=torch.bfloat16).to(device).eval()
        t_prompt = torch.from_numpy(prompt.astype(np.int64)).to(device)

        def theirs():
            with torch.inference_mode():
                out = hf.generate(t_prompt, attention_mask=torch.ones_like(t_prompt), do_sample=False,
                                  max_new_tokens=new, min_new_tokens=new, pad_token_id=0, eos_token_id=None)  # fmt: skip
            return out.cpu()

        first, step = _timed(theirs, args.generate_steps)
        reference = [_row("hf_gpt_generate", "transformers", tokens=batch_size * new, step_s=step, first_s=first,
                          model_flops=None, peak=None, device=device, **info)]  # fmt: skip
        _emit(reference[0])
        del hf, theirs
        _release(torch, device)

    def ours():
        out = gen.generate(model, params, prompt, None, max_new_tokens=new, init_cache=gpt.init_cache,
                           temperature=0.0, eos_id=None)  # fmt: skip
        return np.asarray(out.tokens)

    if _late(args):
        return reference + [_skipped("gpt_generate", "sslm_jax", "past --deadline-s", **info)]
    first, step = _timed(ours, args.generate_steps)
    row = _row("gpt_generate", "sslm_jax", tokens=batch_size * new, step_s=step, first_s=first, model_flops=None,
               peak=None, reference=reference, **info)  # fmt: skip
    _emit(row)
    return reference + [row]


SECTIONS = {"bert": bench_bert, "gpt": bench_gpt, "generate": bench_generate}


def _release(torch, device: str) -> None:
    """Gives the GPU memory of a finished reference (its last references deleted) back before JAX's rows."""
    if device == "cuda":
        torch.cuda.empty_cache()


def _emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def _table(rows: list[dict]) -> str:
    lines = ["| bench | impl | seq | batch | remat | tokens/s | MFU | vs HF | step s | first call s |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        impl = f"{r['impl']} {r['variant']}" if "variant" in r else r["impl"]
        if "skipped" in r:
            lines.append(f"| {r['bench']} | {impl} | {r.get('seq', '')} | {r.get('batch', '')} | | skipped: "
                         f"{r['skipped'][:60]} | | | | |")  # fmt: skip
            continue
        mfu = f"{100 * r['mfu']:.1f} %" if r.get("mfu") is not None else "-"
        ratio = f"{r['ratio_vs_hf']:.2f}x" if "ratio_vs_hf" in r else "-"
        lines.append(f"| {r['bench']} | {impl} | {r.get('seq', r.get('prompt', ''))} | {r['batch']} | "
                     f"{r.get('remat', '')} | {r['tokens_per_s']:,.0f} | {mfu} | {ratio} | {r['step_s']:.4f} | "
                     f"{r['first_call_s']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main():
    args = _parse()
    shapes = SMOKE if args.smoke else FULL
    start = time.perf_counter()
    try:
        import torch
        import transformers
    except ImportError:
        torch = transformers = None
    if args.no_torch:
        torch = transformers = None
    device = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    peak = flops.peak_flops_per_device(jax.devices()[0], args.peak_tflops)
    header = dict(bench="environment", device_kind=jax.devices()[0].device_kind, backend=jax.default_backend(),
                  jax=jax.__version__, torch=getattr(torch, "__version__", None), torch_device=device,
                  transformers=getattr(transformers, "__version__", None), peak_bf16_flops=peak,
                  host=platform.node(), smoke=args.smoke,
                  matmul_n=256 if args.smoke else 8192)  # fmt: skip
    header["measured_bf16_matmul_flops"] = matmul_flops(header["matmul_n"], args.steps)
    _emit(header)
    if jax.default_backend() != "cpu" and device == "cpu" and torch is not None:
        print("# torch sees no GPU here: its reference rows run on the CPU and are not comparable", file=sys.stderr)
    rows, failed = [], []
    for section in (SECTIONS[name] for name in args.sections):  # one failing section still leaves the others' rows
        try:
            rows += section(shapes, args, peak, torch, transformers, device)
        except Exception as e:  # noqa: BLE001 - reported, and the exit status says so
            failed.append(_skipped(section.__name__, "-", f"failed: {type(e).__name__}: {e}"[:500]))
            traceback.print_exc()
            if torch is not None and device == "cuda":
                _release(torch, device)
    rows += failed
    assert "tensorflow" not in sys.modules, "bench/accelerator.py must run without TensorFlow"
    print(_table(rows))
    print(f"# a bf16 [{header['matmul_n']}]^2 matmul measured here: {header['measured_bf16_matmul_flops'] / 1e12:.1f} "
          f"TFLOP/s; MFU is against the datasheet peak, {f'{peak / 1e12:.0f} TFLOP/s' if peak else 'unknown here'}")
    print(f"# {time.perf_counter() - start:.0f} s in all; TensorFlow imported: no")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps([header] + rows, indent=1) + "\n")
    if failed:
        sys.exit(f"# {len(failed)} section(s) failed: {', '.join(r['bench'] for r in failed)}")


if __name__ == "__main__":
    main()

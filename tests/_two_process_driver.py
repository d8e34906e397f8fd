"""One process of tests/test_loop.py's multi-process test (run as a script, not collected by pytest).

    python tests/_two_process_driver.py --vocab=V --out=OUT.json [--workdir=DIR]

With `--workdir`, the process first runs the real trainer twice in DIR with `config.distributed=True`, so that
`train_and_evaluate` itself calls `jax.distributed.initialize()` and finds its peers in the environment the test
gives it (Open MPI's variables, as `mpirun` sets them): `configs/bert_demo.py:smoke` for 4 steps, then the same
for 6 steps, which resumes from the step-4 checkpoint (each process restores its own data position).

Then (always) it runs TRAIN_STEPS training steps of the loop's `JitRunner` on synthetic global batches that are the
same in every process layout: process i of n feeds rows [i*B/n, (i+1)*B/n) through `JitRunner.put`
(`jax.make_array_from_process_local_data`). It writes the step metrics, a digest of the train state they end with
and the trainer's results to `--out`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_STEPS = 3
MASK_ID = 103  # BERT's [MASK]; ids below 104 are special tokens


def synthetic_batch(seed: int, *, batch: int, seq_len: int, predictions: int, vocab_size: int) -> dict:
    """A global pretraining batch with the data contract's keys, shapes and dtypes (padded rows of random length,
    `predictions` masked positions per row), the same for a given seed in every process."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(seq_len // 2, seq_len + 1, size=batch)
    attention = (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.int32)
    labels_source = rng.integers(104, vocab_size, size=(batch, seq_len)).astype(np.int32) * attention
    positions = np.stack([np.sort(rng.choice(np.arange(1, n), size=predictions, replace=False)) for n in lengths])
    positions = positions.astype(np.int32)
    input_ids = labels_source.copy()
    np.put_along_axis(input_ids, positions, MASK_ID, axis=1)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "token_type_ids": np.zeros_like(attention),
        "segment_ids": attention.copy(),
        "masked_positions": positions,
        "masked_ids": np.take_along_axis(labels_source, positions, axis=1),
        "masked_weights": np.ones((batch, predictions), np.float32),
        "nsp_label": np.zeros(batch, np.int32),
    }


def smoke_config(vocab: str, **overrides):
    from sslm_jax.config_loading import load_config

    config = load_config(str(ROOT / "configs" / "bert_demo.py") + ":smoke")
    with config.unlocked():
        config.data.vocab_path = vocab
        config.fill_mask_examples = ()
        config.update_from_flattened_dict(overrides)
    return config


def run_trainer(vocab: str, workdir: str) -> dict:
    from sslm_jax.training.loop import train_and_evaluate

    common = dict(distributed=True, log_every_steps=1, eval_every_steps=2, checkpoint_every_steps=2)
    first = train_and_evaluate(smoke_config(vocab, total_steps=4, **common), workdir)
    resumed = train_and_evaluate(smoke_config(vocab, total_steps=6, **common), workdir)
    return {"first_eval": first, "resumed_eval": resumed}


def state_digest(state) -> str:
    """sha256 over every leaf's bytes (fully replicated here, so each process can read the whole value)."""
    import jax

    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(jax.device_get(state)):
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def train_steps(vocab: str) -> tuple[list[dict[str, float]], str]:
    """The metrics of TRAIN_STEPS steps and the digest of the state they end with."""
    import types

    import jax

    from sslm_jax import tasks
    from sslm_jax.training import optim, runners

    config = smoke_config(vocab)
    vocab_size = len(pathlib.Path(vocab).read_text().splitlines())
    # The tokenizer only feeds the (unused) data pipeline; the model needs its size.
    tok = types.SimpleNamespace(vocab_size=vocab_size)
    task = tasks.get(config.task).build(config, tok, process_index=jax.process_index(), process_count=jax.process_count())
    tx, schedule = optim.make_optimizer(config)
    runner = runners.JitRunner.build(config, task, tx, schedule)
    state, rng = runner.init(), jax.random.key(1)
    rows = config.batch_size // jax.process_count()
    mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
    out = []
    for seed in range(TRAIN_STEPS):
        batch = synthetic_batch(
            seed,
            batch=config.batch_size,
            seq_len=config.data.max_seq_len,
            predictions=config.data.max_predictions_per_seq,
            vocab_size=vocab_size,
        )
        state, metrics = runner.train(state, runner.put({k: v[mine] for k, v in batch.items()}), rng)
        out.append({k: float(v) for k, v in jax.device_get(metrics).items() if np.ndim(v) == 0})
    return out, state_digest(state)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--workdir", default="")
    args = parser.parse_args(argv)
    from absl import logging

    logging.set_verbosity(logging.INFO)  # the trainer's "Start: resumed at step 4." is what the test reads
    result = run_trainer(args.vocab, args.workdir) if args.workdir else {}

    import jax

    result["steps"], result["state_digest"] = train_steps(args.vocab)
    result["process_index"], result["process_count"] = jax.process_index(), jax.process_count()
    result["device_count"] = jax.device_count()
    pathlib.Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(sys.argv[1:])

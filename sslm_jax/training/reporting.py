"""Where metrics go: `metrics.jsonl`, TensorBoard event files, a PNG of the curves, a progress bar, the log.

Only process 0 writes. `metrics.jsonl` holds one JSON object per logged step (`step`, `loss`, `mlm_accuracy`,
..., and `eval_*` keys on evaluation steps); a resumed run first drops the records after the step it resumes
from, so the file reads as one uninterrupted run. A line a kill or a full disk cut short (the file's torn tail) is
dropped too, with a log line, instead of blocking every resume.

TensorBoard's event files are append-only and each run writes new ones, so the old files are not edited: a resumed
run's writer is opened with `purge_step=resume_step + 1`, which records a restart marker that TensorBoard honours by
hiding the earlier runs' events after the resumed step (as after a crash of any TensorFlow job). A torn last record
of an old event file is skipped by TensorBoard's reader.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from absl import logging

from sslm_jax.import_guard import imports_blocked
from sslm_jax.training import disk_full

# Curves drawn in the PNG by default (the loop passes its task's progress keys). Missing keys are skipped.
PLOTTED = ("loss", "mlm_accuracy", "learning_rate")
_TB_QUEUE = 100_000  # events tensorboardX's writer thread may hold (see MetricsWriter._writer)


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without PyTorch: its writer module imports torch when installed, only to
    accept torch tensors, which we never pass (sslm_jax.import_guard)."""
    with imports_blocked("torch"):
        from tensorboardX import SummaryWriter

    return SummaryWriter


def _plain(value: Any) -> Any:
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def read_records(path: pathlib.Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; a line that is not a complete JSON record (a torn tail) is dropped, logged."""
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("no step")
        except ValueError:
            logging.warning("%s: line %d is not a complete record (cut short by a kill or a full disk?): dropped.",
                            path, number)  # fmt: skip
            continue
        records.append(record)
    return records


PLOT_EVERY_S = 60.0  # the loop's redraws of curves.png at evaluations, at most this often (seconds)


class MetricsWriter:
    """Writes scalars to metrics.jsonl, TensorBoard (train/ and eval/ runs) and a PNG of the curves."""

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        resume_step: int = 0,
        enabled: bool | None = None,
        plotted: Sequence[str] = PLOTTED,
    ):
        self.plotted = tuple(plotted)
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.workdir = pathlib.Path(workdir)
        self.jsonl = self.workdir / "metrics.jsonl"
        self.png = self.workdir / "curves.png"
        self.records: list[dict[str, Any]] = []
        self._tb: dict[str, Any] = {}
        self._resume_step = resume_step
        self._stale = True  # curves.png lags the records (the end of a run would redraw the last eval's picture)
        self._drawn_at = time.monotonic()  # a run's start counts as a drawing for `plot(min_interval_s=...)`
        if not self.enabled:
            return
        if self.jsonl.exists():
            self.records = [r for r in read_records(self.jsonl) if r["step"] <= resume_step]
            tmp = self.jsonl.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))
            tmp.replace(self.jsonl)

    def _writer(self, split: str):
        if split not in self._tb:
            SummaryWriter = _summary_writer_class()  # imported lazily: only process 0 needs it

            # purge_step: TensorBoard hides this folder's older events from the resumed step on (module docstring).
            purge = self._resume_step + 1 if self._resume_step else None
            # max_queue: tensorboardX's writer thread dies on a full disk, and a bounded queue (10 by default) would
            # then block the next add_scalar forever; with room for every event of many writes, the next `write`
            # reaches `disk_full.raise_pending()` instead.
            self._tb[split] = SummaryWriter(
                str(self.workdir / "tensorboard" / split), purge_step=purge, max_queue=_TB_QUEUE
            )
        return self._tb[split]

    def write(self, step: int, metrics: Mapping[str, Any], *, split: str = "train") -> None:
        """Record scalars at `step`; eval metrics are stored in the JSON with an `eval_` prefix."""
        if not self.enabled:
            return
        scalars = {k: _plain(v) for k, v in metrics.items() if np.ndim(v) == 0}
        writer = self._writer(split)
        for key, value in scalars.items():
            writer.add_scalar(key, value, step)
        writer.flush()
        disk_full.raise_pending()  # TensorBoard's writer thread may have met a full disk
        prefix = "" if split == "train" else f"{split}_"
        record = {"step": int(step), **{prefix + k: v for k, v in scalars.items()}}
        self._stale = True
        if self.records and self.records[-1]["step"] == step:  # train and eval at the same step: one line
            self.records[-1].update(record)
            self._rewrite_last()
        else:
            self.records.append(record)
            with self.jsonl.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def _rewrite_last(self) -> None:
        lines = self.jsonl.read_text().splitlines()
        lines[-1] = json.dumps(self.records[-1])
        tmp = self.jsonl.with_suffix(".jsonl.tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.jsonl)

    def plot(self, *, min_interval_s: float = 0.0) -> None:
        """Redraw curves.png: training curves with the eval points of the same metric on top; a no-op when nothing was
        written since the last drawing, or when the last drawing (or the writer's creation) is under `min_interval_s`
        old. A drawing takes about a second on a CPU: the loop redraws at evaluations at most every PLOT_EVERY_S, so
        that frequent evaluations do not pay it each time, and always at the end of a run."""
        if not self.enabled or not self.records or not self._stale:
            return
        if time.monotonic() - self._drawn_at < min_interval_s:
            return
        import matplotlib

        matplotlib.use("Agg")  # no display on TPU VMs, in CI or in notebooks' background threads
        import matplotlib.pyplot as plt

        panels = [(k, k.replace("_", " ")) for k in self.plotted if any(k in r or f"eval_{k}" in r for r in self.records)]
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
        for ax, (key, title) in zip(axes[0], panels):
            for name, style in ((key, "-"), (f"eval_{key}", "o-")):
                points = [(r["step"], r[name]) for r in self.records if name in r and math.isfinite(r[name])]
                if points:
                    ax.plot(*zip(*points), style, label="eval" if name.startswith("eval_") else "train", ms=3)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        tmp = self.png.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=90)
        plt.close(fig)
        tmp.replace(self.png)
        self._stale = False
        self._drawn_at = time.monotonic()

    def close(self) -> None:
        for writer in self._tb.values():
            writer.close()


# --- The console: start-up log lines and the progress bar ------------------------------------------------------


def log_startup(config, runner, task, vocab_path) -> None:
    logging.info(
        "Devices: %d (%s) on %d process(es); this is process %d with %d local device(s).",
        jax.device_count(), jax.devices()[0].device_kind, jax.process_count(), jax.process_index(),
        jax.local_device_count(),
    )  # fmt: skip
    logging.info("Parallelism: %s.", runner.describe())
    logging.info(
        "Batch: global %d, per host %d, micro-batches per step %d; %d steps.",
        config.batch_size, config.batch_size // jax.process_count(), config.grad_accum_steps, config.total_steps,
    )  # fmt: skip
    logging.info("Task: %s; model: %s; vocabulary %s.", config.task, task.description, vocab_path)


def progress_bar(start: int, total: int):
    """A tqdm bar on process 0 (None elsewhere); use it as a context manager so it closes however the loop ends."""
    if jax.process_index() != 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True)


def update_progress(progress, step: int, host: dict[str, float], keys) -> None:
    if progress is None:
        return
    progress.n = step
    shown = {k: f"{host[k]:.4g}" for k in keys if k in host}
    shown["tok/s"] = f"{host['tokens_per_second']:.3g}"
    progress.set_postfix(shown, refresh=False)
    progress.refresh()


def fmt(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())

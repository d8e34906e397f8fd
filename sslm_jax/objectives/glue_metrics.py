"""GLUE's evaluation metrics in plain numpy, over the predictions of a whole evaluation split.

    task_metrics("glue/cola", predictions=[1, 0, 1, 1], labels=[1, 0, 0, 1])   # {"matthews_corr": 0.577...}
    compute_metrics(("f1", "accuracy"), [1, 0, 1, 1], [1, 0, 0, 1])              # {"f1": 0.8, "accuracy": 0.75}

Classification predictions are class ids (argmax of the logits), regression predictions the scores themselves.
F1, the Matthews correlation and Spearman's rank correlation are not sums over examples, so they are computed
once over all predictions of the split (the loss and accuracy sums of `classification.py` aggregate exactly on
their own). Degenerate inputs follow scikit-learn: F1 and MCC are 0 where their denominator is 0; Pearson and
Spearman are NaN for a constant input (the correlation is undefined).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from sslm_jax.errors import ConfigError


def accuracy(predictions, labels) -> float:
    """Fraction of predictions equal to their label: accuracy([1, 0, 1], [1, 1, 1]) = 0.667."""
    predictions, labels = _pair(predictions, labels)
    return float(np.mean(predictions == labels))


def f1(predictions, labels, *, positive=1) -> float:
    """F1 of the positive class, 2·tp / (2·tp + fp + fn): f1([1, 0, 1, 1], [1, 0, 0, 1]) = 0.8."""
    predictions, labels = _pair(predictions, labels)
    tp = np.sum((predictions == positive) & (labels == positive))
    fp = np.sum((predictions == positive) & (labels != positive))
    fn = np.sum((predictions != positive) & (labels == positive))
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 0.0


def matthews_corr(predictions, labels) -> float:
    """Matthews correlation coefficient (Gorodkin's multi-class form; the usual phi coefficient for 2 classes).

    From the confusion matrix C (rows: labels, columns: predictions), with t = row sums, p = column sums,
    c = trace and s = total: (c·s − t·p) / sqrt((s² − p·p)(s² − t·t)).
    matthews_corr([1, 0, 1, 1], [1, 0, 0, 1]) = 0.577; 0 where a factor of the denominator is 0.
    """
    predictions, labels = _pair(predictions, labels)
    classes = np.unique(np.concatenate([predictions, labels]))
    label_idx = np.searchsorted(classes, labels)
    pred_idx = np.searchsorted(classes, predictions)
    confusion = np.zeros((len(classes), len(classes)), np.float64)
    np.add.at(confusion, (label_idx, pred_idx), 1.0)
    t, p = confusion.sum(axis=1), confusion.sum(axis=0)
    c, s = np.trace(confusion), confusion.sum()
    denominator = np.sqrt((s * s - p @ p) * (s * s - t @ t))
    return float((c * s - t @ p) / denominator) if denominator else 0.0


def pearson(predictions, labels) -> float:
    """Pearson's linear correlation: pearson([1, 2, 3], [2, 4, 7]) = 0.993; NaN if either input is constant."""
    x, y = _pair(predictions, labels, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / denominator) if denominator else float("nan")


def spearman(predictions, labels) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks (ties get their average rank).

    spearman([1, 2, 3], [2, 4, 7]) = 1.0 (any increasing relation).
    """
    x, y = _pair(predictions, labels, dtype=np.float64)
    return pearson(_average_ranks(x), _average_ranks(y))


# Name -> function(predictions, labels) -> float. The names are what `data.metrics` lists.
METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "matthews_corr": matthews_corr,
    "pearson": pearson,
    "spearman": spearman,
}

# The metrics GLUE reports for each task (Wang et al., 2019), first = the one to select checkpoints by.
GLUE_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("matthews_corr",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy"),
    "qqp": ("f1", "accuracy"),
    "stsb": ("pearson", "spearman"),
    "mnli": ("accuracy",),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
}


def check_metric_names(names: Sequence[str], *, setting: str = "data.metrics") -> tuple[str, ...]:
    """`names` as a tuple, or ConfigError naming `setting` and the unknown name."""
    for name in names:
        if name not in METRICS:
            raise ConfigError(f"{setting}: unknown metric {name!r}; choose from {', '.join(METRICS)}")
    return tuple(names)


def compute_metrics(names: Sequence[str], predictions, labels, *, example_weight=None) -> dict[str, float]:
    """{name: value} for each metric in `names`, over the examples whose `example_weight` is > 0.

    Args:
      names: metric names (keys of `METRICS`).
      predictions: [N] class ids (classification) or scores (regression).
      labels: [N] true class ids or scores.
      example_weight: optional [N]; rows with weight 0 (the padding of a final eval batch) are dropped.

    Example: compute_metrics(["accuracy"], [1, 0, 0], [1, 1, 0], example_weight=[1, 1, 0]) = {"accuracy": 0.5}.
    """
    check_metric_names(names, setting="metric names")
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if example_weight is not None:
        keep = np.asarray(example_weight) > 0
        predictions, labels = predictions[keep], labels[keep]
    return {name: METRICS[name](predictions, labels) for name in names}


def task_metrics(task: str, predictions, labels, *, example_weight=None) -> dict[str, float]:
    """GLUE's metrics for `task` ("cola" or "glue/cola"; see `GLUE_METRICS`), e.g. mrpc -> f1 and accuracy.

    Args:
      task: a GLUE task name, with or without the "glue/" prefix.
      predictions, labels, example_weight: as in `compute_metrics`.
    """
    name = task.removeprefix("glue/")
    if name not in GLUE_METRICS:
        raise ConfigError(f"unknown GLUE task {task!r}; choose from {', '.join(GLUE_METRICS)}")
    return compute_metrics(GLUE_METRICS[name], predictions, labels, example_weight=example_weight)


def _pair(predictions, labels, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions, dtype=dtype).reshape(-1)
    labels = np.asarray(labels, dtype=dtype).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    if predictions.size == 0:
        raise ValueError("no examples to score")
    return predictions, labels


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks: [10, 20, 20, 5] -> [2, 3.5, 3.5, 1]."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Start index of each run of equal values, and each element's run.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    run = np.cumsum(np.r_[True, sorted_x[1:] != sorted_x[:-1]]) - 1
    ends = np.r_[starts[1:], len(x)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(x), np.float64)
    ranks[order] = mean_rank[run]
    return ranks

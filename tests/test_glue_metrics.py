"""GLUE metrics against hand-computed values and scipy.stats."""

import math

import numpy as np
import pytest
import scipy.stats

from sslm_jax.errors import ConfigError
from sslm_jax.objectives import glue_metrics as gm


def test_binary_metrics_by_hand():
    predictions = [1, 0, 1, 1, 0, 0, 1]
    labels = [1, 0, 0, 1, 1, 0, 1]
    # tp = 3 (rows 0, 3, 6), tn = 2 (rows 1, 5), fp = 1 (row 2), fn = 1 (row 4).
    tp, tn, fp, fn = 3, 2, 1, 1
    assert gm.accuracy(predictions, labels) == pytest.approx(5 / 7)
    assert gm.f1(predictions, labels) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    phi = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert gm.matthews_corr(predictions, labels) == pytest.approx(phi)
    # MCC is symmetric in its arguments and invariant to renaming the classes.
    assert gm.matthews_corr(labels, predictions) == pytest.approx(phi)
    flipped = [1 - p for p in predictions], [1 - y for y in labels]
    assert gm.matthews_corr(*flipped) == pytest.approx(phi)


def test_multiclass_mcc_matches_the_covariance_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 3, 200))
    # Gorodkin's R_K is the correlation of the one-hot matrices: cov(X, Y) / sqrt(cov(X, X) cov(Y, Y)).
    x, y = np.eye(3)[predictions], np.eye(3)[labels]
    x, y = x - x.mean(0), y - y.mean(0)
    expected = np.sum(x * y) / math.sqrt(np.sum(x * x) * np.sum(y * y))
    assert gm.matthews_corr(predictions, labels) == pytest.approx(expected)


def test_degenerate_inputs():
    assert gm.matthews_corr([1, 1, 1], [1, 0, 1]) == 0.0  # constant prediction: undefined, reported as 0
    assert gm.f1([0, 0], [0, 0]) == 0.0  # no positives anywhere
    assert gm.accuracy([2, 2], [2, 2]) == 1.0
    assert math.isnan(gm.pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        gm.accuracy([1, 0, 1], [1, 0])


def test_correlations_match_scipy():
    rng = np.random.default_rng(1)
    labels = rng.uniform(0, 5, 300)
    predictions = labels + rng.normal(0, 1.5, 300)
    assert gm.pearson(predictions, labels) == pytest.approx(scipy.stats.pearsonr(predictions, labels)[0])
    assert gm.spearman(predictions, labels) == pytest.approx(scipy.stats.spearmanr(predictions, labels)[0])
    # STS-B scores come in steps of 0.2: many ties, which take their average rank.
    tied_labels, tied_predictions = np.round(labels * 5) / 5, np.round(predictions)
    assert gm.spearman(tied_predictions, tied_labels) == pytest.approx(
        scipy.stats.spearmanr(tied_predictions, tied_labels)[0]
    )
    np.testing.assert_allclose(gm._average_ranks(np.array([10.0, 20, 20, 5])), [2, 3.5, 3.5, 1])


def test_task_metrics_choose_glue_metrics_and_drop_padding():
    predictions, labels = [1, 0, 1, 1, 0], [1, 0, 0, 1, 1]
    weights = [1, 1, 1, 1, 0]  # the last row pads the final batch
    assert set(gm.task_metrics("glue/cola", predictions, labels)) == {"matthews_corr"}
    assert set(gm.task_metrics("sst2", predictions, labels)) == {"accuracy"}
    mrpc = gm.task_metrics("glue/mrpc", predictions, labels, example_weight=weights)
    assert mrpc == {"f1": pytest.approx(0.8), "accuracy": pytest.approx(0.75)}
    assert set(gm.task_metrics("glue/qqp", predictions, labels)) == {"f1", "accuracy"}
    stsb = gm.task_metrics("glue/stsb", [0.5, 1.0, 4.0], [0.0, 2.0, 5.0])
    assert stsb == {"pearson": pytest.approx(scipy.stats.pearsonr([0.5, 1, 4], [0, 2, 5])[0]), "spearman": 1.0}
    for task in ("mnli", "qnli", "rte"):
        assert set(gm.task_metrics(task, predictions, labels)) == {"accuracy"}
    with pytest.raises(ConfigError, match="unknown GLUE task 'glue/imdb'"):
        gm.task_metrics("glue/imdb", predictions, labels)
    with pytest.raises(ConfigError, match="data.metrics: unknown metric 'auc'"):
        gm.check_metric_names(["accuracy", "auc"])

"""Metric helpers against scikit-learn and hand-computed values."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from journey_stage.training.metrics import bootstrap_ci, expected_calibration_error, lift_top_decile, macro_f1_codes


def test_fast_macro_f1_equals_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(30):
        k = int(rng.integers(2, 7))
        y, p = rng.integers(0, k, 300), rng.integers(0, k, 300)
        w = rng.integers(0, 3, 300).astype(float)
        expected = f1_score(y, p, labels=list(range(k)), average="macro", zero_division=0, sample_weight=w)
        assert macro_f1_codes(y, p, k, w) == pytest.approx(expected, abs=1e-12)


def test_ece_perfect_and_off():
    y = np.array([0, 1] * 50)
    assert expected_calibration_error(y, np.full(100, 0.5)) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(100, 0.9)) == pytest.approx(0.4)


def test_lift_top_decile():
    y = np.zeros(100)
    y[:10] = 1
    score = -np.arange(100.0)  # the 10 positives score highest
    assert lift_top_decile(y, score) == pytest.approx(10.0)


def test_bootstrap_interval_brackets_estimate():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    customers = np.array([f"c{i}" for i in range(500)])
    ci = bootstrap_ci(lambda w: float(np.average(y, weights=w)), customers, 200, 0)
    assert ci[0] < y.mean() < ci[1] and ci[1] - ci[0] < 0.15


def test_ranked_scores_equal_sklearn_with_weights_and_ties():
    from sklearn.metrics import average_precision_score, roc_auc_score

    from journey_stage.training.metrics import RankedScores

    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.integers(0, 2, 400)
        s = np.round(rng.random(400), 1)  # many ties
        w = rng.integers(0, 4, 400).astype(float)
        r = RankedScores(y, s)
        assert r.roc_auc(w) == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
        assert r.average_precision(w) == pytest.approx(average_precision_score(y, s, sample_weight=w), abs=1e-12)


def test_stage_log_loss_independent_of_class_order():
    from journey_stage.training.metrics import stage_metrics

    classes = ["awareness", "decision", "lapsed"]
    y = np.array(["lapsed", "awareness", "decision", "lapsed"])
    proba = np.array([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.1, 0.2, 0.7]])
    a = stage_metrics(y, y, proba, classes)["log_loss"]
    rev = [2, 1, 0]
    b = stage_metrics(y, y, proba[:, rev], [classes[i] for i in rev])["log_loss"]
    expected = -np.mean(np.log([0.8, 0.7, 0.6, 0.7]))
    assert a == pytest.approx(expected) and b == pytest.approx(expected)

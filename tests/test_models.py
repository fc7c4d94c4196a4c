"""The fast inference path of TaskModel equals scikit-learn's calibrated predict_proba."""

import numpy as np
import pytest

from journey.settings import Settings
from training.models import fit_task


@pytest.mark.parametrize("task,k,rows", [("churn", 2, 3000), ("churn", 2, 6000), ("stage", 4, 3000), ("conversion", 2, 500)])
def test_fast_proba_equals_sklearn(task, k, rows):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 6)).astype(np.float32)
    logits = X[:, :k] * 2
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    if task == "stage":
        y = np.array(["a", "b", "c", "d"], dtype=object)[y]
    names = [f"f{i}" for i in range(6)]
    m = fit_task(task, names, X[: rows // 2], y[: rows // 2], X[rows // 2:], y[rows // 2:], Settings(n_estimators=50))
    assert m.calibration_method == ("isotonic" if rows // 2 >= 2000 and task != "stage" else "sigmoid")
    Xt = rng.normal(size=(200, 6)).astype(np.float32)
    np.testing.assert_allclose(m.proba(Xt), m.calibrator.predict_proba(Xt), rtol=0, atol=1e-12)
    contrib = m.contributions(Xt)
    raw = m.booster.predict(Xt, raw_score=True).reshape(200, -1)
    np.testing.assert_allclose(contrib.sum(axis=2), raw, atol=1e-6)  # contributions add up to the margin


def test_class_contributions_equal_the_multiclass_ones_and_survive_pickling():
    import pickle

    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 6)).astype(np.float32)
    y = np.array(["a", "b", "c"], dtype=object)[np.argmax(X[:, :3] * 2 + rng.gumbel(size=(3000, 3)), axis=1)]
    m = fit_task("stage", [f"f{i}" for i in range(6)], X[:1500], y[:1500], X[1500:], y[1500:], Settings(n_estimators=40))
    Xt = rng.normal(size=(50, 6)).astype(np.float32)
    full = m.contributions(Xt)
    assert full.shape == (50, 3, 7)
    for k in range(3):
        np.testing.assert_array_equal(m.class_contributions(Xt, k), full[:, k, :])
    again = pickle.loads(pickle.dumps(m))
    assert "_class_boosters" not in again.__dict__
    np.testing.assert_array_equal(again.class_contributions(Xt, 2), full[:, 2, :])


def test_stage_missing_from_validation_keeps_the_boosters_probabilities():
    """A rare stage seen in training but absent from the validation slice (small data) cannot be
    calibrated there: the model keeps LightGBM's own probabilities instead of failing."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3000, 6)).astype(np.float32)
    y = np.array(["a", "b", "c"], dtype=object)[np.argmax(X[:, :3] * 2 + rng.gumbel(size=(3000, 3)), axis=1)]
    X_val, y_val = X[1500:][y[1500:] != "c"], y[1500:][y[1500:] != "c"]
    m = fit_task("stage", [f"f{i}" for i in range(6)], X[:1500], y[:1500], X_val, y_val, Settings(n_estimators=40))
    assert m.calibrator is None and m.calibration_method.startswith("none") and "c" in m.calibration_method
    assert m.classes == ["a", "b", "c"]
    Xt = rng.normal(size=(100, 6)).astype(np.float32)
    np.testing.assert_allclose(m.proba(Xt), m.booster.predict_proba(Xt), rtol=0, atol=1e-12)
    assert set(m.decide(m.proba(Xt)).tolist()) <= {0, 1, 2}

"""The fast inference path of TaskModel equals scikit-learn's calibrated predict_proba."""

import numpy as np
import pytest

from journey_stage.core.settings import Settings
from journey_stage.training.models import fit_task


@pytest.mark.parametrize("task,k,rows", [("churn", 2, 3000), ("churn", 2, 6000), ("stage", 4, 3000), ("conversion", 2, 500)])
def test_fast_proba_equals_sklearn(task, k, rows):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 6)).astype(np.float32)
    logits = X[:, :k] * 2
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    if task == "stage":
        y = np.array(["a", "b", "c", "d"], dtype=object)[y]
    names = [f"f{i}" for i in range(6)]
    m = fit_task(task, names, X[: rows // 2], y[: rows // 2], X[rows // 2:], y[rows // 2:], Settings(n_estimators=50, calibration="isotonic"))
    assert m.calibration_method == ("isotonic" if rows // 2 >= 2000 and task != "stage" else "sigmoid")
    Xt = rng.normal(size=(200, 6)).astype(np.float32)
    np.testing.assert_allclose(m.proba(Xt), m.calibrator.predict_proba(Xt), rtol=0, atol=1e-12)
    contrib = m.contributions(Xt)
    np.testing.assert_allclose(contrib.sum(axis=2), m.margin(Xt), atol=1e-6)  # contributions add up to the margin
    raw = m.booster.predict(Xt, raw_score=True).reshape(200, -1)
    lin = 0.0 if m.linear is None else m.linear.margin(Xt)[:, None]
    np.testing.assert_allclose(m.margin(Xt), m.booster_weight * raw + (1 - m.booster_weight) * lin, atol=1e-9)


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


def _shifted(rng, n, lo, hi):
    """One informative feature with a linear logit; NaNs in a second column exercise the imputer."""
    X = rng.uniform(lo, hi, size=(n, 4)).astype(np.float32)
    X[rng.random(n) < 0.1, 1] = np.nan
    y = (rng.random(n) < 1 / (1 + np.exp(-(3 * X[:, 0] - 3)))).astype(int)
    return X, y


def test_blend_weight_is_chosen_on_validation_and_the_fast_path_matches_sklearn():
    """Validation customers lie beyond the training range of the informative feature (as CDNOW's
    test customers are older than every training customer): trees rank them all alike, the
    logistic regression keeps ranking, so the validation slice picks a blend (w < 1)."""
    from sklearn.metrics import roc_auc_score

    from journey_stage.model.task_model import LinearMargin
    from journey_stage.training.models import fit_logistic

    rng = np.random.default_rng(3)
    X_tr, y_tr = _shifted(rng, 4000, 0.0, 1.0)
    X_va, y_va = _shifted(rng, 3000, 1.0, 2.0)
    X_te, y_te = _shifted(rng, 3000, 1.0, 2.0)
    names = [f"f{i}" for i in range(4)]
    m = fit_task("churn", names, X_tr, y_tr, X_va, y_va, Settings(n_estimators=60))
    assert m.booster_weight < 1.0 and m.linear is not None
    assert set(m.blend_validation) == {"1", "0.75", "0.5", "0.25"}
    assert m.blend_validation[f"{m.booster_weight:g}"] == max(m.blend_validation.values()) > m.blend_validation["1"]
    # the fast path equals scikit-learn's calibrated predict_proba over the blended margin
    np.testing.assert_allclose(m.proba(X_te), m.calibrator.predict_proba(X_te), rtol=0, atol=1e-12)
    # contributions add up to the blended margin; the linear part equals the pipeline's margin
    np.testing.assert_allclose(m.contributions(X_te).sum(axis=2), m.margin(X_te), atol=1e-6)
    pipe = fit_logistic(X_tr, y_tr, 0)
    np.testing.assert_allclose(LinearMargin.from_pipeline(pipe).margin(X_te), pipe.decision_function(X_te.astype(np.float64)), atol=1e-6)
    big = np.tile(X_te, (12, 1))  # more rows than one block of the linear margin: blocks join exactly
    np.testing.assert_array_equal(m.linear.margin(big), np.tile(m.linear.margin(X_te), 12))
    # and the blend ranks the shifted test rows better than LightGBM alone
    alone = fit_task("churn", names, X_tr, y_tr, X_va, y_va, Settings(n_estimators=60, booster_weights=[1.0]))
    assert alone.linear is None and alone.booster_weight == 1.0 and alone.blend_validation is None
    assert roc_auc_score(y_te, m.proba(X_te)[:, 1]) > roc_auc_score(y_te, alone.proba(X_te)[:, 1]) + 0.02


def test_in_range_data_keeps_lightgbm_alone_when_the_blend_does_not_rank_better():
    """An interaction a linear model cannot express (XOR of two signs): the validation slice keeps w = 1."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(8000, 4)).astype(np.float32)
    y = ((X[:, 0] * X[:, 1] > 0) ^ (rng.random(8000) < 0.1)).astype(int)
    m = fit_task("churn", [f"f{i}" for i in range(4)], X[:5000], y[:5000], X[5000:], y[5000:], Settings(n_estimators=80))
    assert m.booster_weight == 1.0 and m.linear is None
    assert m.blend_validation["1"] == max(m.blend_validation.values())

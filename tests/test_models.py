"""The fast inference path of TaskModel equals scikit-learn's calibrated predict_proba."""

import numpy as np
import pytest

from journey.settings import Settings
from training.models import fit_task


@pytest.mark.parametrize("task,k,rows", [("churn", 2, 3000), ("stage", 4, 3000), ("conversion", 2, 500)])
def test_fast_proba_equals_sklearn(task, k, rows):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 6)).astype(np.float32)
    logits = X[:, :k] * 2
    y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
    if task == "stage":
        y = np.array(["a", "b", "c", "d"], dtype=object)[y]
    names = [f"f{i}" for i in range(6)]
    m = fit_task(task, names, X[: rows // 2], y[: rows // 2], X[rows // 2:], y[rows // 2:], Settings(n_estimators=50))
    Xt = rng.normal(size=(200, 6)).astype(np.float32)
    np.testing.assert_allclose(m.proba(Xt), m.calibrator.predict_proba(Xt), rtol=0, atol=1e-12)
    contrib = m.contributions(Xt)
    raw = m.booster.predict(Xt, raw_score=True).reshape(200, -1)
    np.testing.assert_allclose(contrib.sum(axis=2), raw, atol=1e-6)  # contributions add up to the margin

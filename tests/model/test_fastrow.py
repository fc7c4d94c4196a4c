"""LightGBM's single-row fast predictor (:mod:`journey_stage.model.fastrow`), which answers up to
``FAST_ROWS`` rows per call, gives bit-identical raw scores, probabilities and contributions to
``Booster.predict`` (the general path, which answers larger batches)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from journey_stage.core.settings import Settings
from journey_stage.model import fastrow
from journey_stage.model.fastrow import CONTRIB, FAST_ROWS, NORMAL, RAW_SCORE, booster_predict
from journey_stage.training.models import fit_task

pytestmark = pytest.mark.skipif(fastrow._INIT is None, reason="this lightgbm build has no single-row fast predictor")


def _data(seed: int, n: int, k: int, labels=None):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan  # missing values take the trees' default directions
    y = np.argmax(np.nan_to_num(X[:, :k]) * 2 + rng.gumbel(size=(n, k)), axis=1)
    return X, (y if labels is None else np.array(labels, dtype=object)[y])


@pytest.fixture(scope="module")
def models():
    out = {}
    X, y = _data(0, 4000, 2)
    out["churn"] = fit_task("churn", [f"f{i}" for i in range(8)], X[:2000], y[:2000], X[2000:], y[2000:], Settings(n_estimators=40, booster_weights=[0.5]))
    X, y = _data(1, 3000, 3, ["a", "b", "c"])
    out["stage"] = fit_task("stage", [f"f{i}" for i in range(8)], X[:1500], y[:1500], X[1500:], y[1500:], Settings(n_estimators=30))
    return out


def _rows(seed: int) -> np.ndarray:
    X, _ = _data(seed, 40, 2)
    return X.astype(np.float64)


@pytest.mark.parametrize("task", ["churn", "stage"])
@pytest.mark.parametrize("kind", [NORMAL, RAW_SCORE, CONTRIB])
def test_fast_rows_equal_booster_predict(models, task, kind):
    m = models[task]
    b = m.booster.booster_
    X = _rows(7)
    flags = {NORMAL: {}, RAW_SCORE: {"raw_score": True}, CONTRIB: {"pred_contrib": True}}[kind]
    general = np.asarray(b.predict(X, num_iteration=m._num_iteration(), num_threads=1, **flags)).reshape(len(X), -1)
    cache: dict = {}
    for lo in range(0, len(X), 3):  # batches of 1..FAST_ROWS rows take the fast predictor
        for n in range(1, FAST_ROWS + 1):
            got = booster_predict(cache, b, X[lo: lo + n], kind, m._num_iteration())
            np.testing.assert_array_equal(got, general[lo: lo + n])
    assert len(cache) == 1  # one fast predictor, reused


@pytest.mark.parametrize("task", ["churn", "stage"])
def test_task_model_few_rows_equal_the_batch_path(models, task):
    """Margins, probabilities and contributions of 1..FAST_ROWS rows (fast path) equal the same rows
    of a batch of more than FAST_ROWS (Booster.predict); contributions still add up to the margin."""
    m = models[task]
    X = _rows(11)
    assert len(X) > FAST_ROWS
    margin, proba, contrib = m.margin(X), m.proba(X), m.contributions(X)
    for i in range(len(X) - FAST_ROWS):
        for n in (1, FAST_ROWS):
            rows = X[i: i + n]
            np.testing.assert_array_equal(m.margin(rows), margin[i: i + n])
            np.testing.assert_array_equal(m.proba(rows), proba[i: i + n])
            c = m.contributions(rows)
            np.testing.assert_array_equal(c, contrib[i: i + n])
            np.testing.assert_allclose(c.sum(axis=2), m.margin(rows), rtol=0, atol=1e-9)
    assert m.__dict__.get("_fast_rows")
    if task == "stage":
        for k in range(len(m.classes)):
            np.testing.assert_array_equal(m.class_contributions(X[:1], k), contrib[:1, k, :])
            np.testing.assert_array_equal(m.class_contributions(X[:FAST_ROWS + 3], k), contrib[: FAST_ROWS + 3, k, :])
    again = pickle.loads(pickle.dumps(m))  # the C handles are not pickled, and are rebuilt on demand
    assert "_fast_rows" not in again.__dict__
    np.testing.assert_array_equal(again.margin(X[:1]), margin[:1])


def test_a_row_of_the_wrong_width_takes_the_general_path_and_its_error(models):
    m = models["churn"]
    with pytest.raises(Exception):
        m.margin(np.zeros((1, 5)))

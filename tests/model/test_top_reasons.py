"""``predictor._top_reasons`` (ranked block by block, as arrays) == the obvious per-customer loop:
ties broken by the earlier feature, zero contributions left out, NaN values as null."""

import numpy as np
import pytest

from journey_stage.model import predictor


def reference(contrib: np.ndarray, X: np.ndarray, names: list[str], top_k: int) -> list[list[dict]]:
    out = []
    for i in range(len(contrib)):
        c = contrib[i]
        order = sorted(range(len(c)), key=lambda j: (-abs(float(c[j])), j))[:top_k]
        out.append([
            {"feature": names[j], "value": None if np.isnan(X[i, j]) else float(X[i, j]), "contribution": round(float(c[j]), 6)}
            for j in order if c[j] != 0
        ])
    return out


@pytest.mark.parametrize("n,block", [(1, 4096), (37, 4096), (50, 7)])
def test_top_reasons_equal_the_per_customer_loop(n, block, monkeypatch):
    rng = np.random.default_rng(n)
    f = 12
    contrib = rng.choice([0.0, 0.5, -0.5, 1.25, -2.0, 3e-7], size=(n, f)) * rng.choice([1.0, 1.0, 0.1], size=(n, f))  # ties and zeros
    X = rng.normal(size=(n, f)).astype(np.float32)
    X[rng.random((n, f)) < 0.2] = np.nan
    names = [f"f{j}" for j in range(f)]
    monkeypatch.setattr(predictor, "REASON_BLOCK", block)
    at = np.flatnonzero(rng.random(n) < 0.8)
    out = [{} for _ in range(n)]
    tasks = [["churn", "stage"][i % 2] for i in range(len(at))]
    predictor._top_reasons(out, tasks, at, contrib[at], X, names, top_k=3)
    want = reference(contrib, X, names, 3)
    task_of = dict(zip(at.tolist(), tasks))
    for i in range(n):
        assert out[i] == ({task_of[i]: want[i]} if i in task_of else {})

"""Evaluation metrics (scikit-learn where it has them) and bootstrap intervals over customers."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10, sample_weight: np.ndarray | None = None) -> float:
    """Weighted mean |observed rate - mean predicted| over equal-width probability bins."""
    w = np.ones(len(y)) if sample_weight is None else sample_weight
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    tot = np.bincount(idx, weights=w, minlength=bins)
    obs = np.bincount(idx, weights=w * y, minlength=bins)
    conf = np.bincount(idx, weights=w * p, minlength=bins)
    nz = tot > 0
    return float(np.sum(np.abs(obs[nz] - conf[nz])) / tot.sum())


def lift_top_decile(y: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """Positive rate among the top 10% scores divided by the overall positive rate."""
    w = np.ones(len(y)) if sample_weight is None else sample_weight
    order = np.argsort(-score, kind="stable")
    cw = np.cumsum(w[order])
    top = order[cw <= 0.1 * cw[-1]] if len(order) else order
    if len(top) == 0:
        top = order[:1]
    base = np.sum(w * y) / np.sum(w)
    return float((np.sum(w[top] * y[top]) / np.sum(w[top])) / base) if base > 0 else float("nan")


class RankedScores:
    """Scores sorted once, so that weighted ROC-AUC and average precision cost two bincounts per
    bootstrap resample (equal to scikit-learn's ``roc_auc_score`` / ``average_precision_score``
    with ``sample_weight``, ties included)."""

    def __init__(self, y: np.ndarray, score: np.ndarray):
        uniq, group = np.unique(-np.asarray(score, dtype=float), return_inverse=True)  # descending
        self.group, self.n_groups, self.y = group, len(uniq), np.asarray(y, dtype=float)

    def _sums(self, w: np.ndarray | None):
        w = np.ones(len(self.y)) if w is None else w
        tp = np.bincount(self.group, weights=w * self.y, minlength=self.n_groups)
        fp = np.bincount(self.group, weights=w * (1 - self.y), minlength=self.n_groups)
        return tp, fp

    def roc_auc(self, w: np.ndarray | None = None) -> float:
        tp, fp = self._sums(w)
        P, N = tp.sum(), fp.sum()
        if P == 0 or N == 0:
            raise ValueError("one class only")
        neg_below = N - np.cumsum(fp)  # negatives with a strictly lower score
        return float(np.sum(tp * (neg_below + 0.5 * fp)) / (P * N))

    def average_precision(self, w: np.ndarray | None = None) -> float:
        tp, fp = self._sums(w)
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        if ctp[-1] == 0:
            raise ValueError("no positives")
        precision = np.divide(ctp, ctp + cfp, out=np.zeros_like(ctp), where=(ctp + cfp) > 0)
        return float(np.sum(tp / ctp[-1] * precision))


def binary_metrics(y: np.ndarray, p: np.ndarray, sample_weight: np.ndarray | None = None, *, probabilities: bool = True) -> dict:
    y = y.astype(int)
    out = {
        "roc_auc": float(roc_auc_score(y, p, sample_weight=sample_weight)),
        "pr_auc": float(average_precision_score(y, p, sample_weight=sample_weight)),
    }
    if probabilities:
        out["brier"] = float(brier_score_loss(y, p, sample_weight=sample_weight))
        out["ece"] = expected_calibration_error(y, p, sample_weight=sample_weight)
        out["lift_top_decile"] = lift_top_decile(y, p, sample_weight)
    return out


def stage_metrics(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: list[str], sample_weight=None) -> dict:
    out = {
        "macro_f1": float(f1_score(y, pred, labels=classes, average="macro", zero_division=0, sample_weight=sample_weight)),
        "accuracy": float(accuracy_score(y, pred, sample_weight=sample_weight)),
    }
    if proba is not None:  # columns of proba follow `classes`; scikit-learn wants them sorted
        order = np.argsort(np.asarray(classes, dtype=str), kind="stable")
        p = np.clip(proba[:, order], 1e-7, 1)
        p = p / p.sum(1, keepdims=True)
        out["log_loss"] = float(log_loss(y, p, labels=[classes[i] for i in order], sample_weight=sample_weight))
    return out


def macro_f1_codes(y: np.ndarray, pred: np.ndarray, k: int, sample_weight: np.ndarray | None = None) -> float:
    """Macro-F1 over ``k`` classes from integer codes (fast path for the bootstrap; equals
    scikit-learn's ``f1_score(average="macro", zero_division=0)`` over all k labels)."""
    w = np.ones(len(y)) if sample_weight is None else sample_weight
    cm = np.bincount(y * k + pred, weights=w, minlength=k * k).reshape(k, k)
    tp = np.diag(cm)
    denom = cm.sum(0) + cm.sum(1)
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1.mean())


def stage_details(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    return {
        "per_stage": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])} for i, c in enumerate(classes)},
        "confusion_matrix": {"labels": classes, "matrix": confusion_matrix(y, pred, labels=classes).tolist()},
    }


def bootstrap_ci(metric, customers: np.ndarray, rounds: int, seed: int) -> list[float] | None:
    """95% percentile interval of ``metric(sample_weight)`` resampling customers with replacement.

    Rows of one customer (several cutoffs) move together: weights are the customer's draw count."""
    if rounds <= 0:
        return None
    codes, uniq = _codes(customers)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(rounds):
        counts = np.bincount(rng.integers(0, len(uniq), len(uniq)), minlength=len(uniq)).astype(float)
        w = counts[codes]
        try:
            vals.append(metric(w))
        except ValueError:  # a resample with one class only
            continue
    if len(vals) < max(10, rounds // 2):
        return None
    lo, hi = np.percentile(vals, [2.5, 97.5])
    return [float(lo), float(hi)]


def _codes(customers: np.ndarray):
    uniq, codes = np.unique(customers.astype(str), return_inverse=True)
    return codes, uniq


def paired_bootstrap(metric_a, metric_b, customers: np.ndarray, rounds: int, seed: int, confidence: float = 0.95) -> dict:
    """The difference ``metric_a - metric_b`` of two predictions of the *same* rows, and its
    ``confidence`` percentile interval resampling customers with replacement: both metrics see the
    same resample in every round (paired), so what the two share cancels and only their
    difference varies. ``metric_x(sample_weight)``; ``ci`` is None with ``rounds = 0`` or when most
    resamples have one class only."""
    point = float(metric_a(None) - metric_b(None))
    if rounds <= 0:
        return {"difference": point, "ci": None, "confidence": confidence, "rounds": 0}
    codes, uniq = _codes(customers)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(rounds):
        w = np.bincount(rng.integers(0, len(uniq), len(uniq)), minlength=len(uniq)).astype(float)[codes]
        try:
            diffs.append(metric_a(w) - metric_b(w))
        except ValueError:  # a resample with one class only
            continue
    if len(diffs) < max(10, rounds // 2):
        return {"difference": point, "ci": None, "confidence": confidence, "rounds": len(diffs)}
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(diffs, [tail, 100 - tail])
    return {"difference": point, "ci": [float(lo), float(hi)], "confidence": confidence, "rounds": len(diffs)}


def significantly_worse(comparison: dict, tolerance: float = 0.0) -> bool:
    """A paired comparison (``paired_bootstrap``) says the first prediction is worse beyond the
    noise: its whole interval lies below ``-tolerance`` (without an interval: the point value does);
    an ``inconclusive`` comparison (too few test rows of a class) never does."""
    if comparison.get("inconclusive"):
        return False
    ci = comparison.get("ci")
    upper = ci[1] if ci else comparison["difference"]
    return bool(upper < -tolerance - 1e-12)

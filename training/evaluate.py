"""Test-slice evaluation of one task: the trained model, what the predictor serves for the task
(the model, or its rule baseline), the rule baselines and the logistic regression, on the same
rows; customer-bootstrap intervals; and the paired comparison of what is served with the best
rule (what the promotion gate reads when there is no champion)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import Taxonomy
from journey_stage.model.baseline import rule_scores
from journey_stage.training.metrics import (
    RankedScores, binary_metrics, bootstrap_ci, macro_f1_codes, paired_bootstrap, significantly_worse, stage_details, stage_metrics,
)


@dataclass
class TaskEval:
    """Test-set arrays for one task (for plots and the promotion gate)."""

    y: np.ndarray
    proba: np.ndarray  # the trained model's: stage (n, k) over classes; binary (n,)
    classes: list
    baselines: dict[str, np.ndarray]  # name -> score (binary) or predicted stage (stage)
    customers: np.ndarray
    cutoffs: np.ndarray
    importance: dict[str, float] = field(default_factory=dict)
    served: np.ndarray | None = None  # what the predictor serves: binary probabilities, stage predicted stages
    served_name: str = "model"


@dataclass(frozen=True)
class HeldOut:
    X: np.ndarray
    y: np.ndarray
    customers: np.ndarray
    cutoffs: np.ndarray


def smaller_class_rows(y: np.ndarray) -> int:
    """Rows of the smaller class (stage: rows outside the most frequent stage)."""
    counts = np.unique(np.asarray(y).astype(str), return_counts=True)[1]
    return int(counts.sum() - counts.max())


def versus_best_rule(served_metric, rule_metrics: dict, customers: np.ndarray, settings: Settings, metric: str, y: np.ndarray) -> dict:
    """Paired bootstrap of (served - best rule on these rows) for ``metric``; ``rule_metrics``: name -> metric(w)."""
    values = {name: f(None) for name, f in rule_metrics.items()}
    best = max(values, key=values.get)
    cmp = paired_bootstrap(served_metric, rule_metrics[best], customers, settings.gate_bootstrap_rounds, settings.seed, settings.gate_confidence)
    cmp.update(metric=metric, baseline=best, baseline_value=float(values[best]), served=float(served_metric(None)),
               inconclusive=smaller_class_rows(y) < settings.gate_min_class_rows)
    cmp["significantly_worse"] = significantly_worse(cmp, settings.gate_tolerance)
    return cmp


def evaluate_stage(model, lr, test: HeldOut, persistence: np.ndarray, taxonomy: Taxonomy, settings: Settings, imp: dict, rule=None):
    """Stage model vs persistence and the logistic regression on the test slice (macro-F1 and
    its customer-bootstrap interval); ``rule``: the persistence rule when it is served."""
    proba = model.proba(test.X)
    lr_proba = lr.predict_proba(test.X)
    y_te, cust, B, seed = test.y, test.customers, settings.bootstrap_rounds, settings.seed
    pred = np.array(model.classes, dtype=object)[model.decide(proba)]
    classes = [c for c in taxonomy.stages if c in model.classes]  # funnel order for the report
    proba = proba[:, [model.classes.index(c) for c in classes]]
    lr_pred = lr.predict(test.X)
    lr_full = _align(lr_proba, list(lr.classes_), classes)
    res = {
        "n_test": int(len(y_te)),
        "model": stage_metrics(y_te, pred, proba, classes) | stage_details(y_te, pred, classes),
        "baselines": {
            "persistence": stage_metrics(y_te, persistence, None, classes) | stage_details(y_te, persistence, classes),
            "logistic_regression": stage_metrics(y_te, lr_pred, lr_full, classes),
        },
        "calibration": model.calibration_method,
        "best_iteration": model.best_iteration,
    }
    served = pred
    if rule is not None:
        served = np.array(rule.choose(test.X), dtype=object)
        res["served_metrics"] = stage_metrics(y_te, served, _align(rule.proba(test.X), list(rule.classes), classes), classes)
    code = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    yc = np.array([code[c] for c in y_te])

    def codes(stages: np.ndarray) -> np.ndarray:  # a stage unseen in training counts as wrong
        return np.where(np.isin(stages, classes), np.array([code.get(c, 0) for c in stages]), (yc + 1) % k)

    pc, sc, vc = codes(pred), codes(persistence), codes(served)
    res["ci95"] = {
        "model.macro_f1": bootstrap_ci(lambda w: macro_f1_codes(yc, pc, k, w), cust, B, seed),
        "persistence.macro_f1": bootstrap_ci(lambda w: macro_f1_codes(yc, sc, k, w), cust, B, seed),
    }
    res["versus_best_baseline"] = versus_best_rule(lambda w: macro_f1_codes(yc, vc, k, w),
                                                   {"persistence": lambda w: macro_f1_codes(yc, sc, k, w)}, cust, settings, "macro_f1", y_te)
    ev = TaskEval(y_te, proba, classes, {"persistence": persistence, "logistic_regression": lr_pred}, cust, test.cutoffs, imp,
                  served=served, served_name="model" if rule is None else f"baseline:{rule.name}")
    return res, ev


def evaluate_binary(task: str, model, lr, test: HeldOut, names: list[str], settings: Settings, imp: dict, rule=None):
    """A binary task's model vs its rule baselines and the logistic regression on the test slice
    (ROC-AUC, PR-AUC, calibration, and customer-bootstrap intervals); ``rule``: the served rule, if any."""
    y_te, cust, B, seed = test.y, test.customers, settings.bootstrap_rounds, settings.seed
    p = model.proba(test.X)[:, 1]
    lr_p = lr.predict_proba(test.X)[:, 1]
    base = rule_scores(task, names, test.X, settings)
    res = {
        "n_test": int(len(y_te)),
        "positive_rate": float(y_te.mean()),
        "model": binary_metrics(y_te, p),
        "baselines": {name: binary_metrics(y_te, s, probabilities=False) for name, s in base.items()}
        | {"logistic_regression": binary_metrics(y_te, lr_p)},
        "calibration": model.calibration_method,
        "best_iteration": model.best_iteration,
        "blend": {"booster_weight": model.booster_weight, "validation_roc_auc": model.blend_validation},
    }
    served = p
    if rule is not None:
        served = rule.proba(test.X)[:, 1]
        res["served_metrics"] = binary_metrics(y_te, served)
    first = next(iter(base))
    rm, rb = RankedScores(y_te, p), RankedScores(y_te, base[first])
    res["ci95"] = {
        "model.roc_auc": bootstrap_ci(rm.roc_auc, cust, B, seed),
        "model.pr_auc": bootstrap_ci(rm.average_precision, cust, B, seed),
        f"{first}.roc_auc": bootstrap_ci(rb.roc_auc, cust, B, seed),
    }
    rules = {name: RankedScores(y_te, s).roc_auc for name, s in base.items()}
    res["versus_best_baseline"] = versus_best_rule(RankedScores(y_te, served).roc_auc, rules, cust, settings, "roc_auc", y_te)
    ev = TaskEval(y_te, p, [0, 1], base | {"logistic_regression": lr_p}, cust, test.cutoffs, imp,
                  served=served, served_name="model" if rule is None else f"baseline:{rule.name}")
    return res, ev


def _align(proba: np.ndarray, have: list, want: list) -> np.ndarray:
    out = np.zeros((len(proba), len(want)))
    for j, c in enumerate(have):
        if c in want:
            out[:, want.index(c)] = proba[:, j]
    return out

"""Never worse than a rule (SPEC 6): each task's model is compared with its best rule baseline on
the rows it was tuned on — the validation slice, or the out-of-fold predictions of the
``crossfit`` protocol — and, when it does not beat it, the predictor serves that rule, calibrated
on the same rows, for the task.

The comparison is fair to the rule: the stage model's decision weights are tuned on the
validation slice, so its validation macro-F1 is measured with weights tuned on the *other*
half of the validation customers (two halves, each scored with the other's weights)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import Taxonomy
from journey_stage.model.baseline import PersistenceModel, RuleModel, rule_scores
from journey_stage.training.models import tune_decision_weights


def stage_macro_f1_cross_tuned(proba: np.ndarray, y: np.ndarray, classes: list, customers: np.ndarray, seed: int) -> float:
    """Macro-F1 of ``argmax(proba * w)`` where each half of the customers is scored with the
    decision weights ``w`` tuned on the other half."""
    uniq, codes = np.unique(np.asarray(customers).astype(str), return_inverse=True)
    half = np.random.default_rng(seed).permutation(len(uniq)) % 2 == 0
    side = half[codes]
    names = np.asarray(classes, dtype=object)
    pred = np.empty(len(y), dtype=object)
    for s in (True, False):
        tune, score = side == s, side != s
        if not score.any():
            continue
        w = tune_decision_weights(proba[tune], y[tune], classes) if tune.any() else np.ones(len(classes))
        pred[score] = names[np.argmax(proba[score] * w, axis=1)]
    return float(f1_score(y, pred.astype(str), labels=[str(c) for c in classes], average="macro", zero_division=0))


def compare_on_tuning_rows(task: str, model, proba: np.ndarray, X: np.ndarray, y: np.ndarray, customers: np.ndarray,
                           observed: np.ndarray | None, names: list[str], settings: Settings) -> dict:
    """The model's and each rule's primary metric on the rows the model was tuned on."""
    if task == "stage":
        classes = list(model.classes)
        labels = [str(c) for c in classes]
        out = {"metric": "macro_f1", "model": stage_macro_f1_cross_tuned(proba, y, classes, customers, settings.seed),
               "baselines": {"persistence": float(f1_score(y, observed.astype(str), labels=labels, average="macro", zero_division=0))}}
    elif len(np.unique(y)) < 2:
        out = {"metric": "roc_auc", "model": None, "baselines": {}}
    else:
        out = {"metric": "roc_auc", "model": float(roc_auc_score(y, proba[:, 1])),
               "baselines": {b: float(roc_auc_score(y, s)) for b, s in rule_scores(task, names, X, settings).items()}}
    out["rows"] = int(len(y))
    return out


def choose_served(task: str, model, proba: np.ndarray, X: np.ndarray, y: np.ndarray, customers: np.ndarray,
                  observed: np.ndarray | None, names: list[str], taxonomy: Taxonomy, settings: Settings):
    """(the rule to serve instead of ``model`` or None, the comparison behind the choice).

    ``X``, ``y``, ``proba``: the tuning rows (validation slice, or out-of-fold training rows) and
    the model's calibrated probabilities there; ``observed``: their observed stage names (stage)."""
    cmp = compare_on_tuning_rows(task, model, proba, X, y, customers, observed, names, settings)
    cmp["served"] = "model"
    if cmp["model"] is None or not cmp["baselines"]:
        return None, cmp
    best = max(cmp["baselines"], key=lambda b: cmp["baselines"][b])
    cmp["best_baseline"] = best
    if not settings.serve_baseline or cmp["model"] > cmp["baselines"][best]:
        return None, cmp
    if task == "stage":
        role_stage = [taxonomy.stage_of_role_index(i) for i in range(6)]
        rule = PersistenceModel.fit(list(model.classes), role_stage, names, X, y)
    else:
        method = "isotonic" if str(model.calibration_method).startswith("isotonic") else "sigmoid"
        rule = RuleModel.fit(task, best, names, X, y, settings, method)
    cmp["served"] = f"baseline:{best}"
    return rule, cmp

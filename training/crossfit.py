"""The ``crossfit`` protocol (features/protocols.py): when no validation slice fits before the test
cutoffs, early stopping, the blend weight, calibration and the stage decision weights are chosen
on out-of-fold predictions over customer folds of the training rows (a customer's rows at every
cutoff stay in one fold, so no fold is judged on customers it learned from)."""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
from sklearn.calibration import _SigmoidCalibration
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from journey_stage.core.settings import Settings
from journey_stage.model.task_model import FoldCalibration, LinearMargin, TaskModel
from journey_stage.training.models import MIN_ISOTONIC_ROWS, booster_params, categorical_indices, fit_logistic, tune_decision_weights

MISSING_CLASS_MARGIN = -30.0  # a fold that never saw a class gives it no chance


def customer_folds(customers: np.ndarray, y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index per row: customers kept whole, classes spread evenly (stratified group k-fold)."""
    groups = np.unique(np.asarray(customers).astype(str), return_inverse=True)[1]
    k = max(2, min(k, len(np.unique(groups))))
    folds = np.zeros(len(y), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the least populated class has fewer members than n_splits"
        for f, (_, held) in enumerate(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups)):
            folds[held] = f
    return folds


def fit_task_crossfit(task: str, names: list[str], X: np.ndarray, y: np.ndarray, customers: np.ndarray, settings: Settings,
                      linear: Pipeline | None = None) -> tuple[TaskModel, np.ndarray]:
    """The task model on all training rows, with its number of trees, blend weight, calibration
    and decision weights chosen out of fold; returns it and its calibrated out-of-fold
    probabilities (for the model-vs-rule choice)."""
    binary = task != "stage"
    classes = np.unique(y)
    one_margin = len(classes) == 2  # LightGBM gives one margin column for two classes (a two-stage log too)
    folds = customer_folds(customers, y, settings.crossfit_folds, settings.seed)
    params = booster_params(settings)
    cat = categorical_indices(names) or "auto"
    blend = binary and settings.booster_weights != [1.0]
    oof = np.zeros((len(y), 1 if one_margin else len(classes)))
    oof_lin = np.zeros(len(y))
    iterations = []
    for f in range(int(folds.max()) + 1):
        held, fit = folds == f, folds != f
        if len(np.unique(y[fit])) < 2:
            continue
        booster = lgb.LGBMClassifier(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            booster.fit(X[fit], y[fit], eval_set=[(X[held], y[held])], categorical_feature=cat,
                        callbacks=[lgb.early_stopping(30, verbose=False)])
        raw = booster.predict(X[held], raw_score=True).reshape(int(held.sum()), -1)
        oof[held] = raw if one_margin else _align(raw, list(booster.classes_), list(classes))
        iterations.append(int(booster.best_iteration_ or settings.n_estimators))
        if blend:
            oof_lin[held] = LinearMargin.from_pipeline(fit_logistic(X[fit], y[fit], settings.seed)).margin(X[held])
    n_trees = max(1, int(round(float(np.median(iterations))))) if iterations else settings.n_estimators
    booster = lgb.LGBMClassifier(**(params | {"n_estimators": n_trees}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        booster.fit(X, y, categorical_feature=cat)
    weight, margin_of, scores = 1.0, None, None
    if blend:
        margin_of = LinearMargin.from_pipeline(linear if linear is not None else fit_logistic(X, y, settings.seed))
        scores = {f"{w:g}": float(roc_auc_score(y, w * oof[:, 0] + (1.0 - w) * oof_lin)) for w in settings.booster_weights}
        weight = float(max(settings.booster_weights, key=lambda w: (round(scores[f"{w:g}"], 6), w)))
    margins = weight * oof + (1.0 - weight) * oof_lin[:, None] if blend else oof
    method = settings.calibration if (binary and len(y) >= MIN_ISOTONIC_ROWS) else "sigmoid"
    targets = [y == classes[1]] if one_margin else [y == c for c in classes]
    cals = [_calibrator(method).fit(margins[:, j], t.astype(float)) for j, t in enumerate(targets)]
    k = int(folds.max()) + 1
    model = TaskModel(
        task, [c.item() if hasattr(c, "item") else c for c in booster.classes_], booster, FoldCalibration(np.asarray(classes), cals),
        f"{method}, cross-fitted over {k} customer folds", n_trees,
        linear=margin_of if weight < 1.0 else None, booster_weight=weight, blend_validation=scores,
    )
    proba = model.proba_from_margin(margins)
    if not binary:
        model.decision_weights = tune_decision_weights(proba, y, model.classes)
    return model, proba


def _calibrator(method: str):
    return IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1) if method == "isotonic" else _SigmoidCalibration()


def _align(raw: np.ndarray, have: list, want: list) -> np.ndarray:
    out = np.full((len(raw), len(want)), MISSING_CLASS_MARGIN)
    for j, c in enumerate(have):
        out[:, want.index(c)] = raw[:, j]
    return out

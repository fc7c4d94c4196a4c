"""One LightGBM model per task (binary tasks: blended with a logistic regression, weight chosen on
validation), calibrated on a temporally later validation slice (scikit-learn)."""

from __future__ import annotations

import warnings

import lightgbm as lgb
import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from journey_stage.features.build import CATEGORICAL_PREFIXES
from journey_stage.core.settings import Settings
from journey_stage.model.task_model import BlendedMargin, LinearMargin, TaskModel

MIN_ISOTONIC_ROWS = 2000  # below this, Platt (sigmoid) scaling is steadier than isotonic
LINEAR_MAX_ROWS = 10_000  # the logistic regression learns from at most this many training rows


def fit_logistic(X: np.ndarray, y: np.ndarray, seed: int) -> Pipeline:
    """Median imputation -> standardisation -> L2 logistic regression (scikit-learn), on at most
    ``LINEAR_MAX_ROWS`` rows: the SPEC 6 baseline, and the linear part of a binary blend."""
    if len(y) > LINEAR_MAX_ROWS:
        idx = np.random.default_rng(seed).choice(len(y), LINEAR_MAX_ROWS, replace=False)
        X, y = X[idx], y[idx]
    model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), LogisticRegression(max_iter=60, tol=1e-3, C=0.5))
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        model.fit(X, y)
    return model





def categorical_indices(names: list[str]) -> list[int]:
    return [i for i, n in enumerate(names) if n.startswith(CATEGORICAL_PREFIXES)]


def fit_task(
    task: str,
    names: list[str],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    settings: Settings,
    linear: Pipeline | None = None,
) -> TaskModel:
    """LightGBM with early stopping on the validation slice; for a binary task, the blend weight
    with a logistic regression (``linear``, fitted here when not given) chosen on that slice; then
    calibration of the resulting margin on that slice."""
    params = booster_params(settings)
    booster = lgb.LGBMClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        booster.fit(
            X_train,
            y_train,
            eval_set=[(X_val, y_val)],
            categorical_feature=categorical_indices(names) or "auto",
            callbacks=[lgb.early_stopping(30, verbose=False)],
        )
    return calibrate_task(task, booster, X_train, y_train, X_val, y_val, settings, linear)


def booster_params(settings: Settings) -> dict:
    """The LightGBM parameters of every task model."""
    return dict(
        n_estimators=settings.n_estimators,
        learning_rate=settings.learning_rate,
        num_leaves=settings.num_leaves,
        min_child_samples=settings.min_child_samples,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.5,
        reg_lambda=1.0,
        n_jobs=settings.n_jobs,
        random_state=settings.seed,
        verbose=-1,
    )


def calibrate_task(task: str, booster: lgb.LGBMClassifier, X_train: np.ndarray, y_train: np.ndarray, X_val: np.ndarray,
                   y_val: np.ndarray, settings: Settings, linear: Pipeline | None) -> TaskModel:
    """The blend weight (binary tasks), calibration and stage decision weights of a fitted booster, on the validation slice."""
    # Stage (multiclass): Platt scaling per class, never an exact 0 probability (isotonic gives
    # zeros, which make log loss infinite). Binary tasks: the configured method (default sigmoid, see Settings).
    # A class the booster knows but the validation slice lacks (a rare stage on small data) cannot
    # be calibrated there: the booster's own probabilities are kept (scikit-learn would fail).
    method = settings.calibration if (len(y_val) >= MIN_ISOTONIC_ROWS and task != "stage") else "sigmoid"
    calibrator: CalibratedClassifierCV | None = None
    missing = sorted(set(booster.classes_.tolist()) - set(np.unique(y_val).tolist()))
    weight, margin_of, scores = 1.0, None, None
    if task != "stage" and not missing and settings.booster_weights != [1.0]:
        margin_of = LinearMargin.from_pipeline(linear if linear is not None else fit_logistic(X_train, y_train, settings.seed))
        weight, scores = choose_booster_weight(booster, margin_of, X_val, y_val, settings.booster_weights)
    estimator = booster if weight == 1.0 else BlendedMargin(booster, margin_of, weight)
    if missing:
        method = f"none (the validation slice lacks {', '.join(map(str, missing))})"
    else:
        calibrator = CalibratedClassifierCV(FrozenEstimator(estimator), method=method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calibrator.fit(X_val, y_val)
    classes = [c.item() if hasattr(c, "item") else c for c in booster.classes_]
    model = TaskModel(
        task, classes, booster, calibrator, method, int(booster.best_iteration_ or settings.n_estimators),
        linear=margin_of if weight < 1.0 else None, booster_weight=weight, blend_validation=scores,
    )
    if task == "stage":
        model.decision_weights = tune_decision_weights(model.proba(X_val), y_val, classes)
    return model


def choose_booster_weight(
    booster: lgb.LGBMClassifier, linear: LinearMargin, X_val: np.ndarray, y_val: np.ndarray, candidates: list[float]
) -> tuple[float, dict[str, float]]:
    """The candidate weight w whose margin ``w * LightGBM + (1 - w) * linear`` ranks the
    validation slice best (ROC-AUC); ties (to 1e-6) go to the larger w, i.e. towards LightGBM.

    Trees cannot extrapolate: when the test customers lie beyond the training range (CDNOW: test
    customers are older than any training customer), the linear part keeps ranking them."""
    raw = booster.predict(X_val, raw_score=True)
    lin = linear.margin(X_val)
    scores = {f"{w:g}": float(roc_auc_score(y_val, w * raw + (1.0 - w) * lin)) for w in candidates}
    best = max(candidates, key=lambda w: (round(scores[f"{w:g}"], 6), w))
    return float(best), scores


def tune_decision_weights(proba: np.ndarray, y: np.ndarray, classes: list) -> np.ndarray:
    """Class weights chosen on the validation slice to maximise macro-F1: first w = prior^-alpha
    (alpha on a grid), then a per-class coordinate ascent.

    Calibrated probabilities stay as they are; only the choice of the single predicted stage
    changes (argmax favours the majority class, which hurts macro-F1)."""
    from sklearn.metrics import f1_score

    names = np.asarray(classes, dtype=object)

    def score(w: np.ndarray) -> float:
        return f1_score(y, names[np.argmax(proba * w, axis=1)], labels=classes, average="macro", zero_division=0)

    prior = np.array([(y == c).mean() for c in classes]) + 1e-6
    best, best_w = -1.0, np.ones(len(classes))
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):  # start: w = prior^-alpha
        w = prior ** -alpha
        if (f := score(w)) > best + 1e-9:
            best, best_w = f, w
    for _ in range(2):  # then per-class coordinate ascent
        for k in range(len(classes)):
            for mult in (0.5, 0.7, 0.85, 1.2, 1.5, 2.0):
                w = best_w.copy()
                w[k] *= mult
                if (f := score(w)) > best + 1e-9:
                    best, best_w = f, w
    return best_w / best_w.max()

"""One LightGBM model per task, calibrated on a temporally later validation slice (scikit-learn)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from features.build import CATEGORICAL_PREFIXES
from journey.settings import Settings

MIN_ISOTONIC_ROWS = 2000  # below this, Platt (sigmoid) scaling is steadier than isotonic


@dataclass
class TaskModel:
    task: str
    classes: list  # stage names for "stage", [0, 1] for binary tasks
    booster: lgb.LGBMClassifier
    calibrator: CalibratedClassifierCV
    calibration_method: str
    best_iteration: int
    decision_weights: np.ndarray | None = None  # stage: argmax(p * w) is the predicted stage

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Predicted class index per row (stage: weights tuned on validation for macro-F1)."""
        w = self.decision_weights if self.decision_weights is not None else np.ones(proba.shape[1])
        return np.argmax(proba * w, axis=1)

    @property
    def binary(self) -> bool:
        return self.task != "stage"

    def _num_iteration(self) -> int | None:
        best = self.booster.best_iteration_
        return int(best) if best else None

    def proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, columns in ``self.classes`` order.

        Equals ``self.calibrator.predict_proba(X)`` (a test checks it) without scikit-learn's
        per-call validation overhead: the LightGBM booster's raw margins (what
        ``CalibratedClassifierCV`` reads through ``decision_function``) go straight through the
        fitted per-class calibrators, then the same normalisation."""
        cc = self.calibrator.calibrated_classifiers_[0]
        raw = self.booster.booster_.predict(np.asarray(X, dtype=np.float64), raw_score=True, num_iteration=self._num_iteration(), num_threads=1)
        raw = raw.reshape(len(X), -1)
        n_classes = len(cc.classes)
        proba = np.zeros((len(X), n_classes))
        for j, (col, cal) in enumerate(zip(raw.T, cc.calibrators)):
            proba[:, j + 1 if n_classes == 2 else j] = cal.predict(col)
        if n_classes == 2:
            proba[:, 0] = 1.0 - proba[:, 1]
        else:
            den = proba.sum(axis=1)[:, None]
            proba = np.divide(proba, den, out=np.full_like(proba, 1 / n_classes), where=den != 0)
        proba[(1.0 < proba) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """LightGBM's own SHAP-style contributions (raw score scale): (n, n_classes or 1, n_features + 1)."""
        c = self.booster.booster_.predict(np.asarray(X, dtype=np.float64), pred_contrib=True, num_iteration=self._num_iteration(), num_threads=1)
        if isinstance(c, list):  # some versions return one matrix per class
            c = np.stack(c, axis=1)
        p = X.shape[1] + 1
        return c.reshape(X.shape[0], -1, p)


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
) -> TaskModel:
    params = dict(
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
    # Stage (multiclass): Platt scaling per class, never an exact 0 probability (isotonic gives
    # zeros, which make log loss infinite). Binary tasks: the configured method (isotonic default).
    method = settings.calibration if (len(y_val) >= MIN_ISOTONIC_ROWS and task != "stage") else "sigmoid"
    calibrator = CalibratedClassifierCV(FrozenEstimator(booster), method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calibrator.fit(X_val, y_val)
    classes = [c.item() if hasattr(c, "item") else c for c in calibrator.classes_]
    weights = None
    if task == "stage":
        weights = tune_decision_weights(calibrator.predict_proba(X_val), y_val, classes)
    return TaskModel(task, classes, booster, calibrator, method, int(booster.best_iteration_ or settings.n_estimators), weights)


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

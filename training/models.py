"""One LightGBM model per task, calibrated on a temporally later validation slice (scikit-learn)."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from scipy.special import expit
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
    calibrator: CalibratedClassifierCV | None  # None: the booster's own probabilities (see fit_task)
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
        fitted per-class calibrators, then the same normalisation. Without a calibrator: the
        booster's own probabilities."""
        X = np.asarray(X, dtype=np.float64)
        if self.calibrator is None:
            p = self.booster.booster_.predict(X, num_iteration=self._num_iteration(), num_threads=1).reshape(len(X), -1)
            return np.column_stack([1.0 - p[:, 0], p[:, 0]]) if p.shape[1] == 1 else p
        cc = self.calibrator.calibrated_classifiers_[0]
        raw = self.booster.booster_.predict(X, raw_score=True, num_iteration=self._num_iteration(), num_threads=1)
        raw = raw.reshape(len(X), -1)
        n_classes = len(cc.classes)
        proba = np.zeros((len(X), n_classes))
        for j, (col, cal) in enumerate(zip(raw.T, cc.calibrators)):
            proba[:, j + 1 if n_classes == 2 else j] = _calibrate(cal, col)
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

    def class_contributions(self, X: np.ndarray, k: int) -> np.ndarray:
        """``contributions(X)[:, k, :]`` at a sixth of the cost for a 6-class model: LightGBM's
        contributions of the trees of class ``k`` only (a test shows the two are equal)."""
        if self.booster.booster_.num_model_per_iteration() == 1:
            return self.contributions(X)[:, 0, :]
        cache = self.__dict__.setdefault("_class_boosters", {})
        if not cache:  # all classes at once (the service's warm-up builds them before readiness)
            for j in range(len(self.classes)):
                cache[j] = class_booster(self.booster.booster_, j, self._num_iteration())
        return cache[k].predict(np.asarray(X, dtype=np.float64), pred_contrib=True, num_threads=1)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_class_boosters", None)  # derived, rebuilt on demand
        return state


def class_booster(booster: lgb.Booster, k: int, num_iteration: int | None) -> lgb.Booster:
    """The trees of class ``k`` of a multiclass booster as a one-output booster (same text format:
    every ``num_class``-th tree, renumbered; the objective only changes the output transform)."""
    text = booster.model_to_string(num_iteration=num_iteration)
    n_class = booster.num_model_per_iteration()
    head, rest = text.split("Tree=0\n", 1)
    trees, tail = rest.split("end of trees", 1)
    blocks = [b for b in ("Tree=0\n" + trees).split("\n\n") if b.strip()]
    mine = [re.sub(r"^Tree=\d+", f"Tree={j}", b) for j, b in enumerate(blocks[k::n_class])]
    head = re.sub(r"num_class=\d+", "num_class=1", head)
    head = re.sub(r"num_tree_per_iteration=\d+", "num_tree_per_iteration=1", head)
    head = re.sub(r"objective=.*", "objective=binary sigmoid:1", head)
    head = re.sub(r"tree_sizes=.*\n", "", head)
    return lgb.Booster(model_str=head + "\n\n".join(mine) + "\n\nend of trees" + tail)


def _calibrate(cal, x: np.ndarray) -> np.ndarray:
    """``cal.predict(x)`` without scikit-learn's per-call input checks (a test compares the two):
    isotonic = clip to the fitted range + linear interpolation; sigmoid = expit(-(a x + b))."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if hasattr(cal, "X_thresholds_"):  # IsotonicRegression(out_of_bounds="clip")
        xt, yt = cal.X_thresholds_, cal.y_thresholds_
        if len(yt) == 1:
            return np.repeat(yt, len(x)).astype(np.float64)
        return np.interp(np.clip(x, cal.X_min_, cal.X_max_), xt, yt)
    if hasattr(cal, "a_"):  # scikit-learn's _SigmoidCalibration
        return expit(-(cal.a_ * x + cal.b_))
    return cal.predict(x)


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
    # A class the booster knows but the validation slice lacks (a rare stage on small data) cannot
    # be calibrated there: the booster's own probabilities are kept (scikit-learn would fail).
    method = settings.calibration if (len(y_val) >= MIN_ISOTONIC_ROWS and task != "stage") else "sigmoid"
    calibrator: CalibratedClassifierCV | None = None
    missing = sorted(set(booster.classes_.tolist()) - set(np.unique(y_val).tolist()))
    if missing:
        method = f"none (the validation slice lacks {', '.join(map(str, missing))})"
    else:
        calibrator = CalibratedClassifierCV(FrozenEstimator(booster), method=method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calibrator.fit(X_val, y_val)
    classes = [c.item() if hasattr(c, "item") else c for c in booster.classes_]
    model = TaskModel(task, classes, booster, calibrator, method, int(booster.best_iteration_ or settings.n_estimators))
    if task == "stage":
        model.decision_weights = tune_decision_weights(model.proba(X_val), y_val, classes)
    return model


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

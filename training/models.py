"""One LightGBM model per task (binary tasks: blended with a logistic regression, weight chosen on
validation), calibrated on a temporally later validation slice (scikit-learn)."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from features.build import CATEGORICAL_PREFIXES
from journey.settings import Settings

MIN_ISOTONIC_ROWS = 2000  # below this, Platt (sigmoid) scaling is steadier than isotonic
LINEAR_MAX_ROWS = 10_000  # the logistic regression learns from at most this many training rows
MARGIN_BLOCK_ROWS = 32_768  # rows per block when computing linear margins


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


@dataclass(frozen=True)
class LinearMargin:
    """A fitted binary :func:`fit_logistic` pipeline as plain arrays: the margin is
    ``((x with NaN -> median) - mean) / scale @ coef + intercept`` (a test compares it with the
    pipeline's ``decision_function``). Per-feature contributions ``z_j * coef_j`` plus the
    intercept add up to the margin: the exact SHAP values of a linear model on standardised
    features (zero mean on the training rows)."""

    fill: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def from_pipeline(cls, pipe: Pipeline) -> LinearMargin:
        imputer, scaler, lr = pipe.steps[0][1], pipe.steps[1][1], pipe.steps[2][1]
        fill = np.nan_to_num(np.asarray(imputer.statistics_, dtype=np.float64))
        return cls(fill, scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64), lr.coef_[0].astype(np.float64), float(lr.intercept_[0]))

    def standardised(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return (np.where(np.isnan(X), self.fill, X) - self.mean) / self.scale

    def margin(self, X: np.ndarray) -> np.ndarray:
        # A row-wise sum, not a matrix product: BLAS blocking would make a customer's margin
        # depend (in the last bit) on how many rows are scored with it. Blocks of rows keep the
        # float64 temporaries small on large validation and test sets.
        out = np.empty(len(X))
        for lo in range(0, len(X), MARGIN_BLOCK_ROWS):
            block = X[lo: lo + MARGIN_BLOCK_ROWS]
            out[lo: lo + len(block)] = (self.standardised(block) * self.coef).sum(axis=1) + self.intercept
        return out

    def contributions(self, X: np.ndarray) -> np.ndarray:
        z = self.standardised(X) * self.coef
        return np.column_stack([z, np.full(len(z), self.intercept)])


class BlendedMargin(ClassifierMixin, BaseEstimator):
    """A fitted binary LightGBM classifier blended with a :class:`LinearMargin`:
    ``decision_function = w * LightGBM raw margin + (1 - w) * linear margin``. Only what
    ``CalibratedClassifierCV(FrozenEstimator(...))`` needs (fit, predict, decision_function)."""

    def __init__(self, booster: lgb.LGBMClassifier, linear: LinearMargin, weight: float):
        self.booster = booster
        self.linear = linear
        self.weight = weight
        self.classes_ = booster.classes_

    def fit(self, X, y):  # already fitted; FrozenEstimator never calls it
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.weight * self.booster.predict(X, raw_score=True) + (1.0 - self.weight) * self.linear.margin(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


@dataclass
class TaskModel:
    task: str
    classes: list  # stage names for "stage", [0, 1] for binary tasks
    booster: lgb.LGBMClassifier
    calibrator: CalibratedClassifierCV | None  # None: the booster's own probabilities (see fit_task)
    calibration_method: str
    best_iteration: int
    decision_weights: np.ndarray | None = None  # stage: argmax(p * w) is the predicted stage
    linear: LinearMargin | None = None  # binary tasks: the linear part of the blend (None: LightGBM alone)
    booster_weight: float = 1.0  # margin = w * LightGBM + (1 - w) * linear
    blend_validation: dict | None = None  # candidate booster weight -> validation ROC-AUC of the blended margin

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
        if self.calibrator is None and self.linear is None:
            p = self.booster.booster_.predict(X, num_iteration=self._num_iteration(), num_threads=1).reshape(len(X), -1)
            return np.column_stack([1.0 - p[:, 0], p[:, 0]]) if p.shape[1] == 1 else p
        raw = self.margin(X)
        if self.calibrator is None:
            return np.column_stack([expit(-raw[:, 0]), expit(raw[:, 0])])
        cc = self.calibrator.calibrated_classifiers_[0]
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

    def margin(self, X: np.ndarray) -> np.ndarray:
        """The raw margin the calibrator reads, (n, n_classes or 1): LightGBM's raw score, blended
        with the linear margin for a binary task with ``booster_weight < 1``."""
        X = np.asarray(X, dtype=np.float64)
        raw = self.booster.booster_.predict(X, raw_score=True, num_iteration=self._num_iteration(), num_threads=1)
        raw = raw.reshape(len(X), -1)
        if self.linear is not None:
            raw = self.booster_weight * raw + (1.0 - self.booster_weight) * self.linear.margin(X)[:, None]
        return raw

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions to :meth:`margin` (raw score scale), (n, n_classes or 1,
        n_features + 1), last column the bias; they add up to the margin. LightGBM's own SHAP
        values (pred_contrib), blended with the linear model's exact ones for a blended task."""
        X = np.asarray(X, dtype=np.float64)
        c = self.booster.booster_.predict(X, pred_contrib=True, num_iteration=self._num_iteration(), num_threads=1)
        if isinstance(c, list):  # some versions return one matrix per class
            c = np.stack(c, axis=1)
        p = X.shape[1] + 1
        c = c.reshape(X.shape[0], -1, p)
        if self.linear is not None:
            c = self.booster_weight * c + (1.0 - self.booster_weight) * self.linear.contributions(X)[:, None, :]
        return c

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
    linear: Pipeline | None = None,
) -> TaskModel:
    """LightGBM with early stopping on the validation slice; for a binary task, the blend weight
    with a logistic regression (``linear``, fitted here when not given) chosen on that slice; then
    calibration of the resulting margin on that slice."""
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

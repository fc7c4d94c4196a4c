"""The inference half of a task model: a fitted LightGBM booster (binary tasks: blended with a
linear margin), its calibrator and decision weights; probabilities, margins and per-feature
contributions. Training (:mod:`journey_stage.training.models`) builds these; the predictor,
batch, Spark and HTTP scoring only read them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline

from journey_stage.model.fastrow import CONTRIB, NORMAL, RAW_SCORE, booster_predict
from journey_stage.model.treeshap import tree_explainer

MARGIN_BLOCK_ROWS = 32_768  # rows per block when computing linear margins


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
            p = booster_predict(self._fast, self.booster.booster_, X, NORMAL, self._num_iteration())
            return np.column_stack([1.0 - p[:, 0], p[:, 0]]) if p.shape[1] == 1 else p
        return self.proba_from_margin(self.margin(X))

    def proba_from_margin(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from margins as :meth:`margin` gives them (n, n_classes or 1)."""
        raw = np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)
        if self.calibrator is None:
            return np.column_stack([expit(-raw[:, 0]), expit(raw[:, 0])])
        cc = self.calibrator.calibrated_classifiers_[0]
        n_classes = len(cc.classes)
        proba = np.zeros((len(raw), n_classes))
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
        raw = booster_predict(self._fast, self.booster.booster_, X, RAW_SCORE, self._num_iteration())
        if self.linear is not None:
            raw = self.booster_weight * raw + (1.0 - self.booster_weight) * self.linear.margin(X)[:, None]
        return raw

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions to :meth:`margin` (raw score scale), (n, n_classes or 1,
        n_features + 1), last column the bias; they add up to the margin. The trees' exact
        TreeSHAP values (:mod:`journey_stage.model.treeshap`, equal to LightGBM's pred_contrib
        within 1e-9), blended with the linear model's exact ones for a blended task."""
        X = np.asarray(X, dtype=np.float64)
        c = np.stack([self._tree_contributions(X, k) for k in range(self._outputs())], axis=1)
        if self.linear is not None:
            c = self.booster_weight * c + (1.0 - self.booster_weight) * self.linear.contributions(X)[:, None, :]
        return c

    def class_contributions(self, X: np.ndarray, k: int) -> np.ndarray:
        """``contributions(X)[:, k, :]`` of class ``k`` alone (a multiclass model's other classes'
        trees are not walked; a test shows the two are equal)."""
        if self._outputs() == 1:
            return self.contributions(X)[:, 0, :]
        return self._tree_contributions(np.asarray(X, dtype=np.float64), k)

    def prepare(self) -> None:
        """Build (and compile) the explainers of every output now, not at the first answer that
        needs one (the service calls this before declaring readiness)."""
        row = np.zeros((1, self.booster.booster_.num_feature()))
        for k in range(self._outputs()):
            self._tree_contributions(row, k)

    def _outputs(self) -> int:
        return self.booster.booster_.num_model_per_iteration()

    def _tree_contributions(self, X: np.ndarray, k: int) -> np.ndarray:
        """The trees' contributions for output ``k``, (n, n_features + 1) (rows of another width:
        LightGBM's pred_contrib and its error)."""
        booster, iterations = self._output_booster(k)
        explainers = self.__dict__.setdefault("_explainers", {})
        if k not in explainers:
            explainers[k] = tree_explainer(booster, iterations)
        if len(X) and X.ndim == 2 and X.shape[1] == explainers[k].n_features:
            return explainers[k](X)
        return booster_predict(self._fast, booster, X, CONTRIB, iterations)

    def _output_booster(self, k: int) -> tuple[lgb.Booster, int | None]:
        """The one-output booster of output ``k`` and the iterations to use: the booster itself,
        or a multiclass model's trees of class ``k`` (built for all classes at once, before the
        service's readiness by its warm-up)."""
        if self._outputs() == 1:
            return self.booster.booster_, self._num_iteration()
        cache = self.__dict__.setdefault("_class_boosters", {})
        if not cache:
            for j in range(len(self.classes)):
                cache[j] = class_booster(self.booster.booster_, j, self._num_iteration())
        return cache[k], None

    @property
    def _fast(self) -> dict:
        """LightGBM's single-row fast predictors of this model's boosters (:mod:`journey_stage.model.fastrow`)."""
        return self.__dict__.setdefault("_fast_rows", {})

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_class_boosters", None)  # derived, rebuilt on demand
        state.pop("_explainers", None)
        state.pop("_fast_rows", None)  # C handles, rebuilt on demand
        return state


@dataclass
class FoldCalibration:
    """Per-class calibrators fitted on out-of-fold margins (the ``crossfit`` protocol): the parts
    of a fitted ``CalibratedClassifierCV`` that :meth:`TaskModel.proba` reads."""

    classes: np.ndarray
    calibrators: list

    @property
    def calibrated_classifiers_(self) -> list:
        return [self]


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

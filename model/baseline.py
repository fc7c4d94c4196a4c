"""The rule baselines of SPEC 6 as scores, and as calibrated models a predictor can serve.

"Never worse than a rule": when a task's model does not beat its best rule on the validation
slice (or the cross-fitted folds), training puts a :class:`RuleModel` (binary tasks) or a
:class:`PersistenceModel` (stage) in ``JourneyPredictor.fallbacks`` and the predictor serves it
for that task. Both read one feature of the shared feature vector, so batch, Spark, HTTP and
Python serve them through the same scoring core; their reasons name that feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logit

from journey_stage.core.settings import Settings
from journey_stage.model.task_model import _calibrate

# task -> [(baseline name, feature, sign, fill for a missing value)]; score = sign * feature
RECENCY_CONVERSION = ("recency", "days_since_last_conversion", 1.0, 1e6)
RULES: dict[str, list[tuple[str, str, float, float]]] = {
    "churn": [("recency", "days_since_last_event", 1.0, 1e6)],
    "advocacy": [("past_advocacy", "events_all_by_stage_advocacy", 1.0, 0.0), ("recency", "days_since_last_event", -1.0, 1e6)],
    "conversion": [("recency", "days_since_last_event", -1.0, 1e6), ("past_conversion", "conversions_all", 1.0, 0.0)],
}
EPS = 1e-6


def rules(task: str, settings: Settings) -> list[tuple[str, str, float, float]]:
    """The rule baselines of a binary task (churn recency counts conversions only for purchase-only data)."""
    if task == "churn" and settings.churn_activity == "conversions":
        return [RECENCY_CONVERSION]
    return RULES[task]


def rule_scores(task: str, names: list[str], X: np.ndarray, settings: Settings) -> dict[str, np.ndarray]:
    """SPEC 6 rule baselines as scores (higher = more likely positive)."""
    col = {n: i for i, n in enumerate(names)}
    out = {}
    for name, feature, sign, fill in rules(task, settings):
        v = X[:, col[feature]].astype(float)
        out[name] = sign * np.where(np.isnan(v), fill, v)
    return out


@dataclass
class RuleModel:
    """A binary rule baseline, calibrated: p = calibrator(z), z = sign(s) log(1 + |s|) of the rule's
    score s (a monotone transform: the rule's ranking is kept)."""

    task: str
    name: str
    feature: str
    feature_index: int
    sign: float
    fill: float
    calibrator: object  # fitted sigmoid or isotonic calibrator of z (see task_model._calibrate)
    calibration_method: str
    base_margin: float  # logit of the calibration rows' positive rate: the bias of the reasons
    classes: tuple = (0, 1)
    best_iteration: int = 0
    decision_weights: None = None

    @classmethod
    def fit(cls, task: str, name: str, names: list[str], X: np.ndarray, y: np.ndarray, settings: Settings, method: str) -> RuleModel:
        from sklearn.calibration import _SigmoidCalibration
        from sklearn.isotonic import IsotonicRegression

        _, feature, sign, fill = next(r for r in rules(task, settings) if r[0] == name)
        model = cls(task, name, feature, names.index(feature), sign, fill, None, method, 0.0)
        z, y = model.z(X), np.asarray(y, dtype=float)
        cal = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1) if method == "isotonic" else _SigmoidCalibration()
        model.calibrator = cal.fit(z, y)
        model.base_margin = float(logit(np.clip(y.mean(), EPS, 1 - EPS)))
        return model

    def z(self, X: np.ndarray) -> np.ndarray:
        v = np.asarray(X[:, self.feature_index], dtype=np.float64)
        s = self.sign * np.where(np.isnan(v), self.fill, v)
        return np.sign(s) * np.log1p(np.abs(s))

    def proba(self, X: np.ndarray) -> np.ndarray:
        p = np.clip(_calibrate(self.calibrator, self.z(X)), 0.0, 1.0)
        return np.column_stack([1.0 - p, p])

    def decide(self, proba: np.ndarray) -> np.ndarray:
        return np.argmax(proba, axis=1)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(n, 1, n_features + 1): the margin logit(p) minus the base rate's on the rule's feature, the base as bias."""
        margin = logit(np.clip(self.proba(X)[:, 1], EPS, 1 - EPS))
        out = np.zeros((len(X), 1, X.shape[1] + 1))
        out[:, 0, self.feature_index] = margin - self.base_margin
        out[:, 0, -1] = self.base_margin
        return out

    def class_contributions(self, X: np.ndarray, k: int) -> np.ndarray:
        return self.contributions(X)[:, 0, :]


@dataclass
class PersistenceModel:
    """The stage persistence rule, calibrated: the predicted stage is the observed stage; the
    probabilities are the revealed-stage frequencies among calibration rows with that observed
    stage (shrunk towards the overall frequencies by one pseudo-row, so never exactly 0)."""

    classes: list[str]
    role_stage: list[str]  # observed role index (0..5) -> stage name
    table: np.ndarray  # (6, len(classes)): P(revealed stage | observed role)
    prior: np.ndarray  # (len(classes),) overall revealed-stage frequencies
    feature_index: int  # the "observed_stage" feature (role index)
    task: str = "stage"
    name: str = "persistence"
    calibration_method: str = "revealed-stage frequencies per observed stage"
    best_iteration: int = 0
    decision_weights: None = None

    @classmethod
    def fit(cls, classes: list[str], role_stage: list[str], names: list[str], X: np.ndarray, y: np.ndarray) -> PersistenceModel:
        idx = names.index("observed_stage")
        k = len(classes)
        code = {c: j for j, c in enumerate(classes)}
        roles = np.asarray(X[:, idx], dtype=np.int64)
        keep = np.array([c in code for c in y], dtype=bool)
        yc = np.array([code[c] for c in np.asarray(y)[keep]], dtype=np.int64)
        counts = np.zeros((len(role_stage), k))
        np.add.at(counts, (roles[keep], yc), 1.0)
        prior = (counts.sum(0) + 0.5) / (counts.sum() + 0.5 * k)
        table = (counts + prior) / (counts.sum(1, keepdims=True) + 1.0)
        return cls(list(classes), list(role_stage), table, prior, idx)

    def roles(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X[:, self.feature_index], dtype=np.int64)

    def proba(self, X: np.ndarray) -> np.ndarray:
        return self.table[self.roles(X)]

    def choose(self, X: np.ndarray) -> list[str]:
        """The predicted stage of each row: its observed stage."""
        return [self.role_stage[r] for r in self.roles(X)]

    def decide(self, proba: np.ndarray) -> np.ndarray:
        return np.argmax(proba, axis=1)

    def class_contributions(self, X: np.ndarray, k: int) -> np.ndarray:
        """(n, n_features + 1): log P(class k | observed stage) minus log prior on "observed_stage", log prior as bias."""
        out = np.zeros((len(X), X.shape[1] + 1))
        out[:, self.feature_index] = np.log(self.table[self.roles(X), k]) - np.log(self.prior[k])
        out[:, -1] = np.log(self.prior[k])
        return out

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return np.stack([self.class_contributions(X, k) for k in range(len(self.classes))], axis=1)


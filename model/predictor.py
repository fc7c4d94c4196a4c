"""The whole predictor: taxonomy + settings + feature version + one calibrated model per task.

It is what MLflow stores (inside a pyfunc model) and what training, batch, Spark and the HTTP
service all call: events -> :func:`features.build.build_features` -> calibrated probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from journey_stage.features.build import FEATURE_VERSION, FeatureFrame, build_features
from journey_stage.features.labels import task_applies
from journey_stage.features.encode import EncodedEvents
from journey_stage.core.errors import ModelError
from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import Taxonomy
from journey_stage.model.baseline import PersistenceModel, RuleModel
from journey_stage.model.task_model import TaskModel

BINARY_TASKS = ("churn", "advocacy", "conversion")


@dataclass
class Predictions:
    """Model outputs for the rows of a :class:`FeatureFrame`."""

    stage_names: list[str]
    stage_proba: np.ndarray  # (n, len(stage_names)); NaN when the stage task was skipped
    observed_stage: list[str]
    binary: dict[str, np.ndarray]  # task -> probability, NaN where the task does not apply / was skipped
    stage_weights: np.ndarray | None = None  # decision weights over stage_names
    stage_choice: list[str] | None = None  # the served persistence rule: each row's observed stage

    @property
    def stage(self) -> list[str | None]:
        if len(self.stage_proba) == 0 or np.isnan(self.stage_proba).all():
            return [None] * len(self.stage_proba)
        if self.stage_choice is not None:
            return list(self.stage_choice)
        w = self.stage_weights if self.stage_weights is not None else np.ones(len(self.stage_names))
        return [self.stage_names[i] for i in np.argmax(self.stage_proba * w, axis=1)]


@dataclass
class JourneyPredictor:
    taxonomy: Taxonomy
    settings: Settings
    feature_names: list[str]
    models: dict[str, TaskModel]
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why it was not trained
    info: dict = field(default_factory=dict)  # fingerprint, test metrics, registry name/version
    feature_version: str = FEATURE_VERSION
    # task -> the calibrated rule served instead of the model (it did not beat the rule on validation)
    fallbacks: dict[str, RuleModel | PersistenceModel] = field(default_factory=dict)

    def serving_model(self, task: str) -> TaskModel | RuleModel | PersistenceModel:
        """What answers for ``task``: its rule baseline when one is served, else its model."""
        fallbacks = self.__dict__.get("fallbacks") or {}  # predictors pickled before fallbacks existed have none
        return fallbacks.get(task) or self.models[task]

    @property
    def served(self) -> dict[str, str]:
        """Task -> ``"model"`` or ``"baseline:<rule>"`` for every trained task."""
        fallbacks = self.__dict__.get("fallbacks") or {}
        return {task: f"baseline:{fallbacks[task].name}" if task in fallbacks else "model" for task in self.models}

    def identity(self) -> dict:
        """``{"name", "version", "served"}``: the ``model`` field of every answer and of ``/metadata``."""
        return {"name": str(self.info.get("name", "")), "version": str(self.info.get("version", "")), "served": self.served}

    def prepare(self) -> None:
        """Build what the first answers would otherwise build: the served models' explainers."""
        for task in self.models:
            model = self.serving_model(task)
            if isinstance(model, TaskModel):
                model.prepare()

    def check_compatible(self) -> None:
        if self.feature_version != FEATURE_VERSION:
            raise ModelError(
                f"model was trained with feature version {self.feature_version}, this code computes version {FEATURE_VERSION}.",
                "retrain the model with this version (journey train) or install the version it was trained with.",
            )

    def features(self, events: EncodedEvents, as_of_us: int) -> FeatureFrame:
        ff = build_features(events, as_of_us, self.settings)
        if ff.names != self.feature_names:
            raise ModelError("feature names differ from the model's.", "retrain the model with this code version.")
        return ff

    def predict(self, ff: FeatureFrame, rows: np.ndarray | None = None) -> Predictions:
        rows = np.arange(len(ff.customer_ids)) if rows is None else rows
        X = ff.X[rows]
        n = len(rows)
        stages = self.taxonomy.stages
        proba = np.full((n, len(stages)), np.nan)
        weights, choice = None, None
        if "stage" in self.models and n:
            m = self.serving_model("stage")
            choice = m.choose(X) if isinstance(m, PersistenceModel) else None
            proba[:] = 0.0
            weights = np.zeros(len(stages))  # stages the model never saw are never predicted
            p = m.proba(X)
            for j, c in enumerate(m.classes):
                proba[:, stages.index(c)] = p[:, j]
                weights[stages.index(c)] = 1.0 if m.decision_weights is None else m.decision_weights[j]
        converted = ff.converted[rows]
        binary: dict[str, np.ndarray] = {}
        for task in BINARY_TASKS:
            out = np.full(n, np.nan)
            at = np.flatnonzero(task_applies(task, converted, self.settings))
            if task in self.models and len(at):
                out[at] = self.serving_model(task).proba(X[at])[:, 1]
            binary[task] = out
        obs = [self.taxonomy.stage_of_role_index(int(i)) for i in ff.observed_stage[rows]]
        return Predictions(stages, proba, obs, binary, weights, choice)

    def reasons(self, ff: FeatureFrame, rows: np.ndarray, predicted_stage: list[str | None], top_k: int = 3) -> list[dict]:
        """Top feature contributions per task and customer (exact TreeSHAP, raw-score scale).

        Stage: contributions to the predicted stage; binary tasks: to the positive class, where
        the task applies. A few customers' blocks are ranked together (one request: one sort)."""
        X = ff.X[rows]
        out: list[dict] = [{} for _ in range(len(rows))]
        blocks = list(self._contributions(ff, rows, X, predicted_stage))
        if blocks and sum(len(at) for _, at, _ in blocks) <= REASON_BLOCK:  # e.g. one request: one sort for every task
            tasks = [task for task, at, _ in blocks for _ in range(len(at))]
            at, contrib = np.concatenate([at for _, at, _ in blocks]), np.vstack([c for _, _, c in blocks])
            _top_reasons(out, tasks, at, contrib, X, self.feature_names, top_k)
        else:
            for task, at, contrib in blocks:
                _top_reasons(out, [task] * len(at), at, contrib, X, self.feature_names, top_k)
        return out

    def _contributions(self, ff: FeatureFrame, rows: np.ndarray, X: np.ndarray, predicted_stage: list[str | None]):
        """``(task, at, contributions of the rows at, without the bias)`` per task (per predicted
        class for the stage) for the rows that show the task's reasons."""
        for task in self.models:
            m = self.serving_model(task)
            if task == "stage":  # contributions to each customer's predicted stage only
                klass = np.array([m.classes.index(s) if s in m.classes else -1 for s in predicted_stage], dtype=np.int64)
                for k in np.unique(klass[klass >= 0]):
                    at = np.flatnonzero(klass == k)
                    yield task, at, m.class_contributions(X[at], int(k))[:, :-1]
            else:  # only where the task applies (its probability is not null)
                at = np.flatnonzero(task_applies(task, ff.converted[rows], self.settings))
                if len(at):
                    yield task, at, m.contributions(X[at])[:, 0, :-1]

    def stage_name(self, role_index: int) -> str:
        return self.taxonomy.stage_of_role_index(role_index)


REASON_BLOCK = 4096  # rows ranked at once: bounds the (rows x features) rank matrix of a batch


def _top_reasons(out: list[dict], tasks: list[str], at: np.ndarray, contrib: np.ndarray, X: np.ndarray, names: list[str],
                 top_k: int) -> None:
    """``out[at[i]][tasks[i]]``: the ``top_k`` largest of ``contrib[i]`` by absolute value (ties:
    the earlier feature first), zeros left out, with the features' values ``X[at[i]]`` (ranked
    block by block, as arrays)."""
    for lo in range(0, len(at), REASON_BLOCK):
        rows, c = at[lo: lo + REASON_BLOCK], contrib[lo: lo + REASON_BLOCK]
        top = np.argsort(-np.abs(c), axis=1, kind="stable")[:, :top_k]
        top_c = c[np.arange(len(rows))[:, None], top].astype(np.float64).tolist()
        top_v = X[rows[:, None], top].astype(np.float64).tolist()
        for i, task, js, cs, vs in zip(rows.tolist(), tasks[lo: lo + REASON_BLOCK], top.tolist(), top_c, top_v):
            out[i][task] = [
                {"feature": names[j], "value": None if v != v else v, "contribution": round(cj, 6)}
                for j, cj, v in zip(js, cs, vs)
                if cj != 0
            ]

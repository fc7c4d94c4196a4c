"""Training and evaluation: snapshots -> per-task LightGBM + calibration -> metrics beside baselines.

Pure with respect to files: takes canonical events, returns the predictor, the report dict and the
test-set data the plots need. The CLI writes files and logs to MLflow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from journey_stage.features.encode import EncodedEvents, encode, from_us
from journey_stage.features.snapshots import CutoffPlan, Snapshots, build_snapshots, plan_cutoffs
from journey_stage.core.errors import JourneyError
from journey_stage.core.settings import TASKS, Settings
from journey_stage.core.taxonomy import Taxonomy
from journey_stage.training.metrics import RankedScores, binary_metrics, bootstrap_ci, macro_f1_codes, stage_details, stage_metrics
from journey_stage.training.models import fit_logistic, fit_task
from journey_stage.model.predictor import BINARY_TASKS, JourneyPredictor


@dataclass
class TaskEval:
    """Test-set arrays for one task (for plots and the promotion gate)."""

    y: np.ndarray
    proba: np.ndarray  # stage: (n, k) over classes; binary: (n,)
    classes: list
    baselines: dict[str, np.ndarray]  # name -> score (binary) or predicted stage (stage)
    customers: np.ndarray
    cutoffs: np.ndarray
    importance: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainOutcome:
    predictor: JourneyPredictor
    report: dict
    evals: dict[str, TaskEval]
    plan: CutoffPlan
    snapshots: Snapshots
    messages: list[str]


def fingerprint(events: pd.DataFrame) -> dict:
    h = hashlib.sha256(pd.util.hash_pandas_object(events, index=False).to_numpy().tobytes()).hexdigest()[:16]
    return {
        "events": int(len(events)),
        "customers": int(events["customer_id"].nunique()),
        "start": events["timestamp"].min().isoformat() if len(events) else None,
        "end": events["timestamp"].max().isoformat() if len(events) else None,
        "fingerprint": h,
    }


def _stage_names(tax: Taxonomy, role_idx: np.ndarray) -> np.ndarray:
    lookup = np.array([tax.stage_of_role_index(i) for i in range(6)], dtype=object)
    return lookup[role_idx.astype(int)]


def baseline_scores(task: str, names: list[str], X: np.ndarray, settings: Settings) -> dict[str, np.ndarray]:
    """SPEC 6 rule baselines as scores (higher = more likely positive)."""
    col = {n: i for i, n in enumerate(names)}

    def f(name: str, fill: float) -> np.ndarray:
        v = X[:, col[name]].astype(float)
        return np.where(np.isnan(v), fill, v)

    if task == "churn":
        rec = "days_since_last_conversion" if settings.churn_activity == "conversions" else "days_since_last_event"
        return {"recency": f(rec, 1e6)}
    if task == "advocacy":
        return {"past_advocacy": f("events_all_by_stage_advocacy", 0), "recency": -f("days_since_last_event", 1e6)}
    return {"recency": -f("days_since_last_event", 1e6), "past_conversion": f("conversions_all", 0)}


def train_and_evaluate(
    events: pd.DataFrame,
    taxonomy: Taxonomy,
    settings: Settings,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    encoded: EncodedEvents | None = None,
) -> TrainOutcome:
    enc = encoded if encoded is not None else encode(events, taxonomy)
    plan = plan_cutoffs(enc, settings)
    if not plan.all_cutoffs:
        raise no_cutoffs(plan, settings)
    snaps = build_snapshots(
        enc, plan, settings, sample_train_rows=settings.max_train_rows,
        progress=(lambda i, n: progress("snapshots", i, n)) if progress else None,
    )
    messages: list[str] = []
    models, skipped, evals = {}, {}, {}
    report_tasks: dict[str, dict] = {}
    for k, task in enumerate(TASKS):
        if progress:
            progress("models", k, len(TASKS))
        split = plan.tasks[task]
        if split.note:
            messages.append(f"{task}: {split.note}")
        if not split.usable:
            skipped[task] = split.note or "not enough cutoffs"
            continue
        y_all, (tr, va, te) = task_rows(task, taxonomy, snaps, split, settings)
        reason = _unsupported(task, y_all, tr, va, te)
        if reason:
            skipped[task] = reason
            messages.append(f"{task}: skipped: {reason}")
            continue
        models[task], res, evals[task] = fit_and_evaluate(task, taxonomy, settings, snaps, y_all, (tr, va, te))
        res["test_cutoffs"] = [from_us(t).isoformat() for t in split.test]
        res["train_rows"], res["validation_rows"] = int(len(tr)), int(len(va))
        report_tasks[task] = res
    for task, why in skipped.items():
        report_tasks.setdefault(task, {"skipped": why})
    if progress:
        progress("models", len(TASKS), len(TASKS))
    fp = fingerprint(events)
    report = {
        "dataset": fp,
        "settings": {
            "taxonomy": taxonomy.name,
            "horizons_days": settings.horizons.model_dump(),
            "all": settings.model_dump(mode="json"),
        },
        "cutoffs": plan.describe(),
        "tasks": report_tasks,
        "messages": messages,
        "feature_count": len(snaps.names),
    }
    predictor = JourneyPredictor(
        taxonomy=taxonomy, settings=settings, feature_names=snaps.names, models=models, skipped=skipped,
        info={"dataset": fp, "test_metrics": headline_metrics(report)},
    )
    return TrainOutcome(predictor, report, evals, plan, snaps, messages)


def no_cutoffs(plan: CutoffPlan, settings: Settings) -> JourneyError:
    """Not one cutoff fits the data: say what the data spans and what to change."""
    span = f"the events run from {from_us(plan.data_start_us).date()} to {from_us(plan.observed_until_us).date()}"
    if settings.test_from is not None:
        return JourneyError(f"--test-from {settings.test_from.date() if hasattr(settings.test_from, 'date') else settings.test_from}: "
                            f"no training or test cutoff fits ({span}).",
                            "pick a --test-from date inside the data, early enough that the shortest horizon still ends before the last event.")
    return JourneyError(f"no cutoff fits the data ({span}).", "pass a longer event log or shorter --horizon TASK=DAYS values.")


def task_rows(task: str, taxonomy: Taxonomy, snaps: Snapshots, split, settings: Settings) -> tuple[np.ndarray, tuple]:
    """A task's labels over all snapshot rows, and its train (capped), validation and test rows
    (rows whose label is defined)."""
    y_all = snaps.labels[task]
    if task == "stage":
        y_all = _stage_names(taxonomy, y_all)
        ok_all = np.ones(len(y_all), bool)
    else:
        ok_all = ~np.isnan(y_all)
    parts = {}
    for part in ("train", "validation", "test"):
        r = snaps.rows(getattr(split, part))
        parts[part] = r[ok_all[r]]
    tr, va, te = parts["train"], parts["validation"], parts["test"]
    tr = cap_train_rows(tr, snaps.cutoff_us[tr], settings.max_train_rows, settings.seed)
    return y_all, (tr, va, te)


def fit_and_evaluate(task: str, taxonomy: Taxonomy, settings: Settings, snaps: Snapshots, y_all: np.ndarray, rows: tuple):
    """Fit one task's model (and its logistic-regression baseline) on the train rows, calibrate on
    validation, and evaluate both with the rule baselines on the test rows."""
    tr, va, te = rows
    y_tr, y_va, y_te = y_all[tr], y_all[va], y_all[te]
    if task != "stage":
        y_tr, y_va, y_te = (a.astype(int) for a in (y_tr, y_va, y_te))
    names = snaps.names
    lr = fit_logistic(snaps.X[tr], y_tr, settings.seed)  # the baseline, and the linear part of a binary blend
    model = fit_task(task, names, snaps.X[tr], y_tr, snaps.X[va], y_va, settings, linear=lr)
    test = HeldOut(snaps.X[te], y_te, snaps.customer_ids[te], snaps.cutoff_us[te])
    imp = dict(zip(names, model.booster.booster_.feature_importance("gain").astype(float)))
    if task == "stage":
        res, ev = evaluate_stage(model, lr, test, _stage_names(taxonomy, snaps.observed_stage[te]), taxonomy, settings, imp)
    else:
        res, ev = evaluate_binary(task, model, lr, test, names, settings, imp)
    return model, res, ev


@dataclass(frozen=True)
class HeldOut:
    X: np.ndarray
    y: np.ndarray
    customers: np.ndarray
    cutoffs: np.ndarray


def evaluate_stage(model, lr, test: HeldOut, persistence: np.ndarray, taxonomy: Taxonomy, settings: Settings, imp: dict):
    """Stage model vs persistence and the logistic regression on the test slice (macro-F1 and
    its customer-bootstrap interval)."""
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
    code = {c: i for i, c in enumerate(classes)}
    yc = np.array([code[c] for c in y_te])
    pc = np.array([code[c] for c in pred])
    sc = np.array([code.get(c, 0) for c in persistence])  # a stage unseen in training counts as wrong
    sc = np.where(np.isin(persistence, classes), sc, (yc + 1) % len(classes))
    k = len(classes)
    res["ci95"] = {
        "model.macro_f1": bootstrap_ci(lambda w: macro_f1_codes(yc, pc, k, w), cust, B, seed),
        "persistence.macro_f1": bootstrap_ci(lambda w: macro_f1_codes(yc, sc, k, w), cust, B, seed),
    }
    ev = TaskEval(y_te, proba, classes, {"persistence": persistence, "logistic_regression": lr_pred}, cust, test.cutoffs, imp)
    return res, ev


def evaluate_binary(task: str, model, lr, test: HeldOut, names: list[str], settings: Settings, imp: dict):
    """A binary task's model vs its rule baselines and the logistic regression on the test slice
    (ROC-AUC, PR-AUC, calibration, and customer-bootstrap intervals)."""
    y_te, cust, B, seed = test.y, test.customers, settings.bootstrap_rounds, settings.seed
    p = model.proba(test.X)[:, 1]
    lr_p = lr.predict_proba(test.X)[:, 1]
    base = baseline_scores(task, names, test.X, settings)
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
    first = next(iter(base))
    rm, rb = RankedScores(y_te, p), RankedScores(y_te, base[first])
    res["ci95"] = {
        "model.roc_auc": bootstrap_ci(rm.roc_auc, cust, B, seed),
        "model.pr_auc": bootstrap_ci(rm.average_precision, cust, B, seed),
        f"{first}.roc_auc": bootstrap_ci(rb.roc_auc, cust, B, seed),
    }
    return res, TaskEval(y_te, p, [0, 1], base | {"logistic_regression": lr_p}, cust, test.cutoffs, imp)


def cap_train_rows(rows: np.ndarray, cutoffs: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` training rows, the same share from every training cutoff.

    The snapshots sample training-only cutoffs already, but a task's training cutoffs can include
    cutoffs kept whole as validation or test of another task (e.g. the stage task trains on the
    cutoffs where the 90-day churn task is validated): without this cap those whole cutoffs would
    dominate the task's training set and its training time."""
    if len(rows) <= cap:
        return rows
    uniq, inv, counts = np.unique(cutoffs, return_inverse=True, return_counts=True)
    # water-filling: the largest per-cutoff quota q with sum(min(count, q)) <= cap
    order = np.sort(counts)
    q, left = 0, cap
    for i, c in enumerate(order):
        share = left // (len(order) - i)
        if c <= share:
            left -= c
        else:
            q = share
            break
    else:
        return rows
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(rows), bool)
    for k in range(len(uniq)):
        idx = np.flatnonzero(inv == k)
        keep[idx if len(idx) <= q else rng.choice(idx, q, replace=False)] = True
    return rows[keep]


def _unsupported(task: str, y: np.ndarray, tr, va, te) -> str | None:
    for part, r in (("training", tr), ("validation", va), ("test", te)):
        if len(r) == 0:
            return f"no {part} rows"
        if len(np.unique(y[r])) < 2:
            only = np.unique(y[r])
            what = "positive examples" if task != "stage" else "variety of stages"
            return f"the {part} rows have no {what} (only {only.tolist()}); this data cannot support the task"
    return None


def _align(proba: np.ndarray, have: list, want: list) -> np.ndarray:
    out = np.zeros((len(proba), len(want)))
    for j, c in enumerate(have):
        if c in want:
            out[:, want.index(c)] = proba[:, j]
    return out


PRIMARY = {"stage": "macro_f1", "churn": "roc_auc", "conversion": "roc_auc"}


def headline_metrics(report: dict) -> dict[str, float]:
    """Flat ``task.metric`` -> value of the model's test metrics (for MLflow and the gate)."""
    out = {}
    for task, res in report["tasks"].items():
        for k, v in res.get("model", {}).items():
            if isinstance(v, (int, float)):
                out[f"{task}.{k}"] = float(v)
    return out

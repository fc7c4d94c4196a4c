"""Training and evaluation: snapshots -> per-task LightGBM + calibration -> metrics beside baselines.

Pure with respect to files: takes canonical events, returns the predictor, the report dict and the
test-set data the plots need. The CLI writes files and logs to MLflow.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from journey_stage.features.encode import EncodedEvents, encode, from_us, to_us
from journey_stage.features.snapshots import CutoffPlan, Snapshots, TaskSplit, build_snapshots, plan_cutoffs
from journey_stage.core import errors
from journey_stage.core.errors import JourneyError
from journey_stage.core.settings import TASKS, Settings
from journey_stage.core.taxonomy import Taxonomy
from journey_stage.training.crossfit import fit_task_crossfit
from journey_stage.training.evaluate import HeldOut, TaskEval, evaluate_binary, evaluate_stage
from journey_stage.training.fallback import choose_served
from journey_stage.training.models import fit_logistic, fit_task
from journey_stage.training.sampling import CustomerSample, sample_events
from journey_stage.model.predictor import JourneyPredictor

__all__ = ["TaskEval", "TrainOutcome", "HeldOut", "train_and_evaluate", "fit_and_evaluate", "evaluate_stage",
           "evaluate_binary", "PRIMARY", "headline_metrics", "served_metrics", "cap_train_rows", "task_rows", "fingerprint"]


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


def train_and_evaluate(
    events: pd.DataFrame,
    taxonomy: Taxonomy,
    settings: Settings,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    encoded: EncodedEvents | None = None,
    sample: CustomerSample | None = None,
) -> TrainOutcome:
    """Snapshots, one model per task, baselines and test metrics. Above ``eval_customers_cap``
    customers the run uses a sample of whole customers (:mod:`journey_stage.training.sampling`);
    ``sample``: what :func:`~journey_stage.training.sampling.read_training_events` already sampled."""
    events, in_memory = sample_events(events, settings)
    if in_memory is not None:  # sampled here: ``encoded`` holds every customer
        sample, encoded = in_memory, None
    enc = encoded if encoded is not None else encode(events, taxonomy)
    plan = plan_cutoffs(enc, settings)
    if not any(s.usable for s in plan.tasks.values()):
        if settings.test_from is not None and not plan.data_start_us <= to_us(settings.test_from) < plan.observed_until_us:
            raise no_cutoffs(plan, settings)
        raise errors.no_task_can_train({task: plan.sufficiency[task]["reason"] for task in TASKS})
    snaps = build_snapshots(
        enc, plan, settings, sample_train_rows=settings.max_train_rows,
        progress=(lambda i, n: progress("snapshots", i, n)) if progress else None,
    )
    messages: list[str] = [sample_message(sample)] if sample is not None else []
    models, fallbacks, skipped, evals = {}, {}, {}, {}
    report_tasks: dict[str, dict] = {}
    for k, task in enumerate(TASKS):
        if progress:
            progress("models", k, len(TASKS))
        split, suff = plan.tasks[task], plan.sufficiency[task]
        facts = {"protocol": split.protocol if split.usable else None, "sufficiency": suff}
        if not split.usable:
            skipped[task] = split.note or "not enough cutoffs"
            messages.append(f"{task}: skipped: {skipped[task]}")
            report_tasks[task] = {"skipped": skipped[task]} | facts
            continue
        if suff["verdict"] == "weak":
            messages.append(f"{task}: weak data ({split.describe()}): {suff['reason']}")
        y_all, (tr, va, te) = task_rows(task, taxonomy, snaps, split, settings)
        reason = _unsupported(task, y_all, tr, va if not split.crossfit else tr, te)
        if reason:
            skipped[task] = reason
            messages.append(f"{task}: skipped: {reason}")
            report_tasks[task] = {"skipped": reason} | facts
            continue
        models[task], rule, res, evals[task] = fit_and_evaluate(task, taxonomy, settings, snaps, y_all, (tr, va, te), split)
        if rule is not None:
            fallbacks[task] = rule
            v = res["validation"]
            messages.append(f"{task}: the model ({v['metric']} {v['model']:.3f}) does not beat the {v['best_baseline']} rule "
                            f"({v['baselines'][v['best_baseline']]:.3f}) on {'the validation slice' if not split.crossfit else 'cross-fitted folds'}: "
                            f"serving the rule, calibrated")
        res["test_cutoffs"] = [from_us(t).isoformat() for t in split.test]
        res["train_rows"], res["validation_rows"] = int(len(tr)), int(len(va))
        res["rows"] = {"train": int(len(tr)), "validation": int(len(va)), "test": int(len(te))}
        res["sampled"] = sampled_rows(sample, len(va), len(te))
        report_tasks[task] = facts | {"protocol_detail": split.describe()} | res
    if progress:
        progress("models", len(TASKS), len(TASKS))
    fp = fingerprint(events)
    report = _report(fp, taxonomy, settings, plan, report_tasks, messages, len(snaps.names), sample)
    predictor = JourneyPredictor(
        taxonomy=taxonomy, settings=settings, feature_names=snaps.names, models=models, skipped=skipped,
        info={"dataset": fp, "test_metrics": headline_metrics(report)}, fallbacks=fallbacks,
    )
    return TrainOutcome(predictor, report, evals, plan, snaps, messages)


def _report(fp: dict, taxonomy: Taxonomy, settings: Settings, plan: CutoffPlan, report_tasks: dict, messages: list[str],
            n_features: int, sample: CustomerSample | None) -> dict:
    return {
        "dataset": fp,
        "sample": sample.describe() if sample is not None else
        {"applied": False, "customers_cap": settings.eval_customers_cap, "customers": fp["customers"]},
        "settings": {
            "taxonomy": taxonomy.name,
            "horizons_days": settings.horizons.model_dump(),
            "all": settings.model_dump(mode="json"),
        },
        "cutoffs": plan.describe(),
        "tasks": {task: report_tasks[task] for task in TASKS},
        "messages": messages,
        "feature_count": n_features,
    }


def sample_message(sample: CustomerSample) -> str:
    return (f"trained and evaluated on {len(sample.customers):,} of {sample.customers_total:,} customers "
            f"({sample.events_read:,} of {sample.events_total:,} events; eval_customers_cap {sample.cap:,}), sampled whole "
            f"by a hash of customer_id: the intervals are over the sampled test customers")


def sampled_rows(sample: CustomerSample | None, validation: int, test: int) -> dict | None:
    """A task's validation and test rows in the sample and, estimated by the customer fraction, in the whole log."""
    if sample is None:
        return None
    f = sample.fraction
    return {"customers": int(len(sample.customers)), "customers_total": sample.customers_total, "fraction": round(f, 6),
            "validation_rows": int(validation), "test_rows": int(test),
            "validation_rows_full_estimate": int(round(validation / f)), "test_rows_full_estimate": int(round(test / f))}


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


def fit_and_evaluate(task: str, taxonomy: Taxonomy, settings: Settings, snaps: Snapshots, y_all: np.ndarray, rows: tuple,
                     split: TaskSplit | None = None):
    """Fit one task's model (and its logistic-regression baseline) on the train rows, tune and
    calibrate it on validation (``crossfit``: out of fold), choose what is served (the model or
    its best rule, :mod:`journey_stage.training.fallback`), and evaluate all of them on the test
    rows. Returns (model, served rule or None, report entry, test arrays)."""
    tr, va, te = rows
    crossfit = split is not None and split.crossfit
    y_tr, y_va, y_te = y_all[tr], y_all[va], y_all[te]
    if task != "stage":
        y_tr, y_va, y_te = (a.astype(int) for a in (y_tr, y_va, y_te))
    names, X = snaps.names, snaps.X
    lr = fit_logistic(X[tr], y_tr, settings.seed)  # the baseline, and the linear part of a binary blend
    if crossfit:
        model, tuned_proba = fit_task_crossfit(task, names, X[tr], y_tr, snaps.customer_ids[tr], settings, linear=lr)
        tune, y_tune = tr, y_tr
    else:
        model = fit_task(task, names, X[tr], y_tr, X[va], y_va, settings, linear=lr)
        tuned_proba, tune, y_tune = model.proba(X[va]), va, y_va
    observed = _stage_names(taxonomy, snaps.observed_stage[tune]) if task == "stage" else None
    rule, comparison = choose_served(task, model, tuned_proba, X[tune], y_tune, snaps.customer_ids[tune], observed, names, taxonomy, settings)
    test = HeldOut(X[te], y_te, snaps.customer_ids[te], snaps.cutoff_us[te])
    imp = dict(zip(names, model.booster.booster_.feature_importance("gain").astype(float)))
    if task == "stage":
        res, ev = evaluate_stage(model, lr, test, _stage_names(taxonomy, snaps.observed_stage[te]), taxonomy, settings, imp, rule)
    else:
        res, ev = evaluate_binary(task, model, lr, test, names, settings, imp, rule)
    res = {"served": comparison["served"], "validation": comparison} | res
    return model, rule, res, ev


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


PRIMARY = {"stage": "macro_f1", "churn": "roc_auc", "conversion": "roc_auc"}


def served_metrics(res: dict) -> dict:
    """The test metrics of what the predictor serves for a task (the model's, or its rule's)."""
    return res.get("served_metrics") or res.get("model", {})


def headline_metrics(report: dict) -> dict[str, float]:
    """Flat ``task.metric`` -> value of the served test metrics (for MLflow, /metadata and the gate)."""
    out = {}
    for task, res in report["tasks"].items():
        for k, v in served_metrics(res).items():
            if isinstance(v, (int, float)):
                out[f"{task}.{k}"] = float(v)
    return out

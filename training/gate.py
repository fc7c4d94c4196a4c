"""Score another predictor (the champion) on a training outcome's test rows, for the promotion gate."""

from __future__ import annotations

import numpy as np

from journey_stage.features.encode import EncodedEvents
from journey_stage.training.metrics import binary_metrics, stage_metrics
from journey_stage.training.pipeline import PRIMARY, TaskEval
from journey_stage.model.predictor import JourneyPredictor


def primary_scores(predictor: JourneyPredictor, events: EncodedEvents, evals: dict[str, TaskEval]) -> dict[str, float | None]:
    """``task.metric`` -> value of ``predictor`` on exactly the customers, cutoffs and labels of ``evals``."""
    out: dict[str, float | None] = {}
    for task, metric in PRIMARY.items():
        ev = evals.get(task)
        if ev is None:
            continue
        if task != "stage" and task not in predictor.models:
            out[f"{task}.{metric}"] = None
            continue
        scores = np.full(len(ev.y), np.nan) if task != "stage" else np.empty(len(ev.y), dtype=object)
        for t in np.unique(ev.cutoffs):
            sel = np.flatnonzero(ev.cutoffs == t)
            ff = predictor.features(events, int(t))
            pos = {c: i for i, c in enumerate(ff.customer_ids)}
            rows = np.array([pos[c] for c in ev.customers[sel]])
            pred = predictor.predict(ff, rows)
            if task == "stage":
                scores[sel] = pred.stage
            else:
                scores[sel] = pred.binary[task]
        if task == "stage":
            out[f"{task}.{metric}"] = stage_metrics(ev.y, scores.astype(str), None, ev.classes)[metric]
        else:
            ok = ~np.isnan(scores)
            out[f"{task}.{metric}"] = binary_metrics(ev.y[ok], scores[ok], probabilities=False)[metric] if ok.all() else None
    return out


def challenger_scores(report: dict) -> dict[str, float]:
    return {f"{t}.{m}": report["tasks"][t]["model"][m] for t, m in PRIMARY.items() if "model" in report["tasks"].get(t, {})}


def evaluate_predictor(predictor: JourneyPredictor, events: EncodedEvents) -> dict:
    """``journey evaluate``: a registered model on new data, at the latest test cutoff(s) its settings allow."""
    from journey_stage.features.build import eligible
    from journey_stage.features.encode import from_us
    from journey_stage.features.labels import build_labels
    from journey_stage.features.snapshots import plan_cutoffs
    from journey_stage.training.pipeline import _stage_names

    plan = plan_cutoffs(events, predictor.settings)
    tasks: dict[str, dict] = {}
    for task, split in plan.tasks.items():
        if not split.test or (task not in predictor.models):
            tasks[task] = {"skipped": split.note or "model has no such task"}
            continue
        ys, ps = [], []
        for t in split.test:
            ff = predictor.features(events, t)
            rows = np.flatnonzero(eligible(ff, predictor.settings))
            lab = build_labels(events, t, predictor.settings, ff.source_index[rows]).task(task)
            pred = predictor.predict(ff, rows)
            if task == "stage":
                ys.append(_stage_names(predictor.taxonomy, lab))
                ps.append(np.array(pred.stage, dtype=object))
            else:
                ok = ~np.isnan(lab) & ~np.isnan(pred.binary[task])
                ys.append(lab[ok].astype(int))
                ps.append(pred.binary[task][ok])
        y, p = np.concatenate(ys), np.concatenate(ps)
        if task == "stage":
            metrics = stage_metrics(y.astype(str), p.astype(str), None, predictor.models["stage"].classes)
        elif len(np.unique(y)) < 2:
            tasks[task] = {"skipped": "test rows have one class only"}
            continue
        else:
            metrics = binary_metrics(y, p)
        tasks[task] = {"n_test": int(len(y)), "test_cutoffs": [from_us(t).isoformat() for t in split.test], "model": metrics}
    return {"model": predictor.info, "tasks": tasks}

"""The promotion gate's numbers (SPEC 6): the champion scored on the challenger's test rows, paired
bootstrap comparisons over the same test customers, and the decision (a pure function of them).

- With a champion: promote when no primary metric (stage macro-F1, churn and conversion
  ROC-AUC) of what the challenger serves is *significantly* worse than the champion's: the
  ``gate_confidence`` paired-bootstrap interval of (challenger - champion) does not lie wholly
  below ``-gate_tolerance``.
- With no champion: the same test against each task's best rule baseline on the test rows
  (``tasks.<task>.versus_best_baseline`` of the challenger's report).
"""

from __future__ import annotations

import numpy as np

from journey_stage.features.encode import EncodedEvents
from journey_stage.training.metrics import RankedScores, binary_metrics, macro_f1_codes, paired_bootstrap, significantly_worse, stage_metrics
from journey_stage.training.evaluate import smaller_class_rows
from journey_stage.training.pipeline import PRIMARY, TaskEval, served_metrics
from journey_stage.model.predictor import JourneyPredictor


def champion_predictions(predictor: JourneyPredictor, events: EncodedEvents, evals: dict[str, TaskEval]) -> dict[str, np.ndarray | None]:
    """Per primary task, ``predictor``'s predictions on exactly the customers and cutoffs of
    ``evals`` (stage: predicted stages; binary: probabilities); None when it has no such task."""
    out: dict[str, np.ndarray | None] = {}
    for task in PRIMARY:
        ev = evals.get(task)
        if ev is None:
            continue
        if task not in predictor.models:
            out[task] = None
            continue
        scores = np.full(len(ev.y), np.nan) if task != "stage" else np.empty(len(ev.y), dtype=object)
        for t in np.unique(ev.cutoffs):
            sel = np.flatnonzero(ev.cutoffs == t)
            ff = predictor.features(events, int(t))
            pos = {c: i for i, c in enumerate(ff.customer_ids)}
            pred = predictor.predict(ff, np.array([pos[c] for c in ev.customers[sel]]))
            scores[sel] = pred.stage if task == "stage" else pred.binary[task]
        out[task] = scores
    return out


def challenger_scores(report: dict) -> dict[str, float]:
    """``task.metric`` -> the challenger's served test metric, for each primary task it trained."""
    return {f"{t}.{m}": served_metrics(report["tasks"][t])[m] for t, m in PRIMARY.items() if "model" in report["tasks"].get(t, {})}


def _metric_fns(task: str, ev: TaskEval, a: np.ndarray, b: np.ndarray):
    if task == "stage":
        code = {c: i for i, c in enumerate(ev.classes)}
        k = len(ev.classes)
        yc = np.array([code[c] for c in ev.y])

        def codes(stages):  # a stage outside the test classes counts as wrong
            return np.array([code[s] if s in code else (y + 1) % k for s, y in zip(stages, yc)])

        ca, cb = codes(a), codes(b)
        return (lambda w: macro_f1_codes(yc, ca, k, w)), (lambda w: macro_f1_codes(yc, cb, k, w))
    return RankedScores(ev.y, a).roc_auc, RankedScores(ev.y, b).roc_auc


def compare_with_champion(evals: dict[str, TaskEval], champion: dict[str, np.ndarray | None], settings) -> dict[str, dict]:
    """``task.metric`` -> paired bootstrap of (challenger served - champion) on the challenger's test rows."""
    out = {}
    for task, theirs in champion.items():
        ev, key = evals[task], f"{task}.{PRIMARY[task]}"
        mine = ev.served if ev.served is not None else ev.proba
        if theirs is None or (task != "stage" and np.isnan(theirs).any()):
            out[key] = {"challenger": None, "champion": None, "difference": None, "ci": None}
            continue
        fa, fb = _metric_fns(task, ev, mine, theirs)
        cmp = paired_bootstrap(fa, fb, ev.customers, settings.gate_bootstrap_rounds, settings.seed, settings.gate_confidence)
        out[key] = {"challenger": float(fa(None)), "champion": float(fb(None))} | cmp
        out[key]["inconclusive"] = smaller_class_rows(ev.y) < settings.gate_min_class_rows
    return out


def gate_record(evals: dict[str, TaskEval], report: dict, champion: JourneyPredictor | None, champion_version: str | None,
                events: EncodedEvents, settings) -> dict:
    """What the challenger's run stores for ``journey promote`` (tag ``gate``)."""
    champ_preds = champion_predictions(champion, events, evals) if champion is not None else None
    comparisons = compare_with_champion(evals, champ_preds, settings) if champ_preds is not None else {}
    return {
        "champion_version": champion_version,
        "challenger": challenger_scores(report),
        "champion": {k: v["champion"] for k, v in comparisons.items()} if champion is not None else {},
        "comparisons": comparisons,
        "confidence": settings.gate_confidence,
        "tolerance": settings.gate_tolerance,
    }


def baseline_comparisons(report: dict | None) -> dict[str, dict]:
    """``task.metric`` -> the served-vs-best-rule comparison of each primary task in ``report``."""
    tasks = (report or {}).get("tasks", {})
    return {f"{t}.{m}": tasks[t]["versus_best_baseline"] for t, m in PRIMARY.items() if "versus_best_baseline" in tasks.get(t, {})}


def decide(challenger: str, champion: str | None, gate: dict, baselines: dict[str, dict], tolerance: float) -> dict:
    """The promotion decision: ``{"promoted", "reason", "comparisons": {key: {..., "difference", "ci", "passed"}}}``."""
    d: dict = {"challenger": challenger, "champion": champion, "against": "champion" if champion else "best rule baseline",
               "tolerance": tolerance, "comparisons": {}}
    if champion is None:
        if not baselines:
            return d | {"promoted": True, "reason": "no champion yet (this challenger's report has no comparison with the rule baselines)"}
        for key, c in baselines.items():
            d["comparisons"][key] = {"challenger": c["served"], "baseline": c["baseline"], "baseline_value": c["baseline_value"],
                                     "difference": c["difference"], "ci": c.get("ci"), "inconclusive": bool(c.get("inconclusive")),
                                     "passed": not significantly_worse(c, tolerance)}
        worse = [f"{k} ({v['baseline']})" for k, v in d["comparisons"].items() if not v["passed"]]
        reason = ("no champion yet; not significantly worse than the best rule baseline on any primary metric" if not worse
                  else "no champion yet, and significantly worse than the best rule baseline on " + ", ".join(worse))
        return d | {"promoted": not worse, "reason": reason}
    if champion == challenger:
        return d | {"promoted": False, "reason": "challenger is already the champion"}
    if str(gate.get("champion_version")) != str(champion):
        return d | {"promoted": False, "reason": f"the challenger was not compared with champion v{champion} on the same test data; retrain to compare both"}
    for key, champ in gate.get("champion", {}).items():
        c = gate.get("comparisons", {}).get(key) or {"difference": None if champ is None else (gate["challenger"].get(key) or 0) - champ, "ci": None}
        chall = gate.get("challenger", {}).get(key)
        passed = chall is not None and (champ is None or c["difference"] is None or not significantly_worse(c, tolerance))
        d["comparisons"][key] = {"challenger": chall, "champion": champ, "difference": c["difference"], "ci": c.get("ci"),
                                 "inconclusive": bool(c.get("inconclusive")), "passed": passed}
    worse = [k for k, v in d["comparisons"].items() if not v["passed"]]
    reason = ("no primary metric significantly worse than the champion's" if not worse
              else "significantly worse than the champion on " + ", ".join(worse))
    return d | {"promoted": not worse, "reason": reason}


def evaluate_predictor(predictor: JourneyPredictor, events: EncodedEvents) -> dict:
    """``journey evaluate``: a registered model on new data, at the latest test cutoff(s) its settings allow
    (what it serves for each task: its model or its rule baseline)."""
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

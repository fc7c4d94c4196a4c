"""The one scoring path: canonical events -> features -> predictions -> next best action.

Batch scoring, Spark (per customer group), the HTTP service and the Python API all call
:func:`score_events`, so the same history gets the same answer everywhere.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from features.build import eligible
from features.encode import encode, from_us, to_us
from journey.taxonomy import LAPSED, LAPSED_INDEX
from serving.playbook import Playbook, load_playbook
from training.predictor import BINARY_TASKS, JourneyPredictor


def output_columns(predictor: JourneyPredictor, reasons: bool = False) -> list[str]:
    cols = ["customer_id", "as_of", "eligible", "observed_stage", "stage"]
    cols += [f"stage_probability_{s}" for s in predictor.taxonomy.stages]
    cols += [f"{t}_probability" for t in BINARY_TASKS]
    cols += ["next_best_action", "next_best_action_rule", "next_best_action_message", "next_best_action_because", "model_name", "model_version"]
    return cols + (["reasons"] if reasons else [])


def score_events(
    predictor: JourneyPredictor,
    events: pd.DataFrame,
    as_of: object = None,
    *,
    playbook: Playbook | None = None,
    reasons: bool = False,
    eligible_only: bool = True,
    top_k: int = 3,
) -> pd.DataFrame:
    """Score every customer of canonical ``events`` as of ``as_of`` (default: the latest event).

    ``eligible_only`` keeps the customers with an event in the eligibility window (batch);
    the HTTP service scores every customer it is asked about. Customers without any event at or
    before ``as_of`` cannot be scored and are left out (the caller reports them)."""
    playbook = playbook or load_playbook()
    cols = output_columns(predictor, reasons)
    if len(events) == 0:
        return pd.DataFrame(columns=cols)
    t_us = to_us(as_of) if as_of is not None else int(events["timestamp"].max().value // 1000)
    enc = encode(events, predictor.taxonomy)
    ff = predictor.features(enc, t_us)
    elig = eligible(ff, predictor.settings)
    rows = np.flatnonzero(elig) if eligible_only else np.arange(len(ff.customer_ids))
    pred = predictor.predict(ff, rows)
    stage = pred.stage
    why = predictor.reasons(ff, rows, stage, top_k) if reasons else None
    needed = sorted(playbook.features_needed)
    feat_idx = [predictor.feature_names.index(n) for n in needed]
    name = predictor.info.get("name", "")
    version = str(predictor.info.get("version", ""))
    as_of_iso = from_us(t_us).isoformat()
    n = len(rows)
    # Column-wise (same values as one dict per customer, several times faster): probabilities stay
    # float64 arrays (NaN where not applicable); the playbook still decides customer by customer.
    binary = {t: np.asarray(pred.binary[t], dtype=np.float64) for t in BINARY_TASKS}
    probs_py = {t: [None if v != v else v for v in binary[t].tolist()] for t in BINARY_TASKS}
    feats_py = {nm: ff.X[rows, j].astype(np.float64).tolist() for nm, j in zip(needed, feat_idx)}
    role_of = {s: _role(predictor, s) for s in set(stage)}
    nba = [
        playbook.decide(role_of[stage[i]], {t: probs_py[t][i] for t in BINARY_TASKS}, {nm: feats_py[nm][i] for nm in needed})
        for i in range(n)
    ]
    out: dict[str, object] = {
        "customer_id": [str(c) for c in ff.customer_ids[rows]],
        "as_of": [as_of_iso] * n,
        "eligible": elig[rows].tolist(),
        "observed_stage": list(pred.observed_stage),
        "stage": list(stage),
    }
    proba = np.asarray(pred.stage_proba, dtype=np.float64).reshape(n, len(pred.stage_names))
    for j, s in enumerate(pred.stage_names):
        out[f"stage_probability_{s}"] = proba[:, j].copy()
    for t in BINARY_TASKS:
        out[f"{t}_probability"] = binary[t]
    out["next_best_action"] = [d["action"] for d in nba]
    out["next_best_action_rule"] = [d["rule"] for d in nba]
    out["next_best_action_message"] = [d["message"] for d in nba]
    out["next_best_action_because"] = [d["because"] for d in nba]
    out["model_name"] = [name] * n
    out["model_version"] = [version] * n
    if reasons:
        out["reasons"] = [json.dumps(w, sort_keys=True) for w in why]
    for c in cols:
        if c.endswith("_probability") or c.startswith("stage_probability_"):
            out[c] = np.array([np.nan if v is None else v for v in out[c]], dtype=np.float64)
    return pd.DataFrame(out, columns=cols)


def to_records(frame: pd.DataFrame, predictor: JourneyPredictor) -> list[dict]:
    """Flat rows -> the HTTP response shape of SPEC section 8."""
    stages = predictor.taxonomy.stages
    recs = []
    for row in frame.to_dict(orient="records"):
        rec = {
            "customer_id": row["customer_id"],
            "as_of": row["as_of"],
            "observed_stage": row["observed_stage"],
            "stage": row["stage"],
            "stage_probabilities": {s: _num(row[f"stage_probability_{s}"]) for s in stages},
            "churn_probability": _num(row["churn_probability"]),
            "advocacy_probability": _num(row["advocacy_probability"]),
            "conversion_probability": _num(row["conversion_probability"]),
            "next_best_action": {
                "action": row["next_best_action"],
                "message": row["next_best_action_message"],
                "because": row["next_best_action_because"],
                "rule": row["next_best_action_rule"],
            },
            "reasons": json.loads(row["reasons"]) if isinstance(row.get("reasons"), str) else {},
            "model": {"name": row["model_name"], "version": row["model_version"]},
        }
        recs.append(rec)
    return recs


def _role(predictor: JourneyPredictor, stage: str | None) -> str:
    if stage is None:
        return LAPSED
    if stage == LAPSED:
        return LAPSED
    return predictor.taxonomy.role_of_stage(stage)


def _num(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if np.isnan(v) else v


__all__ = ["score_events", "to_records", "output_columns", "LAPSED_INDEX"]

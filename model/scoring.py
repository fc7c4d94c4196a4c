"""The one scoring path: canonical events -> features -> predictions -> next best action.

Batch scoring, Spark (per customer group), the HTTP service and the Python API all call
:func:`score_events`, so the same history gets the same answer everywhere.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from journey_stage.core.coerce import finite_or_none
from journey_stage.features.build import eligible
from journey_stage.features.encode import EncodedEvents, encode, iso_of_us, to_us
from journey_stage.core.taxonomy import LAPSED, LAPSED_INDEX
from journey_stage.model.playbook import Playbook, load_playbook
from journey_stage.model.predictor import BINARY_TASKS, JourneyPredictor


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
    cols = output_columns(predictor, reasons)
    out = score_columns(predictor, events, as_of, playbook=playbook, reasons=reasons, eligible_only=eligible_only, top_k=top_k)
    if out is None:
        return pd.DataFrame(columns=cols)
    if reasons:
        out["reasons"] = [json.dumps(w, sort_keys=True) for w in out["reasons"]]
    return pd.DataFrame(out, columns=cols)


def score_records(
    predictor: JourneyPredictor,
    events: pd.DataFrame | EncodedEvents,
    as_of: object = None,
    *,
    playbook: Playbook | None = None,
    eligible_only: bool = False,
    top_k: int = 3,
) -> list[dict]:
    """:func:`score_events` with reasons, in the HTTP response shape of SPEC section 8 (built from
    the same columns, without a DataFrame in between); each record also says ``eligible``."""
    out = score_columns(predictor, events, as_of, playbook=playbook, reasons=True, eligible_only=eligible_only, top_k=top_k)
    return [] if out is None else _records(out, predictor, with_eligible=True)


def score_columns(
    predictor: JourneyPredictor,
    events: pd.DataFrame | EncodedEvents,
    as_of: object = None,
    *,
    playbook: Playbook | None = None,
    reasons: bool = False,
    eligible_only: bool = True,
    top_k: int = 3,
) -> dict[str, object] | None:
    """The scoring core: :func:`output_columns` -> list or array (reasons as dicts); None when
    ``events`` is empty. ``events``: canonical events, or their :class:`EncodedEvents` (the HTTP
    service encodes small clean requests itself, :func:`journey_stage.features.encode.encode_rows`)."""
    playbook = playbook or load_playbook()
    encoded = isinstance(events, EncodedEvents)  # already encoded (the HTTP service's small requests)
    if (events.n_events if encoded else len(events)) == 0:
        return None
    if as_of is not None:
        t_us = to_us(as_of)
    else:
        t_us = int(events.ts.max()) if encoded else int(events["timestamp"].max().value // 1000)
    enc = events if encoded else encode(events, predictor.taxonomy)
    ff = predictor.features(enc, t_us)
    elig = eligible(ff, predictor.settings)
    rows = np.flatnonzero(elig) if eligible_only else np.arange(len(ff.customer_ids))
    pred = predictor.predict(ff, rows)
    stage = pred.stage
    needed = sorted(playbook.features_needed)
    feat_idx = [predictor.feature_names.index(n) for n in needed]
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
        "as_of": [iso_of_us(t_us)] * n,
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
    out["model_name"] = [predictor.info.get("name", "")] * n
    out["model_version"] = [str(predictor.info.get("version", ""))] * n
    if reasons:
        out["reasons"] = predictor.reasons(ff, rows, stage, top_k)
    return out


def to_records(frame: pd.DataFrame, predictor: JourneyPredictor) -> list[dict]:
    """Flat rows (:func:`score_events`) -> the HTTP response shape of SPEC section 8."""
    col: dict[str, object] = {c: frame[c].tolist() for c in frame.columns}
    if "reasons" in col:
        col["reasons"] = [json.loads(r) if isinstance(r, str) else {} for r in col["reasons"]]
    return _records(col, predictor)


def _records(col: dict, predictor: JourneyPredictor, with_eligible: bool = False) -> list[dict]:
    stages = predictor.taxonomy.stages
    n = len(col["customer_id"])
    probs = {s: [finite_or_none(v) for v in _list(col[f"stage_probability_{s}"])] for s in stages}
    binary = {t: [finite_or_none(v) for v in _list(col[f"{t}_probability"])] for t in BINARY_TASKS}
    reasons = col.get("reasons") or [{}] * n
    served = predictor.served  # task -> "model" or "baseline:<rule>": what answered for each task
    recs = []
    for i in range(n):
        recs.append({
            "customer_id": col["customer_id"][i],
            "as_of": col["as_of"][i],
            "observed_stage": col["observed_stage"][i],
            "stage": col["stage"][i],
            "stage_probabilities": {s: probs[s][i] for s in stages},
            "churn_probability": binary["churn"][i],
            "advocacy_probability": binary["advocacy"][i],
            "conversion_probability": binary["conversion"][i],
            "next_best_action": {
                "action": col["next_best_action"][i],
                "message": col["next_best_action_message"][i],
                "because": col["next_best_action_because"][i],
                "rule": col["next_best_action_rule"][i],
            },
            "reasons": reasons[i] if isinstance(reasons[i], dict) else {},
            "model": {"name": col["model_name"][i], "version": col["model_version"][i], "served": dict(served)},
        })
        if with_eligible:
            recs[-1]["eligible"] = bool(col["eligible"][i])
    return recs


def _list(v) -> list:
    return v.tolist() if isinstance(v, np.ndarray) else list(v)


def _role(predictor: JourneyPredictor, stage: str | None) -> str:
    if stage is None:
        return LAPSED
    if stage == LAPSED:
        return LAPSED
    return predictor.taxonomy.role_of_stage(stage)


__all__ = ["score_events", "score_records", "score_columns", "to_records", "output_columns", "LAPSED_INDEX"]

"""The HTTP service's small-request path (canonical rows encoded without a DataFrame, LightGBM's
single-row predictor) answers exactly as the general DataFrame path."""

from __future__ import annotations

import numpy as np
import pandas as pd

from journey_stage.core import events as core_events
from journey_stage.core.events import canonical_rows, tuples_frame
from journey_stage.core.runtime import RuntimeSettings
from journey_stage.features.encode import encode_rows
from journey_stage.model import registry, scoring


def _predictor(logged_model):
    home, uri, events = logged_model
    runtime = RuntimeSettings(home=home)
    registry.configure(runtime)
    return registry.load_predictor(uri, runtime), events


def _requests(events: pd.DataFrame, n: int) -> list[tuple[list[tuple], str]]:
    """One-customer requests (raw records, as_of) from the fixture's customers, with a duplicate
    and an event after as_of each."""
    out = []
    for cid, g in list(events.groupby("customer_id", sort=True))[:n]:
        recs = [(str(cid), ts.isoformat(), et, None if pd.isna(ch) else ch, None if pd.isna(v) else float(v), None if pd.isna(cp) else cp)
                for ts, et, ch, v, cp in zip(g["timestamp"], g["event_type"], g["channel"], g["value"], g["campaign"])]
        as_of = g["timestamp"].iloc[len(g) // 2 if len(g) > 2 else -1]
        out.append((recs + recs[:1], as_of.isoformat()))
    return out


def test_score_records_of_encoded_rows_equals_the_frame(logged_model):
    predictor, events = _predictor(logged_model)
    for recs, as_of in _requests(events, 25):
        rows = canonical_rows(recs, predictor.taxonomy)
        assert rows is not None
        t = pd.Timestamp(as_of)
        fast = scoring.score_records(predictor, encode_rows(rows, predictor.taxonomy), t)
        general = scoring.score_records(predictor, tuples_frame(rows), t)
        assert fast == general and fast
        # the four probabilities and the reasons are really computed (not all null)
        assert fast[0]["reasons"] and any(v is not None for v in fast[0]["stage_probabilities"].values())


def test_score_request_fast_path_equals_the_dataframe_path(logged_model, monkeypatch):
    from journey_stage.serving.requests import score_request
    from journey_stage.serving.schemas import request_models

    predictor, events = _predictor(logged_model)
    Customer = request_models(RuntimeSettings()).customer
    reqs = _requests(events, 15)
    customers = [
        [Customer(customer_id=recs[0][0], events=[dict(zip(("timestamp", "event_type", "channel", "value", "campaign"), r[1:])) for r in recs])]
        for recs, _ in reqs
    ]
    two = customers[0] + customers[1]  # two customers in one request
    fast = [score_request(predictor, c, as_of) for c, (_, as_of) in zip(customers, reqs)] + [score_request(predictor, two, reqs[0][1])]
    calls = []
    monkeypatch.setattr(core_events, "canonical_rows", lambda *a: calls.append(1))  # declines: the DataFrame path
    general = [score_request(predictor, c, as_of) for c, (_, as_of) in zip(customers, reqs)] + [score_request(predictor, two, reqs[0][1])]
    assert calls and fast == general
    codes = {w["code"] for r in fast for rec in r for w in rec["warnings"]}
    assert {"duplicate_events_removed", "events_after_as_of"} <= codes
    assert np.isfinite([rec["churn_probability"] or 0.0 for r in fast for rec in r]).all()

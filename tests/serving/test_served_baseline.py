"""A deliberately weak model (one constant tree per task) is served as its rule baselines and
says so over HTTP (issue 14). A real `journey serve` answers for it.

- ``test_http_answers_with_the_served_rules``: the answers are the rules' (needs nothing more).
- ``test_http_names_what_answered``: ``/metadata`` and every answer's ``model`` field carry
  ``served`` (``JourneyPredictor.identity()``).
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest

from serving_fixtures import AS_OF, ServiceModel, run_service

pytestmark = pytest.mark.slow
WEAK = {"n_estimators": 1, "num_leaves": 2, "min_child_samples": 100000, "booster_weights": [1.0], "bootstrap_rounds": 0}
SERVED = {"stage": "baseline:persistence", "churn": "baseline:recency", "advocacy": "baseline:recency", "conversion": "baseline:recency"}


@pytest.fixture(scope="module")
def weak_model(tmp_path_factory) -> ServiceModel:
    """800 synthetic customers, one constant tree per task, registered and promoted in its own store."""
    from journey_stage.core.events import canonical_events
    from journey_stage.core.settings import Settings
    from journey_stage.core.taxonomy import load_taxonomy
    from journey_stage.model import registry
    from journey_stage.synthetic.generate import generate_events
    from journey_stage.training import tracking
    from journey_stage.training.pipeline import train_and_evaluate

    home = tmp_path_factory.mktemp("weak-home")
    tax = load_taxonomy("five_stage")
    events = canonical_events(generate_events(800, seed=3), "generated", tax).events
    settings = Settings(**WEAK, purge_validation=False)
    outcome = train_and_evaluate(events, tax, settings)
    (home / "report").mkdir()
    (home / "report" / "report.json").write_text(json.dumps(outcome.report, default=str))
    events.to_parquet(home / "events.parquet", index=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JOURNEY_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        registry.configure()
        tracking.log_training_run(outcome, events, settings, home / "report", {}, settings.model_name)
        decision = tracking.promote(settings.model_name)
    assert decision["promoted"], decision  # serving its rules, it is not worse than them
    assert {t: outcome.report["tasks"][t]["served"] for t in SERVED} == SERVED
    return ServiceModel(home=home, events_path=home / "events.parquet")


@pytest.fixture(scope="module")
def service(weak_model, tmp_path_factory):
    with run_service(weak_model, tmp_path_factory.mktemp("weak-svc")) as svc:
        yield svc


def customers(events: pd.DataFrame, n: int = 6) -> list[dict]:
    before = events[events["timestamp"] <= pd.Timestamp(AS_OF)]
    ids = before.groupby("customer_id")["timestamp"].max().sort_values().index[-n:]
    return [{"customer_id": cid, "events": [{"timestamp": t.isoformat(), "event_type": e} for t, e in
                                            zip(before.loc[before["customer_id"] == cid, "timestamp"], before.loc[before["customer_id"] == cid, "event_type"])]}
            for cid in ids]


def test_http_answers_with_the_served_rules(weak_model, service):
    from journey_stage.core.events import canonical_events
    from journey_stage.model.scoring import score_records

    predictor = weak_model.load_predictor()
    assert predictor.served == SERVED
    events = pd.read_parquet(weak_model.events_path)
    body = {"customers": customers(events), "as_of": AS_OF}
    r = httpx.post(service.url + "/predict", json=body, timeout=120)
    assert r.status_code == 200, r.text
    flat = pd.DataFrame([{"customer_id": c["customer_id"], **e} for c in body["customers"] for e in c["events"]])
    expected = {rec["customer_id"]: rec for rec in score_records(predictor, canonical_events(flat, "request", predictor.taxonomy).events, AS_OF)}
    for p in r.json()["predictions"]:
        want = expected[p["customer_id"]]
        assert p["stage"] == p["observed_stage"] == want["stage"]  # persistence answers for the stage
        for key in ("conversion_probability", "advocacy_probability", "churn_probability"):
            assert (p[key] is None and want[key] is None) or np.isclose(p[key], want[key], rtol=0, atol=1e-9), key
        assert {it["feature"] for it in p["reasons"].get("conversion", [])} == {"days_since_last_event"}


def test_http_names_what_answered(weak_model, service):
    meta = httpx.get(service.url + "/metadata", timeout=60).json()
    assert meta["model"].get("served") == SERVED
    events = pd.read_parquet(weak_model.events_path)
    r = httpx.post(service.url + "/predict", json={"customers": customers(events, 2), "as_of": AS_OF}, timeout=120)
    assert r.status_code == 200, r.text
    assert all(p["model"].get("served") == SERVED for p in r.json()["predictions"])

"""Train -> register -> promote -> load -> predict, against a real MLflow server and the embedded store."""

from __future__ import annotations

import json
import uuid

import mlflow
import numpy as np
import pytest

from journey_stage.core.events import canonical_events
from journey_stage.synthetic.generate import generate_events
from journey_stage.core.io import write_table
from journey_stage.core.settings import Settings, build_settings
from journey_stage.core.taxonomy import load_taxonomy
from journey_stage.training import tracking
from journey_stage.model import registry
from journey_stage.training.pipeline import train_and_evaluate

pytestmark = pytest.mark.slow

FAST = {"n_estimators": 40, "bootstrap_rounds": 20, "max_train_rows": 20000}
BAD = FAST | {"n_estimators": 1, "num_leaves": 2, "min_child_samples": 100000, "seed": 1}
BAD_NO_RULE = BAD | {"serve_baseline": False}  # a constant model, served even though every rule beats it


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("events") / "events.parquet"
    df = generate_events(1200, seed=11)
    write_table(df, path, taxonomy="five_stage")
    return path


def _train(events_file, report_dir, overrides, name="journey-stage"):
    from journey_stage.cli import run_training

    tax = load_taxonomy("five_stage")
    return run_training(events_file, tax, build_settings(overrides), report_dir, model_name=name)


def _cycle(events_file, tmp_path, name):
    good = _train(events_file, tmp_path / "r1", FAST, name)
    report = json.loads((tmp_path / "r1" / "report.json").read_text())
    for key in ("dataset", "settings", "tasks"):
        assert key in report
    assert report["tasks"]["stage"]["model"]["macro_f1"] > 0
    page = (tmp_path / "r1" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 4
    for task in ("churn", "advocacy", "conversion"):  # every binary task says what model it is
        res = report["tasks"][task]
        if "skipped" not in res:
            w = res["blend"]["booster_weight"]
            assert w in build_settings(FAST).booster_weights  # one of the candidates the run was given
            assert res["blend"]["validation_roc_auc"][f"{w:g}"] >= max(res["blend"]["validation_roc_auc"].values()) - 1e-6
            assert ("LightGBM (" if w == 1 else f"LightGBM x{w:g} + logistic regression x{1 - w:g}") in page
    d = tracking.promote(name)
    assert d["promoted"] and d["reason"].startswith("no champion yet"), d
    assert d["against"] == "best rule baseline" and d["comparisons"]
    predictor = registry.load_predictor(f"models:/{name}@champion")
    assert predictor.info["version"] == good["version"]
    # the pyfunc model predicts from raw events
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    df = generate_events(30, seed=5).drop(columns=["true_stage"])
    df["timestamp"] = df["timestamp"].map(lambda t: t.isoformat())  # the pyfunc input: events as JSON-like text
    out = model.predict(df, params={"as_of": "2025-12-31T00:00:00+00:00"})
    assert {"customer_id", "stage", "churn_probability", "next_best_action"} <= set(out.columns)
    probs = out[[c for c in out.columns if c.startswith("stage_probability_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    return good


def test_cycle_against_real_mlflow_server(mlflow_server, events_file, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    _cycle(events_file, tmp_path, f"journey-stage-{uuid.uuid4().hex[:8]}")
    client = mlflow.MlflowClient(mlflow_server)
    runs = client.search_runs([mlflow.get_experiment_by_name("journey-stage").experiment_id])
    train_run = [r for r in runs if "gate" in r.data.tags][0]
    assert "test.stage.model.macro_f1" in train_run.data.metrics
    assert train_run.data.params["horizons.churn"] == "90.0"
    assert train_run.data.tags["data.fingerprint"]


def test_cycle_embedded_store_and_gate(events_file, tmp_path, monkeypatch):
    """The gate (issue 14): with no champion, a challenger significantly worse than a rule baseline
    is refused; a good one is promoted; a significantly worse challenger does not replace it; every
    decision is logged with its differences and intervals."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("JOURNEY_HOME", str(tmp_path / "home"))
    bad = _train(events_file, tmp_path / "bad", BAD_NO_RULE)
    d = tracking.promote("journey-stage")
    assert not d["promoted"] and "significantly worse than the best rule baseline" in d["reason"], d
    refused = {k: v for k, v in d["comparisons"].items() if not v["passed"]}
    assert refused and all(v["ci"][1] < 0 for v in refused.values())
    assert any(v["baseline"] == "recency" for v in refused.values())  # a binary model worse than the recency rule
    assert tracking.current_champion("journey-stage") is None
    good = _train(events_file, tmp_path / "good", FAST)
    d = tracking.promote("journey-stage")
    assert d["promoted"], d
    assert all(v["passed"] for v in d["comparisons"].values())
    assert tracking.current_champion("journey-stage") == good["version"]
    worse = _train(events_file, tmp_path / "worse", BAD_NO_RULE)
    d = tracking.promote("journey-stage")
    assert not d["promoted"], d
    assert any(not v["passed"] for v in d["comparisons"].values())
    stage = d["comparisons"]["stage.macro_f1"]
    assert stage["champion"] > stage["challenger"] and stage["ci"][1] < 0 and not stage["passed"]
    assert tracking.current_champion("journey-stage") == good["version"] != worse["version"] != bad["version"]
    assert (tmp_path / "home" / "mlflow.db").exists()
    # every decision is a run of its own, with the differences and their intervals
    client = mlflow.MlflowClient()
    runs = client.search_runs([mlflow.get_experiment_by_name("journey-stage").experiment_id], "tags.kind = 'promotion'")
    assert len(runs) == 3
    for run in runs:
        logged = json.loads(run.data.tags["decision"])
        assert logged["comparisons"] and all(c["ci"] is not None for c in logged["comparisons"].values())
        assert "stage.macro_f1.ci_low" in run.data.metrics and "stage.macro_f1.difference" in run.data.metrics


def test_tasks_without_positives_are_skipped():
    tax = load_taxonomy("five_stage")
    df = generate_events(600, seed=2).drop(columns=["true_stage"])
    adv = tax.advocacy_events
    df = df[~df["event_type"].isin(adv)]
    events = canonical_events(df, "gen", tax).events
    out = train_and_evaluate(events, tax, Settings(**FAST))
    assert "skipped" in out.report["tasks"]["advocacy"]
    assert out.report["tasks"]["advocacy"]["skipped"] == "needs at least 30 positive training rows, has 0"
    assert out.report["tasks"]["advocacy"]["sufficiency"]["verdict"] == "insufficient"
    assert "advocacy" not in out.predictor.models and "stage" in out.predictor.models

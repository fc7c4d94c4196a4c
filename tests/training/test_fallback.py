"""Never worse than a rule (issue 14): a task whose model does not beat its best rule baseline on
validation is served by that rule, calibrated, and every place that says which model answered
says so: report.json, the predictor (``served``, ``identity()``), every scored record, MLflow."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest

from journey_stage.core.events import canonical_events
from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import load_taxonomy
from journey_stage.model.baseline import PersistenceModel, RuleModel, rule_scores
from journey_stage.model.scoring import score_events, score_records
from journey_stage.synthetic.generate import generate_events
from journey_stage.training.metrics import binary_metrics, expected_calibration_error
from journey_stage.training.pipeline import train_and_evaluate

TAX = load_taxonomy("five_stage")
# one tree with two leaves that may hold at least 100,000 rows: a constant model
WEAK = {"n_estimators": 1, "num_leaves": 2, "min_child_samples": 100000, "booster_weights": [1.0], "bootstrap_rounds": 20}


@pytest.fixture(scope="module")
def events():
    return canonical_events(generate_events(800, seed=3), "generated", TAX).events


@pytest.fixture(scope="module")
def weak(events):
    return train_and_evaluate(events, TAX, Settings(**WEAK, purge_validation=False))


def test_a_one_tree_model_is_served_as_its_baseline(weak):
    report, predictor = weak.report, weak.predictor
    expected = {"stage": "baseline:persistence", "churn": "baseline:recency", "advocacy": "baseline:recency", "conversion": "baseline:recency"}
    assert {t: report["tasks"][t]["served"] for t in expected} == expected == predictor.served
    for task, res in report["tasks"].items():
        v = res["validation"]
        assert v["served"] == res["served"] and v["model"] <= v["baselines"][v["best_baseline"]]
        assert f"{task}: the model (" in " ".join(weak.messages)  # and the run says so
    assert predictor.identity() == {"name": "", "version": "", "served": expected}
    # what is served scores like the rule on the test rows: same ROC-AUC as recency (a monotone calibration)
    for task in ("churn", "conversion"):
        res = report["tasks"][task]
        assert res["served_metrics"]["roc_auc"] == pytest.approx(res["baselines"]["recency"]["roc_auc"], abs=1e-12)
        assert res["model"]["roc_auc"] == pytest.approx(0.5)  # the constant model itself
        assert res["versus_best_baseline"]["significantly_worse"] is False
    stage = report["tasks"]["stage"]
    assert stage["served_metrics"]["macro_f1"] == pytest.approx(stage["baselines"]["persistence"]["macro_f1"], abs=1e-12)
    assert report["tasks"]["stage"]["versus_best_baseline"]["difference"] == 0


def test_the_cli_table_and_report_html_say_what_is_served(weak):
    from rich.console import Console

    from journey_stage.training.report import render_html
    from journey_stage.views import summary_table

    console = Console(record=True, width=200)
    console.print(summary_table(weak.report))
    table = console.export_text()
    for task, rule in (("stage", "persistence"), ("churn", "recency"), ("conversion", "recency")):
        assert re.search(rf"│ {task}\s+│ temporal\s+│.*│ {rule} rule\s+│ (weak|sufficient)\s+│", table), table
    page = render_html(weak.report, {})
    assert page.count("rule</b>, calibrated: the model did not beat it on validation") == 4
    assert "Data sufficiency" in page and "no purge: training label windows" in page


def test_every_scored_record_names_what_answered(weak, events):
    predictor = weak.predictor
    recs = score_records(predictor, events[events["customer_id"].isin(events["customer_id"].unique()[:40])], "2025-12-01")
    assert recs and all(r["model"]["served"] == predictor.served for r in recs)
    # the served rule's probabilities are what the records say, and the stage is the observed one
    frame = score_events(predictor, events, "2025-12-01", reasons=True)
    assert (frame["stage"] == frame["observed_stage"]).all()
    p = frame[["stage_probability_" + s for s in TAX.stages]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    assert (p > 0).all()  # calibrated frequencies, never an exact 0
    reasons = [json.loads(r) for r in frame["reasons"]]
    assert {it["feature"] for r in reasons for it in r.get("stage", [])} == {"observed_stage"}
    assert {it["feature"] for r in reasons for it in r.get("conversion", [])} == {"days_since_last_event"}


def test_served_rules_are_calibrated(weak):
    """The recency rule served for conversion: probabilities on the test rows as well calibrated as
    the models' (ECE within 0.05) and ranked exactly like the raw rule."""
    ev = weak.evals["conversion"]
    assert ev.served_name == "baseline:recency"
    assert expected_calibration_error(ev.y, ev.served) < 0.05
    assert binary_metrics(ev.y, ev.served)["roc_auc"] == pytest.approx(binary_metrics(ev.y, ev.baselines["recency"], probabilities=False)["roc_auc"], abs=1e-12)


def test_a_model_that_beats_its_rules_is_served(events):
    out = train_and_evaluate(events, TAX, Settings(n_estimators=60, bootstrap_rounds=0, purge_validation=False))
    for task, res in out.report["tasks"].items():
        v = res["validation"]
        beats = v["model"] > v["baselines"][v["best_baseline"]]
        assert res["served"] == ("model" if beats else f"baseline:{v['best_baseline']}")
    assert "model" in out.predictor.served.values()
    off = train_and_evaluate(events, TAX, Settings(**WEAK, purge_validation=False, serve_baseline=False))
    assert set(off.predictor.served.values()) == {"model"} and not off.predictor.fallbacks


def test_predictors_pickled_before_served_existed_serve_their_models(weak, events):
    old = copy.copy(weak.predictor)
    del old.__dict__["fallbacks"]  # what unpickling a predictor written before issue 14 gives
    assert set(old.served.values()) == {"model"}
    frame = score_events(old, events, "2025-12-01")
    assert frame["conversion_probability"].nunique() == 1  # the constant model answers again


def test_rule_model_and_persistence_model_alone():
    rng = np.random.default_rng(0)
    names = ["days_since_last_event", "conversions_all", "observed_stage"]
    X = np.column_stack([rng.exponential(20, 4000), rng.poisson(1, 4000), rng.integers(0, 6, 4000)]).astype(float)
    X[:50, 0] = np.nan  # a missing recency counts as "long ago"
    y = (rng.random(4000) < 1 / (1 + np.exp(np.nan_to_num(X[:, 0], nan=1e3) / 10 - 1))).astype(int)
    rule = RuleModel.fit("conversion", "recency", names, X, y, Settings(), "sigmoid")
    p = rule.proba(X)[:, 1]
    raw = rule_scores("conversion", names, X, Settings())["recency"]
    assert binary_metrics(y, p)["roc_auc"] == pytest.approx(binary_metrics(y, raw, probabilities=False)["roc_auc"], abs=1e-12)
    assert abs(p.mean() - y.mean()) < 0.02 and p[:50].max() < p.mean()
    c = rule.contributions(X[:10])
    np.testing.assert_allclose(c.sum(axis=2)[:, 0], np.log(p[:10] / (1 - p[:10])), atol=1e-9)  # reasons add up to the margin
    stages = ["awareness", "consideration", "decision", "retention", "advocacy", "lapsed"]
    ys = np.array(stages, dtype=object)[np.where(rng.random(4000) < 0.6, X[:, 2].astype(int), 5)]
    pm = PersistenceModel.fit(stages, stages, names, X, ys)
    assert pm.choose(X[:5]) == [stages[int(r)] for r in X[:5, 2]]
    np.testing.assert_allclose(pm.proba(X).sum(axis=1), 1.0)
    lapsed_rate = np.mean(ys[X[:, 2] == 0] == "lapsed")
    assert pm.proba(X[X[:, 2] == 0][:1])[0, 5] == pytest.approx(lapsed_rate, abs=0.01)


@pytest.mark.slow
def test_served_baseline_survives_the_mlflow_round_trip(weak, events, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from journey_stage.model import registry
    from journey_stage.training import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("JOURNEY_HOME", str(tmp_path / "home"))
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "report.json").write_text(json.dumps(weak.report, default=str))
    registry.configure()
    logged = tracking.log_training_run(weak, events, weak.predictor.settings, tmp_path / "report", {}, "served-test")
    loaded = registry.load_predictor(logged["model_uri"])
    assert loaded.served == weak.predictor.served and loaded.identity()["version"] == logged["version"]
    tags = MlflowClient().get_run(logged["run_id"]).data.tags
    assert tags["conversion.served"] == "baseline:recency" and tags["conversion.protocol"] == "temporal"
    assert tags["conversion.sufficiency"] == "weak" and int(tags["conversion.sufficiency.positives.train"]) > 30

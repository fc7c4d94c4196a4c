"""The promotion gate knows noise and baselines (issue 14): paired bootstrap over the same test
customers; a loss inside the noise is promoted, a significant one refused; with no champion the
challenger is held to the best rule baseline; the decision and its intervals are logged."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pytest

from journey_stage.core.events import canonical_events
from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import load_taxonomy
from journey_stage.synthetic.generate import generate_events
from journey_stage.training import gate
from journey_stage.training.metrics import RankedScores, paired_bootstrap, significantly_worse

ROUNDS = 500


def scores_with_auc_loss(n: int = 4000, loss: float = 0.002, seed: int = 0):
    """Labels, a champion's scores and a challenger's: two models whose errors correlate (0.8), the
    challenger's signal weaker for a large ``loss``; the first draw whose ROC-AUC is ``loss`` (to a
    tenth of it, at least 0.0005) below the champion's. Three rows per customer."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    shared = rng.normal(0, 1, n)
    champ = y * 1.2 + shared
    base = RankedScores(y, champ).roc_auc()
    strength = 1.2 if loss < 0.01 else 0.95  # binormal ROC-AUC 0.80 vs 0.75
    for _ in range(1000):
        chall = y * strength + 0.8 * shared + 0.6 * rng.normal(0, 1, n)
        if abs(base - RankedScores(y, chall).roc_auc() - loss) < max(5e-4, loss / 10):
            return y, champ, chall, np.array([f"c{i // 3}" for i in range(n)])
    raise AssertionError("no draw with that loss")


def comparison(y, a, b, customers, rounds=ROUNDS):
    fa, fb = RankedScores(y, a).roc_auc, RankedScores(y, b).roc_auc
    return {"challenger": fa(None), "champion": fb(None)} | paired_bootstrap(fa, fb, customers, rounds, seed=0, confidence=0.95)


def test_paired_bootstrap_is_paired():
    y, champ, chall, cust = scores_with_auc_loss()
    same = comparison(y, champ, champ, cust)
    assert same["difference"] == 0 and same["ci"] == [0.0, 0.0]
    small = comparison(y, chall, champ, cust)
    assert small["difference"] == pytest.approx(-0.002, abs=5e-4)
    lo, hi = small["ci"]
    assert lo < small["difference"] < hi and hi - lo < 0.02  # far narrower than two unpaired intervals
    assert paired_bootstrap(lambda w: 0.5, lambda w: 0.4, cust, 0, 0)["ci"] is None  # no rounds: point value only


def test_a_loss_inside_the_noise_is_promoted_and_a_significant_one_refused():
    y, champ, chall, cust = scores_with_auc_loss(loss=0.002)
    noise = comparison(y, chall, champ, cust)
    assert noise["ci"][0] < 0 < noise["ci"][1] and not significantly_worse(noise)
    y2, champ2, bad, cust2 = scores_with_auc_loss(loss=0.05, seed=1)
    worse = comparison(y2, bad, champ2, cust2)
    assert worse["ci"][1] < 0 and significantly_worse(worse)
    record = {"champion_version": "1", "challenger": {"churn.roc_auc": noise["challenger"], "conversion.roc_auc": 0.9},
              "champion": {"churn.roc_auc": noise["champion"], "conversion.roc_auc": 0.85},
              "comparisons": {"churn.roc_auc": noise, "conversion.roc_auc": comparison(y, champ + 0.5 * y, champ, cust)}}
    d = gate.decide("2", "1", record, {}, 0.0)
    assert d["promoted"] and d["reason"] == "no primary metric significantly worse than the champion's", d
    assert d["comparisons"]["churn.roc_auc"]["difference"] == pytest.approx(-0.002, abs=5e-4)
    record["comparisons"]["churn.roc_auc"] = worse
    d = gate.decide("2", "1", record, {}, 0.0)
    assert not d["promoted"] and d["reason"] == "significantly worse than the champion on churn.roc_auc"
    assert gate.decide("2", "1", record, {}, tolerance=0.2)["promoted"]  # a tolerance absorbs it
    assert not gate.decide("2", "3", record, {}, 0.0)["promoted"]  # compared with another champion: refused


def test_with_no_champion_the_best_rule_is_the_bar():
    y, rule, model, cust = scores_with_auc_loss(loss=0.05)
    c = comparison(y, model, rule, cust)
    worse = {"served": c["challenger"], "baseline": "recency", "baseline_value": c["champion"]} | c
    level = worse | {"difference": 0.0, "ci": [0.0, 0.0], "served": c["champion"]}
    d = gate.decide("1", None, {}, {"churn.roc_auc": worse, "stage.macro_f1": level}, 0.0)
    assert not d["promoted"] and d["against"] == "best rule baseline"
    assert d["reason"] == "no champion yet, and significantly worse than the best rule baseline on churn.roc_auc (recency)"
    assert gate.decide("1", None, {}, {"stage.macro_f1": level}, 0.0)["promoted"]


def test_too_few_test_rows_of_a_class_are_inconclusive():
    """One positive test row: a bootstrap cannot show a significant loss; the comparison never blocks."""
    from journey_stage.training.evaluate import versus_best_rule

    rng = np.random.default_rng(3)
    y = np.zeros(60, int)
    y[7] = 1
    served, rule = rng.random(60), rng.random(60)
    served[7], rule[7] = 0.0, 1.0  # the rule ranks the one positive first, what is served ranks it last
    cust = np.array([f"c{i}" for i in range(60)])
    c = versus_best_rule(RankedScores(y, served).roc_auc, {"recency": RankedScores(y, rule).roc_auc}, cust, Settings(), "roc_auc", y)
    assert c["difference"] == -1.0 and c["inconclusive"] and not c["significantly_worse"]
    d = gate.decide("1", None, {}, {"conversion.roc_auc": c}, 0.0)
    assert d["promoted"] and d["comparisons"]["conversion.roc_auc"]["inconclusive"]
    strict = versus_best_rule(RankedScores(y, served).roc_auc, {"recency": RankedScores(y, rule).roc_auc}, cust,
                              Settings(gate_min_class_rows=1), "roc_auc", y)
    assert strict["significantly_worse"]  # with the minimum lowered to one row, the point loss decides


@pytest.mark.slow
def test_promote_decides_on_the_recorded_intervals_and_logs_them(tmp_path, monkeypatch):
    """The whole path on the embedded MLflow store: a model is logged twice; v1 (no champion) is
    held to its rules; v2 is recorded 0.002 worse than v1 inside the noise and promoted; v3 is
    recorded significantly worse and refused. Each decision is an MLflow run with its intervals."""
    from journey_stage.model import registry
    from journey_stage.training import tracking
    from journey_stage.training.pipeline import train_and_evaluate
    from journey_stage.training.report import write_report

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("JOURNEY_HOME", str(tmp_path / "home"))
    tax = load_taxonomy("five_stage")
    events = canonical_events(generate_events(800, seed=3), "generated", tax).events
    settings = Settings(n_estimators=30, bootstrap_rounds=0, purge_validation=False)
    outcome = train_and_evaluate(events, tax, settings)
    write_report(outcome, tmp_path / "report")
    registry.configure()
    name = "gate-test"

    def log(record: dict) -> str:
        logged = tracking.log_training_run(outcome, events, settings, tmp_path / "report", {}, name)
        tracking.record_gate(logged["run_id"], record["challenger"], record["champion"], record["champion_version"], record=record)
        return logged["version"]

    v1 = log({"champion_version": None, "challenger": {}, "champion": {}, "comparisons": {}})
    d1 = tracking.promote(name)
    vs = {k: v for k, v in outcome.report["tasks"].items() if "versus_best_baseline" in v}
    assert d1["against"] == "best rule baseline" and set(d1["comparisons"]) == {"stage.macro_f1", "churn.roc_auc", "conversion.roc_auc"}
    assert d1["promoted"] == all(not v["versus_best_baseline"]["significantly_worse"] for t, v in vs.items() if t != "advocacy")
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(name, "champion", v1)  # whatever the rules said, v1 is the champion now
    y, champ, chall, cust = scores_with_auc_loss(loss=0.002)
    noise = comparison(y, chall, champ, cust)
    v2 = log({"champion_version": v1, "challenger": {"churn.roc_auc": noise["challenger"]}, "champion": {"churn.roc_auc": noise["champion"]},
              "comparisons": {"churn.roc_auc": noise}, "tolerance": 0.0, "confidence": 0.95})
    d2 = tracking.promote(name)
    assert d2["promoted"] and tracking.current_champion(name) == v2, d2
    y, champ, bad, cust = scores_with_auc_loss(loss=0.05, seed=1)
    worse = comparison(y, bad, champ, cust)
    v3 = log({"champion_version": v2, "challenger": {"churn.roc_auc": worse["challenger"]}, "champion": {"churn.roc_auc": worse["champion"]},
         "comparisons": {"churn.roc_auc": worse}, "tolerance": 0.0, "confidence": 0.95})
    d3 = tracking.promote(name)
    assert not d3["promoted"] and tracking.current_champion(name) == v2
    runs = client.search_runs([mlflow.get_experiment_by_name(registry.EXPERIMENT).experiment_id], "tags.kind = 'promotion'",
                              order_by=["attributes.start_time ASC"])
    assert [r.data.tags["promoted"] for r in runs] == [str(d1["promoted"]).lower(), "true", "false"]
    last = runs[-1].data
    assert last.metrics["churn.roc_auc.difference"] == pytest.approx(worse["difference"])
    assert (last.metrics["churn.roc_auc.ci_low"], last.metrics["churn.roc_auc.ci_high"]) == pytest.approx(tuple(worse["ci"]))
    assert json.loads(last.tags["decision"])["comparisons"]["churn.roc_auc"]["passed"] is False
    # the challenger's training run holds the record the decision was made on
    assert "gate.churn.roc_auc.ci_high" in client.get_run(client.get_model_version(name, v3).run_id).data.metrics

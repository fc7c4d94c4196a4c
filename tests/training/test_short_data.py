"""Short and small event logs train what they can (issue 14): CDNOW cut to its last 92 days, a
90-day and a 300-customer synthetic log. Every task with an honest split trains (or serves its
rule) and the report names the protocol; the others are skipped with what is missing in numbers;
a log that supports no task is refused in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from journey_stage.core.errors import JourneyError
from journey_stage.core.events import canonical_events
from journey_stage.core.settings import TASKS, Settings, build_settings
from journey_stage.core.taxonomy import load_taxonomy
from journey_stage.synthetic.generate import generate_events
from journey_stage.training.pipeline import train_and_evaluate

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
FAST = {"n_estimators": 60, "bootstrap_rounds": 50, "gate_bootstrap_rounds": 100}
NUMBER = re.compile(r"\d")


def cdnow_last_days(days: int) -> pd.DataFrame:
    from journey_stage.core.convert import convert_cdnow

    if not (REAL / "cdnow").exists():
        pytest.skip("real data not present")
    tax = load_taxonomy("cdnow")
    ev = canonical_events(convert_cdnow(REAL / "cdnow" / "CDNOW_master.txt"), "cdnow", tax).events
    end = ev["timestamp"].max().normalize() + pd.Timedelta(days=1)
    return ev[ev["timestamp"] >= end - pd.Timedelta(days=days)].reset_index(drop=True)


def train(df: pd.DataFrame, taxonomy: str, overrides: dict | None = None):
    tax = load_taxonomy(taxonomy)
    events = canonical_events(df, "events", tax).events
    return train_and_evaluate(events, tax, build_settings(tax.settings, FAST, overrides or {}))


def check_every_task(outcome) -> dict[str, str]:
    """Each task either trained with a named protocol and says what it serves, or was skipped
    because the plan found no honest split, with a number in the reason. Returns task -> protocol or 'skipped'."""
    seen = {}
    for task in TASKS:
        res, split = outcome.report["tasks"][task], outcome.plan.tasks[task]
        suff = res["sufficiency"]
        if split.usable:
            assert "skipped" not in res, (task, res.get("skipped"))
            assert res["protocol"] == split.protocol == suff["protocol"] and res["protocol_detail"].startswith(split.protocol)
            assert res["served"] == outcome.predictor.served[task] and re.fullmatch(r"model|baseline:\w+", res["served"])
            assert suff["verdict"] in ("sufficient", "weak")
            seen[task] = res["protocol"]
        else:
            assert suff["verdict"] == "insufficient" and NUMBER.search(res["skipped"]), res
            assert task not in outcome.predictor.models
            seen[task] = "skipped"
    return seen


def test_three_month_purchase_log_trains_conversion_beside_recency():
    """The issue's user: a three-month purchase log (CDNOW's last 92 days: 5,944 purchases, 3,337
    customers, mostly one or two each), `--horizon conversion=30 --test-from <day 62>`."""
    df = cdnow_last_days(92)
    assert len(df) == 5944 and df["customer_id"].nunique() == 3337
    day62 = (df["timestamp"].min() + pd.Timedelta(days=62)).strftime("%Y-%m-%d")
    assert day62 == "1998-06-01"
    out = train(df, "cdnow", {"horizons": {"conversion": 30}, "test_from": day62})
    conv = out.report["tasks"]["conversion"]
    assert conv["protocol"] in ("short", "unpurged", "crossfit") and conv["sufficiency"]["verdict"] == "weak"
    assert 0.5 < conv["model"]["roc_auc"] < 1 and "recency" in conv["baselines"]
    served = conv.get("served_metrics", conv["model"])["roc_auc"]
    print(f"\nCDNOW last 92 days, conversion in 30 d, test from {day62} ({conv['n_test']} test rows, protocol {conv['protocol']}): "
          f"model ROC-AUC {conv['model']['roc_auc']:.3f}, recency {conv['baselines']['recency']['roc_auc']:.3f}, "
          f"past conversion {conv['baselines']['past_conversion']['roc_auc']:.3f}; served {conv['served']} ({served:.3f})")
    assert not conv["versus_best_baseline"]["significantly_worse"]
    seen = check_every_task(out)
    assert seen["churn"] == "skipped" and out.report["tasks"]["churn"]["skipped"].startswith("needs 61 more days of events after --test-from")
    assert out.report["tasks"]["advocacy"]["skipped"] == "needs at least 30 positive training rows, has 0"


@pytest.mark.parametrize("case", ["cdnow-92-days", "synthetic-90-days", "synthetic-300-customers"])
def test_short_and_small_logs_train_what_they_can(case):
    if case == "cdnow-92-days":
        out, expect = train(cdnow_last_days(92), "cdnow"), {"stage", "conversion"}
    elif case == "synthetic-90-days":
        out, expect = train(generate_events(2000, seed=1, days=90), "five_stage"), {"stage", "conversion"}
    else:
        out, expect = train(generate_events(300, seed=4), "five_stage"), {"stage", "advocacy", "conversion"}
    seen = check_every_task(out)
    assert {t for t, p in seen.items() if p != "skipped"} == expect, seen
    for task in expect:  # the report names the protocol and the sufficiency facts it was chosen on
        res = out.report["tasks"][task]
        assert res["sufficiency"]["rows"]["train"] >= res["train_rows"] > 0
    print(f"\n{case}: " + "; ".join(f"{t}: {p}, served {out.report['tasks'][t].get('served', '-')}" for t, p in seen.items()))


def test_a_log_that_supports_no_task_is_refused_in_one_line():
    """REES46's three hours: every task needs a label window of days; one error names each task's shortfall."""
    from journey_stage.core.convert import convert_rees46

    if not (REAL / "rees46_2019oct_head").exists():
        pytest.skip("real data not present")
    with pytest.raises(JourneyError) as err:
        train(convert_rees46(REAL / "rees46_2019oct_head"), "rees46")
    msg = err.value.message
    assert msg.startswith("no task can train on this data: ") and "\n" not in msg
    for task in TASKS:
        assert re.search(rf"{task}: needs \d+ more days of events", msg), msg


def test_crossfit_protocol_calibrates_out_of_fold():
    """Forced to the last rung: no validation slice; the model is calibrated on out-of-fold margins."""
    from journey_stage.model.task_model import FoldCalibration

    out = train(generate_events(1200, seed=11), "five_stage", {"protocols": ["crossfit"], "crossfit_folds": 3})
    for task, m in out.predictor.models.items():
        res = out.report["tasks"][task]
        assert res["protocol"] == "crossfit" and res["validation_rows"] == 0
        assert isinstance(m.calibrator, FoldCalibration) and "cross-fitted over 3 customer folds" in m.calibration_method
        assert res["validation"]["rows"] == res["train_rows"]  # the model-vs-rule choice was made out of fold
        X = out.snapshots.X[out.snapshots.rows(out.plan.tasks[task].test)][:50]
        p = m.proba(X)
        assert (p >= 0).all() and (p <= 1).all() and abs(p.sum(axis=1) - 1).max() < 1e-9
        assert abs(m.proba_from_margin(m.margin(X)) - p).max() == 0
    assert Settings().protocols[-1] == "crossfit"

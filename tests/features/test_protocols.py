"""The protocol ladder and the data-sufficiency census (features/protocols.py, issue 14): the
configured split on long logs, the richest honest rung on short ones, every rung's label windows
ending by the first test cutoff, and insufficiency reasons in numbers that match the data."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey_stage.core.events import canonical_events
from journey_stage.core.settings import TASKS, Settings, build_settings
from journey_stage.core.taxonomy import load_taxonomy
from journey_stage.features.encode import US_PER_DAY, encode, from_us, to_us
from journey_stage.features.labels import build_labels
from journey_stage.features.protocols import Census, candidates, eligible_at, frame_of
from journey_stage.features.snapshots import plan_cutoffs
from journey_stage.synthetic.generate import generate_events

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
NEEDS_DAYS = re.compile(r"^needs (\d+) more days of (history before the first test cutoff|events)")


def encoded(df: pd.DataFrame, taxonomy: str):
    tax = load_taxonomy(taxonomy)
    return encode(canonical_events(df, "events", tax).events, tax), tax


@pytest.fixture(scope="module")
def cdnow():
    if not (REAL / "cdnow").exists():
        pytest.skip("real data not present")
    from journey_stage.core.convert import convert_cdnow

    return encoded(convert_cdnow(REAL / "cdnow" / "CDNOW_master.txt"), "cdnow")


def last_days(enc_tax, days: int):
    """The events of the last ``days`` days of the log (whole days), re-encoded."""
    enc, tax = enc_tax
    end = (int(enc.ts.max()) // US_PER_DAY + 1) * US_PER_DAY
    keep = enc.ts >= end - days * US_PER_DAY
    return enc.subset(keep), tax


@pytest.fixture(scope="module")
def cdnow92(cdnow):
    return last_days(cdnow, 92)


def test_long_log_keeps_the_configured_split(cdnow):
    """CDNOW with the README's command: the configured (temporal, purged) split, unchanged by the
    ladder: the churn cutoffs are those recorded before it existed."""
    enc, tax = cdnow
    plan = plan_cutoffs(enc, build_settings(tax.settings, {"horizons": {"churn": 91}, "test_from": "1998-04-01"}))
    for task in ("stage", "churn", "conversion"):
        assert plan.tasks[task].protocol == "temporal" and plan.tasks[task].purged
        assert plan.sufficiency[task]["verdict"] == "sufficient", plan.sufficiency[task]
    churn = plan.tasks["churn"]
    iso = lambda ts: [from_us(t).date().isoformat() for t in ts]  # noqa: E731
    assert iso(churn.test) == ["1998-04-01"]
    assert iso(churn.validation) == ["1997-12-10", "1997-12-17", "1997-12-24", "1997-12-31"]
    assert len(churn.train) == 32 and iso(churn.train[:1] + churn.train[-1:]) == ["1997-02-05", "1997-09-10"]
    assert len(plan.tasks["stage"].test) == 12
    assert plan.sufficiency["advocacy"]["verdict"] == "insufficient"
    assert plan.sufficiency["advocacy"]["reason"] == "needs at least 30 positive training rows, has 0"  # no advocacy events


def test_three_month_log_falls_back_to_a_shorter_honest_protocol(cdnow92):
    """CDNOW cut to its last 92 days, conversion in 30 days, test from day 62: the configured split
    does not fit (four validation cutoffs, the purge and the warm-up each take a horizon or more)
    and the ladder finds the richest rung that does; churn (91 days) cannot fit at all."""
    enc, tax = cdnow92
    s = build_settings(tax.settings, {"horizons": {"conversion": 30}, "test_from": "1998-06-01"})
    plan = plan_cutoffs(enc, s)
    conv = plan.tasks["conversion"]
    assert conv.usable and conv.protocol != "temporal"
    f = plan.sufficiency["conversion"]
    assert f["verdict"] == "weak" and f["protocol"] == conv.protocol
    assert [p["protocol"] for p in f["passed_over"]][:1] == ["temporal"]  # the richer rungs were tried first
    assert NEEDS_DAYS.match(f["passed_over"][0]["reason"])
    H = 30 * US_PER_DAY
    assert conv.test == [to_us("1998-06-01")]
    assert all(t + H <= conv.test[0] for t in conv.train + conv.validation)  # SPEC 4: windows end by the first test cutoff
    assert f["positives"]["train"] >= s.min_train_positives and f["positives"]["test"] >= 1
    churn = plan.sufficiency["churn"]
    assert churn["verdict"] == "insufficient" and not plan.tasks["churn"].usable
    assert churn["reason"].startswith("needs 61 more days of events after --test-from 1998-06-01")  # 06-01 + 91 d = 08-31; log ends 07-01


def test_positive_counts_are_the_labels(cdnow92):
    """The census's positives of a part equal the labels counted directly at its cutoffs."""
    enc, tax = cdnow92
    s = build_settings(tax.settings, {"horizons": {"conversion": 30}, "test_from": "1998-06-01"})
    plan = plan_cutoffs(enc, s)
    split, f = plan.tasks["conversion"], plan.sufficiency["conversion"]
    for part in ("train", "validation", "test"):
        ys = [build_labels(enc, t, s, np.flatnonzero(eligible_at(enc, t, s))).conversion for t in getattr(split, part)]
        y = np.concatenate(ys) if ys else np.array([])
        assert f["rows"][part] == int((~np.isnan(y)).sum()) and f["positives"][part] == int(np.nansum(y))
        assert f["eligible_per_cutoff"][part] == ([min(map(len, ys)), max(map(len, ys))] if ys else None)


def test_missing_history_is_counted_in_days():
    """A test cutoff 19 days into the log, a 30-day horizon, weekly cutoffs after a 7-day warm-up:
    the one cross-fitted training cutoff needs 7 + 35 days before the test cutoff, so 23 are missing."""
    df = generate_events(400, seed=2, days=120, start="2025-01-01").drop(columns=["true_stage"])
    enc, _ = encoded(df, "five_stage")
    start = pd.Timestamp(from_us(int(enc.ts.min())))
    test_from = start.normalize() + pd.Timedelta(days=19) + (start - start.normalize())
    s = Settings(horizons={"conversion": 30}, test_from=test_from, warmup_days=7, protocols=["crossfit"])
    f = plan_cutoffs(enc, s).sufficiency["conversion"]
    assert f["verdict"] == "insufficient"
    assert f["reason"].startswith("needs 23 more days of history before the first test cutoff"), f["reason"]
    assert "(42 days in all), the log has 19" in f["reason"]


def test_too_few_positives_name_the_count():
    df = generate_events(300, seed=4).drop(columns=["true_stage"])
    enc, _ = encoded(df, "five_stage")
    s = Settings()
    f = plan_cutoffs(enc, s).sufficiency["churn"]
    m = re.fullmatch(r"needs at least 30 positive training rows, has (\d+)", f["reason"])
    assert f["verdict"] == "insufficient" and m, f["reason"]
    assert int(m.group(1)) == f["positives"]["train"] < 30  # the number in the message is the census's


@pytest.mark.parametrize("make", [
    lambda: generate_events(300, seed=4),
    lambda: generate_events(1500, seed=1, days=90),
    lambda: generate_events(800, seed=3, days=200),
], ids=["300-customers", "90-days", "200-days"])
def test_every_candidate_of_every_rung_is_honest(make):
    """Whatever rung a task lands on, its training and validation label windows end by the first
    test cutoff, purged rungs end training windows by the first validation cutoff, and the
    cross-fitted rung has no validation slice."""
    enc, _ = encoded(make().drop(columns=["true_stage"]), "five_stage")
    s = Settings()
    fr = frame_of(enc, s)
    seen = set()
    for task in TASKS:
        H = int(getattr(s.horizons, task) * US_PER_DAY)
        for split, n_validation in candidates(task, fr, s):
            seen.add(split.protocol)
            if not split.test:
                continue
            assert all(t + H <= split.test[0] for t in split.train + split.validation)
            assert all(t + H <= fr.observed_until for t in split.test)
            if split.purged and split.validation:
                assert all(t + H <= split.validation[0] for t in split.train)
            assert split.validation == [] if split.crossfit else len(split.validation) <= n_validation
    assert seen == {"temporal", "short", "unpurged", "crossfit"}


def test_short_grid_shrinks_with_the_log_only():
    s = Settings()
    long_enc, _ = encoded(generate_events(200, seed=1, days=365).drop(columns=["true_stage"]), "five_stage")
    short_enc, _ = encoded(generate_events(200, seed=1, days=40).drop(columns=["true_stage"]), "five_stage")
    for enc, step in ((long_enc, 7.0), (short_enc, 3.0)):
        split, _ = [c for c in candidates("stage", frame_of(enc, s), s) if c[0].protocol == "short"][0]
        assert split.step_days == step and split.warmup_days == step  # 41 observed days / 13 -> 3-day steps


@pytest.mark.skipif(not (REAL / "rees46_2019oct_head").exists(), reason="real data not present")
def test_three_hours_of_clickstream_support_no_task():
    from journey_stage.core.convert import convert_rees46

    enc, tax = encoded(convert_rees46(REAL / "rees46_2019oct_head"), "rees46")
    plan = plan_cutoffs(enc, build_settings(tax.settings))
    for task in TASKS:
        f = plan.sufficiency[task]
        H = getattr(build_settings(tax.settings).horizons, task)
        m = NEEDS_DAYS.match(f["reason"])
        assert f["verdict"] == "insufficient" and not plan.tasks[task].usable and m, f
        assert int(m.group(1)) >= 2 * H - 1  # a training and a test label window do not fit in one day
        assert "2019-10-01 00:00 .. 2019-10-01 02:50" in f["reason"]


def test_census_counts_once_per_cutoff(cdnow92):
    enc, tax = cdnow92
    census = Census(enc, build_settings(tax.settings))
    t = int(enc.ts.max()) - 30 * US_PER_DAY
    assert census.at(t) is census.at(t)
    assert census.at(t)["eligible"] == int(eligible_at(enc, t, census.settings).sum())

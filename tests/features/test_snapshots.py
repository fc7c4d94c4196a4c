"""Training snapshots and the temporal split (features/snapshots.py): customer sampling before
features, the clipped label windows of ``label_windows = "clip_at_test"`` and
``outcomes_recorded_from``; the Olist and CDNOW presets' plans on the real files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey_stage.features.build import build_features, eligible
from journey_stage.features.encode import US_PER_DAY, encode, from_us, to_us
from journey_stage.features.labels import build_labels
from journey_stage.features.snapshots import build_snapshots, customer_subset, eligible_at, plan_cutoffs
from journey_stage.core.events import canonical_events
from journey_stage.synthetic.generate import generate_events
from journey_stage.core.settings import TASKS, Settings, build_settings
from journey_stage.core.taxonomy import load_taxonomy

TAX = load_taxonomy("five_stage")
REAL = Path(__file__).resolve().parents[2] / "data" / "real"


@pytest.fixture(scope="module")
def enc():
    df = generate_events(400, seed=3, days=300).drop(columns=["true_stage"])
    return encode(canonical_events(df, "gen", TAX).events, TAX)


@pytest.mark.parametrize("elig", [90, 7, None])
def test_eligible_at_equals_eligible_on_features(enc, elig):
    s = Settings(eligibility_days=elig)
    for t in np.linspace(enc.ts.min(), enc.ts.max() + US_PER_DAY, 9).astype(np.int64):
        ff = build_features(enc, int(t), s)
        mine = np.zeros(enc.n_customers, bool)
        mine[ff.source_index[eligible(ff, s)]] = True
        np.testing.assert_array_equal(eligible_at(enc, int(t), s), mine)


def test_snapshot_rows_equal_features_of_all_customers(enc):
    """Sampling customers before computing features changes nothing in the rows that are kept."""
    s = Settings(max_train_rows=1000, step_days=14)
    plan = plan_cutoffs(enc, s)
    snaps = build_snapshots(enc, plan, s, sample_train_rows=300)
    keep_whole = plan.whole_cutoffs
    sampled = 0
    for t in plan.all_cutoffs:
        ff = build_features(enc, t, s)
        rows = np.flatnonzero(eligible(ff, s))
        r = snaps.rows([t])
        pos = {c: i for i, c in enumerate(ff.customer_ids)}
        idx = np.array([pos[c] for c in snaps.customer_ids[r]], dtype=int)
        assert set(idx) <= set(rows)
        if t in keep_whole:
            assert len(idx) == len(rows)
        else:
            sampled += len(idx) < len(rows)
        np.testing.assert_array_equal(snaps.X[r], ff.X[idx])
        np.testing.assert_array_equal(snaps.observed_stage[r], ff.observed_stage[idx])
        lab = build_labels(enc, t, s, ff.source_index[idx])
        for task in TASKS:
            np.testing.assert_array_equal(snaps.labels[task][r], lab.task(task))
    assert sampled > 0  # the sample did bite
    assert snaps.names == ff.names


def test_customer_subset_keeps_source_index(enc):
    pick = np.array([3, 10, 11, 200])
    sub = customer_subset(enc, pick)
    np.testing.assert_array_equal(sub.source_index, pick)
    np.testing.assert_array_equal(sub.customer_ids, enc.customer_ids[pick])
    assert sub.n_events == np.isin(enc.cust, pick).sum()


def _split_settings(**kw):
    """The split mechanics on 400 customers: class minimums of 1 keep every task on the configured (temporal) rung."""
    kw = {"min_train_positives": 1, "min_validation_positives": 1} | kw
    return Settings(horizons={"conversion": 60, "churn": 60}, step_days=7, test_from=pd.Timestamp("2025-08-01", tz="UTC"), **kw)


def test_complete_windows_end_by_first_test_cutoff(enc):
    plan = plan_cutoffs(enc, _split_settings())
    for task, sp in plan.tasks.items():
        H = int(getattr(_split_settings().horizons, task) * US_PER_DAY)
        assert sp.label_end_us is None
        assert all(t + H <= sp.test[0] for t in sp.train + sp.validation)


def test_clipped_windows_never_read_past_first_test_cutoff(enc):
    """clip_at_test: training/validation cutoffs run up to the first test cutoff, and their labels
    are identical whatever happens after it (events after it removed, or shifted around)."""
    s = _split_settings(purge_validation=False, label_windows="clip_at_test")
    plan = plan_cutoffs(enc, s)
    sp = plan.tasks["conversion"]
    test0 = sp.test[0]
    H = int(s.horizons.conversion * US_PER_DAY)
    assert sp.label_end_us == test0
    assert max(sp.validation) < test0 and max(sp.validation) + H > test0  # windows really are cut
    assert min(sp.test) == test0 == to_us("2025-08-01")
    full = build_snapshots(enc, plan, s)
    # the same data with every event after the first test cutoff removed
    cut = enc.subset(enc.ts <= test0)
    part = build_snapshots(cut, plan, s)
    for task in TASKS:
        if plan.tasks[task].label_end_us is None:
            continue
        cutoffs = plan.tasks[task].train + plan.tasks[task].validation
        a, b = full.rows(cutoffs), part.rows(cutoffs)
        np.testing.assert_array_equal(full.customer_ids[a], part.customer_ids[b])
        np.testing.assert_array_equal(full.labels[task][a], part.labels[task][b])
    # ...while the clip really changes labels compared with full windows (the test can fail)
    r = full.rows(sp.validation)
    full_windows = plan_cutoffs(enc, _split_settings())
    assert sp.validation != full_windows.tasks["conversion"].validation
    unclipped = np.concatenate([
        build_labels(enc, t, s, customer_subset_index(enc, full, t)).conversion for t in sp.validation
    ])
    assert np.nansum(unclipped) > np.nansum(full.labels["conversion"][r])
    # test rows keep their whole window
    for t in sp.test:
        rt = full.rows([t])
        lab = build_labels(enc, t, s, customer_subset_index(enc, full, t)).conversion
        np.testing.assert_array_equal(full.labels["conversion"][rt], lab)


def customer_subset_index(enc, snaps, t):
    pos = {c: i for i, c in enumerate(enc.customer_ids)}
    return np.array([pos[c] for c in snaps.customer_ids[snaps.rows([t])]], dtype=int)


def test_outcomes_recorded_from_drops_earlier_training_cutoffs(enc):
    rec = pd.Timestamp("2025-06-01", tz="UTC")
    s = _split_settings(purge_validation=False, label_windows="clip_at_test", outcomes_recorded_from=rec)
    plan = plan_cutoffs(enc, s)
    for sp in plan.tasks.values():
        assert sp.train and min(sp.train) >= to_us(rec)
    base = plan_cutoffs(enc, _split_settings(purge_validation=False, label_windows="clip_at_test"))
    assert min(base.tasks["conversion"].train) < to_us(rec)
    assert base.tasks["conversion"].test == plan.tasks["conversion"].test


def test_settings_reject_unknown_label_window_mode():
    from journey_stage.core.errors import ConfigError

    with pytest.raises(ConfigError, match="label_windows"):
        build_settings({"label_windows": "peek"})


@pytest.mark.skipif(not (REAL / "olist_marketing_funnel").exists(), reason="real data not present")
def test_olist_preset_plan_trains_on_recorded_outcomes_without_reading_past_test(tmp_path):
    from journey_stage.core.convert import convert_olist_funnel
    from journey_stage.core.io import read_events, write_table

    tax = load_taxonomy("olist_funnel")
    out = tmp_path / "olist.parquet"
    write_table(convert_olist_funnel(REAL / "olist_marketing_funnel"), out, taxonomy="olist_funnel")
    s = build_settings(tax.settings, {"test_from": "2018-02-01", "horizons": {"conversion": 90}})
    plan = plan_cutoffs(encode(read_events(out, tax).events, tax), s)
    sp = plan.tasks["conversion"]
    test0 = to_us("2018-02-01")
    assert sp.test[0] == test0 and sp.label_end_us == test0
    assert max(sp.train + sp.validation) < test0
    assert from_us(max(sp.validation)) == pd.Timestamp("2018-01-25", tz="UTC")  # windows cut at 2018-02-01
    # the default rule would end every training window by 2017-11-03, before the first recorded win:
    # no rung of the ladder has a positive training row, and the plan says so in numbers
    strict = plan_cutoffs(encode(read_events(out, tax).events, tax), s.with_overrides({"label_windows": "complete"}))
    assert not strict.tasks["conversion"].usable
    m = re.fullmatch(r"needs at least 30 positive training rows, has (\d+)", strict.sufficiency["conversion"]["reason"])
    assert m and int(m.group(1)) < 30, strict.sufficiency["conversion"]
    assert plan.sufficiency["conversion"]["protocol"] == "temporal" and plan.sufficiency["conversion"]["verdict"] != "insufficient"


def test_purge_keeps_training_windows_before_validation(enc):
    s = _split_settings()
    assert s.purge_validation
    for task, sp in plan_cutoffs(enc, s).tasks.items():
        H = int(getattr(s.horizons, task) * US_PER_DAY)
        assert sp.train and all(t + H <= sp.validation[0] for t in sp.train)
    loose = plan_cutoffs(enc, _split_settings(purge_validation=False)).tasks["churn"]
    assert any(t + 60 * US_PER_DAY > loose.validation[0] for t in loose.train)


def test_test_span_days_without_test_from(enc):
    s = Settings(test_span_days=28, test_cutoffs=1, protocols=["temporal"])  # the configured rung only
    plan = plan_cutoffs(enc, s)
    for task, sp in plan.tasks.items():
        assert len(sp.test) == 4 and sp.test[-1] - sp.test[0] == 21 * US_PER_DAY
        assert sp.test[-1] + int(getattr(s.horizons, task) * US_PER_DAY) <= plan.observed_until_us
    one = plan_cutoffs(enc, s.with_overrides({"test_span_days": 0}))
    assert all(len(sp.test) == 1 for sp in one.tasks.values())


def test_cap_train_rows_equal_share_per_cutoff():
    from journey_stage.training.pipeline import cap_train_rows

    cut = np.repeat([1, 2, 3, 4], [10, 500, 20, 800])
    rows = np.arange(len(cut)) + 7
    kept = cap_train_rows(rows, cut, 300, seed=0)
    assert len(kept) == 300 and np.all(np.diff(kept) > 0) and set(kept) <= set(rows)
    _, counts = np.unique(cut[kept - 7], return_counts=True)
    assert counts.tolist() == [10, 135, 20, 135]  # small cutoffs whole, large ones an equal share
    np.testing.assert_array_equal(cap_train_rows(rows, cut, 5000, seed=0), rows)

"""Tests of the synthetic journey generator (synthetic/generate.py, SPEC section 9)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey_stage.synthetic.generate import (
    CAMPAIGN_EVENTS,
    CHANNELS,
    EVENT_COLUMNS,
    EVENT_STAGE,
    EVENT_TYPES,
    FUNNEL_STAGES,
    SOCIAL_PLATFORMS,
    STAGES,
    GeneratorParams,
    generate_events,
    generate_journeys,
    params_table,
)

N = 5000
DOCS = Path(__file__).resolve().parents[2] / "docs" / "generator.md"
START = pd.Timestamp("2025-01-01", tz="UTC")
END = START + pd.Timedelta(days=365)


@pytest.fixture(scope="module")
def journeys():
    return generate_journeys(N, seed=0)


@pytest.fixture(scope="module")
def events(journeys):
    return journeys.events


@pytest.fixture(scope="module")
def per_customer(events):
    e = events
    purchase = e.event_type == "purchase"
    advocacy = e.event_type.map(EVENT_STAGE) == "advocacy"
    g = e.assign(purchase=purchase, advocacy=advocacy).groupby("customer_id", sort=True)
    return pd.DataFrame(
        {
            "events": g.size(),
            "purchases": g["purchase"].sum(),
            "advocacy": g["advocacy"].sum(),
            "first": g["timestamp"].min(),
            "last": g["timestamp"].max(),
        }
    )


# ---------------------------------------------------------------- schema, order, determinism


def test_schema_and_dtypes(events):
    assert tuple(events.columns) == EVENT_COLUMNS
    for col in ("customer_id", "event_type", "channel", "campaign", "true_stage"):
        assert events[col].dtype == "str", col
        assert pd.api.types.is_string_dtype(events[col].dtype)
    assert events["timestamp"].dtype == "datetime64[us, UTC]"
    assert events["value"].dtype == np.float64
    assert events.index.equals(pd.RangeIndex(len(events)))
    for col in ("customer_id", "timestamp", "event_type", "channel", "true_stage"):
        assert events[col].notna().all(), col


def test_sorted_by_customer_then_time(events):
    cid = events["customer_id"].to_numpy()
    assert (cid[1:] >= cid[:-1]).all()
    same = cid[1:] == cid[:-1]
    ts = events["timestamp"].to_numpy()
    assert (ts[1:][same] >= ts[:-1][same]).all()


def test_customer_ids_are_padded_strings_in_order_of_first_touch(journeys, per_customer):
    ids = per_customer.index
    assert len(ids) == N  # exactly the requested number of customers, each with events
    assert all(re.fullmatch(r"c\d{7}", c) for c in ids)
    assert list(ids) == [f"c{i:07d}" for i in range(1, N + 1)]
    assert per_customer["first"].is_monotonic_increasing
    cust = journeys.customers
    assert list(cust.customer_id) == list(ids)
    assert (cust.set_index("customer_id")["first_seen"] == per_customer["first"]).all()


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = generate_events(1500, seed=7)
    b = generate_events(1500, seed=7)
    pd.testing.assert_frame_equal(a, b)
    c = generate_events(1500, seed=8)
    assert not a.equals(c)
    assert len(a) != len(c) or not (a["timestamp"].to_numpy() == c["timestamp"].to_numpy()).all()
    # the truth-carrying variant returns the very same events
    pd.testing.assert_frame_equal(generate_journeys(1500, seed=7).events, a)


def test_start_and_days_bound_the_timestamps():
    start = "2024-03-10T12:30:00+02:00"
    e = generate_events(800, seed=1, start=start, days=30)
    t0 = pd.Timestamp(start).tz_convert("UTC")
    assert e["timestamp"].min() >= t0
    assert e["timestamp"].max() < t0 + pd.Timedelta(days=30)
    assert e["customer_id"].nunique() == 800
    assert (e["timestamp"].dt.microsecond == 0).all()  # seconds resolution


def test_edge_sizes():
    empty = generate_events(0)
    assert tuple(empty.columns) == EVENT_COLUMNS and len(empty) == 0
    assert empty["timestamp"].dtype == "datetime64[us, UTC]"
    assert empty["customer_id"].dtype == "str"
    one = generate_events(1, seed=3)
    assert one["customer_id"].unique().tolist() == ["c0000001"]


@pytest.mark.parametrize(
    "kwargs",
    [{"customers": -1}, {"customers": 2.5}, {"customers": 10, "days": 0}, {"customers": 10, "seed": -3},
     {"customers": 10, "start": "not a date"}],
)
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises((ValueError, TypeError)):
        generate_events(**kwargs)


# ---------------------------------------------------------------- taxonomy, channels, values


def test_only_taxonomy_event_types_channels_and_stages(events):
    assert set(events["event_type"].unique()) <= set(EVENT_TYPES)
    assert set(events["channel"].unique()) <= set(CHANNELS)
    assert set(events["true_stage"].unique()) <= set(STAGES)
    # all five taxonomy stages and most event types actually occur
    assert set(events["event_type"].map(EVENT_STAGE).unique()) == set(FUNNEL_STAGES)
    assert events["event_type"].nunique() >= len(EVENT_TYPES) - 2
    assert set(events["channel"].unique()) == set(CHANNELS)


def test_channel_depends_on_event_type(events):
    ch = events.groupby("event_type")["channel"].unique().map(set)
    assert ch["influencer_view"] == {"influencer"}
    assert ch["email_open"] == {"email"} and ch["email_click"] == {"email"}
    assert ch["support_contact"] == {"support"} and ch["support_presale"] == {"support"}
    assert ch["referral"] == {"referral"}
    assert ch["ad_impression"] <= set(SOCIAL_PLATFORMS) | {"display", "search"}
    assert ch["ad_click"] <= set(SOCIAL_PLATFORMS) | {"display", "search"}
    for social in ("social_view", "social_follow", "hashtag_view", "organic_post_view", "share", "ugc_post"):
        assert ch[social] <= set(SOCIAL_PLATFORMS), social
    assert "store" in ch["purchase"] and ch["purchase"] - {"store"}
    assert "store" not in set().union(*(v for k, v in ch.items() if k != "purchase"))


def test_values_only_on_purchases_and_non_negative(events):
    purchase = events["event_type"] == "purchase"
    assert events.loc[~purchase, "value"].isna().all()
    v = events.loc[purchase, "value"]
    assert v.notna().all() and (v >= 0).all()
    assert 30 < v.median() < 150  # a plausible order value
    assert (v.round(2) == v).all()


def test_campaigns(events):
    has = events["campaign"].notna()
    assert has.any()
    assert set(events.loc[has, "event_type"].unique()) <= set(CAMPAIGN_EVENTS)
    sample = events.loc[has, ["channel", "campaign", "timestamp"]].head(2000)
    for ch, camp, ts in sample.itertuples(index=False):
        assert re.fullmatch(rf"{ch}_{ts:%Y%m}_\d+", camp), (ch, camp, ts)


def test_once_only_events(events):
    for etype in ("social_follow", "newsletter_signup", "loyalty_join"):
        counts = events.loc[events["event_type"] == etype, "customer_id"].value_counts()
        assert len(counts) > 0 and counts.max() == 1, etype


# ---------------------------------------------------------------- latent stages


def test_true_stage_matches_the_latent_stage_path(journeys):
    e, s = journeys.events, journeys.stages
    assert set(s["stage"].unique()) == set(STAGES)
    assert (s["end"] >= s["start"]).all()
    m = pd.merge_asof(
        e.sort_values("timestamp").reset_index(),
        s.sort_values("start"),
        left_on="timestamp",
        right_on="start",
        by="customer_id",
        direction="backward",
    )
    assert (m["true_stage"] == m["stage"]).mean() > 0.999
    assert (m["timestamp"] < m["end"]).mean() > 0.999
    # lapsed spells are silent
    assert "lapsed" not in set(e["true_stage"].unique())


def _transitions(frame: pd.DataFrame, col: str) -> pd.Series:
    nxt = frame.groupby("customer_id")[col].shift(-1)
    ok = nxt.notna() & (nxt != frame[col])
    return (frame.loc[ok, col] + "->" + nxt[ok]).value_counts()


def test_latent_stage_moves_forward_backward_and_lapses(journeys):
    t = _transitions(journeys.stages, "stage")
    for move in (
        "awareness->consideration",
        "consideration->decision",
        "decision->retention",
        "retention->advocacy",
        "decision->consideration",  # cart abandonment sends customers back
        "consideration->awareness",
        "awareness->lapsed",
        "decision->lapsed",
        "retention->lapsed",
        "lapsed->awareness",  # some lapsed customers come back
        "lapsed->retention",  # win-back after a purchase
    ):
        assert t.get(move, 0) > 0, move
    # stalls: several consecutive episodes in the same stage
    s = journeys.stages
    same = s["customer_id"].eq(s["customer_id"].shift()) & s["stage"].eq(s["stage"].shift())
    assert same.sum() > 0
    # the backward move is also visible in the event log
    assert _transitions(journeys.events, "true_stage").get("decision->consideration", 0) > 0
    # converted customers never go back to the pre-purchase funnel
    assert t.get("retention->decision", 0) == 0 and t.get("retention->consideration", 0) == 0


def test_lapses_show_as_long_silences(events):
    ts = events["timestamp"]
    same = events["customer_id"].eq(events["customer_id"].shift())
    gaps = (ts - ts.shift())[same]
    assert (gaps > pd.Timedelta(days=30)).sum() > 0.02 * N


# ---------------------------------------------------------------- calibration


def test_conversion_repeat_advocacy_and_churn(per_customer, events):
    buyers = per_customer[per_customer["purchases"] > 0]
    conversion = len(buyers) / N
    assert 0.05 <= conversion <= 0.25
    repeat = (buyers["purchases"] > 1).mean()
    assert 0.12 <= repeat <= 0.5
    advocates = (buyers["advocacy"] > 0).mean()
    assert 0.05 <= advocates <= 0.5
    # churn: silent for 90+ days after a purchase
    pur = events.loc[events["event_type"] == "purchase", ["customer_id", "timestamp"]]
    last_pur = pur.groupby("customer_id")["timestamp"].max()
    observed = last_pur[last_pur < END - pd.Timedelta(days=90)]
    silent = per_customer.loc[observed.index, "last"] <= observed + pd.Timedelta(days=1)
    quiet_90 = (per_customer.loc[observed.index, "last"] < END - pd.Timedelta(days=90))
    assert silent.sum() > 0
    assert 0.2 <= quiet_90.mean() <= 0.95
    # roughly 20 events per customer on average (heavy tailed)
    assert 14 <= per_customer["events"].mean() <= 28
    assert per_customer["events"].median() < per_customer["events"].mean()
    # every purchase is preceded by an add_to_cart or happens in a store
    e = events
    sess_cart = e["event_type"].eq("add_to_cart")
    assert sess_cart.sum() > (e["event_type"] == "purchase").sum()  # most carts are abandoned


def test_session_conversion_and_cart_abandonment(events):
    e = events
    ts = e["timestamp"]
    new = ~e["customer_id"].eq(e["customer_id"].shift()) | ((ts - ts.shift()) > pd.Timedelta(minutes=30))
    sess = new.cumsum()
    purchase = (e["event_type"] == "purchase").groupby(sess).any()
    cart = (e["event_type"] == "add_to_cart").groupby(sess).any()
    assert 0.01 <= purchase.mean() <= 0.06  # typical e-commerce session conversion 2-3%
    abandonment = 1 - purchase[cart].mean()
    assert 0.55 <= abandonment <= 0.85  # Baymard: ~70% of carts are abandoned
    # touchpoints cluster in sessions: several events minutes apart
    assert len(e) / len(purchase) > 2
    same = ~new
    assert same.mean() > 0.5


def _documented_channel_mix() -> dict[str, float]:
    text = DOCS.read_text()
    block = text.split("<!-- channel-mix:start -->")[1].split("<!-- channel-mix:end -->")[0]
    mix = {}
    for line in block.splitlines():
        m = re.match(r"\|\s*`?([a-z_]+)`?\s*\|\s*([0-9.]+)\s*%", line)
        if m:
            mix[m.group(1)] = float(m.group(2)) / 100
    return mix


def test_channel_mix_matches_the_documentation(events):
    documented = _documented_channel_mix()
    assert set(documented) == set(CHANNELS)
    assert abs(sum(documented.values()) - 1) < 0.01
    actual = events["channel"].value_counts(normalize=True)
    for ch, share in documented.items():
        assert abs(actual.get(ch, 0.0) - share) <= max(0.02, 0.25 * share), (ch, actual.get(ch), share)


def test_referral_acquired_customers(journeys):
    cust = journeys.customers
    ref = cust[cust["acquisition"] == "referral"]
    assert len(ref) > 0
    assert ref["referred_by"].notna().all()
    assert cust.loc[cust["acquisition"] != "referral", "referred_by"].isna().all()
    e = journeys.events
    first = e.groupby("customer_id").head(1).set_index("customer_id")
    assert (first.loc[ref["customer_id"], "channel"] == "referral").all()
    # the referrer sent a referral before the friend's first visit
    refs = e[e["event_type"] == "referral"].groupby("customer_id")["timestamp"].min()
    sent = refs.reindex(ref["referred_by"]).to_numpy()
    assert (sent < ref["first_seen"].to_numpy()).all()


def test_customers_arrive_over_the_whole_period(per_customer):
    q = per_customer["first"].dt.quarter.value_counts(normalize=True)
    assert len(q) == 4 and q.min() > 0.15


def test_realistic_time_of_day(events):
    hour = events["timestamp"].dt.hour.value_counts(normalize=True)
    assert hour[[19, 20, 21]].sum() > 3 * hour[[2, 3, 4]].sum()


def test_history_carries_signal_beyond_the_stage(journeys):
    """Heterogeneity: the intent trait separates buyers from non-buyers, activity drives volume."""
    cust = journeys.customers.set_index("customer_id")
    e = journeys.events
    n = e.groupby("customer_id").size()
    bought = e[e["event_type"] == "purchase"].groupby("customer_id").size().reindex(cust.index).fillna(0) > 0
    assert cust.loc[bought, "intent"].mean() > cust.loc[~bought, "intent"].mean() + 0.3
    assert np.corrcoef(np.log(cust["activity"]), np.log(n.reindex(cust.index)))[0, 1] > 0.2


# ---------------------------------------------------------------- parameters and docs


def test_params_are_frozen_documented_and_validated():
    p = GeneratorParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.activity_shape = 2.0  # type: ignore[misc]
    hash(p)
    docs = DOCS.read_text()
    for row in params_table(p):
        assert row["doc"] and row["source"], row["name"]
        assert f"`{row['name']}`" in docs, row["name"]
    with pytest.raises(ValueError):
        GeneratorParams(store_purchase_share=1.5)
    with pytest.raises(ValueError):
        GeneratorParams(acquisition_mix=(("carrier_pigeon", 1.0),))
    with pytest.raises(ValueError):
        dataclasses.replace(p, event_weights=(("awareness", (("purchase", 1.0),)),) + p.event_weights[1:])


def test_params_change_the_behaviour():
    base = generate_events(2000, seed=2)
    more_buyers = dataclasses.replace(
        GeneratorParams(),
        transitions=tuple(
            (s, (("consideration", 0.1), ("retention", 0.8), ("lapsed", 0.1))) if s == "decision" else (s, row)
            for s, row in GeneratorParams().transitions
        ),
    )
    alt = generate_events(2000, seed=2, params=more_buyers)
    rate = lambda e: e.loc[e.event_type == "purchase", "customer_id"].nunique()  # noqa: E731
    assert rate(alt) > 1.5 * rate(base)

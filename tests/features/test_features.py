"""Point-in-time features, observed stage, eligibility and labels (SPEC sections 4 and 5).

The fast vectorised path (``features.encode`` / ``features.build`` / ``features.labels``) is
checked against the slow per-customer reference in ``tests/reference.py`` on hypothesis-generated
histories, plus leakage properties, single-customer == all-customers, taxonomy presets and
hand-written edge cases.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from journey_stage.features.build import build_features, eligible, feature_names
from journey_stage.features.encode import CHANNELS, encode, to_us
from journey_stage.features.labels import build_labels
from journey_stage.core.events import canonical_events, sort_events
from journey_stage.core.settings import Horizons, Settings
from journey_stage.core.taxonomy import LAPSED_INDEX, ROLE_INDEX, load_taxonomy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared test helpers in tests/
import reference as ref  # noqa: E402

TAX = load_taxonomy("five_stage")
EVENT_TYPES = TAX.event_types
NON_CONV_TYPES = [e for e in EVENT_TYPES if e not in TAX.conversion_events]
T = pd.Timestamp("2025-06-15T12:00:00Z")
T_US = to_us(T)
DAY = 86_400_000_000
MIN = 60_000_000
TASKS = ("stage", "churn", "advocacy", "conversion")

S_DEFAULT = Settings()
S_ALT = Settings(
    lookback_days=10,
    advocacy_lookback_days=7,  # A < W: recent advocacy-only customers hit the awareness fallback
    eligibility_days=None,
    churn_activity="conversions",
    conversion_scope="unconverted",
    last_k=3,
    feature_windows_days=[2, 14, 30],
    session_gap_minutes=45,
    horizons=Horizons(stage=7, churn=30, advocacy=10, conversion=3),
)
S_ALT2 = Settings(eligibility_days=3, lookback_days=60, advocacy_lookback_days=30, last_k=8, feature_windows_days=[1, 3])
SETTINGS = {"default": S_DEFAULT, "alt": S_ALT, "alt2": S_ALT2}

HYP = hsettings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# ------------------------------------------------------------------------------------------------
# strategies
# ------------------------------------------------------------------------------------------------

EDGE_DAYS = [0, 1, 2, 3, 7, 10, 14, 30, 60, 90]
SPECIAL = sorted(
    {s * d * DAY + j for d in EDGE_DAYS for s in (-1, 1) for j in (-1, 0, 1)}
    | {-30 * MIN, -30 * MIN - 1, -45 * MIN, -45 * MIN - 1}
)
EXACT_EDGES = sorted({s * d * DAY for d in EDGE_DAYS for s in (-1, 1)})
OFFSETS = st.one_of(
    st.sampled_from(EXACT_EDGES),
    st.sampled_from(SPECIAL),
    st.integers(-150 * DAY, 50 * DAY),
    st.integers(-150 * 86_400, 50 * 86_400).map(lambda s: s * 1_000_000),
)
# only exact window / horizon edges and 1 us around them
EDGE_OFFSETS = st.tuples(st.sampled_from(EXACT_EDGES), st.sampled_from([0, 0, -1, 1])).map(sum)
CHANNEL_VALUES = ["facebook", "instagram", "email", "search", "support", "Facebook", "carrier_pigeon", "other", "none", "", None]
VALUES = st.one_of(st.none(), st.just(0.0), st.just(float("nan")), st.floats(0, 1000, allow_nan=False, width=32))
IDS = ["a", "b", "007", "7", "c d"]
TYPES = st.one_of(st.sampled_from(EVENT_TYPES), st.sampled_from(["purchase", "review_written", "support_contact"]))


@st.composite
def raw_rows(draw, ids=IDS, max_customers=4, max_events=30, offsets=OFFSETS, types=TYPES):
    """(customer_id, offset_us from T, event_type, channel, value) rows; timestamps shared often."""
    pool = draw(st.lists(offsets, min_size=1, max_size=4))
    off = st.one_of(
        offsets,
        st.sampled_from(pool),
        st.tuples(st.sampled_from(pool), st.sampled_from([1, 30 * MIN, 30 * MIN + 1, 45 * MIN, 45 * MIN + 1])).map(sum),
    )
    customers = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=max_customers, unique=True))
    rows = []
    for cid in customers:
        evs = draw(st.lists(st.tuples(off, types, st.sampled_from(CHANNEL_VALUES), VALUES), min_size=1, max_size=max_events))
        rows += [(cid, *e) for e in evs]
    return rows


def to_events(rows, tax=TAX) -> pd.DataFrame:
    """Rows -> the canonical events frame (validated, deduplicated, sorted)."""
    raw = pd.DataFrame(
        {
            "customer_id": pd.Series([r[0] for r in rows], dtype="str"),
            "timestamp": pd.Series([T + pd.Timedelta(microseconds=r[1]) for r in rows], dtype="datetime64[us, UTC]"),
            "event_type": pd.Series([r[2] for r in rows], dtype="str"),
            "channel": pd.Series([r[3] for r in rows], dtype="object"),
            "value": pd.Series([np.nan if r[4] is None else r[4] for r in rows], dtype="float64"),
        }
    )
    return canonical_events(raw, "<test>", tax).events


def features(events: pd.DataFrame, s: Settings, tax=TAX, t_us: int = T_US):
    return build_features(encode(events, tax), t_us, s)


def rows_by_id(ff) -> dict[str, np.ndarray]:
    return {str(c): ff.X[i] for i, c in enumerate(ff.customer_ids)}


def labels_by_id(events: pd.DataFrame, s: Settings, tax=TAX, t_us: int = T_US) -> dict[str, dict[str, float]]:
    enc = encode(events, tax)
    ff = build_features(enc, t_us, s)
    lab = build_labels(enc, t_us, s, ff.source_index)
    return {
        str(c): {task: float(lab.task(task)[i]) for task in TASKS}
        for i, c in enumerate(enc.customer_ids[ff.source_index])
    }


def same_float(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == b


# ------------------------------------------------------------------------------------------------
# reference == fast path
# ------------------------------------------------------------------------------------------------


def check_against_reference(events: pd.DataFrame, s: Settings, tax=TAX, t_us: int = T_US) -> None:
    enc = encode(events, tax)
    ff = build_features(enc, t_us, s)
    names = feature_names(tax.event_types, s)
    assert ff.names == names
    assert len(set(names)) == len(names), "duplicate feature names"
    assert ff.X.shape == (len(ff.customer_ids), len(names))
    R = ref.reference_features(events, tax, t_us, s)
    ids = [str(c) for c in ff.customer_ids]
    assert sorted(ids) == sorted(R), "customers with history at t"
    for cid in ids:
        assert set(R[cid]["features"]) == set(names), set(R[cid]["features"]) ^ set(names)
    Xr = np.array([[R[c]["features"][nm] for nm in names] for c in ids], dtype=np.float64).reshape(len(ids), len(names))
    Xf = ff.X.astype(np.float64)
    for j, nm in enumerate(names):
        np.testing.assert_allclose(Xf[:, j], Xr[:, j], rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=f"{nm} for {ids}")
    np.testing.assert_array_equal(ff.observed_stage, [R[c]["observed_stage"] for c in ids], err_msg="observed_stage")
    np.testing.assert_array_equal(eligible(ff, s), [R[c]["eligible"] for c in ids], err_msg="eligible")
    np.testing.assert_array_equal(ff.converted, [R[c]["converted"] for c in ids], err_msg="converted")
    np.testing.assert_array_equal(ff.last_event_us, [to_us(R[c]["last_event"]) for c in ids], err_msg="last_event_us")
    # labels for the customers of the feature frame
    lab = build_labels(enc, t_us, s, ff.source_index)
    RL = ref.reference_labels(events, tax, t_us, s, ids)
    for task in TASKS:
        np.testing.assert_array_equal(lab.task(task), [RL[c][task] for c in ids], err_msg=f"label {task}")


@pytest.mark.parametrize("sname", list(SETTINGS))
@HYP
@given(rows=st.one_of(raw_rows(), raw_rows(offsets=EDGE_OFFSETS)))
def test_reference_agrees(sname, rows):
    check_against_reference(to_events(rows), SETTINGS[sname])


def edge_grid_rows(seed: int, customers: int = 300) -> list[tuple]:
    """Many customers whose events sit exactly on (or 1 us around) every window and horizon edge,
    30 / 45 minutes apart (session gaps), with ties, unknown / missing channels and values."""
    rng = np.random.default_rng(seed)
    deltas = [0, 0, 1, 30 * MIN, 30 * MIN + 1, 45 * MIN, 45 * MIN + 1]
    types = EVENT_TYPES + ["purchase"] * 4 + ["review_written"] * 2
    rows = []
    for c in range(customers):
        base = [int(x) for x in rng.choice(SPECIAL, size=int(rng.integers(1, 5)))]
        for _ in range(int(rng.integers(1, 31))):
            off = int(rng.choice(base)) + int(rng.choice(deltas)) if rng.random() < 0.6 else int(rng.choice(SPECIAL))
            ch = CHANNEL_VALUES[int(rng.integers(len(CHANNEL_VALUES)))]
            v = [None, 0.0, float(rng.uniform(0, 500))][int(rng.integers(3))]
            rows.append((f"g{c}", off, types[int(rng.integers(len(types)))], ch, v))
    return rows


@pytest.mark.parametrize("sname", list(SETTINGS))
def test_reference_agrees_on_edge_grid(sname):
    check_against_reference(to_events(edge_grid_rows(seed=len(sname))), SETTINGS[sname])


@HYP
@given(rows=raw_rows(), cut=st.sampled_from([-1, 0, 1]), pick=st.integers(0, 10_000))
def test_reference_agrees_at_event_times(rows, cut, pick):
    """The cutoff exactly at (and 1 us around) one of the events' timestamps."""
    events = to_events(rows)
    t_us = to_us(events["timestamp"].iloc[pick % len(events)]) + cut
    check_against_reference(events, S_DEFAULT, t_us=t_us)
    check_against_reference(events, S_ALT, t_us=t_us)


def test_feature_names_cover_spec_families():
    names = feature_names(EVENT_TYPES, S_DEFAULT)
    for nm in [
        "days_since_last_event", "days_since_first_event", "days_since_last_conversion", "days_since_last_decision",
        "events_1d", "events_7d", "events_30d", "events_90d", "events_all", "value_30d", "conversions_all",
        "events_30d_by_stage_decision", "events_7d_by_channel_instagram", "events_all_by_event_purchase",
        "last_stage_5", "last_event_type_5", "transitions_decision_to_awareness", "backward_moves",
        "sessions_all", "gap_mean_days", "activity_trend_30d", "observed_stage", "days_in_observed_stage",
    ]:
        assert nm in names, nm
    assert "last_stage_3" in feature_names(EVENT_TYPES, S_ALT) and "last_stage_4" not in feature_names(EVENT_TYPES, S_ALT)


# ------------------------------------------------------------------------------------------------
# leakage
# ------------------------------------------------------------------------------------------------

FUTURE_OFFSETS = st.one_of(st.sampled_from([o for o in SPECIAL if o > 0]), st.integers(1, 150 * DAY))


@pytest.mark.parametrize("sname", ["default", "alt"])
@HYP
@given(rows=raw_rows(), future=raw_rows(ids=IDS + ["new"], offsets=FUTURE_OFFSETS, max_events=10))
def test_no_leakage_into_features(sname, rows, future):
    """Replacing every event after t (add / remove / change) changes no feature, no observed
    stage, no eligibility; customers with only future events never appear."""
    s = SETTINGS[sname]
    base = to_events(rows)
    alt_rows = [r for r in rows if r[1] <= 0] + future
    alt = to_events(alt_rows)
    f1, f2 = features(base, s), features(alt, s)
    assert f1.names == f2.names
    r1, r2 = rows_by_id(f1), rows_by_id(f2)
    assert sorted(r1) == sorted(r2) == sorted({r[0] for r in rows if r[1] <= 0})
    for cid in r1:
        np.testing.assert_array_equal(r1[cid], r2[cid], err_msg=cid)
    o1 = dict(zip(map(str, f1.customer_ids), f1.observed_stage))
    o2 = dict(zip(map(str, f2.customer_ids), f2.observed_stage))
    assert o1 == o2
    e1 = dict(zip(map(str, f1.customer_ids), eligible(f1, s)))
    e2 = dict(zip(map(str, f2.customer_ids), eligible(f2, s)))
    assert e1 == e2
    c1 = dict(zip(map(str, f1.customer_ids), f1.converted))
    c2 = dict(zip(map(str, f2.customer_ids), f2.converted))
    assert c1 == c2


@pytest.mark.parametrize("sname", ["default", "alt"])
@hsettings(HYP, max_examples=35)
@given(
    rows=raw_rows(),
    new_past=raw_rows(offsets=st.integers(-150 * DAY, 0), types=st.sampled_from(NON_CONV_TYPES), max_events=8),
    beyond=raw_rows(ids=IDS + ["new"], offsets=st.integers(0, 200 * DAY), max_events=8),
)
def test_labels_read_only_their_window(sname, rows, new_past, beyond):
    """A label at t with horizon H depends only on events in (t, t+H] and on "converted at or
    before t": replace everything at or before t (keeping who is present and who converted) and
    everything after t+H, and the label does not change."""
    s = SETTINGS[sname]
    base = to_events(rows)
    L1 = labels_by_id(base, s)
    converted = {c for c in L1 if any(r[0] == c and r[1] <= 0 and r[2] in TAX.conversion_events for r in rows)}
    marker = [(c, -100 * DAY, "purchase" if c in converted else "ad_click", None, None) for c in L1]
    past = [r for r in new_past if r[0] in L1 and r[1] <= 0] + marker
    for task in TASKS:
        H = getattr(s.horizons, task) * DAY
        keep = [r for r in rows if 0 < r[1] <= H]
        later = [r for r in beyond if r[1] > H]
        if not past + keep + later:
            assert not L1
            continue
        L2 = labels_by_id(to_events(past + keep + later), s)
        assert set(L1) == set(L2)
        for c in L1:
            assert same_float(L1[c][task], L2[c][task]), (task, c, L1[c][task], L2[c][task])


# ------------------------------------------------------------------------------------------------
# single customer == all customers; taxonomy presets; input order
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sname", ["default", "alt"])
@HYP
@given(rows=raw_rows(max_customers=5))
def test_single_customer_path_equals_batch(sname, rows):
    s = SETTINGS[sname]
    events = to_events(rows)
    enc = encode(events, TAX)
    full = build_features(enc, T_US, s)
    full_lab = build_labels(enc, T_US, s, full.source_index)
    for i, cid in enumerate(full.customer_ids):
        one = events[events["customer_id"] == cid].reset_index(drop=True)
        enc1 = encode(one, TAX)
        ff1 = build_features(enc1, T_US, s)
        assert list(ff1.customer_ids) == [cid]
        np.testing.assert_array_equal(ff1.X[0], full.X[i], err_msg=cid)
        assert ff1.observed_stage[0] == full.observed_stage[i]
        assert ff1.converted[0] == full.converted[i]
        assert eligible(ff1, s)[0] == eligible(full, s)[i]
        lab1 = build_labels(enc1, T_US, s, ff1.source_index)
        for task in TASKS:
            assert same_float(float(lab1.task(task)[0]), float(full_lab.task(task)[i])), task


def test_presets_share_roles_and_events():
    base = load_taxonomy("five_stage")
    for name in ("see_think_do_care", "aida"):
        tax = load_taxonomy(name)
        assert tax.event_role == base.event_role
        assert tax.conversion_events == base.conversion_events


@HYP
@given(rows=raw_rows())
def test_taxonomy_presets_give_identical_features(rows):
    out = []
    for name in ("five_stage", "see_think_do_care", "aida"):
        tax = load_taxonomy(name)
        events = to_events(rows, tax)
        for s in (S_DEFAULT, S_ALT):
            enc = encode(events, tax)
            ff = build_features(enc, T_US, s)
            lab = build_labels(enc, T_US, s, ff.source_index)
            out.append((name, s, ff, lab))
    for name, s, ff, lab in out[2:]:
        name0, s0, ff0, lab0 = out[0] if s is S_DEFAULT else out[1]
        assert ff.names == ff0.names
        np.testing.assert_array_equal(ff.customer_ids, ff0.customer_ids)
        np.testing.assert_array_equal(ff.X, ff0.X, err_msg=name)
        np.testing.assert_array_equal(ff.observed_stage, ff0.observed_stage)
        for task in TASKS:
            np.testing.assert_array_equal(lab.task(task), lab0.task(task), err_msg=f"{name} {task}")


@HYP
@given(rows=raw_rows(), rnd=st.randoms(use_true_random=False))
def test_encode_is_order_independent_for_unsorted_frames(rows, rnd):
    """A shuffled frame (not sorted by customer and time) encodes like the canonical one."""
    events = to_events(rows)
    perm = list(range(len(events)))
    rnd.shuffle(perm)
    shuffled = events.iloc[perm].reset_index(drop=True)
    key = list(zip(shuffled["customer_id"], shuffled["timestamp"]))
    assume(key != sorted(key))  # a frame already sorted by (customer, time) is trusted as-is
    a, b = features(events, S_DEFAULT), features(shuffled, S_DEFAULT)
    np.testing.assert_array_equal(a.customer_ids, b.customer_ids)
    np.testing.assert_array_equal(a.X, b.X)


def test_encode_same_timestamp_order_independent():
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "a"],
            "timestamp": pd.Series([T, T], dtype="datetime64[us, UTC]"),
            "event_type": ["purchase", "ad_click"],  # tie, not in event_type order
            "channel": [None, None],
            "value": [np.nan, np.nan],
        }
    )
    a = features(sort_events(raw), S_DEFAULT)  # ad_click then purchase
    b = features(raw, S_DEFAULT)
    np.testing.assert_array_equal(a.X, b.X)


# ------------------------------------------------------------------------------------------------
# edge cases
# ------------------------------------------------------------------------------------------------


class Us(int):
    """An offset from T in microseconds (plain numbers in :func:`frame` are days)."""


def frame(evs: list[tuple], tax=TAX) -> pd.DataFrame:
    """(customer_id, offset from T in days or Us(microseconds), event_type[, channel[, value]])."""
    rows = []
    for e in evs:
        cid, when, et = e[:3]
        ch = e[3] if len(e) > 3 else None
        v = e[4] if len(e) > 4 else None
        off = int(when) if isinstance(when, Us) else int(round(when * DAY))
        rows.append((cid, off, et, ch, v))
    return to_events(rows, tax)


def one_row(events: pd.DataFrame, s: Settings = S_DEFAULT, cid: str = "a", t_us: int = T_US) -> dict[str, float]:
    ff = features(events, s, t_us=t_us)
    i = list(ff.customer_ids).index(cid)
    return dict(zip(ff.names, ff.X[i].astype(float))) | {
        "_obs": int(ff.observed_stage[i]), "_eligible": bool(eligible(ff, s)[i])}


def test_single_event_customer():
    f = one_row(frame([("a", -3, "product_view", "instagram", None)]))
    assert f["days_since_first_event"] == f["days_since_last_event"] == pytest.approx(3)
    assert f["events_7d"] == 1 and f["events_1d"] == 0 and f["events_all_by_channel_instagram"] == 1
    assert f["last_stage_1"] == ROLE_INDEX["consideration"] and np.isnan(f["last_stage_2"])
    assert f["last_event_type_1"] == EVENT_TYPES.index("product_view")
    assert np.isnan(f["gap_mean_days"]) and np.isnan(f["gap_max_days"]) and np.isnan(f["gap_last_days"])
    assert f["sessions_all"] == 1 and f["events_per_session"] == 1
    assert np.isnan(f["days_since_last_conversion"]) and f["has_converted"] == 0
    assert f["_obs"] == ROLE_INDEX["consideration"] and f["days_in_observed_stage"] == pytest.approx(3)
    assert f["_eligible"]


def test_event_exactly_at_cutoff_is_included():
    f = one_row(frame([("a", 0, "purchase", None, 20.0)]))
    assert f["events_1d"] == 1 and f["conversions_1d"] == 1 and f["value_1d"] == 20
    assert f["days_since_last_event"] == 0 and f["days_since_last_conversion"] == 0
    assert f["_obs"] == ROLE_INDEX["retention"] and f["days_in_observed_stage"] == 0
    ff = features(frame([("a", Us(1), "purchase")]), S_DEFAULT)  # 1 us after t: not seen
    assert len(ff.customer_ids) == 0 and ff.X.shape == (0, len(ff.names))


@pytest.mark.parametrize("w", [1, 7, 30, 90])
def test_window_edges_half_open(w):
    at_edge = one_row(frame([("a", -w, "ad_click"), ("a", -200, "ad_click")]))
    inside = one_row(frame([("a", Us(-w * DAY + 1), "ad_click"), ("a", -200, "ad_click")]))
    assert at_edge[f"events_{w}d"] == 0 and inside[f"events_{w}d"] == 1
    assert at_edge[f"events_{w}d_by_stage_awareness"] == 0 and inside[f"events_{w}d_by_stage_awareness"] == 1


def test_observed_stage_lookback_edges():
    assert one_row(frame([("a", -30, "add_to_cart")]))["_obs"] == LAPSED_INDEX
    assert one_row(frame([("a", Us(-30 * DAY + 1), "add_to_cart")]))["_obs"] == ROLE_INDEX["decision"]
    assert one_row(frame([("a", -90, "review_written")]))["_obs"] == LAPSED_INDEX
    assert one_row(frame([("a", Us(-90 * DAY + 1), "review_written")]))["_obs"] == ROLE_INDEX["advocacy"]
    f = one_row(frame([("a", -60, "purchase"), ("a", -30, "email_open")]))
    assert f["_obs"] == LAPSED_INDEX and f["days_in_observed_stage"] == pytest.approx(0)
    assert one_row(frame([("a", -60, "purchase"), ("a", -29, "email_open")]))["_obs"] == ROLE_INDEX["retention"]
    # never converted, only retention-role events recently: awareness fallback, no entry time
    f = one_row(frame([("a", -2, "email_open"), ("a", -50, "add_to_cart")]))
    assert f["_obs"] == ROLE_INDEX["awareness"] and np.isnan(f["days_in_observed_stage"])


def test_same_timestamp_events():
    f = one_row(frame([("a", -1, "purchase"), ("a", -1, "ad_click"), ("a", -1, "ad_click", "email")]))
    # canonical order at a tie is by event_type: ad_click, ad_click, purchase
    assert f["events_all"] == 3 and f["gap_max_days"] == 0 and f["gap_mean_days"] == 0
    assert f["sessions_all"] == 1 and f["events_per_session"] == 3
    assert f["last_stage_1"] == ROLE_INDEX["decision"] and f["last_event_type_1"] == EVENT_TYPES.index("purchase")
    assert f["transitions_awareness_to_decision"] == 1 and f["transitions_awareness_to_awareness"] == 1
    assert f["forward_moves"] == 1 and f["backward_moves"] == 0


def test_session_gap_boundary():
    f = one_row(frame([("a", Us(-30 * MIN), "page_view"), ("a", Us(0), "page_view"), ("a", Us(-60 * MIN - 1), "page_view")]))
    assert f["sessions_all"] == 2  # gap of exactly 30 minutes continues a session, 30 min + 1 us does not


def test_customer_with_only_future_events_is_absent():
    ff = features(frame([("a", -5, "ad_click"), ("b", 1, "purchase"), ("b", 40, "ad_click")]), S_DEFAULT)
    assert list(ff.customer_ids) == ["a"]


def test_all_events_after_cutoff_gives_empty_frame():
    events = frame([("a", 5, "ad_click"), ("b", 1, "purchase")])
    enc = encode(events, TAX)
    ff = build_features(enc, T_US, S_DEFAULT)
    assert ff.X.shape == (0, len(feature_names(EVENT_TYPES, S_DEFAULT)))
    assert len(eligible(ff, S_DEFAULT)) == 0
    lab = build_labels(enc, T_US, S_DEFAULT, ff.source_index)
    assert len(lab.stage) == 0


def test_eligibility():
    events = frame([("a", -90, "ad_click"), ("b", Us(-90 * DAY + 1), "ad_click"), ("c", -200, "purchase")])
    ff = features(events, S_DEFAULT)
    assert dict(zip(ff.customer_ids, eligible(ff, S_DEFAULT))) == {"a": False, "b": True, "c": False}
    s_none = S_DEFAULT.with_overrides({"eligibility_days": None})
    assert eligible(features(events, s_none), s_none).all()
    s_none = S_DEFAULT.with_overrides({"eligibility_days": "none"})
    assert s_none.eligibility_days is None


def test_unknown_and_missing_channels():
    f = one_row(frame([("a", -1, "ad_click", "carrier_pigeon"), ("a", -2, "ad_click", None),
                       ("a", -3, "ad_click", "Instagram"), ("a", -4, "ad_click", "")]))
    assert f["events_7d_by_channel_other"] == 1
    assert f["events_7d_by_channel_none"] == 2
    assert f["events_7d_by_channel_instagram"] == 1
    assert f["distinct_channels"] == 3
    assert set(CHANNELS) == set(ref.CHANNEL_BUCKETS)


def test_customer_ids_stay_strings():
    ff = features(frame([("007", -1, "ad_click"), ("7", -2, "purchase")]), S_DEFAULT)
    assert sorted(ff.customer_ids) == ["007", "7"]


def test_labels_hand_cases():
    events = frame([
        ("a", -10, "product_view"), ("a", 14, "add_to_cart"),  # at t+H_stage: inside
        ("b", -10, "purchase"), ("b", 90, "email_open"),  # converted; activity at t+90d: not churned
        ("c", -10, "purchase"), ("c", Us(90 * DAY + 1), "email_open"),  # churned
        ("d", -1, "ad_click"), ("d", Us(14 * DAY + 1), "purchase"), ("d", 1, "review_written"),
        ("e", -1, "ad_click"), ("e", 0.5, "page_view"), ("e", 0.6, "social_view"),
    ])
    L = labels_by_id(events, S_DEFAULT)
    assert L["a"]["stage"] == ROLE_INDEX["decision"] and np.isnan(L["a"]["churn"])
    assert L["b"]["stage"] == LAPSED_INDEX and L["b"]["churn"] == 0
    assert L["c"]["churn"] == 1
    assert L["d"]["stage"] == ROLE_INDEX["advocacy"] and L["d"]["advocacy"] == 1 and L["d"]["conversion"] == 0
    assert L["e"]["stage"] == ROLE_INDEX["consideration"]
    L2 = labels_by_id(events, S_DEFAULT.with_overrides({"conversion_scope": "unconverted"}))
    assert np.isnan(L2["b"]["conversion"]) and L2["a"]["conversion"] == 0


# ------------------------------------------------------------------------------------------------
# encode inputs (DataFrame / Arrow Table / dictionary columns, any row order) and blocked builds
# ------------------------------------------------------------------------------------------------

ENCODED_FIELDS = ("customer_ids", "cust", "ts", "role", "etype", "channel", "value", "conv")


def assert_same_encoding(a, b, msg=""):
    for k in ENCODED_FIELDS:
        x, y = getattr(a, k), getattr(b, k)
        assert x.dtype == y.dtype, (k, x.dtype, y.dtype, msg)
        np.testing.assert_array_equal(x, y, err_msg=f"{k} {msg}")
    assert a.event_types == b.event_types


@contextmanager
def small_path_limit(n: int):
    import journey_stage.features.encode as fe

    old = fe.SMALL
    fe.SMALL = n
    try:
        yield
    finally:
        fe.SMALL = old


@hsettings(HYP, max_examples=25)
@given(rows=raw_rows(), rnd=st.randoms(use_true_random=False), tie_rows=st.integers(0, 6))
def test_encode_any_order_equals_sort_events(rows, rnd, tie_rows):
    """A frame not sorted by (customer_id, timestamp, event_type) encodes exactly like its
    ``sort_events`` order (also same-time rows that differ only in channel / value): DataFrame,
    Arrow Table and dictionary-encoded Table alike, on the small (plain numpy) and the large
    (pyarrow) path. A frame sorted on those keys is trusted as is (only channel / value order of
    full ties may differ, which no feature reads): its features are the same."""
    import pyarrow as pa

    events = to_events(rows)
    if tie_rows and len(events):  # copies of a row with another channel / value: ties up to the last sort key
        extra = events.sample(n=min(tie_rows, len(events)), random_state=rnd.randrange(2**31), replace=True).copy()
        extra["channel"] = [rnd.choice(["email", "search", None, "zz"]) for _ in range(len(extra))]
        extra["value"] = [rnd.choice([np.nan, 0.0, 5.0, 1.5]) for _ in range(len(extra))]
        events = sort_events(pd.concat([events, extra], ignore_index=True).drop_duplicates(ignore_index=True))
    perm = list(range(len(events)))
    rnd.shuffle(perm)
    shuffled = events.iloc[perm].reset_index(drop=True)
    expected = encode(sort_events(shuffled), TAX)
    table = pa.Table.from_pandas(shuffled, preserve_index=False)
    dict_table = table.set_column(0, "customer_id", table.column("customer_id").dictionary_encode()).set_column(
        2, "event_type", table.column("event_type").dictionary_encode())
    key = list(zip(shuffled["customer_id"], shuffled["timestamp"], shuffled["event_type"]))
    trusted = key == sorted(key)
    want = build_features(expected, T_US, S_DEFAULT).X
    for limit in (2048, 0):
        with small_path_limit(limit):
            for what, inp in (("frame", shuffled), ("table", table), ("dict table", dict_table), ("canonical", events)):
                got = encode(inp, TAX)
                if what == "canonical" or not trusted:
                    assert_same_encoding(got, expected, f"{what} limit={limit}")
                np.testing.assert_array_equal(build_features(got, T_US, S_DEFAULT).X, want, err_msg=f"{what} limit={limit}")


def test_encode_table_equals_frame_on_chunked_dictionary_input():
    """A Parquet read with dictionary columns and several row groups (chunks) encodes like pandas."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    events = to_events(edge_grid_rows(seed=3))
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(events, preserve_index=False), buf, row_group_size=37)
    table = pq.read_table(pa.BufferReader(buf.getvalue()), read_dictionary=["customer_id", "event_type", "channel"])
    assert table.column("customer_id").num_chunks > 1
    with small_path_limit(0):
        assert_same_encoding(encode(table, TAX), encode(events, TAX))
    assert_same_encoding(encode(table, TAX), encode(events, TAX))


@pytest.mark.parametrize("sname", list(SETTINGS))
def test_blocked_threaded_build_is_identical(sname):
    """Customer blocks on threads give the very same matrix as one block (bit for bit)."""
    import journey_stage.features.build as fbm

    s = SETTINGS[sname]
    enc = encode(to_events(edge_grid_rows(seed=7)), TAX)
    one = build_features(enc, T_US, s)
    old = (fbm.BLOCK_EVENTS, fbm.BLOCK_CUSTOMERS, fbm.THREADS)
    try:
        fbm.BLOCK_EVENTS, fbm.BLOCK_CUSTOMERS, fbm.THREADS = 50, 7, 2
        blocked = build_features(enc, T_US, s)
    finally:
        fbm.BLOCK_EVENTS, fbm.BLOCK_CUSTOMERS, fbm.THREADS = old
    assert blocked.names == one.names
    np.testing.assert_array_equal(blocked.customer_ids, one.customer_ids)
    np.testing.assert_array_equal(blocked.source_index, one.source_index)
    assert np.array_equal(blocked.X.view(np.uint32), one.X.view(np.uint32))
    for k in ("observed_stage", "last_event_us", "converted"):
        np.testing.assert_array_equal(getattr(blocked, k), getattr(one, k), err_msg=k)

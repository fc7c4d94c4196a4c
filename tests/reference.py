"""A slow, obviously correct reference of the point-in-time features, observed stage,
eligibility and labels (SPEC sections 4 and 5), one customer at a time, in plain Python.

It is written from the SPEC text and the docstrings of ``features/*.py`` -- not from the
vectorised code -- and is used by ``tests/features/test_features.py`` to check the fast path. Per event it
uses ``datetime``/``timedelta`` arithmetic, per customer plain lists and dicts; no numpy.

Choices the SPEC leaves open (the fast path's docstrings and comments decide; keep in sync):

* Windows are half-open ``(t - W, t]``: an event exactly at ``t`` is in, one exactly at
  ``t - W`` is out. Horizons are ``(t, t + H]``. Everything is as of ``t``: events with
  ``timestamp <= t``.
* Per customer, events are ordered by (timestamp, event_type) -- the canonical order of
  ``journey_stage.core.events.sort_events``; this order decides same-timestamp sequences and transitions.
* "Days" are float days (``timedelta / 1 day``). Missing values count as 0 in ``value_*``.
* Channels: the 12 channels of SPEC section 2 (facebook ... support) are buckets of their own;
  any other text is ``other``; a missing channel (or the literal ``none``) is ``none``.
* Observed stage rule 4 (never converted, some event in ``(t-W, t]``): the most advanced of
  awareness/consideration/decision among the recent events; when the recent events are only
  retention- or advocacy-role events (the latter possible only when A < W) the stage is
  **awareness** (fallback).
* ``observed_stage`` and ``last_stage_j`` are canonical *role* indices (0 awareness ..
  4 advocacy, 5 lapsed), independent of the taxonomy's stage names. ``last_event_type_j`` is the
  index of the event type in ``sorted(taxonomy.event_types)``. Missing sequence positions (fewer
  than j events) are NaN.
* ``days_in_observed_stage``: awareness/consideration/decision -> days since the first event of
  that role in ``(t-W, t]`` (NaN when there is none, i.e. the awareness fallback above);
  retention -> days since the last conversion; advocacy -> days since the first advocacy event in
  ``(t-A, t]``; lapsed -> days since the last event minus W.
* Transitions / backward / forward moves: over consecutive pairs of the whole as-of history of
  the customer (role of event i -> role of event i+1), same-role pairs counted in
  ``transitions_x_to_x`` only. ``backward_moves_30d`` counts backward pairs whose *later* event
  is in ``(t-30d, t]`` (fixed 30 days, not W).
* Sessions: a new session starts at a customer's first event and after every gap strictly
  greater than ``session_gap_minutes`` (a gap of exactly 30 minutes continues the session).
  ``sessions_30d`` counts sessions whose *first* event is in ``(t-30d, t]``.
  ``events_per_session`` = all-time events / all-time sessions.
* Gaps: ``gap_mean_days`` mean of consecutive gaps, ``gap_max_days`` the largest,
  ``gap_last_days`` the last one; NaN with a single event.
* Activity trend: ``e30`` = events in ``(t-30d, t]``, ``p30`` = events in ``(t-60d, t-30d]``;
  ``activity_trend_30d = e30 - p30`` and ``activity_ratio_30d = (e30 + 1) / (p30 + 1)``.
* ``distinct_channels`` / ``distinct_event_types``: over the all-time history (channel buckets
  as above, so "other" and "none" are one channel each).
* Eligibility: an event in ``(t-E, t]``; ``E = None`` -> every customer with an event at or
  before t.
* Labels: revealed stage with ``F = (t, t+H_stage]``; churn is NaN unless converted at or
  before t; with ``churn_activity = "conversions"`` only conversion events count as activity;
  conversion is NaN for already-converted customers when ``conversion_scope = "unconverted"``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from journey_stage.core.taxonomy import ROLES

LAPSED_CODE = 5
ROLE_CODE = {"awareness": 0, "consideration": 1, "decision": 2, "retention": 3, "advocacy": 4}
assert tuple(ROLE_CODE) == tuple(ROLES)
NAMED_CHANNELS = [
    "facebook", "instagram", "tiktok", "youtube", "influencer", "email", "search",
    "display", "referral", "direct", "store", "support",
]
CHANNEL_BUCKETS = NAMED_CHANNELS + ["other", "none"]
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_DAY = timedelta(days=1)
NAN = float("nan")


class Event:
    __slots__ = ("ts", "event_type", "role", "conv", "channel", "value")

    def __init__(self, ts, event_type, role, conv, channel, value):
        self.ts, self.event_type, self.role, self.conv, self.channel, self.value = ts, event_type, role, conv, channel, value


def to_datetime(t) -> datetime:
    """int microseconds since epoch, a datetime, a pandas Timestamp or an ISO string -> aware UTC datetime."""
    if isinstance(t, int):
        return EPOCH + timedelta(microseconds=t)
    if isinstance(t, str):
        t = datetime.fromisoformat(t)
    if hasattr(t, "to_pydatetime"):
        t = t.to_pydatetime()
    if t.tzinfo is None:
        return t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def is_missing(x) -> bool:
    if x is None:
        return True
    if isinstance(x, float) and math.isnan(x):
        return True
    try:
        return bool(x != x)  # pd.NA / NaT
    except TypeError:
        return True  # pd.NA raises on bool()


def channel_bucket(ch) -> str:
    if is_missing(ch):
        return "none"
    s = str(ch).strip().lower()
    if s == "" or s == "none":
        return "none"
    return s if s in NAMED_CHANNELS else "other"


def days(td: timedelta) -> float:
    return td / ONE_DAY


def histories(events_df, taxonomy) -> dict[str, list[Event]]:
    """Canonical events frame -> customer id -> events sorted by (timestamp, event_type)."""
    out: dict[str, list[Event]] = {}
    has_ch = "channel" in events_df.columns
    has_val = "value" in events_df.columns
    for row in events_df.to_dict("records"):
        et = str(row["event_type"])
        value = row["value"] if has_val else None
        ev = Event(
            ts=to_datetime(row["timestamp"]),
            event_type=et,
            role=taxonomy.event_role[et],
            conv=et in taxonomy.conversion_events,
            channel=channel_bucket(row["channel"] if has_ch else None),
            value=0.0 if is_missing(value) else float(value),
        )
        out.setdefault(str(row["customer_id"]), []).append(ev)
    for evs in out.values():
        evs.sort(key=lambda e: (e.ts, e.event_type))  # stable: same (ts, type) keep input order
    return out


def window_label(w: float) -> str:
    return f"{w:g}d"


# ------------------------------------------------------------------------------------------------
# observed stage, eligibility
# ------------------------------------------------------------------------------------------------


def observed_stage_of(hist: list[Event], t: datetime, settings) -> int:
    """SPEC 4 observed stage from a history already cut at t."""
    W = timedelta(days=settings.lookback_days)
    A = timedelta(days=settings.advocacy_lookback_days)
    for e in hist:
        if e.role == "advocacy" and t - A < e.ts <= t:
            return ROLE_CODE["advocacy"]
    converted = any(e.conv for e in hist if e.ts <= t)
    recent = [e for e in hist if t - W < e.ts <= t]
    if converted:
        return ROLE_CODE["retention"] if recent else LAPSED_CODE
    if not recent:
        return LAPSED_CODE
    best = ROLE_CODE["awareness"]  # fallback: recent events only retention/advocacy roles
    for e in recent:
        if e.role in ("awareness", "consideration", "decision"):
            best = max(best, ROLE_CODE[e.role])
    return best


def eligible_of(hist: list[Event], t: datetime, settings) -> bool:
    past = [e for e in hist if e.ts <= t]
    if not past:
        return False
    if settings.eligibility_days is None:
        return True
    E = timedelta(days=settings.eligibility_days)
    return any(e.ts > t - E for e in past)


# ------------------------------------------------------------------------------------------------
# features
# ------------------------------------------------------------------------------------------------


def customer_features(full_hist: list[Event], t: datetime, settings, event_types: list[str]) -> dict[str, float]:
    """Every feature of one customer as of t (``full_hist`` may contain later events: ignored)."""
    hist = [e for e in full_hist if e.ts <= t]
    assert hist, "customer without history at t has no features"
    f: dict[str, float] = {}
    n = len(hist)

    # recency
    f["days_since_first_event"] = days(t - hist[0].ts)
    f["days_since_last_event"] = days(t - hist[-1].ts)
    for role in ROLES:
        last = None
        for e in hist:
            if e.role == role:
                last = e
        f[f"days_since_last_{role}"] = days(t - last.ts) if last else NAN
    convs = [e for e in hist if e.conv]
    f["days_since_last_conversion"] = days(t - convs[-1].ts) if convs else NAN
    f["days_since_first_conversion"] = days(t - convs[0].ts) if convs else NAN
    f["has_converted"] = 1.0 if convs else 0.0

    # windows
    spans = [(window_label(w), timedelta(days=w)) for w in settings.feature_windows_days] + [("all", None)]
    for label, span in spans:
        in_w = [e for e in hist if span is None or e.ts > t - span]
        f[f"events_{label}"] = float(len(in_w))
        total = 0.0
        for e in in_w:
            total += e.value
        f[f"value_{label}"] = total
        f[f"conversions_{label}"] = float(sum(1 for e in in_w if e.conv))
        for role in ROLES:
            f[f"events_{label}_by_stage_{role}"] = float(sum(1 for e in in_w if e.role == role))
        for ch in CHANNEL_BUCKETS:
            f[f"events_{label}_by_channel_{ch}"] = float(sum(1 for e in in_w if e.channel == ch))
        for et in event_types:
            f[f"events_{label}_by_event_{et}"] = float(sum(1 for e in in_w if e.event_type == et))

    # last k
    type_index = {et: i for i, et in enumerate(event_types)}
    for j in range(1, settings.last_k + 1):
        if j <= n:
            e = hist[n - j]
            f[f"last_stage_{j}"] = float(ROLE_CODE[e.role])
            f[f"last_event_type_{j}"] = float(type_index[e.event_type])
        else:
            f[f"last_stage_{j}"] = NAN
            f[f"last_event_type_{j}"] = NAN

    # transitions
    trans = {(a, b): 0 for a in ROLES for b in ROLES}
    back = fwd = back30 = 0
    t30 = t - timedelta(days=30)
    for prev, nxt in zip(hist, hist[1:]):
        trans[(prev.role, nxt.role)] += 1
        if ROLE_CODE[nxt.role] < ROLE_CODE[prev.role]:
            back += 1
            if nxt.ts > t30:
                back30 += 1
        elif ROLE_CODE[nxt.role] > ROLE_CODE[prev.role]:
            fwd += 1
    for (a, b), c in trans.items():
        f[f"transitions_{a}_to_{b}"] = float(c)
    f["backward_moves"] = float(back)
    f["forward_moves"] = float(fwd)
    f["backward_moves_30d"] = float(back30)

    # sessions
    gap_limit = timedelta(minutes=settings.session_gap_minutes)
    session_starts = [hist[0]]
    for prev, nxt in zip(hist, hist[1:]):
        if nxt.ts - prev.ts > gap_limit:
            session_starts.append(nxt)
    f["sessions_all"] = float(len(session_starts))
    f["sessions_30d"] = float(sum(1 for e in session_starts if e.ts > t30))
    f["events_per_session"] = n / len(session_starts)

    # gaps
    gaps = [nxt.ts - prev.ts for prev, nxt in zip(hist, hist[1:])]
    if gaps:
        f["gap_mean_days"] = days(sum(gaps, timedelta(0))) / len(gaps)
        f["gap_max_days"] = days(max(gaps))
        f["gap_last_days"] = days(gaps[-1])
    else:
        f["gap_mean_days"] = f["gap_max_days"] = f["gap_last_days"] = NAN
    f["distinct_channels"] = float(len({e.channel for e in hist}))
    f["distinct_event_types"] = float(len({e.event_type for e in hist}))

    # rates over the tenure; how overdue the next conversion is against the mean gap between conversions
    tenure = f["days_since_first_event"] + 1.0
    f["events_per_day"] = n / tenure
    f["conversions_per_day"] = len(convs) / tenure
    f["recency_over_tenure"] = f["days_since_last_event"] / tenure
    if len(convs) > 1:  # the mean gap is floored at one day
        mean_gap = days(convs[-1].ts - convs[0].ts) / (len(convs) - 1)
        f["conversion_overdue_ratio"] = f["days_since_last_conversion"] / max(mean_gap, 1.0)
    else:
        f["conversion_overdue_ratio"] = NAN

    # activity trend
    t60 = t - timedelta(days=60)
    e30 = sum(1 for e in hist if e.ts > t30)
    p30 = sum(1 for e in hist if t60 < e.ts <= t30)
    f["activity_trend_30d"] = float(e30 - p30)
    f["activity_ratio_30d"] = (e30 + 1) / (p30 + 1)

    # observed stage and days in it
    obs = observed_stage_of(hist, t, settings)
    f["observed_stage"] = float(obs)
    W = timedelta(days=settings.lookback_days)
    A = timedelta(days=settings.advocacy_lookback_days)
    if obs == LAPSED_CODE:
        d = f["days_since_last_event"] - settings.lookback_days
    elif obs == ROLE_CODE["retention"]:
        d = f["days_since_last_conversion"]
    elif obs == ROLE_CODE["advocacy"]:
        firsts = [e for e in hist if e.role == "advocacy" and e.ts > t - A]
        d = days(t - firsts[0].ts)
    else:
        role = ROLES[obs]
        firsts = [e for e in hist if e.role == role and e.ts > t - W]
        d = days(t - firsts[0].ts) if firsts else NAN
    f["days_in_observed_stage"] = d
    return f


def reference_features(events_df, taxonomy, t, settings) -> dict[str, dict]:
    """customer id -> {"features": {name: value}, "observed_stage": int, "eligible": bool,
    "converted": bool, "last_event": datetime} for every customer with an event at or before t."""
    t = to_datetime(t)
    event_types = sorted(taxonomy.event_role)
    out: dict[str, dict] = {}
    for cid, hist in histories(events_df, taxonomy).items():
        past = [e for e in hist if e.ts <= t]
        if not past:
            continue
        feats = customer_features(hist, t, settings, event_types)
        out[cid] = {
            "features": feats,
            "observed_stage": observed_stage_of(past, t, settings),
            "eligible": eligible_of(hist, t, settings),
            "converted": any(e.conv for e in past),
            "last_event": past[-1].ts,
        }
    return out


# ------------------------------------------------------------------------------------------------
# labels
# ------------------------------------------------------------------------------------------------


def customer_labels(hist: list[Event], t: datetime, settings) -> dict[str, float]:
    H = settings.horizons

    def future(h_days: float) -> list[Event]:
        end = t + timedelta(days=h_days)
        return [e for e in hist if t < e.ts <= end]

    converted = any(e.conv for e in hist if e.ts <= t)

    F = future(H.stage)
    if any(e.role == "advocacy" for e in F):
        stage = ROLE_CODE["advocacy"]
    elif converted:
        stage = ROLE_CODE["retention"] if F else LAPSED_CODE
    elif not F:
        stage = LAPSED_CODE
    elif any(e.conv or e.role == "decision" for e in F):
        stage = ROLE_CODE["decision"]
    elif any(e.role == "consideration" for e in F):
        stage = ROLE_CODE["consideration"]
    else:
        stage = ROLE_CODE["awareness"]

    Fc = future(H.churn)
    if settings.churn_activity == "conversions":
        Fc = [e for e in Fc if e.conv]
    churn = (0.0 if Fc else 1.0) if converted else NAN

    advocacy = 1.0 if any(e.role == "advocacy" for e in future(H.advocacy)) else 0.0
    conversion = 1.0 if any(e.conv for e in future(H.conversion)) else 0.0
    if settings.conversion_scope == "unconverted" and converted:
        conversion = NAN
    return {"stage": stage, "churn": churn, "advocacy": advocacy, "conversion": conversion}


def reference_labels(events_df, taxonomy, t, settings, customer_ids=None) -> dict[str, dict[str, float]]:
    """customer id -> labels at t; by default for every customer with an event at or before t."""
    t = to_datetime(t)
    hs = histories(events_df, taxonomy)
    if customer_ids is None:
        customer_ids = [c for c, h in hs.items() if any(e.ts <= t for e in h)]
    return {cid: customer_labels(hs.get(cid, []), t, settings) for cid in customer_ids}

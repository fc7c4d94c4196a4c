"""Feature families of SPEC section 5, as pure functions of (events, as-of time, settings).

All customers are computed at once with vectorised numpy segment operations over customer blocks
(events are sorted by customer and time, so a customer's events in any look-back window are a
suffix of its history: window counts come from one ``bincount`` over window buckets, "last / first
event of a kind" from running maxima / minima of event positions). Blocks of customers run on two
threads into one preallocated matrix; every value depends only on the customer's own events, so
the result does not depend on the blocking. The single-customer path used by the HTTP service
calls exactly the same :func:`build_features` on a one-customer encoding. Names explain
themselves, e.g. ``events_30d_by_stage_decision`` = number of decision-stage events in (t-30d, t].

Bump :data:`FEATURE_VERSION` whenever a definition changes: models record it and refuse a mismatch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from journey_stage.features.encode import CHANNELS, US_PER_DAY, EncodedEvents
from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import LAPSED_INDEX, ROLE_INDEX, ROLES

FEATURE_VERSION = "2"
N_ROLES = len(ROLES)
ADV = ROLE_INDEX["advocacy"]
RET = ROLE_INDEX["retention"]
DEC = ROLE_INDEX["decision"]
# Features holding a category code rather than a quantity (LightGBM treats them as categorical).
CATEGORICAL_PREFIXES = ("last_event_type_",)
BLOCK_EVENTS = 1 << 19  # at most this many events per block of customers (small, cache-friendly temporaries)
BLOCK_CUSTOMERS = 1 << 15  # ... and at most this many customers
THREADS = max(1, min(2, os.cpu_count() or 1))


@dataclass(frozen=True)
class FeatureFrame:
    """Features of every customer seen at or before ``as_of``."""

    as_of_us: int
    customer_ids: np.ndarray  # object array of str
    source_index: np.ndarray  # index of each customer in the encoding passed in
    names: list[str]
    X: np.ndarray  # float32 (n_customers, n_features)
    observed_stage: np.ndarray  # int8 role index, LAPSED_INDEX for lapsed
    last_event_us: np.ndarray  # int64
    converted: np.ndarray  # bool: a conversion at or before as_of

    def column(self, name: str) -> np.ndarray:
        return self.X[:, self.names.index(name)]


def window_label(days: float) -> str:
    return f"{days:g}d"


class _Builder:
    """Writes float32 columns, in a fixed order, into (a row block of) one matrix.

    With ``X=None`` it records the names instead (the dry run that defines the feature schema);
    filling only counts columns, so the names cost nothing per call."""

    def __init__(self, X: np.ndarray | None):
        self.X = X
        self.names: list[str] = []
        self.k = 0
        self._cache: dict[str, np.ndarray] = {}

    def add(self, name: str, col: np.ndarray) -> None:
        if self.X is not None:
            self.X[:, self.k] = col
        else:
            self.names.append(name)
        self.k += 1
        if name in _KEEP:
            self._cache[name] = col

    def get(self, name: str) -> np.ndarray:
        return self._cache[name]

    def add_rows(self, prefix: str, labels: tuple[str, ...] | list[str], mat: np.ndarray) -> None:
        """A block of columns named ``prefix + label`` from ``mat`` of shape (len(labels), n)."""
        k = self.k
        if self.X is not None:
            np.copyto(self.X[:, k: k + len(labels)].T, mat, casting="unsafe")
        else:
            self.names.extend(f"{prefix}{lab}" for lab in labels)
        self.k = k + len(labels)


_KEEP = {"days_since_last_conversion", "days_since_first_conversion", "days_since_last_event", "days_since_first_event", "conversions_all"}


def _empty(event_types: tuple[str, ...]) -> EncodedEvents:
    return EncodedEvents(
        customer_ids=np.array([], dtype=object), cust=np.zeros(0, np.int64), ts=np.zeros(0, np.int64),
        role=np.zeros(0, np.int8), etype=np.zeros(0, np.int16), channel=np.zeros(0, np.int16),
        value=np.zeros(0), conv=np.zeros(0, bool), event_types=event_types,
    )


@lru_cache(maxsize=64)
def _names_cached(event_types: tuple[str, ...], settings_json: str) -> tuple[str, ...]:
    settings = Settings.model_validate_json(settings_json)
    b = _Builder(None)
    _fill(b, _empty(event_types).as_of(0), 0, settings)
    return tuple(b.names)


def feature_names(event_types: tuple[str, ...] | list[str], settings: Settings) -> list[str]:
    """The ordered feature names for a taxonomy's event types (the feature schema)."""
    return list(_names_cached(tuple(event_types), settings.model_dump_json()))


def _days(delta_us: np.ndarray) -> np.ndarray:
    return delta_us.astype(np.float64) / US_PER_DAY


def observed_stage(h: EncodedEvents, t_us: int, settings: Settings) -> np.ndarray:
    """SPEC 4 observed-stage rules on a history already cut at t (``h = events.as_of(t)``)."""
    n = h.n_customers
    W = int(settings.lookback_days * US_PER_DAY)
    A = int(settings.advocacy_lookback_days * US_PER_DAY)
    adv_recent = np.zeros(n, bool)
    m = (h.role == ADV) & (h.ts > t_us - A)
    adv_recent[h.cust[m]] = True
    converted = np.zeros(n, bool)
    converted[h.cust[h.conv]] = True
    recent = h.ts > t_us - W
    any_recent = np.zeros(n, bool)
    any_recent[h.cust[recent]] = True
    # most advanced of awareness / consideration / decision in (t-W, t]; awareness if none of them
    pre = recent & (h.role <= DEC)
    best = np.zeros(n, np.int8)
    np.maximum.at(best, h.cust[pre], h.role[pre])
    return _stage_rule(adv_recent, converted, any_recent, best)


def _stage_rule(adv_recent, converted, any_recent, best) -> np.ndarray:
    stage = np.where(any_recent, best, LAPSED_INDEX).astype(np.int8)
    stage = np.where(converted, np.where(any_recent, RET, LAPSED_INDEX), stage)
    stage = np.where(adv_recent, ADV, stage)
    return stage.astype(np.int8)


def build_features(events: EncodedEvents, as_of_us: int, settings: Settings) -> FeatureFrame:
    """Every feature of every customer with history at ``as_of`` (events after it are never read)."""
    h = events.as_of(as_of_us)
    names = list(_names_cached(h.event_types, settings.model_dump_json()))
    n = h.n_customers
    X = np.empty((n, len(names)), dtype=np.float32, order="F")
    obs = np.empty(n, np.int8)
    last_ts = np.empty(n, np.int64)
    converted = np.empty(n, bool)
    offsets = h.offsets() if n > 1 else np.array([0, h.n_events], np.int64)[: n + 1]

    def run(lo: int, hi: int) -> None:
        blk = h if (lo, hi) == (0, n) else h.customer_slice(lo, hi, offsets)
        b = _Builder(X[lo:hi])
        o, lt, cv = _fill(b, blk, as_of_us, settings, offsets[lo: hi + 1] - offsets[lo])
        assert b.k == len(names)
        obs[lo:hi], last_ts[lo:hi], converted[lo:hi] = o, lt, cv

    if h.n_events <= BLOCK_EVENTS and n <= BLOCK_CUSTOMERS:
        run(0, n)
    else:  # blocks of whole customers
        cuts = np.searchsorted(offsets, np.arange(BLOCK_EVENTS, h.n_events, BLOCK_EVENTS))
        bounds = np.unique(np.r_[0, cuts, np.arange(BLOCK_CUSTOMERS, n, BLOCK_CUSTOMERS), n])
        pairs = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
        if THREADS > 1:
            with ThreadPoolExecutor(THREADS) as ex:
                for f in [ex.submit(run, lo, hi) for lo, hi in pairs]:
                    f.result()
        else:
            for lo, hi in pairs:
                run(lo, hi)
    return FeatureFrame(
        as_of_us=as_of_us,
        customer_ids=h.customer_ids,
        source_index=h.source_index if h.source_index is not None else np.arange(n),
        names=names,
        X=X,
        observed_stage=obs,
        last_event_us=last_ts,
        converted=converted,
    )


def _last_at_or_before(pos: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per query position, the largest of the ascending ``pos`` that is <= it (-1: none)."""
    i = np.searchsorted(pos, q, side="right") - 1
    return np.where(i >= 0, pos[np.maximum(i, 0)] if len(pos) else -1, -1)


def _first_at_or_after(pos: np.ndarray, q: np.ndarray, big: int) -> np.ndarray:
    """Per query position, the smallest of the ascending ``pos`` that is >= it (``big``: none)."""
    i = np.searchsorted(pos, q, side="left")
    return np.where(i < len(pos), pos[np.minimum(i, len(pos) - 1)] if len(pos) else big, big)


def _fill(b: _Builder, h: EncodedEvents, t: int, settings: Settings, offsets: np.ndarray | None = None):
    n = h.n_customers
    cust, ts, role, etype, ch, value, conv = h.cust, h.ts, h.role, h.etype, h.channel, h.value, h.conv
    ne = len(ts)
    n_et, n_ch = len(h.event_types), len(CHANNELS)
    if offsets is None:
        offsets = h.offsets()
    starts, ends = offsets[:-1], offsets[1:] - 1
    nan = np.nan
    idt = np.int32 if ne < 2**31 - 2 else np.int64
    c = cust.astype(idt, copy=False)

    def age_at(pos: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Days before t of the event at ``pos`` where valid, NaN elsewhere."""
        out = np.full(n, nan)
        if ne:
            out[valid] = _days(t - ts[pos[valid]])
        return out

    # --- look-back spans: every event's bucket = how many spans (ascending) it is outside of -----
    win_spans = [int(w * US_PER_DAY) for w in settings.feature_windows_days]
    D30, D60 = 30 * US_PER_DAY, 60 * US_PER_DAY
    W = int(settings.lookback_days * US_PER_DAY)
    A = int(settings.advocacy_lookback_days * US_PER_DAY)
    spans = sorted(set(win_spans) | {D30, D60, W, A})
    age_us = t - ts
    bucket = np.searchsorted(np.array(spans, np.int64), age_us, side="right").astype(idt)  # in span j <=> bucket <= j
    nb = len(spans) + 1
    # events per customer in each span (a suffix of its history), all time last
    k = np.bincount(bucket * n + c, minlength=nb * n).reshape(nb, n).cumsum(0) if n else np.zeros((nb, 0), np.int64)
    k_of = {s: k[j] for j, s in enumerate(spans)}
    n_ev = k[-1]
    suffix_start = {s: ends + 1 - k_of[s] for s in spans}  # first position inside the span

    # --- recency -------------------------------------------------------------------------------
    first_ts = ts[starts] if n else np.zeros(0, np.int64)
    last_ts = ts[ends] if n else np.zeros(0, np.int64)
    b.add("days_since_first_event", _days(t - first_ts))
    b.add("days_since_last_event", _days(t - last_ts))
    # positions of each role's events (ascending), from one stable sort of the small role codes
    by_role = np.argsort(role, kind="stable").astype(idt, copy=False)
    rb = np.searchsorted(role[by_role], np.arange(N_ROLES + 1), side="left") if ne else np.zeros(N_ROLES + 1, np.int64)
    role_pos = [by_role[rb[r]: rb[r + 1]] for r in range(N_ROLES)]
    last_of_role = []
    for r, rname in enumerate(ROLES):
        lp = _last_at_or_before(role_pos[r], ends)
        last_of_role.append(lp)
        b.add(f"days_since_last_{rname}", age_at(lp, lp >= starts))
    conv_pos = np.flatnonzero(conv)
    lp = _last_at_or_before(conv_pos, ends)
    fp = _first_at_or_after(conv_pos, starts, ne)
    b.add("days_since_last_conversion", age_at(lp, lp >= starts))
    b.add("days_since_first_conversion", age_at(fp, fp <= ends))
    converted = ~np.isnan(b.get("days_since_first_conversion"))
    b.add("has_converted", converted.astype(np.float64))

    # --- counts and value in windows (1, 7, 30, 90 days and all time) ----------------------------
    # category counts per (category, window bucket, customer); cumulative over buckets = windows
    wsp = sorted(set(win_spans))
    wb = np.searchsorted(np.array(wsp, np.int64), age_us, side="right").astype(idt)
    nwb = len(wsp) + 1
    wcol = {s: j for j, s in enumerate(wsp)}
    base = wb * n + c

    def by_cat(code: np.ndarray, n_cat: int) -> np.ndarray:
        key = code.astype(idt) * (nwb * n) + base if n_cat * nwb * n < 2**31 - 1 else code.astype(np.int64) * (nwb * n) + base
        m = np.bincount(key, minlength=n_cat * nwb * n).reshape(n_cat, nwb, n)
        for j in range(1, nwb):  # counts per bucket -> counts per window (cumulative)
            np.add(m[:, j], m[:, j - 1], out=m[:, j])
        return m

    st_cnt = by_cat(role, N_ROLES)
    ch_cnt = by_cat(ch, n_ch)
    et_cnt = by_cat(etype, n_et)
    cs_conv = np.zeros(ne + 1, idt)
    np.cumsum(conv, out=cs_conv[1:])
    pos_v = np.flatnonzero(value != 0)  # skipping zeros leaves every float sum unchanged
    cv, vv, wv = c[pos_v], value[pos_v], wb[pos_v]
    windows = [(window_label(w), int(w * US_PER_DAY)) for w in settings.feature_windows_days] + [("all", None)]
    for label, span in windows:
        j = nwb - 1 if span is None else wcol[span]
        cnt = n_ev if span is None else k_of[span]
        b.add(f"events_{label}", cnt.astype(np.float64))
        sel = slice(None) if span is None else wv <= j
        b.add(f"value_{label}", np.bincount(cv[sel], weights=vv[sel], minlength=n)[:n] if n else np.zeros(0))
        b.add(f"conversions_{label}", (cs_conv[ends + 1] - cs_conv[ends + 1 - cnt]).astype(np.float64))
        b.add_rows(f"events_{label}_by_stage_", ROLES, st_cnt[:, j])
        b.add_rows(f"events_{label}_by_channel_", CHANNELS, ch_cnt[:, j])
        b.add_rows(f"events_{label}_by_event_", h.event_types, et_cnt[:, j])
    ch_all, et_all = ch_cnt[:, -1], et_cnt[:, -1]

    # --- sequence: last k stages and event types -------------------------------------------------
    for j in range(settings.last_k):
        idx = ends - j
        ok = idx >= starts
        safe = np.where(ok, idx, 0)
        b.add(f"last_stage_{j + 1}", np.where(ok, role[safe] if n else 0, nan).astype(np.float64))
        b.add(f"last_event_type_{j + 1}", np.where(ok, etype[safe] if n else 0, nan).astype(np.float64))

    # --- transitions, backward moves, sessions, gaps --------------------------------------------
    same = np.zeros(ne, bool)  # event i continues the customer of event i-1
    if ne > 1:
        np.equal(c[1:], c[:-1], out=same[1:])
    prev_r = np.empty(ne, np.int8)
    if ne:
        prev_r[0] = 0
        prev_r[1:] = role[:-1]
    pair = prev_r.astype(idt) * N_ROLES + role
    key = np.where(same, pair * n + c, N_ROLES * N_ROLES * n)
    trans = np.bincount(key, minlength=N_ROLES * N_ROLES * n + 1)[: N_ROLES * N_ROLES * n].reshape(N_ROLES * N_ROLES, n)
    b.add_rows("transitions_", [f"{a}_to_{c_}" for a in ROLES for c_ in ROLES], trans)
    back_pairs = [a * N_ROLES + d for a in range(N_ROLES) for d in range(N_ROLES) if d < a]
    fwd_pairs = [a * N_ROLES + d for a in range(N_ROLES) for d in range(N_ROLES) if d > a]
    b.add("backward_moves", trans[back_pairs].sum(0).astype(np.float64))
    b.add("forward_moves", trans[fwd_pairs].sum(0).astype(np.float64))
    back = same & (role < prev_r)
    cs = np.zeros(ne + 1, idt)
    np.cumsum(back, out=cs[1:])
    b.add("backward_moves_30d", (cs[ends + 1] - cs[suffix_start[D30]]).astype(np.float64))
    gap_limit = settings.session_gap_minutes * 60_000_000
    gaps = np.zeros(ne, np.int64)  # time since the customer's previous event (0 for its first)
    if ne > 1:
        np.subtract(ts[1:], ts[:-1], out=gaps[1:])
        gaps[~same] = 0
    new_session = ~(same & (gaps <= gap_limit))
    np.cumsum(new_session, out=cs[1:])
    sessions = (cs[ends + 1] - cs[starts]).astype(np.float64)
    b.add("sessions_all", sessions)
    b.add("sessions_30d", (cs[ends + 1] - cs[suffix_start[D30]]).astype(np.float64))
    n_events = n_ev.astype(np.float64)
    b.add("events_per_session", np.divide(n_events, sessions, out=np.zeros(n), where=sessions > 0))
    span_days = _days(last_ts - first_ts)
    b.add("gap_mean_days", np.where(n_events > 1, span_days / np.maximum(n_events - 1, 1), nan))
    gmax = np.maximum.reduceat(gaps, starts) if n else np.zeros(0, np.int64)
    b.add("gap_max_days", np.where(n_events > 1, _days(gmax), nan))
    last_gap = gaps[ends] if n else np.zeros(0, np.int64)
    b.add("gap_last_days", np.where(n_events > 1, _days(last_gap), nan))
    b.add("distinct_channels", (ch_all > 0).sum(0).astype(np.float64))
    b.add("distinct_event_types", (et_all > 0).sum(0).astype(np.float64))

    # --- rates over the customer's tenure and how overdue the next purchase is (RFM / BTYD-style)
    tenure = b.get("days_since_first_event") + 1.0
    n_conv = b.get("conversions_all")
    b.add("events_per_day", n_events / tenure)
    b.add("conversions_per_day", n_conv / tenure)
    b.add("recency_over_tenure", b.get("days_since_last_event") / tenure)
    conv_gap = np.where(n_conv > 1, (b.get("days_since_first_conversion") - b.get("days_since_last_conversion")) / np.maximum(n_conv - 1, 1), nan)
    b.add("conversion_overdue_ratio", b.get("days_since_last_conversion") / np.maximum(conv_gap, 1.0))  # gap floored at 1 day

    # --- activity trend: last 30 days against the 30 before ---------------------------------------
    e30 = k_of[D30].astype(np.float64)
    prev30 = (k_of[D60] - k_of[D30]).astype(np.float64)
    b.add("activity_trend_30d", e30 - prev30)
    b.add("activity_ratio_30d", (e30 + 1) / (prev30 + 1))

    # --- observed stage (SPEC 4, as :func:`observed_stage`) and the days spent in it ------------
    sW, sA = suffix_start[W], suffix_start[A]
    first_adv_A = _first_at_or_after(role_pos[ADV], sA, ne)
    adv_recent = first_adv_A <= ends
    any_recent = k_of[W] > 0
    best = np.zeros(n, np.int8)
    for r in range(1, DEC + 1):  # the latest role <= DEC seen in (t-W, t]
        best[last_of_role[r] >= sW] = r
    obs = _stage_rule(adv_recent, converted, any_recent, best)
    b.add("observed_stage", obs.astype(np.float64))

    # days since entering it: awareness/consideration/decision: the first event of that stage in the
    # look-back window; retention: the last conversion; advocacy: the first advocacy event in the
    # advocacy look-back; lapsed: days since the last event minus the look-back W
    out = np.full(n, nan)
    for r in range(DEC + 1):
        sel = obs == r
        if sel.any():
            fpos = _first_at_or_after(role_pos[r], sW[sel], ne)
            out[sel] = age_at_sel(ts, t, fpos, fpos <= ends[sel])
    sel = obs == RET
    out[sel] = b.get("days_since_last_conversion")[sel]
    sel = obs == ADV
    out[sel] = age_at_sel(ts, t, first_adv_A[sel], adv_recent[sel])
    sel = obs == LAPSED_INDEX
    out[sel] = (b.get("days_since_last_event") - settings.lookback_days)[sel]
    b.add("days_in_observed_stage", out)

    return obs, last_ts, converted


def age_at_sel(ts: np.ndarray, t: int, pos: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.full(len(pos), np.nan)
    out[valid] = _days(t - ts[pos[valid]])
    return out


def eligible(ff: FeatureFrame, settings: Settings) -> np.ndarray:
    """SPEC 4 eligibility: an event in (t-E, t]; E = None scores every customer seen before t."""
    if settings.eligibility_days is None:
        return np.ones(len(ff.customer_ids), bool)
    return ff.last_event_us > ff.as_of_us - int(settings.eligibility_days * US_PER_DAY)

"""Feature families of SPEC section 5, as pure functions of (events, as-of time, settings).

Each family is one function named after it, ``family(ctx, out)`` (:data:`FAMILIES`, in schema
order: recency, windows, sequence, transitions, sessions, gaps, diversity, rates, trend, observed
stage), writing its columns from a shared :class:`~journey_stage.features.context.FamilyContext`
that computes what several families need once. All customers are computed at once with vectorised
numpy segment operations over customer blocks (see :mod:`journey_stage.features.context`). Blocks
of customers run on two threads into one preallocated matrix; every value depends only on the
customer's own events, so the result does not depend on the blocking. The single-customer path
used by the HTTP service calls exactly the same :func:`build_features` on a one-customer encoding.
Names explain themselves, e.g. ``events_30d_by_stage_decision`` = number of decision-stage events
in (t-30d, t].

Bump :data:`FEATURE_VERSION` whenever a definition changes: models record it and refuse a mismatch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import LAPSED_INDEX, ROLES
from journey_stage.features.context import ADV, D30, D60, DEC, N_ROLES, RET, FamilyContext, days, first_at_or_after
from journey_stage.features.encode import CHANNELS, US_PER_DAY, EncodedEvents

FEATURE_VERSION = "2"
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


# ------------------------------------------------------------------------------------------------
# Feature families: one function per family, named after it, writing its columns (in schema order)
# from the shared :class:`FamilyContext`; later families may read columns of earlier ones (_KEEP)
# ------------------------------------------------------------------------------------------------


def recency(ctx: FamilyContext, out: _Builder) -> None:
    """Days since the first / last event, the last event of each stage, the last / first conversion."""
    out.add("days_since_first_event", days(ctx.t - ctx.first_ts))
    out.add("days_since_last_event", days(ctx.t - ctx.last_ts))
    for r, rname in enumerate(ROLES):
        lp = ctx.last_of_role[r]
        out.add(f"days_since_last_{rname}", ctx.age_at(lp, lp >= ctx.starts))
    lp, fp = ctx.conversion_pos
    out.add("days_since_last_conversion", ctx.age_at(lp, lp >= ctx.starts))
    out.add("days_since_first_conversion", ctx.age_at(fp, fp <= ctx.ends))
    out.add("has_converted", ctx.converted.astype(np.float64))


def windows(ctx: FamilyContext, out: _Builder) -> None:
    """Counts and value in the windows of ``feature_windows_days`` (1, 7, 30, 90 days) and all time:
    events, value, conversions, and events by stage, by channel and by event type."""
    n, ends = ctx.n, ctx.ends
    nwb = len(ctx.window_spans) + 1
    wcol = {s: j for j, s in enumerate(ctx.window_spans)}
    st_cnt, ch_cnt, et_cnt = ctx.stage_counts, ctx.channel_counts, ctx.event_type_counts
    cs_conv = np.zeros(ctx.ne + 1, ctx.idt)
    np.cumsum(ctx.conv, out=cs_conv[1:])
    pos_v = np.flatnonzero(ctx.value != 0)  # skipping zeros leaves every float sum unchanged
    cv, vv, wv = ctx.c[pos_v], ctx.value[pos_v], ctx.window_bucket[pos_v]
    spans = [(window_label(w), int(w * US_PER_DAY)) for w in ctx.settings.feature_windows_days] + [("all", None)]
    for label, span in spans:
        j = nwb - 1 if span is None else wcol[span]
        cnt = ctx.n_ev if span is None else ctx.k_of[span]
        out.add(f"events_{label}", cnt.astype(np.float64))
        sel = slice(None) if span is None else wv <= j
        out.add(f"value_{label}", np.bincount(cv[sel], weights=vv[sel], minlength=n)[:n] if n else np.zeros(0))
        out.add(f"conversions_{label}", (cs_conv[ends + 1] - cs_conv[ends + 1 - cnt]).astype(np.float64))
        out.add_rows(f"events_{label}_by_stage_", ROLES, st_cnt[:, j])
        out.add_rows(f"events_{label}_by_channel_", CHANNELS, ch_cnt[:, j])
        out.add_rows(f"events_{label}_by_event_", ctx.h.event_types, et_cnt[:, j])


def sequence(ctx: FamilyContext, out: _Builder) -> None:
    """The last ``last_k`` stages and event types (codes; NaN before the first event)."""
    n, starts, ends = ctx.n, ctx.starts, ctx.ends
    for j in range(ctx.settings.last_k):
        idx = ends - j
        ok = idx >= starts
        safe = np.where(ok, idx, 0)
        out.add(f"last_stage_{j + 1}", np.where(ok, ctx.role[safe] if n else 0, np.nan).astype(np.float64))
        out.add(f"last_event_type_{j + 1}", np.where(ok, ctx.etype[safe] if n else 0, np.nan).astype(np.float64))


def transitions(ctx: FamilyContext, out: _Builder) -> None:
    """Stage-to-stage transitions between consecutive events, forward and backward moves."""
    n, ne, idt, role, same = ctx.n, ctx.ne, ctx.idt, ctx.role, ctx.same
    prev_r = np.empty(ne, np.int8)
    if ne:
        prev_r[0] = 0
        prev_r[1:] = role[:-1]
    pair = prev_r.astype(idt) * N_ROLES + role
    key = np.where(same, pair * n + ctx.c, N_ROLES * N_ROLES * n)
    trans = np.bincount(key, minlength=N_ROLES * N_ROLES * n + 1)[: N_ROLES * N_ROLES * n].reshape(N_ROLES * N_ROLES, n)
    out.add_rows("transitions_", [f"{a}_to_{c_}" for a in ROLES for c_ in ROLES], trans)
    back_pairs = [a * N_ROLES + d for a in range(N_ROLES) for d in range(N_ROLES) if d < a]
    fwd_pairs = [a * N_ROLES + d for a in range(N_ROLES) for d in range(N_ROLES) if d > a]
    out.add("backward_moves", trans[back_pairs].sum(0).astype(np.float64))
    out.add("forward_moves", trans[fwd_pairs].sum(0).astype(np.float64))
    back = same & (role < prev_r)
    cs = np.zeros(ne + 1, idt)
    np.cumsum(back, out=cs[1:])
    out.add("backward_moves_30d", (cs[ctx.ends + 1] - cs[ctx.suffix_start[D30]]).astype(np.float64))


def sessions(ctx: FamilyContext, out: _Builder) -> None:
    """Sessions (a new one after a gap over ``session_gap_minutes``) and events per session."""
    ends = ctx.ends
    gap_limit = ctx.settings.session_gap_minutes * 60_000_000
    new_session = ~(ctx.same & (ctx.gaps <= gap_limit))
    cs = np.zeros(ctx.ne + 1, ctx.idt)
    np.cumsum(new_session, out=cs[1:])
    n_sessions = (cs[ends + 1] - cs[ctx.starts]).astype(np.float64)
    out.add("sessions_all", n_sessions)
    out.add("sessions_30d", (cs[ends + 1] - cs[ctx.suffix_start[D30]]).astype(np.float64))
    out.add("events_per_session", np.divide(ctx.n_events, n_sessions, out=np.zeros(ctx.n), where=n_sessions > 0))


def gaps(ctx: FamilyContext, out: _Builder) -> None:
    """Mean, largest and last gap between consecutive events (NaN with a single event)."""
    n, n_events = ctx.n, ctx.n_events
    span_days = days(ctx.last_ts - ctx.first_ts)
    out.add("gap_mean_days", np.where(n_events > 1, span_days / np.maximum(n_events - 1, 1), np.nan))
    gmax = np.maximum.reduceat(ctx.gaps, ctx.starts) if n else np.zeros(0, np.int64)
    out.add("gap_max_days", np.where(n_events > 1, days(gmax), np.nan))
    last_gap = ctx.gaps[ctx.ends] if n else np.zeros(0, np.int64)
    out.add("gap_last_days", np.where(n_events > 1, days(last_gap), np.nan))


def diversity(ctx: FamilyContext, out: _Builder) -> None:
    """Distinct channels and event types, all time."""
    out.add("distinct_channels", (ctx.channel_counts[:, -1] > 0).sum(0).astype(np.float64))
    out.add("distinct_event_types", (ctx.event_type_counts[:, -1] > 0).sum(0).astype(np.float64))


def rates(ctx: FamilyContext, out: _Builder) -> None:
    """Rates over the customer's tenure and how overdue the next purchase is (RFM / BTYD-style)."""
    tenure = out.get("days_since_first_event") + 1.0
    n_conv = out.get("conversions_all")
    out.add("events_per_day", ctx.n_events / tenure)
    out.add("conversions_per_day", n_conv / tenure)
    out.add("recency_over_tenure", out.get("days_since_last_event") / tenure)
    conv_gap = np.where(n_conv > 1, (out.get("days_since_first_conversion") - out.get("days_since_last_conversion")) / np.maximum(n_conv - 1, 1), np.nan)
    out.add("conversion_overdue_ratio", out.get("days_since_last_conversion") / np.maximum(conv_gap, 1.0))  # gap floored at 1 day


def trend(ctx: FamilyContext, out: _Builder) -> None:
    """Activity trend: events in the last 30 days against the 30 before."""
    e30 = ctx.k_of[D30].astype(np.float64)
    prev30 = (ctx.k_of[D60] - ctx.k_of[D30]).astype(np.float64)
    out.add("activity_trend_30d", e30 - prev30)
    out.add("activity_ratio_30d", (e30 + 1) / (prev30 + 1))


def observed_stage(ctx: FamilyContext, out: _Builder) -> None:
    """The observed stage (SPEC 4, :attr:`FamilyContext.observed`) and the days spent in it.

    Days since entering it: awareness/consideration/decision: the first event of that stage in the
    look-back window; retention: the last conversion; advocacy: the first advocacy event in the
    advocacy look-back; lapsed: days since the last event minus the look-back W."""
    obs, ends = ctx.observed, ctx.ends
    out.add("observed_stage", obs.astype(np.float64))
    days_in = np.full(ctx.n, np.nan)
    sW = ctx.suffix_start[ctx.W]
    for r in range(DEC + 1):
        sel = obs == r
        if sel.any():
            fpos = first_at_or_after(ctx.role_pos[r], sW[sel], ctx.ne)
            days_in[sel] = ctx.age_at(fpos, fpos <= ends[sel])
    sel = obs == RET
    days_in[sel] = out.get("days_since_last_conversion")[sel]
    sel = obs == ADV
    days_in[sel] = ctx.age_at(ctx.first_recent_advocacy[sel], ctx.advocacy_recent[sel])
    sel = obs == LAPSED_INDEX
    days_in[sel] = (out.get("days_since_last_event") - ctx.settings.lookback_days)[sel]
    out.add("days_in_observed_stage", days_in)


# The families in schema order (the feature names are their columns, in this order).
FAMILIES = (recency, windows, sequence, transitions, sessions, gaps, diversity, rates, trend, observed_stage)


def _fill(out: _Builder, h: EncodedEvents, t: int, settings: Settings, offsets: np.ndarray | None = None):
    """Every family's columns for the customers of ``h`` (cut at ``t``); returns their observed
    stage, last event time and whether they converted."""
    ctx = FamilyContext(h, t, settings, offsets)
    for family in FAMILIES:
        family(ctx, out)
    return ctx.observed, ctx.last_ts, ctx.converted


def eligible(ff: FeatureFrame, settings: Settings) -> np.ndarray:
    """SPEC 4 eligibility: an event in (t-E, t]; E = None scores every customer seen before t."""
    if settings.eligibility_days is None:
        return np.ones(len(ff.customer_ids), bool)
    return ff.last_event_us > ff.as_of_us - int(settings.eligibility_days * US_PER_DAY)

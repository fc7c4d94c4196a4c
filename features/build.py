"""Feature families of SPEC section 5, as pure functions of (events, as-of time, settings).

All customers are computed at once with vectorised numpy segment operations (``bincount`` over
customer keys, ``reduceat`` over customer segments); the single-customer path used by the HTTP
service calls exactly the same :func:`build_features` on a one-customer encoding. Names explain
themselves, e.g. ``events_30d_by_stage_decision`` = number of decision-stage events in (t-30d, t].

Bump :data:`FEATURE_VERSION` whenever a definition changes: models record it and refuse a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from features.encode import CHANNELS, US_PER_DAY, EncodedEvents
from journey.settings import Settings
from journey.taxonomy import LAPSED_INDEX, ROLE_INDEX, ROLES

FEATURE_VERSION = "2"
N_ROLES = len(ROLES)
ADV = ROLE_INDEX["advocacy"]
RET = ROLE_INDEX["retention"]
DEC = ROLE_INDEX["decision"]
# Features holding a category code rather than a quantity (LightGBM treats them as categorical).
CATEGORICAL_PREFIXES = ("last_event_type_",)


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
    """Writes named float32 columns, in a fixed order, into one preallocated matrix.

    With ``names=None`` it only records names (the dry run that defines the feature schema)."""

    def __init__(self, n: int, names: list[str] | None):
        self.n = n
        self.expected = names
        self.names: list[str] = []
        self.X = np.empty((n, len(names)), dtype=np.float32, order="F") if names is not None else None
        self._cache: dict[str, np.ndarray] = {}

    def add(self, name: str, col: np.ndarray) -> None:
        k = len(self.names)
        self.names.append(name)
        if self.X is not None:
            assert self.expected[k] == name, (k, name, self.expected[k])
            self.X[:, k] = col
        if name in _KEEP:
            self._cache[name] = np.asarray(col, dtype=np.float64)

    def get(self, name: str) -> np.ndarray:
        return self._cache[name]

    def add_matrix(self, prefix: str, labels: tuple[str, ...] | list[str], mat: np.ndarray) -> None:
        """A block of columns named ``prefix + label`` (one assignment, not one per column)."""
        k = len(self.names)
        names = [f"{prefix}{lab}" for lab in labels]
        self.names.extend(names)
        if self.X is not None:
            assert self.expected[k: k + len(names)] == names, (k, names[0])
            self.X[:, k: k + len(names)] = mat


_KEEP = {"days_since_last_conversion", "days_since_first_conversion", "days_since_last_event", "days_since_first_event", "conversions_all"}


@lru_cache(maxsize=64)
def _names_cached(event_types: tuple[str, ...], settings_json: str) -> tuple[str, ...]:
    settings = Settings.model_validate_json(settings_json)
    empty = EncodedEvents(
        customer_ids=np.array([], dtype=object), cust=np.zeros(0, np.int64), ts=np.zeros(0, np.int64),
        role=np.zeros(0, np.int8), etype=np.zeros(0, np.int16), channel=np.zeros(0, np.int16),
        value=np.zeros(0), conv=np.zeros(0, bool), event_types=event_types,
    )
    b = _Builder(0, None)
    _fill(b, empty.as_of(0), 0, settings)
    return tuple(b.names)


def feature_names(event_types: tuple[str, ...] | list[str], settings: Settings) -> list[str]:
    """The ordered feature names for a taxonomy's event types (the feature schema)."""
    return list(_names_cached(tuple(event_types), settings.model_dump_json()))


def _days(delta_us: np.ndarray) -> np.ndarray:
    return delta_us.astype(np.float64) / US_PER_DAY


def _last_in_groups(cust_sub: np.ndarray, vals_sub: np.ndarray, n: int, fill: float) -> np.ndarray:
    """Per customer, the last of ``vals_sub`` (events already sorted by customer, time)."""
    out = np.full(n, fill, dtype=np.float64)
    if len(cust_sub):
        last = np.flatnonzero(np.r_[cust_sub[1:] != cust_sub[:-1], True])
        out[cust_sub[last]] = vals_sub[last]
    return out


def _first_in_groups(cust_sub: np.ndarray, vals_sub: np.ndarray, n: int, fill: float) -> np.ndarray:
    out = np.full(n, fill, dtype=np.float64)
    if len(cust_sub):
        first = np.flatnonzero(np.r_[True, cust_sub[1:] != cust_sub[:-1]])
        out[cust_sub[first]] = vals_sub[first]
    return out


def _count(keys: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(keys, weights=weights, minlength=size)[:size]


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
    stage = np.where(any_recent, best, LAPSED_INDEX).astype(np.int8)
    stage = np.where(converted, np.where(any_recent, RET, LAPSED_INDEX), stage)
    stage = np.where(adv_recent, ADV, stage)
    return stage.astype(np.int8)


def build_features(events: EncodedEvents, as_of_us: int, settings: Settings) -> FeatureFrame:
    """Every feature of every customer with history at ``as_of`` (events after it are never read)."""
    h = events.as_of(as_of_us)
    b = _Builder(h.n_customers, feature_names(h.event_types, settings))
    obs, last_ts, converted = _fill(b, h, as_of_us, settings)
    return FeatureFrame(
        as_of_us=as_of_us,
        customer_ids=h.customer_ids,
        source_index=h.source_index if h.source_index is not None else np.arange(h.n_customers),
        names=b.names,
        X=b.X,
        observed_stage=obs,
        last_event_us=last_ts.astype(np.int64),
        converted=converted,
    )


def _fill(b: _Builder, h: EncodedEvents, t: int, settings: Settings):
    n = h.n_customers
    cust, ts, role, etype, ch = h.cust, h.ts, h.role, h.etype, h.channel
    n_et, n_ch = len(h.event_types), len(CHANNELS)
    offsets = h.offsets()
    starts, ends = offsets[:-1], offsets[1:] - 1
    nan = np.nan
    age = _days(t - ts)  # days before t of every event

    # --- recency -------------------------------------------------------------------------------
    first_ts = ts[starts] if n else np.zeros(0, np.int64)
    last_ts = ts[ends] if n else np.zeros(0, np.int64)
    b.add("days_since_first_event", _days(t - first_ts))
    b.add("days_since_last_event", _days(t - last_ts))
    for r, rname in enumerate(ROLES):
        m = role == r
        b.add(f"days_since_last_{rname}", _last_in_groups(cust[m], age[m], n, nan))
    m = h.conv
    b.add("days_since_last_conversion", _last_in_groups(cust[m], age[m], n, nan))
    b.add("days_since_first_conversion", _first_in_groups(cust[m], age[m], n, nan))
    converted = ~np.isnan(b.get("days_since_first_conversion"))
    b.add("has_converted", converted.astype(np.float64))

    # --- counts and value in windows (1, 7, 30, 90 days and all time) ----------------------------
    windows = [(window_label(w), int(w * US_PER_DAY)) for w in settings.feature_windows_days] + [("all", None)]
    for label, span in windows:
        m = slice(None) if span is None else ts > t - span
        c, r_, e_, ch_, v_, cv_ = cust[m], role[m], etype[m], ch[m], h.value[m], h.conv[m]
        b.add(f"events_{label}", _count(c, n).astype(np.float64))
        b.add(f"value_{label}", _count(c, n, v_))
        b.add(f"conversions_{label}", _count(c[cv_], n).astype(np.float64))
        b.add_matrix(f"events_{label}_by_stage_", ROLES, _count(c * N_ROLES + r_, n * N_ROLES).reshape(n, N_ROLES))
        ch_mat = _count(c * n_ch + ch_, n * n_ch).reshape(n, n_ch)
        b.add_matrix(f"events_{label}_by_channel_", CHANNELS, ch_mat)
        et_mat = _count(c * n_et + e_, n * n_et).reshape(n, n_et)
        b.add_matrix(f"events_{label}_by_event_", h.event_types, et_mat)

    # --- sequence: last k stages and event types -------------------------------------------------
    for j in range(settings.last_k):
        idx = ends - j
        ok = idx >= starts
        safe = np.where(ok, idx, 0)
        b.add(f"last_stage_{j + 1}", np.where(ok, role[safe] if n else 0, nan).astype(np.float64))
        b.add(f"last_event_type_{j + 1}", np.where(ok, etype[safe] if n else 0, nan).astype(np.float64))

    # --- transitions, backward moves, sessions, gaps --------------------------------------------
    same = cust[1:] == cust[:-1]
    pc, prev_r, next_r = cust[1:][same], role[:-1][same], role[1:][same]
    gap_us = (ts[1:] - ts[:-1])[same]
    trans = _count(pc * N_ROLES * N_ROLES + prev_r.astype(np.int64) * N_ROLES + next_r, n * N_ROLES * N_ROLES)
    b.add_matrix("transitions_", [f"{a}_to_{c}" for a in ROLES for c in ROLES], trans.reshape(n, N_ROLES * N_ROLES))
    back = next_r < prev_r
    b.add("backward_moves", _count(pc[back], n).astype(np.float64))
    b.add("forward_moves", _count(pc[next_r > prev_r], n).astype(np.float64))
    recent_pair = ts[1:][same] > t - 30 * US_PER_DAY
    b.add("backward_moves_30d", _count(pc[back & recent_pair], n).astype(np.float64))
    gap_limit = settings.session_gap_minutes * 60_000_000
    new_session = np.ones(len(ts), bool)
    if len(ts) > 1:
        new_session[1:] = ~(same & ((ts[1:] - ts[:-1]) <= gap_limit))
    sessions = _count(cust[new_session], n).astype(np.float64)
    b.add("sessions_all", sessions)
    b.add("sessions_30d", _count(cust[new_session & (ts > t - 30 * US_PER_DAY)], n).astype(np.float64))
    n_events = (ends - starts + 1).astype(np.float64)
    b.add("events_per_session", np.divide(n_events, sessions, out=np.zeros(n), where=sessions > 0))
    span_days = _days(last_ts - first_ts)
    b.add("gap_mean_days", np.where(n_events > 1, span_days / np.maximum(n_events - 1, 1), nan))
    gaps_aligned = np.zeros(len(ts), np.int64)
    if len(ts) > 1:
        gaps_aligned[1:] = np.where(same, ts[1:] - ts[:-1], 0)
    gmax = np.maximum.reduceat(gaps_aligned, starts) if n else np.zeros(0, np.int64)
    b.add("gap_max_days", np.where(n_events > 1, _days(gmax), nan))
    last_gap = gaps_aligned[ends] if n else np.zeros(0, np.int64)
    b.add("gap_last_days", np.where(n_events > 1, _days(last_gap), nan))
    b.add("distinct_channels", (ch_mat > 0).sum(1).astype(np.float64))  # all-time matrices of the last window
    b.add("distinct_event_types", (et_mat > 0).sum(1).astype(np.float64))

    # --- rates over the customer's tenure and how overdue the next purchase is (RFM / BTYD-style)
    tenure = b.get("days_since_first_event") + 1.0
    n_conv = b.get("conversions_all")
    b.add("events_per_day", n_events / tenure)
    b.add("conversions_per_day", n_conv / tenure)
    b.add("recency_over_tenure", b.get("days_since_last_event") / tenure)
    conv_gap = np.where(n_conv > 1, (b.get("days_since_first_conversion") - b.get("days_since_last_conversion")) / np.maximum(n_conv - 1, 1), nan)
    b.add("conversion_overdue_ratio", b.get("days_since_last_conversion") / np.maximum(conv_gap, 1.0))  # gap floored at 1 day

    # --- activity trend: last 30 days against the 30 before ---------------------------------------
    e30 = _count(cust[ts > t - 30 * US_PER_DAY], n).astype(np.float64)
    prev30 = _count(cust[(ts > t - 60 * US_PER_DAY) & (ts <= t - 30 * US_PER_DAY)], n).astype(np.float64)
    b.add("activity_trend_30d", e30 - prev30)
    b.add("activity_ratio_30d", (e30 + 1) / (prev30 + 1))

    # --- observed stage and the days spent in it -------------------------------------------------
    obs = observed_stage(h, t, settings)
    b.add("observed_stage", obs.astype(np.float64))
    b.add("days_in_observed_stage", _days_in_stage(h, t, obs, settings, b))

    return obs, last_ts, converted


def _days_in_stage(h: EncodedEvents, t: int, obs: np.ndarray, settings: Settings, b: _Builder) -> np.ndarray:
    """Days since the customer entered the observed stage.

    awareness/consideration/decision: since the first event of that stage in the look-back window;
    retention: since the last conversion; advocacy: since the first advocacy event in the advocacy
    look-back; lapsed: days since the last event minus the look-back W (time since lapsing)."""
    n = h.n_customers
    W = int(settings.lookback_days * US_PER_DAY)
    A = int(settings.advocacy_lookback_days * US_PER_DAY)
    age = _days(t - h.ts)
    out = np.full(n, np.nan)
    for r in range(DEC + 1):
        m = (h.role == r) & (h.ts > t - W)
        first = _first_in_groups(h.cust[m], age[m], n, np.nan)
        out = np.where(obs == r, first, out)
    out = np.where(obs == RET, b.get("days_since_last_conversion"), out)
    m = (h.role == ADV) & (h.ts > t - A)
    out = np.where(obs == ADV, _first_in_groups(h.cust[m], age[m], n, np.nan), out)
    since_last = b.get("days_since_last_event")
    out = np.where(obs == LAPSED_INDEX, since_last - settings.lookback_days, out)
    return out


def eligible(ff: FeatureFrame, settings: Settings) -> np.ndarray:
    """SPEC 4 eligibility: an event in (t-E, t]; E = None scores every customer seen before t."""
    if settings.eligibility_days is None:
        return np.ones(len(ff.customer_ids), bool)
    return ff.last_event_us > ff.as_of_us - int(settings.eligibility_days * US_PER_DAY)

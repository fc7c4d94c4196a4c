"""The shared context of the feature families in :mod:`journey_stage.features.build`.

A :class:`FamilyContext` holds, for one block of whole customers at one as-of time, what several
families need, each computed once: look-back span counts, positions of each role's events, the
customer-continuation mask, gaps between events, window counts by category, conversion positions
and the SPEC 4 observed stage. Everything is a vectorised numpy segment operation: events are
sorted by customer and time, so a customer's events in any look-back span are a suffix of its
history (span counts come from one ``bincount`` over span buckets, "last / first event of a kind"
from binary searches in that kind's ascending event positions).

Changing a value here changes feature definitions: bump ``build.FEATURE_VERSION``.
"""

from __future__ import annotations

import numpy as np

from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import LAPSED_INDEX, ROLE_INDEX, ROLES
from journey_stage.features.encode import CHANNELS, US_PER_DAY, EncodedEvents


class cached_property:  # noqa: N801 - functools.cached_property without its per-instance lock (Python < 3.12)
    """Computed on first access, then read from the instance's ``__dict__`` (a non-data descriptor)."""

    def __init__(self, fn):
        self.fn, self.name, self.__doc__ = fn, fn.__name__, fn.__doc__

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


N_ROLES = len(ROLES)
ADV = ROLE_INDEX["advocacy"]
RET = ROLE_INDEX["retention"]
DEC = ROLE_INDEX["decision"]
D30, D60 = 30 * US_PER_DAY, 60 * US_PER_DAY


def days(delta_us: np.ndarray) -> np.ndarray:
    return delta_us.astype(np.float64) / US_PER_DAY


def last_at_or_before(pos: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per query position, the largest of the ascending ``pos`` that is <= it (-1: none)."""
    i = np.searchsorted(pos, q, side="right") - 1
    return np.where(i >= 0, pos[np.maximum(i, 0)] if len(pos) else -1, -1)


def first_at_or_after(pos: np.ndarray, q: np.ndarray, big: int) -> np.ndarray:
    """Per query position, the smallest of the ascending ``pos`` that is >= it (``big``: none)."""
    i = np.searchsorted(pos, q, side="left")
    return np.where(i < len(pos), pos[np.minimum(i, len(pos) - 1)] if len(pos) else big, big)


def stage_rule(adv_recent, converted, any_recent, best) -> np.ndarray:
    """SPEC 4: advocacy if recent advocacy; else retention if converted (lapsed without a recent
    event); else the most advanced recent pre-purchase role ``best`` (lapsed without a recent event)."""
    stage = np.where(any_recent, best, LAPSED_INDEX).astype(np.int8)
    stage = np.where(converted, np.where(any_recent, RET, LAPSED_INDEX), stage)
    stage = np.where(adv_recent, ADV, stage)
    return stage.astype(np.int8)


class FamilyContext:
    """The events of customers ``0..n-1`` (``h``, already cut at ``t``) and what the families share.

    ``offsets`` delimit the customers' events (``h.offsets()`` when None); ``starts`` / ``ends`` are
    each customer's first / last event position. Plain attributes are needed by nearly every family;
    the cached properties are computed on first use, once."""

    def __init__(self, h: EncodedEvents, t: int, settings: Settings, offsets: np.ndarray | None = None):
        self.h, self.t, self.settings = h, t, settings
        self.n = n = h.n_customers
        self.cust, self.ts, self.role, self.etype = h.cust, h.ts, h.role, h.etype
        self.channel, self.value, self.conv = h.channel, h.value, h.conv
        self.ne = ne = len(self.ts)
        if offsets is None:
            offsets = h.offsets()
        self.starts, self.ends = offsets[:-1], offsets[1:] - 1
        self.idt = np.int32 if ne < 2**31 - 2 else np.int64  # index dtype of event positions
        self.c = self.cust.astype(self.idt, copy=False)
        self.first_ts = self.ts[self.starts] if n else np.zeros(0, np.int64)
        self.last_ts = self.ts[self.ends] if n else np.zeros(0, np.int64)
        self.age_us = t - self.ts
        self._span_counts()

    def _span_counts(self) -> None:
        """Events per customer in every look-back span (feature windows, 30 / 60 days, W, A)."""
        s = self.settings
        self.window_spans = sorted({int(w * US_PER_DAY) for w in s.feature_windows_days})
        self.W = int(s.lookback_days * US_PER_DAY)
        self.A = int(s.advocacy_lookback_days * US_PER_DAY)
        spans = sorted(set(self.window_spans) | {D30, D60, self.W, self.A})
        n = self.n
        # every event's bucket = how many spans (ascending) it is outside of: in span j <=> bucket <= j
        bucket = np.searchsorted(np.array(spans, np.int64), self.age_us, side="right").astype(self.idt)
        nb = len(spans) + 1
        # events per customer in each span (a suffix of its history), all time last
        k = np.bincount(bucket * n + self.c, minlength=nb * n).reshape(nb, n).cumsum(0) if n else np.zeros((nb, 0), np.int64)
        self.k_of = {s: k[j] for j, s in enumerate(spans)}
        self.n_ev = k[-1]
        self.suffix_start = {s: self.ends + 1 - self.k_of[s] for s in spans}  # first position inside the span

    def age_at(self, pos: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Days before t of the event at ``pos`` where valid, NaN elsewhere."""
        out = np.full(len(pos), np.nan)
        if self.ne:
            out[valid] = days(self.t - self.ts[pos[valid]])
        return out

    @cached_property
    def n_events(self) -> np.ndarray:
        return self.n_ev.astype(np.float64)

    @cached_property
    def role_pos(self) -> list[np.ndarray]:
        """Positions of each role's events (ascending), from one stable sort of the small role codes."""
        role, idt = self.role, self.idt
        by_role = np.argsort(role, kind="stable").astype(idt, copy=False)
        rb = np.searchsorted(role[by_role], np.arange(N_ROLES + 1), side="left") if self.ne else np.zeros(N_ROLES + 1, np.int64)
        return [by_role[rb[r]: rb[r + 1]] for r in range(N_ROLES)]

    @cached_property
    def last_of_role(self) -> list[np.ndarray]:
        """Per role, each customer's last event of that role (a position; < starts: none)."""
        return [last_at_or_before(self.role_pos[r], self.ends) for r in range(N_ROLES)]

    @cached_property
    def conversion_pos(self) -> tuple[np.ndarray, np.ndarray]:
        """Each customer's last conversion (< starts: none) and first conversion (> ends: none)."""
        conv_pos = np.flatnonzero(self.conv)
        return last_at_or_before(conv_pos, self.ends), first_at_or_after(conv_pos, self.starts, self.ne)

    @cached_property
    def converted(self) -> np.ndarray:
        """A conversion at or before t."""
        return self.conversion_pos[1] <= self.ends

    @cached_property
    def same(self) -> np.ndarray:
        """Event i continues the customer of event i-1."""
        same = np.zeros(self.ne, bool)
        if self.ne > 1:
            np.equal(self.c[1:], self.c[:-1], out=same[1:])
        return same

    @cached_property
    def gaps(self) -> np.ndarray:
        """Time since the customer's previous event (0 for its first), microseconds."""
        ts = self.ts
        gaps = np.zeros(self.ne, np.int64)
        if self.ne > 1:
            np.subtract(ts[1:], ts[:-1], out=gaps[1:])
            gaps[~self.same] = 0
        return gaps

    @cached_property
    def window_bucket(self) -> np.ndarray:
        """Per event, how many feature windows (ascending) it is outside of (in window j <=> bucket <= j)."""
        return np.searchsorted(np.array(self.window_spans, np.int64), self.age_us, side="right").astype(self.idt)

    @cached_property
    def _window_base(self) -> np.ndarray:
        return self.window_bucket * self.n + self.c

    def _by_category(self, code: np.ndarray, n_cat: int) -> np.ndarray:
        """Counts per (category, window (all time last), customer): cumulative over window buckets."""
        n, idt = self.n, self.idt
        nwb = len(self.window_spans) + 1
        base = self._window_base
        key = code.astype(idt) * (nwb * n) + base if n_cat * nwb * n < 2**31 - 1 else code.astype(np.int64) * (nwb * n) + base
        m = np.bincount(key, minlength=n_cat * nwb * n).reshape(n_cat, nwb, n)
        for j in range(1, nwb):  # counts per bucket -> counts per window (cumulative)
            np.add(m[:, j], m[:, j - 1], out=m[:, j])
        return m

    @cached_property
    def stage_counts(self) -> np.ndarray:
        return self._by_category(self.role, N_ROLES)

    @cached_property
    def channel_counts(self) -> np.ndarray:
        return self._by_category(self.channel, len(CHANNELS))

    @cached_property
    def event_type_counts(self) -> np.ndarray:
        return self._by_category(self.etype, len(self.h.event_types))

    @cached_property
    def first_recent_advocacy(self) -> np.ndarray:
        """Each customer's first advocacy event in (t-A, t] (> ends: none)."""
        return first_at_or_after(self.role_pos[ADV], self.suffix_start[self.A], self.ne)

    @cached_property
    def advocacy_recent(self) -> np.ndarray:
        """An advocacy event in (t-A, t]."""
        return self.first_recent_advocacy <= self.ends

    @cached_property
    def observed(self) -> np.ndarray:
        """SPEC 4 observed stage (int8 role index, LAPSED_INDEX for lapsed)."""
        sW = self.suffix_start[self.W]
        adv_recent = self.advocacy_recent
        any_recent = self.k_of[self.W] > 0
        best = np.zeros(self.n, np.int8)
        for r in range(1, DEC + 1):  # the latest role <= DEC seen in (t-W, t]
            best[self.last_of_role[r] >= sW] = r
        return stage_rule(adv_recent, self.converted, any_recent, best)

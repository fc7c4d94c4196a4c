"""Canonical events -> integer-coded numpy arrays, and the one point-in-time rule.

Every feature and label is computed from :class:`EncodedEvents`. The only way to get the history
"as of t" is :meth:`EncodedEvents.as_of`, which keeps events with ``timestamp <= t`` and nothing
else (Feast's point-in-time rule, in one place).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from journey.taxonomy import ROLE_INDEX, ROLES, Taxonomy

US_PER_DAY = 86_400_000_000

# Fixed channel vocabulary (SPEC section 2); anything else is "other", a missing channel is "none".
CHANNELS = (
    "facebook", "instagram", "tiktok", "youtube", "influencer", "email", "search",
    "display", "referral", "direct", "store", "support", "other", "none",
)
CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}


@dataclass(frozen=True)
class EncodedEvents:
    """Events sorted by (customer, timestamp) as parallel arrays; ``offsets`` delimit customers."""

    customer_ids: np.ndarray  # object array of str, index -> id (only customers with events)
    cust: np.ndarray  # int64 per event, index into customer_ids, non-decreasing
    ts: np.ndarray  # int64 microseconds since epoch, UTC
    role: np.ndarray  # int8 role index (0 awareness .. 4 advocacy)
    etype: np.ndarray  # int16 index into event_types
    channel: np.ndarray  # int16 index into CHANNELS
    value: np.ndarray  # float64, 0 where missing
    conv: np.ndarray  # bool: a conversion event
    event_types: tuple[str, ...]
    source_index: np.ndarray | None = None  # int64: position of each customer in the parent encoding

    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)

    @property
    def n_events(self) -> int:
        return len(self.ts)

    def offsets(self) -> np.ndarray:
        counts = np.bincount(self.cust, minlength=self.n_customers)
        return np.concatenate(([0], np.cumsum(counts)))

    def as_of(self, t_us: int) -> "EncodedEvents":
        """The history known at ``t``: events with timestamp <= t, customers without any dropped."""
        keep = self.ts <= t_us
        return self.subset(keep)

    def subset(self, keep: np.ndarray) -> "EncodedEvents":
        cust = self.cust[keep]
        present = np.zeros(self.n_customers, dtype=bool)
        present[cust] = True
        new_index = np.cumsum(present) - 1
        parent = np.flatnonzero(present)
        base = self.source_index[parent] if self.source_index is not None else parent
        return EncodedEvents(
            customer_ids=self.customer_ids[parent],
            cust=new_index[cust],
            ts=self.ts[keep],
            role=self.role[keep],
            etype=self.etype[keep],
            channel=self.channel[keep],
            value=self.value[keep],
            conv=self.conv[keep],
            event_types=self.event_types,
            source_index=base,
        )


def to_us(t: object) -> int:
    """Any timestamp-like value (naive = UTC) -> int microseconds since epoch."""
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.tz_convert("UTC").value // 1000)


def from_us(t_us: int) -> pd.Timestamp:
    return pd.Timestamp(int(t_us) * 1000, tz="UTC")


def encode(events: pd.DataFrame, taxonomy: Taxonomy) -> EncodedEvents:
    """Canonical events (see :mod:`journey.events`) -> :class:`EncodedEvents`.

    Event types must be known to ``taxonomy`` (validation guarantees it)."""
    n = len(events)
    event_types = tuple(taxonomy.event_types)
    et_cat = pd.Categorical(events["event_type"], categories=list(event_types))
    etype = et_cat.codes.astype(np.int16)
    if n and (etype < 0).any():
        bad = sorted(set(events["event_type"][etype < 0].astype(str)))
        raise ValueError(f"event types not in taxonomy '{taxonomy.name}': {bad[:10]}")  # validated upstream
    role_of_type = np.array([ROLE_INDEX[taxonomy.event_role[e]] for e in event_types], dtype=np.int8)
    conv_of_type = np.array([e in taxonomy.conversion_events for e in event_types], dtype=bool)
    ch = events["channel"] if "channel" in events else pd.Series([None] * n)
    ch_cat = pd.Categorical(ch, categories=list(CHANNELS))
    channel = ch_cat.codes.astype(np.int16)
    known_missing = ch.isna().to_numpy()
    channel[(channel < 0) & known_missing] = CHANNEL_INDEX["none"]
    channel[channel < 0] = CHANNEL_INDEX["other"]
    codes, uniques = pd.factorize(events["customer_id"].astype("str"), sort=True)
    ts = np.asarray(events["timestamp"].astype("datetime64[us, UTC]").array.asi8, dtype=np.int64)
    value = events["value"].to_numpy(dtype=np.float64, na_value=np.nan) if "value" in events else np.zeros(n)
    value = np.nan_to_num(value, nan=0.0)
    cust = codes.astype(np.int64)
    if n > 1:
        dc, dt = np.diff(cust), np.diff(ts)
        if not ((dc > 0) | ((dc == 0) & (dt >= 0))).all():  # canonical frames are sorted already
            order = np.lexsort((etype, ts, cust))
            cust, ts, etype, channel, value = cust[order], ts[order], etype[order], channel[order], value[order]
    return EncodedEvents(
        customer_ids=np.asarray(uniques, dtype=object),
        cust=cust,
        ts=ts,
        role=role_of_type[etype],
        etype=etype,
        channel=channel,
        value=value,
        conv=conv_of_type[etype],
        event_types=event_types,
    )


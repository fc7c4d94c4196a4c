"""Canonical events -> integer-coded numpy arrays, and the one point-in-time rule.

Every feature and label is computed from :class:`EncodedEvents`. The only way to get the history
"as of t" is :meth:`EncodedEvents.as_of`, which keeps events with ``timestamp <= t`` and nothing
else (Feast's point-in-time rule, in one place).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


def _arrow(col: pd.Series) -> pa.Array:
    arr = pa.array(col, from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def encode(events: pd.DataFrame, taxonomy: Taxonomy) -> EncodedEvents:
    """Canonical events (see :mod:`journey.events`) -> :class:`EncodedEvents` (pyarrow compute:
    fast for one customer and for millions of events alike).

    Event types must be known to ``taxonomy`` (validation guarantees it)."""
    n = len(events)
    event_types = tuple(taxonomy.event_types)
    cid = _arrow(events["customer_id"]).cast(pa.string())
    ts = _arrow(events["timestamp"]).cast(pa.timestamp("us", tz="UTC"))
    et = _arrow(events["event_type"]).cast(pa.string())
    if n > 1:  # canonical frames are sorted by (customer_id, timestamp) already; sort otherwise
        prev_c, next_c = cid.slice(0, n - 1), cid.slice(1)
        later = pc.greater(prev_c, next_c)
        same = pc.equal(prev_c, next_c)
        prev_t, next_t = ts.slice(0, n - 1), ts.slice(1)
        back_in_time = pc.and_(same, pc.greater(prev_t, next_t))
        # same-time events in event_type order, so order-dependent features never depend on row order
        tie_unsorted = pc.and_(pc.and_(same, pc.equal(prev_t, next_t)), pc.greater(et.slice(0, n - 1), et.slice(1)))
        if pc.any(pc.or_(pc.or_(later, back_in_time), tie_unsorted)).as_py():
            from journey.events import sort_events

            return encode(sort_events(events), taxonomy)
    etype = pc.index_in(et, value_set=pa.array(event_types, pa.string()))
    if etype.null_count:
        bad = sorted(set(pc.filter(et, pc.is_null(etype)).to_pylist()))
        raise ValueError(f"event types not in taxonomy '{taxonomy.name}': {bad[:10]}")  # validated upstream
    etype = etype.to_numpy(zero_copy_only=False).astype(np.int16)
    role_of_type = np.array([ROLE_INDEX[taxonomy.event_role[e]] for e in event_types], dtype=np.int8)
    conv_of_type = np.array([e in taxonomy.conversion_events for e in event_types], dtype=bool)
    if "channel" in events:
        ch = _arrow(events["channel"]).cast(pa.string())
        chi = pc.index_in(ch, value_set=pa.array(CHANNELS, pa.string()))
        fill = pc.if_else(pc.is_null(ch), CHANNEL_INDEX["none"], CHANNEL_INDEX["other"])
        channel = pc.coalesce(chi, fill.cast(pa.int32())).to_numpy(zero_copy_only=False).astype(np.int16)
    else:
        channel = np.full(n, CHANNEL_INDEX["none"], np.int16)
    if n:
        new = np.ones(n, dtype=bool)
        if n > 1:
            new[1:] = pc.not_equal(cid.slice(0, n - 1), cid.slice(1)).to_numpy(zero_copy_only=False)
        cust = np.cumsum(new) - 1
        customer_ids = np.asarray(pc.filter(cid, pa.array(new)).to_pylist(), dtype=object)
    else:
        cust, customer_ids = np.zeros(0, np.int64), np.array([], dtype=object)
    ts_us = ts.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
    if "value" in events:
        value = np.nan_to_num(events["value"].to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0)
    else:
        value = np.zeros(n)
    return EncodedEvents(
        customer_ids=customer_ids,
        cust=cust.astype(np.int64),
        ts=ts_us,
        role=role_of_type[etype],
        etype=etype,
        channel=channel,
        value=value,
        conv=conv_of_type[etype],
        event_types=event_types,
    )

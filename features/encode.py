"""Canonical events -> integer-coded numpy arrays, and the one point-in-time rule.

Every feature and label is computed from :class:`EncodedEvents`. The only way to get the history
"as of t" is :meth:`EncodedEvents.as_of`, which keeps events with ``timestamp <= t`` and nothing
else (Feast's point-in-time rule, in one place).

:func:`encode` takes a pandas DataFrame or a pyarrow Table (e.g. ``pq.read_table(...,
read_dictionary=[...])`` straight from Parquet, without a pandas round trip). String columns may be
plain or dictionary-encoded. Input in canonical order (:func:`journey_stage.core.events.sort_events`) is
checked in one cheap pass; any other order is put into that same order with an integer-code sort
(both in :mod:`journey_stage.features.order`).
"""

from __future__ import annotations

from dataclasses import dataclass

from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey_stage.core.taxonomy import ROLE_INDEX, Taxonomy
from journey_stage.features.order import canonical_order, chunks, clearly_unsorted, run_order

US_PER_DAY = 86_400_000_000

# Fixed channel vocabulary (SPEC section 2); anything else is "other", a missing channel is "none".
CHANNELS = (
    "facebook", "instagram", "tiktok", "youtube", "influencer", "email", "search",
    "display", "referral", "direct", "store", "support", "other", "none",
)
CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}
_CHANNELS_PA = pa.array(CHANNELS, pa.string())
_CHANNELS_PA_LARGE = pa.array(CHANNELS, pa.large_string())
_OTHER, _NONE = CHANNEL_INDEX["other"], CHANNEL_INDEX["none"]
SMALL = 2048  # inputs up to this many rows check their customer runs in plain numpy (the HTTP service)


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
        if len(keep) and keep.all():  # nothing to drop (e.g. a cutoff at or after the last event)
            present = np.zeros(self.n_customers, dtype=bool)
            present[self.cust] = True
            if present.all():
                base = self.source_index if self.source_index is not None else np.arange(self.n_customers)
                return EncodedEvents(self.customer_ids, self.cust, self.ts, self.role, self.etype, self.channel,
                                     self.value, self.conv, self.event_types, base)
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

    def customer_slice(self, lo: int, hi: int, offsets: np.ndarray | None = None) -> "EncodedEvents":
        """Customers ``lo:hi`` (their events are contiguous): views, customer index rebased to 0."""
        off = self.offsets() if offsets is None else offsets
        a, b = int(off[lo]), int(off[hi])
        base = self.source_index[lo:hi] if self.source_index is not None else np.arange(lo, hi)
        return EncodedEvents(
            customer_ids=self.customer_ids[lo:hi], cust=self.cust[a:b] - lo, ts=self.ts[a:b], role=self.role[a:b],
            etype=self.etype[a:b], channel=self.channel[a:b], value=self.value[a:b], conv=self.conv[a:b],
            event_types=self.event_types, source_index=base,
        )


def to_us(t: object) -> int:
    """Any timestamp-like value (naive = UTC) -> int microseconds since epoch."""
    if isinstance(t, pd.Timestamp) and t.tzinfo is not None:
        return int(t.value // 1000)  # value: nanoseconds since the epoch, UTC, whatever the zone
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.tz_convert("UTC").value // 1000)


def from_us(t_us: int) -> pd.Timestamp:
    return pd.Timestamp(int(t_us) * 1000, tz="UTC")


@lru_cache(maxsize=1024)
def iso_of_us(t_us: int) -> str:
    """``from_us(t_us).isoformat()``, remembered (the as-of text of every answer of a request)."""
    return from_us(t_us).isoformat()


def _arrow(col: pd.Series) -> pa.Array:
    arr = pa.array(col, from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _pandas_column(df: pd.DataFrame, name: str) -> pa.Array | pa.ChunkedArray:
    """One column as Arrow, zero-copy where pandas already holds Arrow data (pandas' ``str``),
    without building a Series (a fixed cost that matters for one-customer calls)."""
    try:
        i = df.columns.get_loc(name)
        arr = df._get_column_array(i) if isinstance(i, int) else df[name].array
    except (AttributeError, TypeError, KeyError):
        arr = df[name].array
    if isinstance(arr, pd.arrays.DatetimeArray) and arr.unit == "us" and not arr.isna().any():
        return arr.asi8  # int64 microseconds, UTC (naive = UTC)
    proto = getattr(arr, "__arrow_array__", None)
    if proto is not None and not isinstance(arr, pd.arrays.DatetimeArray):
        try:
            return proto()
        except (TypeError, ValueError, NotImplementedError, pa.ArrowException):
            pass
    if name == "value" and isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
        return arr  # stays numpy
    if name == "timestamp" and isinstance(arr, pd.arrays.DatetimeArray):
        return pa.array(pd.Series(arr, copy=False), from_pandas=True)
    return _arrow(pd.Series(arr, copy=False) if not isinstance(arr, np.ndarray) else arr)


class _Tax:
    """What encoding needs from a taxonomy, computed once per taxonomy object."""

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy
        self.event_types = tuple(taxonomy.event_types)
        self.index = {e: i for i, e in enumerate(self.event_types)}
        self.value_set = pa.array(self.event_types, pa.string())
        self.value_set_large = pa.array(self.event_types, pa.large_string())
        self.role_of_type = np.array([ROLE_INDEX[taxonomy.event_role[e]] for e in self.event_types], dtype=np.int8)
        self.conv_of_type = np.array([e in taxonomy.conversion_events for e in self.event_types], dtype=bool)
        # event_types is sorted, so the code order is the string order (the canonical tie order)


_TAX_CACHE: dict[int, _Tax] = {}


def _tax(taxonomy: Taxonomy) -> _Tax:
    t = _TAX_CACHE.get(id(taxonomy))
    if t is None or t.taxonomy is not taxonomy or t.event_types != tuple(taxonomy.event_types):
        if len(_TAX_CACHE) > 64:
            _TAX_CACHE.clear()
        t = _TAX_CACHE[id(taxonomy)] = _Tax(taxonomy)
    return t


def _unknown(bad: list, taxonomy: Taxonomy):
    bad = sorted({str(b) for b in bad})
    return ValueError(f"event types not in taxonomy '{taxonomy.name}': {bad[:10]}")  # validated upstream


def encode(events: pd.DataFrame | pa.Table, taxonomy: Taxonomy) -> EncodedEvents:
    """Canonical events (see :mod:`journey_stage.core.events`) -> :class:`EncodedEvents`.

    ``events`` is a pandas DataFrame or a pyarrow Table with the columns of SPEC section 2
    (``channel`` and ``value`` optional; other columns ignored). Fast for one customer (plain
    numpy) and for millions of events (pyarrow compute + numpy). Rows not in canonical order are
    sorted into it first (the same order :func:`journey_stage.core.events.sort_events` gives).

    Event types must be known to ``taxonomy`` (validation guarantees it)."""
    tx = _tax(taxonomy)
    if isinstance(events, pa.RecordBatch):
        events = pa.Table.from_batches([events])
    if isinstance(events, pd.DataFrame):
        cols = {c: _pandas_column(events, c) for c in ("customer_id", "timestamp", "event_type", "channel", "value", "campaign") if c in events}
    else:
        cols = {c: events.column(c) for c in ("customer_id", "timestamp", "event_type", "channel", "value", "campaign") if c in events.column_names}
    return _encode_arrow(cols, tx)


# ------------------------------------------------------------------------------------------------
# Arrow columns -> codes (inputs up to SMALL rows check the customer runs in plain numpy: the HTTP
# service encodes one customer per call, where fixed per-call costs dominate)
# ------------------------------------------------------------------------------------------------


def _codes(col, value_set: pa.Array, missing: int | None, other: int | None, large_set: pa.Array | None = None) -> np.ndarray:
    """Index of every value in ``value_set``; nulls -> ``missing``, unknown -> ``other`` (None: -1).

    Dictionary-encoded chunks are mapped through their (small) dictionary."""
    out = []
    for ch in chunks(col):
        if pa.types.is_dictionary(ch.type):
            dcodes = _codes(ch.dictionary, value_set, missing, other, large_set)
            if ch.null_count:
                valid = ch.is_valid().to_numpy(zero_copy_only=False)
                idx = ch.indices.fill_null(0).to_numpy(zero_copy_only=False)
                codes = dcodes[idx] if len(dcodes) else np.zeros(len(idx), np.int32)
                codes = np.where(valid, codes, -1 if missing is None else missing)
            else:
                idx = ch.indices.to_numpy(zero_copy_only=False)
                codes = dcodes[idx] if len(dcodes) else np.zeros(len(idx), np.int32)
            out.append(codes.astype(np.int32, copy=False))
            continue
        if pa.types.is_large_string(ch.type) and large_set is not None:
            vs = large_set
        else:
            vs = value_set
            if not pa.types.is_string(ch.type):
                ch = ch.cast(pa.string())
        hit = pc.index_in(ch, value_set=vs)
        arr = hit.to_numpy(zero_copy_only=False)  # float with NaN where null
        if hit.null_count:
            isnull = ch.is_null().to_numpy(zero_copy_only=False)
            miss = np.isnan(arr)
            arr = np.where(miss & isnull, -1 if missing is None else missing, np.where(miss, -1 if other is None else other, arr))
        out.append(arr.astype(np.int32))
    return np.concatenate(out) if len(out) != 1 else out[0]


def _encode_arrow(cols: dict, tx: _Tax) -> EncodedEvents:
    cid = cols["customer_id"]
    n = len(cid)
    ts = cols["timestamp"]
    if isinstance(ts, np.ndarray):
        ts = ts.astype(np.int64)  # a copy: the caller's frame stays independent
    else:
        if not pa.types.is_timestamp(ts.type) or ts.type.unit != "us":
            ts = ts.cast(pa.timestamp("us", tz="UTC"))
        ts = ts.cast(pa.int64()).to_numpy()
    etype = _codes(cols["event_type"], tx.value_set, None, None, tx.value_set_large)
    if n and etype.min() < 0:
        et = cols["event_type"]
        et = et.cast(pa.string())
        raise _unknown(pc.filter(et, pa.array(etype < 0)).to_pylist(), tx.taxonomy)
    etype = etype.astype(np.int16)
    if n == 0:
        return _finish(np.zeros(0, np.int64), np.array([], dtype=object), ts, etype, np.zeros(0, np.int16), np.zeros(0), tx)
    if not (pa.types.is_string(cid.type) or pa.types.is_large_string(cid.type) or pa.types.is_dictionary(cid.type)):
        cid = cid.cast(pa.string())
    if n <= SMALL:
        ids = np.array(cid.to_pylist(), dtype=object)
        new = np.empty(n, bool)
        new[0] = True
        np.not_equal(ids[1:], ids[:-1], out=new[1:])
        run_starts = np.flatnonzero(new)
        run_ids = ids[run_starts]
        sorted_ok = len(run_ids) < 2 or bool(np.all(run_ids[1:] > run_ids[:-1]))
    elif clearly_unsorted(cid):
        run_starts, run_ids, sorted_ok = None, None, False
    else:
        run_starts, run_ids, sorted_ok = run_order(cid)
    new = np.zeros(n, bool)
    if sorted_ok:
        new[run_starts] = True
    if sorted_ok and n > 1:
        same = ~new[1:]
        d = ts[1:] - ts[:-1]
        bad = same & ((d < 0) | ((d == 0) & (etype[1:] < etype[:-1])))
        sorted_ok = not bad.any()
    if "channel" in cols:
        channel = _codes(cols["channel"], _CHANNELS_PA, _NONE, _OTHER, _CHANNELS_PA_LARGE).astype(np.int16)
    else:
        channel = np.full(n, _NONE, np.int16)
    if "value" in cols:
        v = cols["value"]
        if isinstance(v, np.ndarray):
            value = v.astype(np.float64)
        else:
            value = v.cast(pa.float64()).to_numpy(zero_copy_only=False) if v.type != pa.float64() or v.null_count else v.to_numpy()
        bad = ~np.isfinite(value)
        if bad.any():
            if np.isinf(value).any():
                value = np.nan_to_num(value, nan=0.0)
            else:  # NaN (missing) -> 0
                value = value.copy() if not value.flags.writeable or not isinstance(v, np.ndarray) else value
                value[bad] = 0.0
        elif not value.flags.writeable:
            value = value.copy()
    else:
        value = np.zeros(n)
    if not sorted_ok:
        order, cust, customer_ids = canonical_order(cols, ts)
        return _finish(cust, customer_ids, ts[order], etype[order], channel[order], value[order], tx)
    cust = np.cumsum(new, dtype=np.int64) - 1
    customer_ids = run_ids if isinstance(run_ids, np.ndarray) else run_ids.to_numpy(zero_copy_only=False).astype(object)
    return _finish(cust, customer_ids, ts, etype, channel, value, tx)


def _finish(cust, customer_ids, ts, etype, channel, value, tx: _Tax) -> EncodedEvents:
    return EncodedEvents(
        customer_ids=customer_ids, cust=cust, ts=ts, role=tx.role_of_type[etype], etype=etype, channel=channel,
        value=value, conv=tx.conv_of_type[etype], event_types=tx.event_types,
    )


def encode_rows(rows: list[tuple], taxonomy: Taxonomy) -> EncodedEvents:
    """Canonical rows (:func:`journey_stage.core.events.canonical_rows`: ``(customer_id,
    microseconds, event_type, channel, value, campaign)`` tuples in canonical order, duplicates
    removed) -> :class:`EncodedEvents`, without a DataFrame: the HTTP service's path for a few
    customers, where pandas' and Arrow's fixed costs dominate. Equals ``encode(tuples_frame(rows),
    taxonomy)`` (a test compares the two)."""
    tx = _tax(taxonomy)
    n = len(rows)
    if n == 0:
        return _finish(np.zeros(0, np.int64), np.array([], dtype=object), np.zeros(0, np.int64), np.zeros(0, np.int16),
                       np.zeros(0, np.int16), np.zeros(0), tx)
    cids, us, ets, chs, vals, _ = zip(*rows)
    try:
        etype = np.array([tx.index[e] for e in ets], dtype=np.int16)
    except KeyError:
        raise _unknown([e for e in ets if e not in tx.index], taxonomy) from None
    channel = np.array([_NONE if c is None else CHANNEL_INDEX.get(c, _OTHER) for c in chs], dtype=np.int16)
    value = np.array([0.0 if v is None else v for v in vals], dtype=np.float64)
    if not np.isfinite(value).all():  # as encode: NaN -> 0, infinities -> the largest finite floats
        value = np.nan_to_num(value, nan=0.0)
    ids = np.array(cids, dtype=object)
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(ids[1:], ids[:-1], out=new[1:])
    cust = np.cumsum(new, dtype=np.int64) - 1
    return _finish(cust, ids[new], np.array(us, dtype=np.int64), etype, channel, value, tx)

"""Customer partitions (both engines): the partition function, the partition count, and the scoring
of one partition's events.

A customer's partition is ``crc32(utf-8 customer_id) mod n`` (Spark: ``pmod(crc32(customer_id), n)``).
A partition is deduplicated (exact duplicates on all columns, SPEC section 2), sorted exactly like
:func:`journey_stage.core.events.sort_events` and passed to the one scoring path
:func:`journey_stage.model.scoring.score_events`. A customer's answer depends on its own history only,
so partitioning never changes it. Customers without any event in the day-padded eligibility window
before ``as_of`` cannot be eligible: they are counted but their histories are not scored.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey_stage.core.errors import JourneyError
from journey_stage.core.events import COLUMNS
from journey_stage.model.scoring import output_columns, score_events

DEFAULT_PARTITIONS = 16
TARGET_EVENTS_PER_PARTITION = 1_500_000  # partitions are added beyond `partitions` to stay near this

# Canonical events as kept between the read and the score phase (journey_stage.core.events.COLUMNS).
EVENT_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("event_type", pa.string()),
        ("channel", pa.string()),
        ("value", pa.float64()),
        ("campaign", pa.string()),
    ]
)
assert tuple(EVENT_SCHEMA.names) == COLUMNS


def partition_of(customer_ids, partitions: int) -> np.ndarray:
    """Stable customer -> partition: ``crc32(utf-8 id) mod partitions`` (Spark: ``pmod(crc32(id), n)``)."""
    codes, uniq = pd.factorize(pd.Series(customer_ids).to_numpy(dtype=object), sort=False)
    h = np.fromiter((zlib.crc32(str(u).encode("utf-8")) for u in uniq), dtype=np.int64, count=len(uniq))
    return (h % int(partitions))[codes] if len(codes) else np.zeros(0, np.int64)


def partition_count(estimated_rows: int, partitions: int = DEFAULT_PARTITIONS) -> int:
    """At least ``partitions``; more when the input is big (about TARGET_EVENTS_PER_PARTITION each)."""
    if partitions is None or int(partitions) < 1:
        raise JourneyError(f"--partitions {partitions}: expected a whole number >= 1.", "use e.g. --partitions 16.")
    return max(int(partitions), math.ceil(max(estimated_rows, 0) / TARGET_EVENTS_PER_PARTITION))


# ---- one partition -------------------------------------------------------------------------------

def _rank(col) -> tuple[np.ndarray, int]:
    """Dense rank of each value in the order of ``DataFrame.sort_values(na_position="first")``:
    strings in byte (= code point) order, numbers ascending, missing values first (rank 0)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type):
        v = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        nan = np.isnan(v)
        uniq, inv = np.unique(np.where(nan, 0.0, v), return_inverse=True)  # -0.0 == 0.0, as pandas compares
        return np.where(nan, 0, inv.ravel() + 1).astype(np.int64), len(uniq) + 1
    d = arr.dictionary_encode()
    if len(d.dictionary) == 0:  # every value missing (a partition without any channel or campaign): all rank 0
        return np.zeros(len(arr), np.int64), 1
    r = np.empty(len(d.dictionary), np.int64)
    r[pc.sort_indices(d.dictionary).to_numpy()] = np.arange(1, len(d.dictionary) + 1)
    idx = d.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.where(idx < 0, 0, r[np.maximum(idx, 0)]), len(d.dictionary) + 1


def _combine(key: np.ndarray, size: int, k: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Lexicographic (key, k) as one int64, re-ranked densely when the product would overflow."""
    if size * n >= 2**62:
        uniq, inv = np.unique(key, return_inverse=True)
        key, size = inv.ravel().astype(np.int64), len(uniq)
    return key * n + k, size * n


def canonical_partition(table: pa.Table, active_window: tuple[int, int] | None = None) -> tuple[pd.DataFrame, int, int]:
    """Pieces of one partition -> (canonical events, duplicates removed, customers): the same rows
    in the same order as ``sort_events(frame.drop_duplicates(ignore_index=True))`` of
    journey_stage.core.events (a total order on all columns, missing values first), computed on Arrow and
    numpy: every column becomes a dense rank, the ranks one sort key; exact duplicates are then
    neighbours with equal keys.

    ``active_window=(lo_us, hi_us)`` keeps only the customers with an event in ``(lo, hi]``: with
    ``hi`` = as_of and ``lo`` below the eligibility window, the others cannot be eligible, so
    scoring never needs their features (``customers`` still counts them)."""
    n = table.num_rows
    if n == 0:
        return table.to_pandas(), 0, 0
    cust, n_cust = _rank(table.column("customer_id"))
    ts = table.column("timestamp").combine_chunks().cast(pa.int64()).to_numpy()
    uts, tk = np.unique(ts, return_inverse=True)
    key, size = _combine(cust, n_cust, tk.ravel().astype(np.int64), len(uts))
    for c in COLUMNS[2:]:
        k, kn = _rank(table.column(c))
        key, size = _combine(key, size, k, kn)
    order = np.argsort(key, kind="stable")
    sk = key[order]
    keep = np.ones(n, bool)
    keep[1:] = sk[1:] != sk[:-1]  # equal keys = equal on every column = an exact duplicate
    final = order[keep]
    customers = int(len(np.unique(cust)))
    if active_window is not None:
        lo, hi = active_window
        active = np.zeros(n_cust + 1, bool)
        active[cust[(ts > lo) & (ts <= hi)]] = True
        final = final[active[cust[final]]]
    return table.take(pa.array(final)).to_pandas(), int(n - int(keep.sum())), customers


def active_window(predictor, as_of) -> tuple[int, int] | None:
    """(lo, hi] such that a customer without an event in it cannot be eligible at ``as_of``
    (features.build.eligible: an event in (t - E, t]); one day of margin, score_events decides."""
    days = predictor.settings.eligibility_days
    if days is None or as_of is None:
        return None
    from journey_stage.features.encode import US_PER_DAY, to_us

    t = to_us(as_of)
    return t - int(days * US_PER_DAY) - US_PER_DAY, t


def score_partition(table: pa.Table, predictor, as_of, playbook, reasons: bool) -> tuple[pd.DataFrame, dict]:
    """One partition's events -> its output rows (via journey_stage.model.scoring.score_events) and counts."""
    n_rows = table.num_rows
    ev, dups, customers = canonical_partition(table, active_window(predictor, as_of))
    del table
    stats = {"events": n_rows - dups, "dups": dups, "customers": customers}
    if not len(ev):
        return pd.DataFrame(columns=output_columns(predictor, reasons)), stats
    frame = score_events(predictor, ev, as_of, playbook=playbook, reasons=reasons)
    return frame, stats

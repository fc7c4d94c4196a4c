"""Synthetic profile histories for ``bench_profiles.py``, built with numpy and pyarrow per chunk of
customers (20M events never exist as Python objects).

Each customer gets about ``per_customer`` events (uniform in [0.5, 1.5] x that), from a first-seen
time within ~2 years before ``as_of`` up to one day before it; event types from the five_stage
taxonomy with a realistic mix (awareness and consideration common, purchases a few percent), a
channel from a short list (sometimes missing), a value for purchases, a campaign on a fifth of them.
Rows are written in customer then time order, as an export from an event warehouse would be.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

US_PER_DAY = 86_400_000_000
CHANNELS = ["web", "app", "email", "social", "search", "store"]
CAMPAIGNS = ["spring_sale", "summer", "black_friday", "loyalty"]
ROLE_WEIGHT = {"awareness": 0.34, "consideration": 0.36, "decision": 0.12, "retention": 0.14, "advocacy": 0.04}
PURCHASE_SHARE = 0.03


def event_mix() -> tuple[list[str], np.ndarray]:
    """The five_stage event types and their probabilities (each role's weight spread over its types)."""
    from journey_stage.core.taxonomy import load_taxonomy

    tax = load_taxonomy("five_stage")
    types = sorted(tax.event_types)
    roles = [tax.event_role[t] for t in types]
    weight = np.array([ROLE_WEIGHT[r] / roles.count(r) for r in roles])
    weight[types.index("purchase")] = PURCHASE_SHARE
    return types, weight / weight.sum()


def customer_ids(prefix: str, lo: int, hi: int) -> list[str]:
    return [f"{prefix}{i:07d}" for i in range(lo, hi)]


def chunk_table(rng: np.random.Generator, ids: list[str], per_customer: int, as_of_us: int) -> pa.Table:
    """The events of ``ids`` as an Arrow table in canonical column names and types."""
    types, weight = event_mix()
    n = len(ids)
    counts = rng.integers(max(1, per_customer // 2), per_customer * 3 // 2 + 1, n)
    total = int(counts.sum())
    who = np.repeat(np.arange(n), counts)
    first = as_of_us - (rng.uniform(7, 730, n) * US_PER_DAY).astype(np.int64)
    span = np.maximum(as_of_us - US_PER_DAY - first, US_PER_DAY)
    ts = first[who] + (rng.random(total) * span[who]).astype(np.int64)
    ts = ts // 1_000_000 * 1_000_000  # whole seconds
    order = np.lexsort((ts, who))
    who, ts = who[order], ts[order]
    kind = rng.choice(len(types), total, p=weight)
    purchase = kind == types.index("purchase")
    value = np.where(purchase, np.round(rng.lognormal(3.5, 0.8, total), 2), np.nan)
    channel = rng.integers(-1, len(CHANNELS), total)  # -1: missing
    campaign = np.where(rng.random(total) < 0.2, rng.integers(0, len(CAMPAIGNS), total), -1)

    def text(codes: np.ndarray, words: list[str]) -> pa.Array:
        arr = pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0, type=pa.int32()), pa.array(words))
        return arr.dictionary_decode()

    return pa.table({
        "customer_id": text(who.astype(np.int32), ids),
        "timestamp": pa.array(ts, type=pa.timestamp("us", tz="UTC")),
        "event_type": text(kind.astype(np.int32), types),
        "channel": text(channel.astype(np.int32), CHANNELS),
        "value": pa.array(value, mask=np.isnan(value)),
        "campaign": text(campaign.astype(np.int32), CAMPAIGNS),
    })


def write_events(folder: Path, customers: int, per_customer: int, as_of: pd.Timestamp, *, prefix: str = "c", seed: int = 0,
                 chunk_customers: int = 10_000) -> int:
    """Parquet part files of ``customers`` customers under ``folder``; the number of events."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, total = np.random.default_rng(seed), 0
    as_of_us = int(as_of.value // 1000)
    for part, lo in enumerate(range(0, customers, chunk_customers)):
        table = chunk_table(rng, customer_ids(prefix, lo, min(customers, lo + chunk_customers)), per_customer, as_of_us)
        pq.write_table(table, folder / f"part-{part:05d}.parquet", row_group_size=250_000)
        total += table.num_rows
    return total


def event_dicts(table: pa.Table) -> list[dict]:
    """Rows of an events table as the event objects of the HTTP API (ISO timestamps, nulls as None)."""
    cols = table.to_pydict()
    stamps = [t.isoformat() for t in cols["timestamp"]]
    return [{"customer_id": c, "timestamp": t, "event_type": e, "channel": ch, "value": v, "campaign": cp}
            for c, t, e, ch, v, cp in zip(cols["customer_id"], stamps, cols["event_type"], cols["channel"], cols["value"], cols["campaign"])]


def stream_batches(table: pa.Table, batch: int, seed: int = 1) -> Iterator[list[dict]]:
    """A live stream: the events in time order (customers interleaved), in batches of ``batch``."""
    order = np.argsort(table.column("timestamp").to_numpy(), kind="stable")
    rows = event_dicts(table.take(pa.array(order)))
    for lo in range(0, len(rows), batch):
        yield rows[lo: lo + batch]


def ingest_bodies(table: pa.Table, batch: int) -> list[bytes]:
    """``POST /events`` bodies of ``batch`` events each."""
    return [json.dumps({"events": rows}, separators=(",", ":")).encode() for rows in stream_batches(table, batch)]


def predict_payloads(table: pa.Table, ids: list[str], as_of: str, *, rename: str = "") -> tuple[list[dict], list[dict]]:
    """For each customer of ``ids``: a request by id and the same customer with its events in the
    body (``rename`` prefixes the id of the latter, so no stored history is merged into it)."""
    wanted = table.filter(pc.is_in(table.column("customer_id"), value_set=pa.array(ids)))
    by_customer: dict[str, list[dict]] = {}
    for e in event_dicts(wanted):
        by_customer.setdefault(e.pop("customer_id"), []).append(e)
    by_id = [{"customers": [{"customer_id": c}], "as_of": as_of} for c in ids]
    with_events = [{"customers": [{"customer_id": rename + c, "events": by_customer[c]}], "as_of": as_of} for c in ids]
    return by_id, with_events

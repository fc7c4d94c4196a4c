"""Canonical row order of an events input (SPEC section 2), for :func:`journey_stage.features.encode.encode`.

Input already in canonical order (:func:`journey_stage.core.events.sort_events`) is recognised by
its customer runs (:func:`run_order`, after the cheap :func:`clearly_unsorted` look); any other
input is put into that same order by :func:`canonical_order`, an integer-code sort.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def chunks(col) -> list[pa.Array]:
    return list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]


def customer_runs(cid) -> tuple[np.ndarray, pa.Array]:
    """Positions where a new run of equal customer ids starts, and the id of each run."""
    starts, ids, offset = [], [], 0
    for ch in chunks(cid):
        m = len(ch)
        if m == 0:
            continue
        if not pa.types.is_dictionary(ch.type):
            ch = pc.dictionary_encode(ch)
        idx = ch.indices.to_numpy(zero_copy_only=False)
        new = np.empty(m, bool)
        new[0] = True
        np.not_equal(idx[1:], idx[:-1], out=new[1:])
        pos = np.flatnonzero(new)
        if len(pos) > len(ch.dictionary):  # an id in two runs: not in canonical order
            return None, None
        starts.append(pos + offset)
        ids.append(ch.dictionary.take(pa.array(idx[pos])).cast(pa.string()))
        offset += m
    if not starts:
        return np.zeros(0, np.int64), pa.array([], pa.string())
    return np.concatenate(starts), pa.concat_arrays(ids)


def clearly_unsorted(cid, probe: int = 1 << 16) -> bool:
    """A cheap look at the first rows: ids going down there means the input needs sorting."""
    head = cid.slice(0, probe)
    if isinstance(head, pa.ChunkedArray):
        head = head.combine_chunks()
    if pa.types.is_dictionary(head.type):
        head = head.cast(head.type.value_type)
    m = len(head)
    return m > 1 and pc.any(pc.greater(head.slice(0, m - 1), head.slice(1))).as_py()


def run_order(cid) -> tuple[np.ndarray, pa.Array, bool]:
    """Runs of equal ids (adjacent equal runs merged: chunk borders, duplicate dictionary entries)
    and whether the run ids are strictly increasing (canonical order needs it)."""
    run_starts, run_ids = customer_runs(cid)
    if run_starts is None:
        return None, None, False
    if len(run_ids) > 1:
        eq = pc.equal(run_ids.slice(0, len(run_ids) - 1), run_ids.slice(1)).to_numpy(zero_copy_only=False)
        if eq.any():
            keep = np.r_[True, ~eq]
            run_starts, run_ids = run_starts[keep], run_ids.filter(pa.array(keep))
    sorted_ok = True
    if len(run_ids) > 1:
        sorted_ok = not pc.any(pc.greater_equal(run_ids.slice(0, len(run_ids) - 1), run_ids.slice(1))).as_py()
    return run_starts, run_ids, sorted_ok


def canonical_order(cols: dict, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows in the canonical order of :func:`journey_stage.core.events.sort_events` (customer_id, timestamp,
    event_type, channel, value, campaign; missing first), by an integer-code sort."""
    cid = cols["customer_id"]
    if isinstance(cid, pa.ChunkedArray):
        cid = cid.combine_chunks() if cid.num_chunks != 1 else cid.chunk(0)
    if pa.types.is_dictionary(cid.type):
        cid = cid.cast(pa.string())
    denc = pc.dictionary_encode(cid.cast(pa.string()) if not pa.types.is_string(cid.type) else cid)
    rank = pc.rank(denc.dictionary, sort_keys="ascending", tiebreaker="dense").to_numpy().astype(np.int64) - 1
    code = rank[denc.indices.to_numpy(zero_copy_only=False)]  # customer code in string order
    n_cust = int(code.max()) + 1 if len(code) else 0
    t0 = int(ts.min())
    span = int(ts.max()) - t0 + 1
    shift = 0  # (customer, timestamp >> shift) in one int64; equal keys are ordered below
    while n_cust * ((span >> shift) + 1) >= 2**62:
        shift += 1
    key = code * ((span >> shift) + 1) + ((ts - t0) >> shift)
    order = np.argsort(key)
    key_sorted = key[order]
    tie = np.zeros(len(order), bool)
    eq = key_sorted[1:] == key_sorted[:-1]
    tie[1:] |= eq
    tie[:-1] |= eq
    if tie.any():
        pos = np.flatnonzero(tie)
        rows = order[pos]
        group = np.cumsum(np.r_[True, ~eq[pos[1:] - 1] | (np.diff(pos) != 1)]) if len(pos) else pos
        sub = pd.DataFrame({"_g": group, "_i": np.arange(len(rows)), "_t": ts[rows]})
        for c in ("event_type", "channel", "value", "campaign"):
            if c in cols:
                col = cols[c]
                if isinstance(col, np.ndarray):
                    sub[c] = col[rows]
                    continue
                col = col.take(pa.array(rows))
                if pa.types.is_dictionary(col.type):
                    col = col.cast(col.type.value_type)
                sub[c] = col.to_pandas()
                if c != "value":
                    sub[c] = sub[c].astype(object)
        sub = sub.sort_values([c for c in sub.columns if c != "_i"], kind="stable", na_position="first")
        order[pos] = rows[sub["_i"].to_numpy()]
    cust = np.cumsum(np.r_[True, code[order][1:] != code[order][:-1]]) - 1 if len(order) else np.zeros(0, np.int64)
    ids_sorted = denc.dictionary.take(pa.array(pc.sort_indices(denc.dictionary))).to_numpy(zero_copy_only=False).astype(object)
    return order, cust.astype(np.int64), ids_sorted

"""Training on a sample of customers when the log has more than ``Settings.eval_customers_cap``.

Training rows are capped already (``max_train_rows``); what grew with the log were the validation
and test slices, kept whole at their cutoffs: calibration, early stopping, the choice of what is
served, the test metrics and the bootstrap ran over millions of rows. Above the cap, the whole
run uses a sample of customers instead, so its time and memory follow the cap, not the log.

**The sample.** Each customer's key is the first 8 bytes of BLAKE2b (keyed with :data:`SALT`) of
its canonical ``customer_id`` (the text :func:`journey_stage.core.events.validate_events` gives:
stripped; whole numbers without ``.0``), read as a big-endian unsigned integer. The sample is the
``eval_customers_cap`` customers with the smallest keys (ties, which a 64-bit hash practically
never has, go to the smaller id). So:

- a customer is in or out as a whole: every event of a sampled customer is kept, none of the
  others; every feature and label is still computed as of its cutoff from that customer's events;
- it is deterministic: the same customers and the same cap give the same sample, whatever the
  order of the rows or files, the seed, the machine or the Python process (no ``hash()``);
- a larger cap keeps every customer of a smaller one (the samples are nested);
- a log with at most ``eval_customers_cap`` customers, or ``eval_customers_cap = None``, is used
  whole: nothing changes.

Training rows are then drawn from the sampled customers (at most ``max_train_rows``, as before).
The bootstrap intervals are over the sampled test customers, so they include what sampling costs.
``report.json`` says what was sampled: ``sample`` (customers and events used and in the log) and
``tasks.<task>.sampled`` (the validation and test rows used, and their full-log sizes estimated by
scaling with the customer fraction).

**Reading.** :func:`read_training_events` reads a Parquet log (a file or a folder) in two passes:
the ``customer_id`` column alone (distinct ids per row group) to count and sample the customers,
then, row group by row group, every column of the sampled customers' rows only (the filter is
applied to each row group as it is read, so memory follows the sample). Rows with a missing
``customer_id`` are read too, so a file's problems are still reported; a row group with a
problem is validated again whole for the row numbers of its problems. Other formats (CSV, JSON
Lines) are read whole and sampled in memory by :func:`sample_events` (same customers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from journey_stage.core import errors, io
from journey_stage.core.errors import InputError
from journey_stage.core.events import Validated, _as_str, concat_validated
from journey_stage.core.settings import Settings
from journey_stage.core.taxonomy import Taxonomy

SALT = b"journey-stage/customer-sample/v1"

__all__ = ["SALT", "CustomerSample", "customer_keys", "choose_customers", "sample_events", "read_training_events"]


@dataclass(frozen=True)
class CustomerSample:
    """What a run sampled: the cap, the customers kept (sorted) and the sizes of the log."""

    cap: int
    customers: np.ndarray  # the kept canonical customer ids, sorted
    customers_total: int
    events_total: int  # rows of the log (read: rows in the files; in memory: valid events)
    events_read: int  # rows of the log that were read / kept (the sampled customers' rows)

    @property
    def fraction(self) -> float:
        return len(self.customers) / self.customers_total if self.customers_total else 1.0

    def describe(self) -> dict:
        return {
            "applied": True, "customers_cap": self.cap, "customers": int(len(self.customers)),
            "customers_total": self.customers_total, "fraction": round(self.fraction, 6),
            "events": self.events_read, "events_total": self.events_total,
            "method": "the customers with the smallest keyed BLAKE2b-64 hash of customer_id (training/sampling.py); "
                      "whole customers; deterministic",
        }


def customer_keys(ids) -> np.ndarray:
    """The sampling key of each customer id (uint64; a stable keyed hash, see the module docstring)."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(str(c).encode("utf-8"), digest_size=8, key=SALT).digest(), "big") for c in ids),
                       dtype=np.uint64, count=len(ids))


def choose_customers(ids, cap: int | None) -> np.ndarray | None:
    """The sampled ids among the distinct ``ids`` (sorted), or None when every customer is kept."""
    ids = np.unique(np.asarray(ids, dtype=object))
    if cap is None or len(ids) <= cap:
        return None
    order = np.argsort(customer_keys(ids), kind="stable")  # ids are sorted: ties go to the smaller id
    return np.sort(ids[order[:cap]])


def sample_events(events: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, CustomerSample | None]:
    """Canonical events restricted to the sampled customers (the events unchanged below the cap)."""
    if settings.eval_customers_cap is None:
        return events, None
    kept = choose_customers(pd.unique(events["customer_id"]), settings.eval_customers_cap)
    if kept is None:
        return events, None
    mask = events["customer_id"].isin(kept).to_numpy()
    out = events.loc[mask].reset_index(drop=True)
    return out, CustomerSample(int(settings.eval_customers_cap), kept, int(events["customer_id"].nunique()), int(len(events)), int(mask.sum()))


def read_training_events(path, taxonomy: Taxonomy | None, settings: Settings, *,
                         allow_rejects: bool = False) -> tuple[Validated, CustomerSample | None]:
    """Read and validate the events at ``path`` for training: the sampled customers' rows only when
    a Parquet log has more than ``eval_customers_cap`` customers (module docstring), else every row
    (:func:`journey_stage.core.io.read_events`). Returns the validated events and the sample."""
    files = io.event_files(path)
    cap = settings.eval_customers_cap
    if cap is None or any(f.suffix.lower() not in (".parquet", ".pq") or not _has_ids(f) for f in files):
        return io.read_events(path, taxonomy, allow_rejects=allow_rejects), None  # (a file without ids: its error)
    raw_ids, events_total = _distinct_raw_ids(files)
    canon = _as_str(raw_ids.to_pandas()) if len(raw_ids) else pd.Series([], dtype="str")
    kept = choose_customers(canon.dropna().to_numpy(dtype=object), cap)
    if kept is None:
        return io.read_events(path, taxonomy, allow_rejects=allow_rejects), None
    wanted = raw_ids.filter(pa.array((canon.isin(kept) | canon.isna()).to_numpy()))  # + blank ids: their problems are reported
    parts, read = [], 0
    for f in files:
        for v, n in _read_sampled_file(f, wanted, taxonomy, allow_rejects):
            parts.append(v)
            read += n
    if not parts:
        raise errors.no_events(str(path))
    sample = CustomerSample(int(cap), kept, int(canon.nunique()), events_total, read)
    return concat_validated(parts), sample


def _distinct_raw_ids(files) -> tuple[pa.Array, int]:
    """The distinct raw ``customer_id`` values of the files (one column read per row group) and their rows."""
    uniques, rows = [], 0
    for f in files:
        pf = _open(f)
        for g in range(pf.num_row_groups):
            col = _plain(pf.read_row_group(g, columns=["customer_id"]).column("customer_id"))
            rows += len(col)
            uniques.append(pc.unique(col))
    if not uniques:
        return pa.array([], pa.string()), 0
    types = {u.type for u in uniques}
    if len(types) > 1:  # files of one folder may store the column with different types: compare as text
        uniques = [u.cast(pa.large_string()) for u in uniques]
    return pc.unique(pa.concat_arrays(uniques)), rows


def _plain(col: pa.ChunkedArray) -> pa.Array:
    """One array of plain values (a dictionary-encoded column decoded)."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr


def _open(f) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(f)
    except Exception as exc:  # noqa: BLE001 - the message of an unreadable file, as read_events gives it
        raise errors.unreadable_file(str(f), "Parquet", io._reason(exc)) from None


def _has_ids(f) -> bool:
    try:
        return "customer_id" in pq.read_schema(f).names
    except Exception:  # noqa: BLE001 - read_events says what is wrong with the file
        return False


def _read_sampled_file(f, wanted: pa.Array, taxonomy: Taxonomy | None, allow_rejects: bool):
    """(validated part, rows read) per row group of one file: the rows of ``wanted`` ids only."""
    pf, first = _open(f), 1
    for g in range(pf.num_row_groups):
        table = pf.read_row_group(g)
        col = _plain(table.column("customer_id"))
        ids = col if col.type == wanted.type else col.cast(wanted.type)  # a folder of mixed id types: compared as text
        mask = pc.fill_null(pc.or_(pc.is_in(ids, value_set=wanted), pc.is_null(col)), True)
        keep = table.filter(mask)
        n = keep.num_rows
        if n:
            v = io.validate_chunk(io.RawChunk(1, _pandas(keep)), str(f), taxonomy)
            if v.n_problems:
                rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False)) + first
                v = _renumbered(v, table, first, rows, str(f), taxonomy, allow_rejects)
            yield v, n
        first += table.num_rows
        del table, keep


def _pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()  # as pandas.read_parquet converts a Parquet file (io.read_raw)


def _renumbered(v: Validated, table: pa.Table, first: int, rows: np.ndarray, source: str, taxonomy: Taxonomy | None,
                allow_rejects: bool) -> Validated:
    """``v`` (a filtered row group with problems) with the row numbers of the file: the row group is
    validated again whole for them; without ``allow_rejects`` its problems raise as read_events does."""
    whole = io.validate_chunk(io.RawChunk(first, _pandas(table)), source, taxonomy)
    if not allow_rejects:
        hint = (errors.unknown_event_types_hint(whole.unknown_event_types, taxonomy.name) if whole.unknown_event_types and taxonomy is not None
                else errors.bad_events_hint())
        raise InputError(source, whole.problems, hint, total=whole.n_problems)
    ours = set(rows.tolist())
    rejects = whole.rejects[whole.rejects["row"].isin(ours)].reset_index(drop=True)
    problems = [p for p in whole.problems if p.row in ours]
    return Validated(v.events, rejects, problems, v.n_problems, v.duplicates_removed, v.unknown_event_types, v.ignored_columns)

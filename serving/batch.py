"""Batch scoring of customer lists (``journey score``): read, validate, score in customer
partitions, write atomically.

How the local engine works (:func:`score_file`, ``engine="local"``):

1. **Read and validate, streaming.** The input (a Parquet, CSV, CSV.gz or JSON Lines file, or a
   folder of them) is cut into *read units*: groups of Parquet row groups of about ``batch_rows``
   rows, or one CSV / JSON Lines file. Each unit is read ``batch_rows`` rows at a time (pyarrow
   record batches, ``pandas.read_csv(chunksize=...)``; JSON Lines files whole) and every chunk is
   validated by :func:`journey_stage.core.events.validate_events` with its true first row number, so a
   rejected row carries the same file, row and reason as with :func:`journey_stage.core.io.read_events`.
   Invalid rows go to the rejects file when ``rejects`` is given; otherwise the first file with
   problems stops the run with the same message as :func:`journey_stage.core.io.read_events` (and a hint).
2. **Partition.** Valid canonical events are split by customer partition,
   ``crc32(utf-8 customer_id) mod n`` (Spark: ``pmod(crc32(customer_id), n)``), and kept in memory
   while small, else spilled as LZ4 Arrow IPC files to a hidden folder next to the output. ``n`` is
   at least ``partitions`` and grows with the input (about :data:`TARGET_EVENTS_PER_PARTITION`
   events each), so the working memory does not grow with the number of customers.
3. **Score.** Each partition is deduplicated across chunks and files (exact duplicates on all
   columns, SPEC section 2), sorted exactly like :func:`journey_stage.core.events.sort_events` and passed to
   the one scoring path :func:`journey_stage.model.scoring.score_events` with the same ``as_of`` for every
   partition. A customer's answer depends on its own history only, so partitioning never changes it.
   Customers without any event in the day-padded eligibility window before ``as_of`` cannot be
   eligible: they are counted but their histories are not passed to ``score_events`` (no features
   or model calls for them; ``score_events`` still decides eligibility for everyone else).
4. **Write atomically.** Partitions are appended in order to a temporary file in the output's
   folder (Parquet row groups or CSV lines) that replaces the target with ``os.replace`` only when
   every partition succeeded: a failure or Ctrl-C leaves no partial output and no temporary file.

Big inputs (:data:`PARALLEL_MIN_ROWS` rows or more) use ``workers`` processes (default: one per
core): Parquet read units are validated and partitions are scored in parallel, the main process
reads CSV / JSON Lines and writes the output in partition order.

``as_of`` defaults to the **latest valid event timestamp of the whole input** (not of each
partition), so every customer is scored at the same time. Output rows come grouped by customer
partition and sorted by ``customer_id`` inside a partition (the Spark engine writes the same
order); sort the file if you need one global order. Columns are those of the HTTP API flattened
(:func:`journey_stage.model.scoring.output_columns`), plus ``reasons`` (JSON text) with ``reasons=True``.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import signal
import tempfile
import time
import zlib
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from journey_stage.core import errors, io
from journey_stage.core.errors import InputError, JourneyError, Problem
from journey_stage.core.coerce import parse_as_of
from journey_stage.core.runtime import DEFAULT_MODEL_URI
from journey_stage.core.events import COLUMNS, MAX_PROBLEMS, validate_events
from journey_stage.model.scoring import output_columns, score_events

DEFAULT_PARTITIONS = 16
BATCH_ROWS = 1_000_000  # input rows validated at a time
TARGET_EVENTS_PER_PARTITION = 1_500_000  # partitions are added beyond `partitions` to stay near this
SPILL_MEMORY_BYTES = 256 * 2**20  # canonical events kept in memory before spilling to disk
PARALLEL_MIN_ROWS = 2_000_000  # below this, one process (starting workers costs a few seconds)
EST_BYTES_PER_ROW = {"CSV": 60, "JSON Lines": 150}  # uncompressed; only used to choose the partition count
TEXT_COLUMNS = ("customer_id", "event_type", "channel", "campaign")  # validated as text

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

Progress = Callable[[], object]  # a factory of rich.progress.Progress (journey_stage.cli.progress_bar)


# ---- partitioning --------------------------------------------------------------------------------

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


def estimate_rows(files: list[Path]) -> int:
    """Rows of the input: exact for Parquet (file metadata), a size-based estimate otherwise."""
    total = 0
    for f in files:
        kind = io._kind(f)
        if kind == "Parquet":
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except Exception:  # noqa: BLE001 - reported with a clear message when read
                pass
        else:
            size = f.stat().st_size * (5 if f.name.lower().endswith(".gz") else 1)
            total += size // EST_BYTES_PER_ROW.get(kind, 60)
    return int(total)


# ---- phase 1: read and validate, unit by unit, chunk by chunk ------------------------------------

def _parquet_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow -> pandas exactly as ``pandas.read_parquet`` converts (so validation sees the same types)."""
    try:
        from pandas.io._util import arrow_table_to_pandas
    except ImportError:  # pragma: no cover - other pandas versions
        return table.to_pandas()
    return arrow_table_to_pandas(table)


def _float_text_columns(columns: dict) -> bool:
    """A text column stored as floats: validation looks at the whole column (42.0 -> '42' only
    when every value is whole), so such a file is validated in one piece to stay exact."""
    return any(name in TEXT_COLUMNS and is_float for name, is_float in columns.items())


def _unreadable(path: Path, exc: Exception) -> JourneyError:
    reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return errors.unreadable_file(str(path), io._kind(path) or "events", reason)


@dataclass(frozen=True)
class Unit:
    """A piece of the input read and validated in one go (by the main process or a worker)."""

    seq: int  # position in the input: units are numbered in file order, then row order
    path: Path
    row_groups: tuple[int, ...] | None = None  # Parquet row groups; None = the whole file
    first_row: int = 1


def plan_units(files: list[Path], batch_rows: int = BATCH_ROWS) -> list[Unit]:
    """Read units in input order: Parquet row groups grouped to about ``batch_rows`` rows; a
    CSV / JSON Lines file (read sequentially) or a Parquet file with float text columns is one unit."""
    units: list[Unit] = []
    for f in files:
        if io._kind(f) != "Parquet":
            units.append(Unit(len(units), f))
            continue
        try:
            pf = pq.ParquetFile(f)
            schema = pf.schema_arrow
            meta = pf.metadata
        except Exception as exc:  # noqa: BLE001
            raise _unreadable(f, exc) from None
        if _float_text_columns({n: pa.types.is_floating(schema.field(n).type) for n in schema.names}):
            units.append(Unit(len(units), f))
            continue
        group: list[int] = []
        rows = 0
        first = 1
        for rg in range(meta.num_row_groups):
            group.append(rg)
            rows += meta.row_group(rg).num_rows
            if rows >= batch_rows:
                units.append(Unit(len(units), f, tuple(group), first))
                first += rows
                group, rows = [], 0
        if group or not units or units[-1].path != f:
            units.append(Unit(len(units), f, tuple(group), first))
    return units


def unit_chunks(unit: Unit, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first_row, raw rows) of a read unit, ``batch_rows`` at a time, parsed like
    :func:`journey_stage.core.io.read_raw` (Parquet as pandas reads it, CSV as text, JSON Lines untyped)."""
    path = unit.path
    kind = io._kind(path)
    if kind == "Parquet" and unit.row_groups is not None:
        try:
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
            row = unit.first_row
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=list(unit.row_groups), use_pandas_metadata=True):
                df = _parquet_to_pandas(pa.Table.from_batches([batch], schema=schema))
                yield row, df
                row += len(df)
        except JourneyError:
            raise
        except Exception as exc:  # noqa: BLE001 - the same one-line message as journey_stage.core.io.read_raw
            raise _unreadable(path, exc) from None
        return
    if kind == "CSV":
        sep = "\t" if path.name.lower().endswith(".tsv") else ","
        row = 1
        try:
            with pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], sep=sep, chunksize=batch_rows) as reader:
                for df in reader:
                    yield row, df.reset_index(drop=True)
                    row += len(df)
        except JourneyError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _unreadable(path, exc) from None
        return
    yield from frame_chunks(io.read_raw(path), batch_rows)  # JSON Lines (or float text columns): whole file


def iter_chunks(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first_row, raw rows) of one event file, ``batch_rows`` at a time."""
    for unit in plan_units([Path(path)], batch_rows):
        yield from unit_chunks(unit, batch_rows)


def frame_chunks(raw: pd.DataFrame, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first_row, rows) slices of a file already read whole (whole when a text column is float)."""
    if _float_text_columns({c: pd.api.types.is_float_dtype(raw[c].dtype) for c in raw.columns}):
        yield 1, raw
        return
    for start in range(0, len(raw), batch_rows):
        yield start + 1, raw.iloc[start:start + batch_rows].reset_index(drop=True)


def parse_text(name: str, text: str) -> pd.DataFrame:
    """A CSV / JSON Lines file's text -> raw table, with the options of :func:`journey_stage.core.io.read_raw`."""
    kind = io._kind(Path(name.split("?")[0]))
    try:
        if kind == "CSV":
            sep = "\t" if name.lower().endswith(".tsv") else ","
            return pd.read_csv(StringIO(text), dtype=str, keep_default_na=False, na_values=[""], sep=sep)
        return pd.read_json(StringIO(text), lines=True, dtype=False, convert_dates=False)
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise errors.unreadable_file(name, kind or "events", reason) from None


# Order in which journey_stage.core.events.validate_events checks (and lists) problems: (code, column).
_CHECK_ORDER = {
    ("missing", "customer_id"): 0, ("missing", "timestamp"): 1, ("bad_timestamp", "timestamp"): 2,
    ("missing", "event_type"): 3, ("unknown_event_type", "event_type"): 4, ("bad_number", "value"): 5,
    ("negative_value", "value"): 6,
}


def problem_order(p: Problem) -> tuple:
    """Sort key that lists the problems of chunks in the order a whole-file validation lists them."""
    return (_CHECK_ORDER.get((p.code, p.column), len(_CHECK_ORDER)), p.row if p.row is not None else 0)


@dataclass
class FileProblems:
    """The problems of one file, gathered chunk by chunk, reported like canonical_events would."""

    source: str
    problems: list[Problem] = field(default_factory=list)
    n_problems: int = 0
    unknown: set = field(default_factory=set)

    def add(self, problems: list[Problem], n_problems: int, unknown) -> None:
        self.n_problems += n_problems
        self.unknown |= set(unknown)
        if problems:
            self.problems = sorted(self.problems + list(problems), key=problem_order)[:MAX_PROBLEMS]

    def error(self, taxonomy) -> InputError:
        """The error :func:`journey_stage.core.io.read_events` raises for this file (same message), with a hint
        for scoring: the model's taxonomy is fixed, so unknown event types are diverted or retrained."""
        if self.unknown and taxonomy is not None:
            hint = (f"event types {sorted(self.unknown)[:20]} are not in the model's taxonomy '{taxonomy.name}': pass --rejects PATH "
                    "to divert invalid rows to a file and score the rest, or retrain with a taxonomy that maps them.")
        else:
            hint = errors.bad_events_hint()
        return InputError(self.source, self.problems, hint, total=self.n_problems)


@dataclass
class UnitResult:
    """What validating one read unit found (small: counts, problems, rejected rows)."""

    seq: int
    source: str
    n_input: int = 0
    valid: int = 0  # valid events kept (after removing duplicates inside each chunk)
    dups: int = 0
    problems: FileProblems | None = None
    rejects: list[pd.DataFrame] = field(default_factory=list)
    max_ts: pd.Timestamp | None = None
    spilled: bool = False  # written to its own spill file by a worker

    def __post_init__(self):
        if self.problems is None:
            self.problems = FileProblems(self.source)


def validate_unit(unit: Unit, taxonomy, batch_rows: int, allow_rejects: bool, add_events: Callable[[pd.DataFrame], None]) -> UnitResult:
    """Validate a read unit chunk by chunk; valid events go to ``add_events`` (not once a problem
    was found without ``allow_rejects``: the run stops with the error anyway)."""
    res = UnitResult(unit.seq, str(unit.path))
    for first_row, raw in unit_chunks(unit, batch_rows):
        if not len(raw):
            continue
        v = validate_events(raw, res.source, taxonomy, first_row=first_row)
        res.n_input += len(raw)
        res.problems.add(v.problems, v.n_problems, v.unknown_event_types)
        if res.problems.n_problems and not allow_rejects:
            continue
        if len(v.rejects):
            res.rejects.append(v.rejects)
        res.dups += v.duplicates_removed
        res.valid += len(v.events)
        if len(v.events):
            m = v.events["timestamp"].max()
            res.max_ts = m if res.max_ts is None or m > res.max_ts else res.max_ts
            add_events(v.events)
        del raw, v
    return res


# ---- the spill: canonical events by customer partition -------------------------------------------

def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)


def split_by_partition(events: pd.DataFrame, parts: int) -> list[pa.Table]:
    """A chunk's canonical events -> one Arrow table per customer partition (row order kept)."""
    part = partition_of(events["customer_id"], parts)
    table = pa.Table.from_pandas(events, schema=EVENT_SCHEMA, preserve_index=False)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    return [table.take(pa.array(order[bounds[p]:bounds[p + 1]])) for p in range(parts)]


class SeqWriter:
    """One read unit's events on disk: per chunk, one record batch per partition (batch j*P + p)."""

    def __init__(self, path: Path, parts: int):
        self.path, self.parts = path, parts
        self._w = None

    def write(self, events: pd.DataFrame) -> None:
        self.write_pieces(split_by_partition(events, self.parts))

    def write_pieces(self, pieces: list[pa.Table]) -> None:
        if self._w is None:
            self._w = pa.ipc.new_file(self.path, EVENT_SCHEMA, options=pa.ipc.IpcWriteOptions(compression="lz4"))
        for piece in pieces:
            self._w.write_batch(_one_batch(piece))

    def close(self) -> bool:
        if self._w is None:
            return False
        self._w.close()
        return True


class Spill:
    """Valid canonical events by customer partition, in input order (read unit, then rows).

    Kept in memory while small; beyond ``memory_bytes`` (and always for units validated by worker
    processes) each read unit is an Arrow IPC file ``seq-NNNNNN.arrow`` in a hidden folder next to
    the output. The folder is removed by the caller."""

    def __init__(self, parts: int, folder: Path, memory_bytes: int = SPILL_MEMORY_BYTES):
        self.parts = parts
        self.folder = folder
        self._memory_bytes = memory_bytes
        self._mem: dict[int, list[list[pa.Table]]] = {}
        self._mem_size = 0
        self._files: dict[int, Path] = {}
        self._open: dict[int, SeqWriter] = {}

    def path_of(self, seq: int) -> Path:
        return self.folder / f"seq-{seq:06d}.arrow"

    def add_file(self, seq: int) -> None:
        """Register a unit written by a worker process to ``path_of(seq)``."""
        self._files[seq] = self.path_of(seq)

    def add(self, seq: int, events: pd.DataFrame) -> None:
        pieces = split_by_partition(events, self.parts)
        if seq in self._open:
            self._open[seq].write_pieces(pieces)
            return
        self._mem.setdefault(seq, []).append(pieces)
        self._mem_size += sum(x.nbytes for x in pieces)
        if self._mem_size > self._memory_bytes:  # move everything to disk; this unit's file stays open
            for sq, chunks in self._mem.items():
                w = SeqWriter(self.path_of(sq), self.parts)
                for ch in chunks:
                    w.write_pieces(ch)
                if sq == seq:
                    self._open[sq] = w
                else:
                    w.close()
                    self._files[sq] = w.path
            self._mem, self._mem_size = {}, 0

    def end_unit(self, seq: int) -> None:
        w = self._open.pop(seq, None)
        if w is not None and w.close():
            self._files[seq] = w.path

    def close(self) -> None:
        for seq in list(self._open):
            self.end_unit(seq)

    def read(self, p: int) -> pa.Table:
        """Partition ``p``: every unit's pieces in input order (not yet deduplicated across units)."""
        mem = {sq: [ch[p] for ch in chunks] for sq, chunks in self._mem.items()}
        for chunks in self._mem.values():  # release as we go
            for ch in chunks:
                ch[p] = None
        return read_partition(p, self.parts, self._files, mem)


def read_partition(p: int, parts: int, files: dict[int, Path], mem: dict[int, list] | None = None) -> pa.Table:
    pieces = []
    mem = mem or {}
    for seq in sorted(set(files) | set(mem)):
        if seq in files:
            with pa.memory_map(str(files[seq])) as src:
                reader = pa.ipc.open_file(src)
                for i in range(p, reader.num_record_batches, parts):
                    b = reader.get_batch(i)
                    if b.num_rows:
                        pieces.append(pa.Table.from_batches([b]))
        pieces.extend(t for t in mem.get(seq, []) if t is not None and t.num_rows)
    if not pieces:
        return EVENT_SCHEMA.empty_table()
    return pa.concat_tables(pieces).combine_chunks()


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


# ---- worker processes ----------------------------------------------------------------------------

_WORKER: dict = {}


def _worker_init(predictor, playbook, parts: int, batch_rows: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides what an interrupt means
    _WORKER.update(predictor=predictor, playbook=playbook, parts=parts, batch_rows=batch_rows)


def _worker_validate(unit: Unit, path: Path, allow_rejects: bool):
    """A Parquet read unit, validated on a worker into its own spill file. User errors come back
    as values (exceptions with extra fields do not survive pickling)."""
    w = SeqWriter(path, _WORKER["parts"])
    try:
        res = validate_unit(unit, _WORKER["predictor"].taxonomy, _WORKER["batch_rows"], allow_rejects, w.write)
    except JourneyError as exc:
        return ("error", exc.message, exc.hint)
    finally:
        spilled = w.close()
    res.spilled = spilled
    return res


def _worker_score(p: int, files: dict[int, Path], as_of, reasons: bool):
    table = read_partition(p, _WORKER["parts"], files)
    frame, stats = score_partition(table, _WORKER["predictor"], as_of, _WORKER["playbook"], reasons)
    return p, frame, stats


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _noop() -> None:
    return None


class WorkerPool:
    """``workers`` spawned processes holding the predictor (concurrent.futures: a worker that dies
    raises BrokenProcessPool instead of hanging).

    All workers are started at once with ``__main__`` hidden, so they do not re-run the caller's
    script (a script calling score_file without ``if __name__ == "__main__":`` would otherwise run
    again in every worker). ``close`` terminates them (after Ctrl-C too)."""

    def __init__(self, workers: int, initargs: tuple):
        import multiprocessing as mp
        import sys
        import types
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        main = sys.modules.get("__main__")
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            self.ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=initargs)
            for f in [self.ex.submit(_noop) for _ in range(workers)]:
                f.result()
        except BaseException:
            sys.modules["__main__"] = main
            self.close()
            raise
        finally:
            sys.modules["__main__"] = main

    def submit(self, fn, *args):
        return self.ex.submit(fn, *args)

    def close(self) -> None:
        ex = getattr(self, "ex", None)
        if ex is None:
            return
        procs = list((getattr(ex, "_processes", None) or {}).values())
        ex.shutdown(wait=False, cancel_futures=True)
        for proc in procs:  # our own workers, by handle
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
        self.ex = None


# ---- output --------------------------------------------------------------------------------------

def output_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz")):
        return "CSV"
    if name.endswith((".parquet", ".pq")):
        return "Parquet"
    raise JourneyError(f"{path}: unsupported output file type.", "name the output .parquet (recommended) or .csv / .csv.gz.")


def output_schema(predictor, reasons: bool) -> pa.Schema:
    fields = []
    for c in output_columns(predictor, reasons):
        if c == "eligible":
            t = pa.bool_()
        elif c.endswith("_probability") or c.startswith("stage_probability_"):
            t = pa.float64()
        else:
            t = pa.string()
        fields.append(pa.field(c, t))
    return pa.schema(fields)


class OutputWriter:
    """Appends scored frames to one Parquet (row group per frame) or CSV file at ``tmp``."""

    def __init__(self, tmp: Path, kind: str, schema: pa.Schema, gz: bool = False):
        self.tmp, self.kind, self.schema, self.gz = tmp, kind, schema, gz
        self.rows = 0
        self._pq: pq.ParquetWriter | None = None
        self._fh = None
        self._header = True

    def write(self, frame: pd.DataFrame) -> None:
        frame = frame[self.schema.names]
        if self.kind == "Parquet":
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.tmp, self.schema)
            self._pq.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
        else:
            if self._fh is None:
                self._fh = gzip.open(self.tmp, "wt", newline="") if self.gz else open(self.tmp, "w", newline="")
            frame.to_csv(self._fh, header=self._header, index=False)
            self._header = False
        self.rows += len(frame)

    def write_arrow(self, table: pa.Table) -> None:
        """Arrow input (the Spark engine): Parquet as is; CSV through pandas so the text is identical."""
        table = table.select(self.schema.names).cast(self.schema)
        if self.kind == "Parquet":
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.tmp, self.schema)
            self._pq.write_table(table)
            self.rows += table.num_rows
        else:
            for batch in table.to_batches(max_chunksize=200_000):
                self.write(batch.to_pandas())

    def close(self) -> None:
        if self._pq is None and self._fh is None:  # no rows: the schema / header only
            empty = self.schema.empty_table()
            if self.kind == "Parquet":
                pq.write_table(empty, self.tmp)
            else:
                self.write(empty.to_pandas())
        if self._pq is not None:
            self._pq.close()
        if self._fh is not None:
            self._fh.close()

    def abort(self) -> None:
        for h in (self._pq, self._fh):
            try:
                if h is not None:
                    h.close()
            except Exception:  # noqa: BLE001 - the file is deleted anyway
                pass


def open_output(tmp: Path, target: Path, predictor, reasons: bool) -> OutputWriter:
    return OutputWriter(tmp, output_kind(target), output_schema(predictor, reasons), gz=target.name.lower().endswith(".gz"))


# ---- the command ---------------------------------------------------------------------------------

def _bar(progress: Progress | None):
    return progress() if progress is not None else nullcontext(None)


class _Tasks:
    """Thin wrapper so the code reads the same with and without a progress bar."""

    def __init__(self, bar):
        self.bar = bar

    def add(self, description: str, total: int | None):
        return self.bar.add_task(description, total=total) if self.bar is not None else None

    def advance(self, task, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(task, n)


def score_file(
    events_path,
    out_path,
    *,
    model_uri: str = DEFAULT_MODEL_URI,
    as_of=None,
    engine: str = "local",
    rejects=None,
    reasons: bool = False,
    spark_master: str = "local[*]",
    partitions: int = DEFAULT_PARTITIONS,
    progress: Progress | None = None,
    predictor=None,
    batch_rows: int = BATCH_ROWS,
    workers: int | None = None,
) -> dict:
    """Score every eligible customer of an events file or folder into one Parquet or CSV file.

    ``as_of``: ISO 8601 text or timestamp; default the latest valid event timestamp of the whole
    input. ``workers``: processes for big inputs (default one per core; 1 = no worker processes).

    Returns counts: ``scored`` (rows written), ``ineligible`` (customers with valid events that
    were not scored: no event in the eligibility window before ``as_of``, or only events after
    it), ``rejected`` (invalid input rows), ``duplicates`` (exact duplicate events removed),
    ``input_rows``, ``events`` (valid events after deduplication; ``events + rejected +
    duplicates == input_rows``), ``customers``, ``problems``, ``partitions``, ``as_of``,
    ``engine``, ``workers`` and ``seconds``.
    """
    t0 = time.perf_counter()
    out_path = Path(out_path)
    rejects = Path(rejects) if rejects is not None else None
    if engine not in ("local", "spark"):
        raise JourneyError(f"--engine {engine!r}: expected local or spark.", "use --engine local or --engine spark.")
    output_kind(out_path)
    if out_path.is_dir():
        raise JourneyError(f"{out_path}: is a folder; expected an output file.", "pass a file name such as scores.parquet.")
    t_as_of = parse_as_of(as_of)
    if engine == "spark" and "://" in str(events_path):  # hdfs://, s3a://: listed and read by Spark itself
        partition_count(0, partitions)  # checks the value; Spark sizes the partitions once it has counted the rows
        n_parts = None
        files = None
    else:
        events_path = Path(events_path)
        files = io.event_files(events_path)  # clear error for a missing path or an unsupported type
        n_parts = partition_count(estimate_rows(files), partitions)
    if predictor is None:
        from journey_stage.model.registry import load_predictor

        predictor = load_predictor(model_uri)
    if engine == "spark":
        from journey_stage.serving.spark import score_spark

        counts = score_spark(events_path, out_path, predictor=predictor, as_of=t_as_of, rejects=rejects, reasons=reasons,
                             master=spark_master, partitions=n_parts, min_partitions=partitions, progress=progress,
                             batch_rows=batch_rows)
        return counts | {"seconds": time.perf_counter() - t0}
    n_rows = estimate_rows(files)
    if workers is None:
        workers = default_workers() if n_rows >= PARALLEL_MIN_ROWS else 1
    exact = all(io._kind(f) == "Parquet" for f in files)
    counts = _score_local(files, events_path, out_path, predictor, t_as_of, rejects, reasons, n_parts, progress, batch_rows,
                          n_rows if exact else None, max(1, int(workers)))
    return counts | {"seconds": time.perf_counter() - t0}


def _score_local(files, events_path: Path, out_path: Path, predictor, t_as_of, rejects, reasons, n_parts, progress, batch_rows,
                 estimated_rows: int | None, workers: int) -> dict:
    from journey_stage.model.playbook import load_playbook

    taxonomy = predictor.taxonomy
    playbook = load_playbook()
    allow_rejects = rejects is not None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    spill_dir = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.spill-", dir=out_path.parent))
    spill = Spill(n_parts, spill_dir, SPILL_MEMORY_BYTES if workers == 1 else 0)  # workers read the spill from disk
    pool = None
    try:
        units = plan_units(files, batch_rows)
        if workers > 1:
            pool = WorkerPool(workers, (predictor, playbook, n_parts, batch_rows))
        with _bar(progress) as bar:
            tasks = _Tasks(bar)
            read_task = tasks.add("reading and validating events", len(units))
            results = _phase_validate(units, spill, pool, taxonomy, batch_rows, allow_rejects, tasks, read_task)
            by_file: dict[str, FileProblems] = {}
            input_rows = duplicates = 0
            max_ts = None
            for r in results:  # in input order: the first file with problems is reported
                fp = by_file.setdefault(r.source, FileProblems(r.source))
                fp.add(r.problems.problems, r.problems.n_problems, r.problems.unknown)
                input_rows += r.n_input
                duplicates += r.dups
                if r.max_ts is not None and (max_ts is None or r.max_ts > max_ts):
                    max_ts = r.max_ts
            if not allow_rejects:
                for fp in by_file.values():
                    if fp.n_problems:
                        raise fp.error(taxonomy)
            if input_rows == 0:
                raise errors.no_events(str(events_path))
            t = t_as_of if t_as_of is not None else max_ts
            n_problems = sum(fp.n_problems for fp in by_file.values())
            customers = scored = events_total = 0
            with io.atomic_path(out_path) as tmp:
                writer = open_output(tmp, out_path, predictor, reasons)
                try:
                    score_task = tasks.add(f"scoring {n_parts} customer partitions", n_parts)
                    for frame, stats in _phase_score(n_parts, spill, pool, predictor, t, playbook, reasons, workers):
                        duplicates += stats["dups"]
                        events_total += stats["events"]
                        customers += stats["customers"]
                        if len(frame):
                            writer.write(frame)
                            scored += len(frame)
                        del frame
                        tasks.advance(score_task)
                    writer.close()
                except BaseException:
                    writer.abort()
                    raise
                if rejects is not None:  # written only when the scores are complete (both atomic)
                    frames = [x for r in results for x in r.rejects]
                    io.write_table(pd.concat(frames, ignore_index=True) if frames else _empty_rejects(), rejects)
    finally:
        if pool is not None:
            pool.close()
        spill.close()
        shutil.rmtree(spill_dir, ignore_errors=True)
    rejected = int(sum(len(x) for r in results for x in r.rejects))
    return {
        "scored": int(scored),
        "ineligible": int(customers - scored),
        "rejected": rejected,
        "duplicates": int(duplicates),
        "input_rows": int(input_rows),
        "events": int(events_total),
        "customers": int(customers),
        "problems": int(n_problems),
        "partitions": int(n_parts),
        "as_of": t.isoformat() if t is not None else None,
        "engine": "local",
        "workers": int(workers),
        "out": str(out_path),
    }


def _phase_validate(units, spill: Spill, pool, taxonomy, batch_rows, allow_rejects, tasks, read_task) -> list[UnitResult]:
    """Validate every read unit into the spill; Parquet units on the workers when there are some."""
    results: dict[int, UnitResult] = {}
    pending = {}
    for unit in units:
        if pool is not None and unit.row_groups is not None:
            pending[unit.seq] = pool.submit(_worker_validate, unit, spill.path_of(unit.seq), allow_rejects)
    for unit in units:
        if unit.seq in pending:
            continue
        results[unit.seq] = validate_unit(unit, taxonomy, batch_rows, allow_rejects, lambda ev, s=unit.seq: spill.add(s, ev))
        spill.end_unit(unit.seq)
        tasks.advance(read_task)
    for seq, job in pending.items():
        res = job.result()
        if isinstance(res, tuple):
            raise JourneyError(res[1], res[2])
        if res.spilled:
            spill.add_file(seq)
        results[seq] = res
        tasks.advance(read_task)
    spill.close()
    return [results[u.seq] for u in units]


def _phase_score(n_parts, spill: Spill, pool, predictor, t, playbook, reasons, workers) -> Iterator[tuple[pd.DataFrame, dict]]:
    """Scored partitions in partition order; on the workers (a few partitions ahead) if any."""
    if pool is None:
        for p in range(n_parts):
            yield score_partition(spill.read(p), predictor, t, playbook, reasons)
        return
    files = dict(spill._files)
    window: deque = deque()
    nxt = 0
    while nxt < n_parts or window:
        while nxt < n_parts and len(window) < workers + 1:
            window.append(pool.submit(_worker_score, nxt, files, t, reasons))
            nxt += 1
        _, frame, stats = window.popleft().result()
        yield frame, stats


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame({"source": pd.Series(dtype="str"), "row": pd.Series(dtype="int64"), "reject_reason": pd.Series(dtype="str")})


__all__ = ["score_file", "partition_of", "partition_count", "output_schema", "OutputWriter", "iter_chunks",
           "canonical_partition", "plan_units"]

"""Reading batch input (both engines): event files -> read units -> chunks of raw rows, each
validated by :func:`journey_stage.core.events.validate_events` with its true first row number, so a
rejected row carries the same file, row and reason as with :func:`journey_stage.core.io.read_events`;
the problems of a file are gathered chunk by chunk and reported like a whole-file validation.

A *read unit* is a group of Parquet row groups of about ``batch_rows`` rows, or one CSV / JSON
Lines file (read sequentially), or a Parquet file with float text columns (validated whole).
CSV files are read by :func:`journey_stage.core.io.raw_chunks`: a row is a line, and a line that is
not a row (wrong number of fields, not UTF-8, a quote it does not close) is rejected on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from journey_stage.core import errors, io
from journey_stage.core.errors import InputError, JourneyError, Problem
from journey_stage.core.events import MAX_PROBLEMS
from journey_stage.core.io import RawChunk, validate_chunk

BATCH_ROWS = 1_000_000  # input rows validated at a time
EST_BYTES_PER_ROW = {"CSV": 60, "JSON Lines": 150}  # uncompressed; only used to choose the partition count
TEXT_COLUMNS = ("customer_id", "event_type", "channel", "campaign")  # validated as text


def file_kind(path: Path) -> str | None:
    """The input kind of a file from its name, as :mod:`journey_stage.core.io` reads it: ``"Parquet"``,
    ``"CSV"``, ``"JSON Lines"``, or None for another file type."""
    return io._kind(path)


def estimate_rows(files: list[Path]) -> int:
    """Rows of the input: exact for Parquet (file metadata), a size-based estimate otherwise."""
    total = 0
    for f in files:
        kind = file_kind(f)
        if kind == "Parquet":
            try:
                total += pq.ParquetFile(f).metadata.num_rows
            except Exception:  # noqa: BLE001 - reported with a clear message when read
                pass
        else:
            size = f.stat().st_size * (5 if f.name.lower().endswith(".gz") else 1)
            total += size // EST_BYTES_PER_ROW.get(kind, 60)
    return int(total)


# ---- read units and chunks -----------------------------------------------------------------------

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
    return errors.unreadable_file(str(path), file_kind(path) or "events", reason)


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
        if file_kind(f) != "Parquet":
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


def unit_chunks(unit: Unit, batch_rows: int = BATCH_ROWS) -> Iterator[RawChunk]:
    """Raw rows of a read unit, ``batch_rows`` at a time, numbered in their file, parsed like
    :func:`journey_stage.core.io.read_raw` (Parquet as pandas reads it, CSV as text line by line,
    JSON Lines untyped)."""
    path = unit.path
    kind = file_kind(path)
    if kind == "Parquet" and unit.row_groups is not None:
        try:
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
            row = unit.first_row
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=list(unit.row_groups), use_pandas_metadata=True):
                df = _parquet_to_pandas(pa.Table.from_batches([batch], schema=schema))
                yield RawChunk(row, df)
                row += len(df)
        except JourneyError:
            raise
        except Exception as exc:  # noqa: BLE001 - the same one-line message as journey_stage.core.io.read_raw
            raise _unreadable(path, exc) from None
        return
    if kind == "CSV":
        yield from io.raw_chunks(path, batch_rows)
        return
    yield from frame_chunks(io.read_raw(path), batch_rows)  # JSON Lines (or float text columns): whole file


def iter_chunks(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[RawChunk]:
    """Raw rows of one event file, ``batch_rows`` at a time."""
    for unit in plan_units([Path(path)], batch_rows):
        yield from unit_chunks(unit, batch_rows)


def frame_chunks(raw: pd.DataFrame, batch_rows: int = BATCH_ROWS) -> Iterator[RawChunk]:
    """Slices of a file already read whole (whole when a text column is float)."""
    if _float_text_columns({c: pd.api.types.is_float_dtype(raw[c].dtype) for c in raw.columns}):
        yield RawChunk(1, raw)
        return
    for start in range(0, len(raw), batch_rows):
        yield RawChunk(start + 1, raw.iloc[start:start + batch_rows].reset_index(drop=True))


def parse_bytes(name: str, data: bytes, batch_rows: int = BATCH_ROWS) -> Iterator[RawChunk]:
    """A CSV / JSON Lines file's bytes (read by Spark) -> raw rows, exactly as read from the file."""
    path = Path(name.split("?")[0])
    if file_kind(path) == "CSV":
        yield from io.raw_chunks(path, batch_rows, data)
        return
    for chunk in io.raw_chunks(path, None, data):  # JSON Lines: whole
        yield from frame_chunks(chunk.frame, batch_rows)


# ---- validation, problems of a file --------------------------------------------------------------

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
    for chunk in unit_chunks(unit, batch_rows):
        if not len(chunk.frame):
            continue
        v = validate_chunk(chunk, res.source, taxonomy)
        res.n_input += len(chunk.frame)
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
        del chunk, v
    return res



@dataclass
class ReadTotals:
    """What the read units found together: input rows, duplicates removed inside chunks, problems
    and the latest valid event timestamp."""

    input_rows: int = 0
    duplicates: int = 0
    n_problems: int = 0
    max_ts: pd.Timestamp | None = None


def read_totals(results: list[UnitResult], taxonomy, allow_rejects: bool, source: str) -> ReadTotals:
    """Totals of the read units (in input order). Without ``allow_rejects`` the first file with
    problems raises its error; an input without any row raises ``no_events`` for ``source``."""
    by_file: dict[str, FileProblems] = {}
    totals = ReadTotals()
    for r in results:  # in input order: the first file with problems is reported
        fp = by_file.setdefault(r.source, FileProblems(r.source))
        fp.add(r.problems.problems, r.problems.n_problems, r.problems.unknown)
        totals.input_rows += r.n_input
        totals.duplicates += r.dups
        if r.max_ts is not None and (totals.max_ts is None or r.max_ts > totals.max_ts):
            totals.max_ts = r.max_ts
    if not allow_rejects:
        for fp in by_file.values():
            if fp.n_problems:
                raise fp.error(taxonomy)
    if totals.input_rows == 0:
        raise errors.no_events(source)
    totals.n_problems = sum(fp.n_problems for fp in by_file.values())
    return totals

"""Batch scoring of customer lists (``journey score``): read, validate, score in customer
partitions, write atomically.

How the local engine works (:func:`score_file`, ``engine="local"``):

1. **Read and validate, streaming.** Every input file (Parquet, CSV, CSV.gz, JSON Lines, or a
   folder of them) is read in chunks of ``batch_rows`` rows: Parquet by record batches with
   pyarrow, CSV with ``pandas.read_csv(chunksize=...)``; JSON Lines one file at a time. Each chunk
   is validated by :func:`journey.events.validate_events` with its true first row number, so a
   rejected row carries the same file, row and reason as with :func:`journey.io.read_events`.
   Invalid rows go to the rejects file when ``rejects`` is given; otherwise the first file with
   problems stops the run with the same one-line error as ``journey validate`` would report.
2. **Partition.** Valid canonical events are split by customer partition,
   ``crc32(utf-8 customer_id) mod partitions``, and spilled (Arrow IPC, LZ4) to a hidden folder
   next to the output (kept in memory while small). The number of partitions is at least
   ``partitions`` and grows with the input (about :data:`TARGET_EVENTS_PER_PARTITION` events per
   partition), so the peak memory does not grow with the number of customers.
3. **Score.** Each partition is deduplicated across chunks and files (exact duplicates on all
   columns, as SPEC section 2 says), sorted like the canonical frame and passed to the one scoring
   path :func:`serving.scoring.score_events` with the same ``as_of`` for every partition. A
   customer's result depends on its own history only, so partitioning never changes an answer.
4. **Write atomically.** Each partition's rows are appended to a temporary file in the output's
   folder (Parquet row groups or CSV lines) that replaces the target with ``os.replace`` only when
   every partition succeeded: a failure or Ctrl-C leaves no partial output and no temporary file.

``as_of`` defaults to the **latest valid event timestamp of the whole input** (not of each
partition), so every customer is scored at the same time. Output rows come grouped by customer
partition and sorted by ``customer_id`` inside a partition (the Spark engine writes the same
order); sort the file if you need one global order. Columns are those of the HTTP API flattened
(:func:`serving.scoring.output_columns`), plus ``reasons`` (JSON text) with ``reasons=True``.
"""

from __future__ import annotations

import gzip
import math
import shutil
import tempfile
import time
import zlib
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from journey import errors, io
from journey.errors import InputError, JourneyError, Problem
from journey.events import COLUMNS, MAX_PROBLEMS, sort_events, validate_events
from serving.scoring import output_columns, score_events

DEFAULT_MODEL_URI = "models:/journey-stage@champion"
DEFAULT_PARTITIONS = 16
BATCH_ROWS = 1_000_000  # input rows validated at a time
TARGET_EVENTS_PER_PARTITION = 1_500_000  # partitions are added beyond `partitions` to stay near this
SPILL_MEMORY_BYTES = 256 * 2**20  # canonical events kept in memory before spilling to disk
EST_BYTES_PER_ROW = {"CSV": 60, "JSON Lines": 150}  # uncompressed; only used to choose the partition count
TEXT_COLUMNS = ("customer_id", "event_type", "channel", "campaign")  # validated as text
OUTPUT_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz")

# Canonical events as spilled between the read and the score phase (journey.events.COLUMNS).
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

Progress = Callable[[], object]  # a factory of rich.progress.Progress (journey.cli.progress_bar)


# ---- partitioning --------------------------------------------------------------------------------

def partition_of(customer_ids, partitions: int) -> np.ndarray:
    """Stable customer -> partition: ``crc32(utf-8 id) mod partitions`` (Spark: ``pmod(crc32(id), n)``)."""
    codes, uniq = pd.factorize(pd.Series(customer_ids, dtype=object).to_numpy(), sort=False)
    h = np.fromiter((zlib.crc32(str(u).encode("utf-8")) for u in uniq), dtype=np.int64, count=len(uniq))
    return (h % int(partitions))[codes] if len(codes) else np.zeros(0, np.int64)


def partition_count(estimated_rows: int, partitions: int = DEFAULT_PARTITIONS) -> int:
    """At least ``partitions``; more when the input is big (about TARGET_EVENTS_PER_PARTITION each)."""
    if partitions < 1:
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


# ---- phase 1: read and validate, chunk by chunk ---------------------------------------------------

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


def iter_chunks(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first_row, raw rows) of one event file, ``batch_rows`` at a time, parsed like
    :func:`journey.io.read_raw` (CSV as text, JSON Lines without type guessing)."""
    kind = io._kind(path)
    try:
        if kind == "Parquet":
            pf = pq.ParquetFile(path)
            schema = pf.schema_arrow
            if _float_text_columns({n: pa.types.is_floating(schema.field(n).type) for n in schema.names}):
                yield 1, io.read_raw(path)
                return
            row = 1
            for batch in pf.iter_batches(batch_size=batch_rows, use_pandas_metadata=True):
                df = _parquet_to_pandas(pa.Table.from_batches([batch], schema=schema))
                yield row, df
                row += len(df)
            return
        if kind == "CSV":
            sep = "\t" if path.name.lower().endswith(".tsv") else ","
            row = 1
            reader = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], sep=sep, chunksize=batch_rows)
            with reader:
                for df in reader:
                    yield row, df.reset_index(drop=True)
                    row += len(df)
            return
    except JourneyError:
        raise
    except Exception as exc:  # noqa: BLE001 - the same one-line message as journey.io.read_raw
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise errors.unreadable_file(str(path), kind or "events", reason) from None
    yield from frame_chunks(io.read_raw(path), batch_rows)  # JSON Lines: one file at a time


def frame_chunks(raw: pd.DataFrame, batch_rows: int = BATCH_ROWS) -> Iterator[tuple[int, pd.DataFrame]]:
    """(first_row, rows) slices of a file already read whole (whole when a text column is float)."""
    if _float_text_columns({c: pd.api.types.is_float_dtype(raw[c].dtype) for c in raw.columns}):
        yield 1, raw
        return
    for start in range(0, len(raw), batch_rows):
        yield start + 1, raw.iloc[start:start + batch_rows].reset_index(drop=True)


def parse_text(name: str, text: str) -> pd.DataFrame:
    """A CSV / JSON Lines file's text -> raw table, with the options of :func:`journey.io.read_raw`."""
    kind = io._kind(Path(name.split("?")[0]))
    try:
        if kind == "CSV":
            sep = "\t" if name.lower().endswith(".tsv") else ","
            return pd.read_csv(StringIO(text), dtype=str, keep_default_na=False, na_values=[""], sep=sep)
        return pd.read_json(StringIO(text), lines=True, dtype=False, convert_dates=False)
    except Exception as exc:  # noqa: BLE001
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise errors.unreadable_file(name, kind or "events", reason) from None


# Order in which journey.events.validate_events checks (and lists) problems: (code, column).
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
        """The error :func:`journey.events.canonical_events` raises for this file (same message), with a
        hint for scoring: the model's taxonomy is fixed, so unknown event types are diverted or retrained."""
        if self.unknown and taxonomy is not None:
            hint = (f"event types {sorted(self.unknown)[:20]} are not in the model's taxonomy '{taxonomy.name}': pass --rejects PATH "
                    "to divert invalid rows to a file and score the rest, or retrain with a taxonomy that maps them.")
        else:
            hint = errors.bad_events_hint()
        return InputError(self.source, self.problems, hint, total=self.n_problems)


class _Spill:
    """Canonical events by customer partition: in memory while small, then Arrow IPC files."""

    def __init__(self, parts: int, folder_factory: Callable[[], Path], memory_bytes: int = SPILL_MEMORY_BYTES):
        self.parts = parts
        self._folder_factory = folder_factory
        self._memory_bytes = memory_bytes
        self._mem: list[list[pa.Table]] = [[] for _ in range(parts)]
        self._mem_size = 0
        self._writers: list | None = None
        self._paths: list[Path] = []
        self._stack = ExitStack()

    def add(self, events: pd.DataFrame) -> None:
        if not len(events):
            return
        part = partition_of(events["customer_id"], self.parts)
        table = pa.Table.from_pandas(events, schema=EVENT_SCHEMA, preserve_index=False)
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(self.parts + 1))
        for p in range(self.parts):
            lo, hi = bounds[p], bounds[p + 1]
            if hi > lo:
                piece = table.take(pa.array(order[lo:hi]))
                if self._writers is None:
                    self._mem[p].append(piece)
                    self._mem_size += piece.nbytes
                else:
                    self._writers[p].write_table(piece)
        if self._writers is None and self._mem_size > self._memory_bytes:
            self._to_disk()

    def _to_disk(self) -> None:
        folder = self._folder_factory()
        opts = pa.ipc.IpcWriteOptions(compression="lz4")
        self._paths = [folder / f"part-{p:05d}.arrow" for p in range(self.parts)]
        self._writers = [self._stack.enter_context(pa.ipc.new_file(path, EVENT_SCHEMA, options=opts)) for path in self._paths]
        for p, pieces in enumerate(self._mem):
            for piece in pieces:
                self._writers[p].write_table(piece)
        self._mem = [[] for _ in range(self.parts)]
        self._mem_size = 0

    def finish(self) -> None:
        self._stack.close()

    def read(self, p: int) -> pd.DataFrame:
        """Partition ``p`` as a canonical frame (deduplicated and sorted by the caller)."""
        if self._writers is None:
            pieces = self._mem[p]
            self._mem[p] = []  # release as we go
            table = pa.concat_tables(pieces) if pieces else EVENT_SCHEMA.empty_table()
        else:
            with pa.memory_map(str(self._paths[p])) as src:
                table = pa.ipc.open_file(src).read_all()
        return table.to_pandas()


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
        """Arrow input (the Spark engine): converted to pandas per batch so CSV text is identical."""
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
        if self.rows == 0 and self._pq is None and self._fh is None:  # no rows: header / schema only
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

def parse_as_of(as_of) -> pd.Timestamp | None:
    """``--as-of`` text (ISO 8601; naive = UTC) or a timestamp -> UTC Timestamp (microseconds)."""
    if as_of is None or (isinstance(as_of, str) and not as_of.strip()):
        return None
    try:
        ts = pd.Timestamp(as_of.strip() if isinstance(as_of, str) else as_of)
    except (ValueError, TypeError) as exc:
        raise JourneyError(f"--as-of {as_of!r}: not a timestamp ({str(exc).splitlines()[0][:120]}).",
                           "use ISO 8601, e.g. 2025-06-30T23:59:59+00:00 (a time without offset is UTC).") from None
    if ts is pd.NaT:
        raise JourneyError(f"--as-of {as_of!r}: not a timestamp.", "use ISO 8601, e.g. 2025-06-30T23:59:59+00:00.")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.as_unit("us")


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

    def done(self, task) -> None:
        if self.bar is not None:
            t = next(x for x in self.bar.tasks if x.id == task)
            self.bar.update(task, total=t.completed)


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
) -> dict:
    """Score every eligible customer of an events file or folder into one Parquet or CSV file.

    Returns counts: ``scored`` (rows written), ``ineligible`` (customers with valid events that
    were not scored: no event in the eligibility window before ``as_of``, or only events after
    it), ``rejected`` (invalid input rows), ``duplicates`` (exact duplicate events removed),
    ``input_rows``, ``events`` (valid events after deduplication; ``events + rejected +
    duplicates == input_rows``), ``customers``, ``partitions``, ``as_of`` and ``seconds``.
    """
    t0 = time.perf_counter()
    events_path, out_path = Path(events_path), Path(out_path)
    rejects = Path(rejects) if rejects is not None else None
    if engine not in ("local", "spark"):
        raise JourneyError(f"--engine {engine!r}: expected local or spark.", "use --engine local or --engine spark.")
    output_kind(out_path)
    if out_path.is_dir():
        raise JourneyError(f"{out_path}: is a folder; expected an output file.", "pass a file name such as scores.parquet.")
    t_as_of = parse_as_of(as_of)
    files = io.event_files(events_path)  # clear error for a missing path or unsupported type
    n_rows = estimate_rows(files)
    n_parts = partition_count(n_rows, partitions)
    if predictor is None:
        from training.tracking import load_predictor

        predictor = load_predictor(model_uri)
    if engine == "spark":
        from serving.spark import score_spark

        counts = score_spark(events_path, out_path, predictor=predictor, as_of=t_as_of, rejects=rejects, reasons=reasons,
                             master=spark_master, partitions=n_parts, progress=progress)
        return counts | {"seconds": time.perf_counter() - t0}
    exact = all(io._kind(f) == "Parquet" for f in files)
    counts = _score_local(files, events_path, out_path, predictor, t_as_of, rejects, reasons, n_parts, progress, batch_rows,
                          n_rows if exact else None)
    return counts | {"seconds": time.perf_counter() - t0}


def _score_local(files, events_path: Path, out_path: Path, predictor, t_as_of, rejects, reasons, n_parts, progress, batch_rows,
                 estimated_rows: int | None = None) -> dict:
    from serving.playbook import load_playbook

    taxonomy = predictor.taxonomy
    playbook = load_playbook()
    spill_dir: list[Path] = []

    def make_spill_dir() -> Path:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        spill_dir.append(Path(tempfile.mkdtemp(prefix=f".{out_path.name}.spill-", dir=out_path.parent)))
        return spill_dir[-1]

    spill = _Spill(n_parts, make_spill_dir)
    input_rows = valid_rows = duplicates = n_problems = 0
    reject_frames: list[pd.DataFrame] = []
    max_ts: pd.Timestamp | None = None
    try:
        with _bar(progress) as bar:
            tasks = _Tasks(bar)
            read_task = tasks.add("reading and validating events", estimated_rows)
            for f in files:
                fp = FileProblems(str(f))
                for first_row, raw in iter_chunks(f, batch_rows):
                    if not len(raw):
                        continue
                    v = validate_events(raw, str(f), taxonomy, first_row=first_row)
                    input_rows += len(raw)
                    fp.add(v.problems, v.n_problems, v.unknown_event_types)
                    tasks.advance(read_task, len(raw))
                    if fp.n_problems and rejects is None:
                        continue  # keep counting this file's problems for the error, score nothing
                    if len(v.rejects):
                        reject_frames.append(v.rejects)
                    duplicates += v.duplicates_removed
                    valid_rows += len(v.events)
                    if len(v.events):
                        m = v.events["timestamp"].max()
                        max_ts = m if max_ts is None or m > max_ts else max_ts
                    spill.add(v.events)
                    del raw, v
                if fp.n_problems and rejects is None:
                    raise fp.error(taxonomy)
                n_problems += fp.n_problems
            tasks.done(read_task)
            if input_rows == 0:
                raise errors.no_events(str(events_path))
            spill.finish()
            t = t_as_of if t_as_of is not None else max_ts
            customers = scored = events_total = 0
            with io.atomic_path(out_path) as tmp:
                writer = open_output(tmp, out_path, predictor, reasons)
                try:
                    score_task = tasks.add(f"scoring {n_parts} customer partitions", n_parts)
                    for p in range(n_parts):
                        ev = spill.read(p)
                        if len(ev):
                            before = len(ev)
                            ev = sort_events(ev.drop_duplicates(ignore_index=True))
                            duplicates += before - len(ev)
                            events_total += len(ev)
                            customers += int(ev["customer_id"].nunique())
                            frame = score_events(predictor, ev, t, playbook=playbook, reasons=reasons)
                            del ev
                            writer.write(frame)
                            scored += len(frame)
                            del frame
                        tasks.advance(score_task)
                    writer.close()
                except BaseException:
                    writer.abort()
                    raise
                if rejects is not None:  # written only when the scores are complete (both atomic)
                    rej = pd.concat(reject_frames, ignore_index=True) if reject_frames else _empty_rejects()
                    io.write_table(rej, rejects)
    finally:
        spill.finish()
        for d in spill_dir:
            shutil.rmtree(d, ignore_errors=True)
    rejected = int(sum(len(r) for r in reject_frames))
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
        "out": str(out_path),
    }


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame({"source": pd.Series(dtype="str"), "row": pd.Series(dtype="int64"), "reject_reason": pd.Series(dtype="str")})


__all__ = ["score_file", "partition_of", "partition_count", "output_schema", "OutputWriter", "parse_as_of", "iter_chunks"]

"""File edges: read event files (Parquet, CSV, CSV.gz, JSON Lines, folders) and write outputs atomically.

**A CSV row is a line**: every non-blank line after the header, numbered from 1 (as in the rejects
file and every message; blank lines are not counted). A line with the wrong number of fields, bytes
that are not UTF-8, or a double quote it does not close (which would swallow the next lines) is a
problem of that row only; the other rows are read as usual. Clean blocks of lines are parsed by
pyarrow, a block with a problem is halved down to small blocks read line by line (:mod:`csv`).

**Outputs** go to a temporary file next to the target (``.<name>.<pid>-<host>.<random>.tmp``, mode
0666 minus the umask like a normal file) that replaces it only when complete. Temporary files and
spill folders of a target whose owner process is gone (killed) are removed by its next write.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import zlib
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import lru_cache, reduce
from io import BytesIO
from itertools import islice
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from journey_stage.core import errors
from journey_stage.core.errors import InputError, Problem
from journey_stage.core.events import Validated, concat_validated, validate_events
from journey_stage.core.taxonomy import Taxonomy

SUFFIXES = {
    ".parquet": "Parquet", ".pq": "Parquet",
    ".csv": "CSV", ".csv.gz": "CSV", ".tsv": "CSV",
    ".jsonl": "JSON Lines", ".jsonl.gz": "JSON Lines", ".ndjson": "JSON Lines", ".json": "JSON Lines",
}
TAXONOMY_METADATA_KEY = b"journey_stage.core.taxonomy"


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    for suf in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suf):
            return SUFFIXES[suf]
    return None


def event_files(path: str | Path) -> list[Path]:
    p = Path(path)
    if not p.exists():
        raise errors.file_not_found(str(p))
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and _kind(f) and not f.name.startswith((".", "_")))
        if not files:
            raise errors.unsupported_format(f"{p}/ (no event files inside)")
        return files
    if _kind(p) is None:
        raise errors.unsupported_format(str(p))
    return [p]


def _reason(exc: Exception) -> str:  # the first line of an exception's text
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def read_raw(path: Path) -> pd.DataFrame:
    """One file as a raw table. CSV and JSON are read as text so ids keep their zero padding; the
    malformed lines of a CSV file are rows with every value missing (:func:`raw_chunks` says why)."""
    kind = _kind(path)
    try:
        if kind == "Parquet":
            return pd.read_parquet(path)
        if kind == "CSV":
            return reduce(_join, raw_chunks(path, 1_000_000)).frame
        return pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    except errors.JourneyError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise errors.unreadable_file(str(path), kind or "events", _reason(exc)) from None


def taxonomy_hint(path: str | Path) -> str | None:
    """The taxonomy preset a converter stored in a Parquet file's metadata, if any."""
    files = event_files(path)
    if _kind(files[0]) != "Parquet":
        return None
    try:
        meta = pq.read_schema(files[0]).metadata or {}
    except Exception:  # noqa: BLE001 - unreadable files are reported by read_raw
        return None
    value = meta.get(TAXONOMY_METADATA_KEY)
    return value.decode() if value else None


# ---- CSV: one row per line ------------------------------------------------------------------------

TEXT = pd.StringDtype(na_value=np.nan)  # what pandas.read_csv(dtype=str) gives
CSV_LINE_BY_LINE = 512  # a block of lines with a problem is halved down to this size, then read line by line


@dataclass
class RawChunk:
    """Raw rows of one file, numbered from ``first_row``. ``malformed``: position in ``frame`` -> (the
    problem of that line, the fields read from it); its row in ``frame`` has every value missing."""

    first_row: int
    frame: pd.DataFrame
    malformed: dict[int, tuple[Problem, list]] = field(default_factory=dict)


def _lines(fh: BinaryIO, block: int = 1 << 24) -> Iterator[bytes]:
    """Physical lines with their ends (\\n, \\r\\n or \\r: as pandas and pyarrow split lines)."""
    tail = b""
    while data := fh.read(block):
        parts = (tail + data).splitlines(keepends=True)
        tail = parts.pop() if not parts[-1].endswith(b"\n") else b""  # cut, or the \r of a \r\n
        yield from parts
    if tail:
        yield tail


def csv_chunks(fh: BinaryIO, source: str, sep: str = ",", batch_rows: int | None = None) -> Iterator[RawChunk]:
    """The rows of a CSV file (binary, uncompressed), about ``batch_rows`` lines at a time."""
    lines = _lines(fh)
    header = next((ln for ln in lines if ln.strip()), None)
    if header is None:
        raise errors.unreadable_file(source, "CSV", "No columns to parse from file")
    try:  # pandas names the columns (byte order mark, quotes, duplicate names) as read_csv always did
        names = [str(c) for c in pd.read_csv(BytesIO(header), sep=sep, dtype=str, nrows=0).columns]
    except Exception as exc:  # noqa: BLE001
        raise errors.unreadable_file(source, "CSV", _reason(exc)) from None
    row = 1
    while block := list(islice(lines, batch_rows or 1 << 40)):
        chunk = _parse_block(block, names, sep, source, row)
        if len(chunk.frame):
            yield chunk
        row += len(chunk.frame)
    if row == 1:  # no rows: the columns of the header
        yield RawChunk(1, _frame(names, []))


def _parse_block(lines: list[bytes], names: list[str], sep: str, source: str, first_row: int) -> RawChunk:
    frame = _fast(lines, names, sep)
    if frame is not None:
        return RawChunk(first_row, frame)
    if len(lines) > CSV_LINE_BY_LINE:
        head = _parse_block(lines[:len(lines) // 2], names, sep, source, first_row)
        return _join(head, _parse_block(lines[len(lines) // 2:], names, sep, source, first_row + len(head.frame)))
    return _line_by_line(lines, names, sep, source, first_row)


def _fast(lines: list[bytes], names: list[str], sep: str) -> pd.DataFrame | None:
    """pyarrow's reading of clean lines, else None. The row of empty fields added at the end is swallowed
    by a quote left open on the last line (which pyarrow would close) and then counts as missing."""
    rows = len(lines) - sum(lines.count(end) for end in (b"\n", b"\r\n", b"\r"))
    if rows == 0:
        return _frame(names, [])
    end = b"" if lines[-1].endswith((b"\n", b"\r")) else b"\n"
    try:
        table = pcsv.read_csv(
            BytesIO(b"".join(lines) + end + sep.encode() * (len(names) - 1) + b"\n"),
            read_options=pcsv.ReadOptions(column_names=names), parse_options=pcsv.ParseOptions(delimiter=sep),
            convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=True,
                                                null_values=[""], quoted_strings_can_be_null=True))
    except (pa.ArrowInvalid, pa.ArrowException):
        return None
    if table.num_rows != rows + 1:  # a quoted value ran over several lines
        return None
    return table.slice(0, rows).to_pandas(types_mapper=lambda t: TEXT if t == pa.string() else None)


def _fields(text: str, sep: str) -> tuple[list[str] | None, bool, str]:
    """(fields, whether every quote closed on the line, csv error): a quote left open reads the next line."""
    reader = csv.reader(iter((text, "\n")), delimiter=sep)
    try:
        return next(reader), reader.line_num == 1, ""
    except csv.Error as exc:
        return None, True, str(exc)


def _line_by_line(lines: list[bytes], names: list[str], sep: str, source: str, first_row: int) -> RawChunk:
    rows: list[list] = []
    malformed: dict[int, tuple[Problem, list]] = {}
    width = len(names)
    for line in lines:
        if not line.strip():
            continue
        row = first_row + len(rows)
        try:
            text, problem = line.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            text = line.decode("utf-8", "replace")
            problem = errors.problem_not_utf8(source, row, line[exc.start], exc.start)
        fields, closed, error = _fields(text.rstrip("\r\n"), sep)
        if not closed:
            fields[-1] = fields[-1].rstrip("\n")
        if problem is None and fields is None:
            problem = errors.problem_bad_csv_row(source, row, error, text)
        elif problem is None and not closed:
            problem = errors.problem_unclosed_quote(source, row, text)
        elif problem is None and len(fields) != width:
            problem = errors.problem_field_count(source, row, width, len(fields), text)
        values = [v if v != "" else None for v in (fields or [])]
        if problem is not None:
            malformed[len(rows)] = (problem, (values + [None] * width)[:width])
            values = [None] * width
        rows.append(values)
    return RawChunk(first_row, _frame(names, rows), malformed)


def _frame(names: list[str], rows: list[list]) -> pd.DataFrame:
    cols = list(zip(*rows)) if rows else [()] * len(names)
    return pd.DataFrame({n: pd.array(list(c), dtype=TEXT) for n, c in zip(names, cols)})


def _join(a: RawChunk, b: RawChunk) -> RawChunk:
    frame = pd.concat([a.frame, b.frame], ignore_index=True) if len(b.frame) else a.frame
    return RawChunk(a.first_row, frame, a.malformed | {len(a.frame) + i: m for i, m in b.malformed.items()})


def open_binary(path: Path, data: bytes | None = None) -> BinaryIO:
    """A file (or its bytes, already read) as a binary stream, uncompressed when the name ends .gz."""
    gz = path.name.lower().endswith(".gz")
    if data is None:
        return gzip.open(path, "rb") if gz else open(path, "rb")
    return gzip.GzipFile(fileobj=BytesIO(data)) if gz else BytesIO(data)


def raw_chunks(path: Path, batch_rows: int | None = None, data: bytes | None = None) -> Iterator[RawChunk]:
    """A CSV or JSON Lines file's rows, chunk by chunk (JSON Lines whole); ``data``: its bytes, if read."""
    kind = _kind(path)
    try:
        with open_binary(path, data) as fh:
            if kind == "CSV":
                yield from csv_chunks(fh, str(path), "\t" if path.name.lower().endswith(".tsv") else ",", batch_rows)
            else:
                yield RawChunk(1, pd.read_json(fh, lines=True, dtype=False, convert_dates=False))
    except errors.JourneyError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line, as read_raw
        raise errors.unreadable_file(str(path), kind or "events", _reason(exc)) from None


@lru_cache(maxsize=64)
def _placeholder_problems(columns: tuple[str, ...]) -> int:
    """The problems validate_events finds in a row with every value missing (a malformed line's row)."""
    return validate_events(_frame(list(columns), [[None] * len(columns)]), "-").n_problems


def validate_chunk(chunk: RawChunk, source: str, taxonomy: Taxonomy | None = None) -> Validated:
    """:func:`journey_stage.core.events.validate_events` of a chunk; a malformed line is rejected with
    its own problem and the fields read from it (not the problems of its placeholder row)."""
    v = validate_events(chunk.frame, source, taxonomy, first_row=chunk.first_row)
    if not chunk.malformed:
        return v
    bad = {chunk.first_row + pos: item for pos, item in chunk.malformed.items()}
    rej = v.rejects.copy()
    at = rej.index[rej["row"].isin(list(bad))]
    assert len(at) == len(bad), "a malformed line's row is always rejected (customer_id is missing)"
    rows = rej.loc[at, "row"].tolist()
    rej.loc[at, "reject_reason"] = [bad[r][0].message for r in rows]
    columns = [str(c) for c in chunk.frame.columns]
    values = pd.DataFrame([bad[r][1] for r in rows], columns=columns, index=at, dtype=object)
    for c in columns:
        rej.loc[at, c] = values[c]
    problems = [p for p in v.problems if p.row not in bad] + [bad[r][0] for r in sorted(bad)]
    n = v.n_problems - len(bad) * _placeholder_problems(tuple(columns)) + len(bad)
    return replace(v, rejects=rej, problems=problems, n_problems=n)


def read_events(path: str | Path, taxonomy: Taxonomy | None = None, *, allow_rejects: bool = False) -> Validated:
    """Read and validate every event file at ``path`` (a file or a folder of files); without
    ``allow_rejects`` the first file with a problem raises :class:`InputError` listing them."""
    parts = []
    for f in event_files(path):
        chunk = reduce(_join, raw_chunks(f, 1_000_000)) if _kind(f) == "CSV" else RawChunk(1, read_raw(f))
        v = validate_chunk(chunk, str(f), taxonomy) if len(chunk.frame) else None
        if v is not None and v.n_problems and not allow_rejects:
            hint = (errors.unknown_event_types_hint(v.unknown_event_types, taxonomy.name) if v.unknown_event_types and taxonomy is not None
                    else errors.bad_events_hint())
            raise InputError(str(f), v.problems, hint, total=v.n_problems)
        parts += [v] if v is not None else []
    if not parts:
        raise errors.no_events(str(path))
    return concat_validated(parts)


# ---- outputs -------------------------------------------------------------------------------------

_HOST = f"{zlib.crc32(socket.gethostname().encode()):08x}"
_OWNED = re.compile(r"(?:spill-)?(\d+)-([0-9a-f]{8})\.[^.]+(?:\.tmp)?")  # after ".<target name>."


def owner_tag() -> str:
    """``<pid>-<host>``: in the names of this process' temporary files and spill folders."""
    return f"{os.getpid()}-{_HOST}"


def temp_folder(target: Path, kind: str = "spill") -> Path:
    """A new hidden folder next to ``target``, owned by this process (the caller removes it)."""
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-{owner_tag()}.", dir=target.parent))


def new_temp_file(target: Path) -> Path:
    """An empty file next to ``target`` with the mode of a normal file (0666 minus the umask)."""
    while True:
        tmp = target.parent / f".{target.name}.{owner_tag()}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        pass
    return True


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Remove the temporary files and spill folders of ``target`` whose owner process (on this
    host) is gone: a run killed with SIGKILL cannot remove its own."""
    target, removed = Path(target), []
    prefix = f".{target.name}."
    for e in os.scandir(target.parent) if target.parent.is_dir() else ():
        m = _OWNED.fullmatch(e.name[len(prefix):]) if e.name.startswith(prefix) else None
        if m is None or m.group(2) != _HOST or _alive(int(m.group(1))):
            continue
        with suppress(OSError):
            shutil.rmtree(e.path) if e.is_dir(follow_symlinks=False) else os.unlink(e.path)
            removed.append(Path(e.path))
    return removed


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; it replaces ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp_path = new_temp_file(target)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_table(df: pd.DataFrame, path: str | Path, *, taxonomy: str | None = None) -> Path:
    """Write Parquet (default) or CSV (by suffix) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.name.lower().endswith((".csv", ".csv.gz")):
            df.to_csv(tmp, index=False, compression="gzip" if path.name.endswith(".gz") else None)
        elif path.name.lower().endswith((".jsonl", ".ndjson")):
            df.to_json(tmp, orient="records", lines=True, date_format="iso")
        else:
            table = pa.Table.from_pandas(df, preserve_index=False)
            if taxonomy:
                meta = dict(table.schema.metadata or {})
                meta[TAXONOMY_METADATA_KEY] = taxonomy.encode()
                table = table.replace_schema_metadata(meta)
            pq.write_table(table, tmp)
    return path


def write_json(obj: object, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)

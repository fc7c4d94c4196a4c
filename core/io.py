"""File edges: read event files (Parquet, CSV, CSV.gz, JSON Lines, folders) and write outputs atomically."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow.parquet as pq

from journey_stage.core import errors
from journey_stage.core.events import Validated, canonical_events, concat_validated
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


def read_raw(path: Path) -> pd.DataFrame:
    """One file as a raw table. CSV and JSON are read as text so ids keep their zero padding."""
    kind = _kind(path)
    try:
        if kind == "Parquet":
            return pd.read_parquet(path)
        if kind == "CSV":
            sep = "\t" if path.name.lower().endswith(".tsv") else ","
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], sep=sep)
        return pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, Exception) as exc:  # noqa: BLE001
        if isinstance(exc, errors.JourneyError):
            raise
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise errors.unreadable_file(str(path), kind or "events", reason) from None


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


def read_events(path: str | Path, taxonomy: Taxonomy | None = None, *, allow_rejects: bool = False) -> Validated:
    """Read and validate every event file at ``path`` (a file or a folder of files)."""
    parts = []
    for f in event_files(path):
        raw = read_raw(f)
        parts.append(canonical_events(raw, str(f), taxonomy, allow_rejects=allow_rejects) if len(raw) else None)
    parts = [p for p in parts if p is not None]
    if not parts:
        raise errors.no_events(str(path))
    return concat_validated(parts)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; it replaces ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
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
            import pyarrow as pa

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

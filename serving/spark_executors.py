"""The Spark engine's code that runs on the executors (see :mod:`journey_stage.serving.spark`):
``mapInPandas`` functions that validate raw rows into the VALIDATED schema (valid events,
rejected rows and one stats row per chunk), and the ``applyInPandas`` function that scores one
customer partition with the local engine's :func:`journey_stage.serving.partition.score_partition`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow as pa

from journey_stage.core.events import validate_events
from journey_stage.core.io import validate_chunk
from journey_stage.features.encode import from_us
from journey_stage.serving.partition import EVENT_SCHEMA, score_partition
from journey_stage.serving.reading import parse_bytes

VALIDATED_DDL = (
    "kind string, customer_id string, timestamp timestamp, event_type string, channel string, "
    "value double, campaign string, source string, row long, info string"
)
STAT_PREFIX = "__"  # hidden columns of the scored frame: __part, __stats


# ---- executors: validation -----------------------------------------------------------------------

def _norm_uri(uri: str) -> str:
    u = urlparse(uri)
    if u.scheme in ("", "file"):
        return str(Path(unquote(u.path)).resolve())
    return uri


VALIDATED_COLUMNS = [c.split()[0] for c in VALIDATED_DDL.split(", ")]


def _rows(n: int, **cols) -> pd.DataFrame:
    """``n`` rows of the VALIDATED schema; columns not given are null."""
    out = {}
    for c in VALIDATED_COLUMNS:
        v = cols.get(c)
        if c == "timestamp":
            out[c] = v.reset_index(drop=True).astype("datetime64[us, UTC]") if v is not None \
                else pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]")
        elif c == "value":
            out[c] = np.asarray(v, dtype="float64") if v is not None else np.full(n, np.nan)
        elif c == "row":
            out[c] = pd.array(v if v is not None else [None] * n, dtype="Int64")
        elif v is None or isinstance(v, str):
            out[c] = pd.Series(np.full(n, v, dtype=object), dtype=object)
        else:  # object dtype: PySpark's Arrow conversion does not take pandas 3's Arrow-backed str yet
            arr = np.asarray(v, dtype=object)
            out[c] = pd.Series(np.where(pd.isna(arr), None, arr), dtype=object)
    return pd.DataFrame(out, index=range(n))


def _validated_frame(v, source: str, raw_cols: list[str], first_row: int, n_input: int) -> pd.DataFrame:
    """validate_events' result as rows of the VALIDATED schema: events, rejects and one stats row."""
    ev = v.events
    parts = []
    if len(ev):
        parts.append(_rows(len(ev), kind="e", customer_id=ev["customer_id"].to_numpy(dtype=object), timestamp=ev["timestamp"],
                           event_type=ev["event_type"].to_numpy(dtype=object), channel=ev["channel"].to_numpy(dtype=object),
                           value=ev["value"], campaign=ev["campaign"].to_numpy(dtype=object)))
    rej = v.rejects
    if len(rej):
        body = rej[raw_cols].astype(object)
        values = body.where(body.notna(), None).to_numpy().tolist()
        parts.append(_rows(len(rej), kind="r", source=source, row=rej["row"].to_numpy(dtype=np.int64).tolist(),
                           info=[json.dumps({"reason": r, "values": vals}) for r, vals in zip(rej["reject_reason"], values)]))
    stats = {
        "n": int(n_input), "valid": int(len(ev)), "dups": int(v.duplicates_removed), "n_problems": int(v.n_problems),
        "problems": [p.as_dict() | {"value": p.value} for p in v.problems[:5]],
        "unknown": list(v.unknown_event_types), "columns": raw_cols,
        "max_ts": int(ev["timestamp"].max().value // 1000) if len(ev) else None,
    }
    parts.append(_rows(1, kind="s", source=source, row=[first_row], info=[json.dumps(stats)]))
    return pd.concat(parts, ignore_index=True)[VALIDATED_COLUMNS]


def _validate(raw: pd.DataFrame, source: str, first_row: int, taxonomy) -> pd.DataFrame:
    v = validate_events(raw, source, taxonomy, first_row=first_row)
    return _validated_frame(v, source, [str(c) for c in raw.columns], first_row, len(raw))


def validate_parquet_batches(batches: Iterator[pd.DataFrame], *, raw_cols: list[str], tz_cols: list[str],
                             sources: dict, predictor_bc) -> Iterator[pd.DataFrame]:
    """mapInPandas: Spark's Parquet rows (+ __file, __row) -> validated rows, by contiguous runs."""
    taxonomy = predictor_bc.value.taxonomy
    for pdf in batches:
        if not len(pdf):
            continue
        for c in tz_cols:  # Spark hands UTC instants as naive (session time zone UTC)
            pdf[c] = pd.to_datetime(pdf[c]).dt.tz_localize("UTC")
        f = pdf["__file"].to_numpy()
        r = pdf["__row"].to_numpy(dtype=np.int64)
        brk = np.flatnonzero((f[1:] != f[:-1]) | (r[1:] != r[:-1] + 1)) + 1
        for lo, hi in zip(np.r_[0, brk], np.r_[brk, len(pdf)]):
            raw = pdf.iloc[lo:hi][raw_cols].reset_index(drop=True)
            source = sources.get(_norm_uri(str(f[lo])), str(f[lo]))
            yield _validate(raw, source, int(r[lo]) + 1, taxonomy)


def validate_text_files(batches: Iterator[pd.DataFrame], *, sources: dict, predictor_bc, batch_rows: int) -> Iterator[pd.DataFrame]:
    """mapInPandas: whole CSV / JSON Lines files (their bytes, __file) -> validated rows, read by the
    local engine's reader (a CSV line that is not a row is rejected on its own, with its row)."""
    taxonomy = predictor_bc.value.taxonomy
    for pdf in batches:
        for data, uri in zip(pdf["value"], pdf["__file"]):
            source = sources.get(_norm_uri(str(uri)), str(uri))
            for chunk in parse_bytes(source, bytes(data), batch_rows):
                if len(chunk.frame):
                    v = validate_chunk(chunk, source, taxonomy)
                    yield _validated_frame(v, source, [str(c) for c in chunk.frame.columns], chunk.first_row, len(chunk.frame))


# ---- executors: scoring ------------------------------------------------------------------------

def _canonical(pdf: pd.DataFrame) -> pd.DataFrame:
    """Spark rows -> the canonical events frame of journey_stage.core.events (same dtypes as locally)."""
    def text(s):
        return pd.Series(pd.array(s.astype(object).where(s.notna(), None).tolist(), dtype="str"), index=s.index)

    return pd.DataFrame({
        "customer_id": text(pdf["customer_id"]),
        "timestamp": pd.to_datetime(pdf["timestamp"]).dt.tz_localize("UTC").astype("datetime64[us, UTC]"),
        "event_type": text(pdf["event_type"]),
        "channel": text(pdf["channel"]),
        "value": pdf["value"].astype("float64"),
        "campaign": text(pdf["campaign"]),
    })


def score_group(key, pdf: pd.DataFrame, *, predictor_bc, playbook_bc, as_of_us: int | None, reasons: bool, columns: list[str]) -> pd.DataFrame:
    """applyInPandas: one customer partition -> its score rows, plus one stats row (customer_id null).

    The local engine's :func:`journey_stage.serving.partition.score_partition` (dedupe, canonical
    sort, drop the customers that cannot be eligible, :func:`journey_stage.model.scoring.score_events`)
    on the group's events."""
    part = int(key[0])
    table = pa.Table.from_pandas(_canonical(pdf), schema=EVENT_SCHEMA, preserve_index=False)
    del pdf
    as_of = from_us(as_of_us) if as_of_us is not None else None
    frame, stats = score_partition(table, predictor_bc.value, as_of, playbook_bc.value, reasons)
    frame = frame[columns].copy()
    frame["__part"] = part
    frame["__stats"] = None
    stats["scored"] = len(frame)
    row = {c: None for c in columns} | {"__part": part, "__stats": json.dumps(stats)}
    return _object_text(pd.concat([frame, pd.DataFrame([row])], ignore_index=True))


def _object_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as object dtype (None for missing): PySpark's Arrow conversion does not take
    pandas 3's Arrow-backed ``str`` columns yet. Numbers and booleans are left as they are."""
    for c in frame.columns:
        s = frame[c]
        if pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
            arr = s.to_numpy(dtype=object)
            frame[c] = pd.Series(np.where(pd.isna(arr), None, arr), index=frame.index, dtype=object)
    return frame

"""Batch scoring on Apache Spark (``journey score --engine spark``): the same answers as the local
engine, computed by Spark executors. See ``docs/spark.md`` for running it on a cluster.

1. **Read with Spark.** Parquet files with ``spark.read.parquet`` (plus each row's file and row
   index from Spark's hidden ``_metadata`` column); CSV and JSON Lines files with
   ``spark.read.text(wholetext=True)``, one file per row, parsed on the executors with the pandas
   options of :func:`journey_stage.core.io.read_raw` (so ids keep their zero padding exactly as locally).
2. **Validate the same way.** ``mapInPandas`` runs :func:`journey_stage.core.events.validate_events` on
   contiguous row runs of each file with their true row numbers: valid canonical events, rejected
   rows (file, row, reason, raw values) and per-chunk counts come out of one pass. Rejects and
   counts are small and go to the driver, which writes the rejects file or raises the same
   one-line error as the local engine.
3. **Score by customer partition.** Events are grouped by ``pmod(crc32(customer_id), n)`` -- the
   local engine's partition function -- and ``applyInPandas`` deduplicates, sorts and calls
   :func:`journey_stage.model.scoring.score_events` on each group with the broadcast predictor and playbook and
   the same ``as_of`` (default: the latest valid event of the whole input).
4. **Write one file atomically.** The scored rows (small: one per eligible customer) are collected
   to the driver as Arrow, ordered like the local engine's output (partition, then customer_id),
   and written with the local engine's writer to a temporary file that replaces the target.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from journey_stage.core import errors, io
from journey_stage.core.errors import Problem
from journey_stage.core.events import COLUMNS, validate_events

VALIDATED_DDL = (
    "kind string, customer_id string, timestamp timestamp, event_type string, channel string, "
    "value double, campaign string, source string, row long, info string"
)
STAT_PREFIX = "__"  # hidden columns of the scored frame: __part, __stats
ARROW_BATCH_ROWS = 100_000  # rows per Arrow batch handed to pandas on the executors


# ---- session -------------------------------------------------------------------------------------

def get_session(master: str = "local[*]", conf: dict | None = None):
    """The active SparkSession, or a new one on ``master`` (local[*] by default).

    Local masters run the Python workers with this interpreter (PYSPARK_PYTHON) so they have the
    same pandas, LightGBM and project code; on a cluster set PYSPARK_PYTHON yourself (docs/spark.md)."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(ARROW_BATCH_ROWS),
        "spark.driver.maxResultSize": "4g",
        "spark.ui.showConsoleProgress": "false",
        # PySpark 4 warns on every Python worker that pandas 3 is not fully supported (see docs/spark.md)
        "spark.executorEnv.PYTHONWARNINGS": "ignore::FutureWarning",
    }
    if master.startswith("local"):
        settings |= {"spark.driver.memory": os.environ.get("JOURNEY_SPARK_DRIVER_MEMORY", "3g"), "spark.ui.enabled": "false"}
    builder = SparkSession.builder.master(master).appName("journey-score")
    for k, v in (settings | (conf or {})).items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark, True


def _check_session(spark) -> None:
    """The scores are only right in UTC with Arrow: refuse a session configured otherwise."""
    tz = spark.conf.get("spark.sql.session.timeZone")
    if tz not in ("UTC", "Etc/UTC", "GMT", "Z", "+00:00"):
        spark.conf.set("spark.sql.session.timeZone", "UTC")


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
    """mapInPandas: whole CSV / JSON Lines files (value, __file) -> validated rows."""
    from journey_stage.serving.batch import frame_chunks, parse_text

    taxonomy = predictor_bc.value.taxonomy
    for pdf in batches:
        for text, uri in zip(pdf["value"], pdf["__file"]):
            source = sources.get(_norm_uri(str(uri)), str(uri))
            raw = parse_text(source, text)
            for first_row, chunk in frame_chunks(raw, batch_rows):
                if len(chunk):
                    yield _validate(chunk, source, first_row, taxonomy)


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

    The local engine's :func:`serving.batch.score_partition` (dedupe, canonical sort, drop the
    customers that cannot be eligible, :func:`journey_stage.model.scoring.score_events`) on the group's events."""
    import pyarrow as pa

    from journey_stage.features.encode import from_us
    from journey_stage.serving.batch import EVENT_SCHEMA, score_partition

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


# ---- driver --------------------------------------------------------------------------------------

def _is_uri(path) -> bool:
    return "://" in str(path)


def _read_validated(spark, events_path, predictor_bc, batch_rows: int):
    """Spark DataFrame of validated rows for every input file (Parquet / text), and the file order."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    if _is_uri(events_path):
        path = str(events_path)
        kind = io._kind(Path(urlparse(path).path)) or "Parquet"
        groups = {kind: [path]}
        order = [path]
        sources = {}
    else:
        files = io.event_files(events_path)
        groups: dict[str, list[str]] = {}
        for f in files:
            groups.setdefault(io._kind(f) or "Parquet", []).append(str(Path(f).resolve()))
        order = [str(f) for f in files]
        sources = {str(Path(f).resolve()): str(f) for f in files}
    frames = []
    if "Parquet" in groups:
        raw = spark.read.option("mergeSchema", "true").parquet(*groups["Parquet"])
        raw_cols = [c for c in raw.columns if not c.startswith("__index_level_")]  # pandas' index: not a column
        tz_cols = [f.name for f in raw.schema.fields if isinstance(f.dataType, TimestampType)]
        raw = raw.select("*", F.col("_metadata.file_path").alias("__file"), F.col("_metadata.row_index").alias("__row"))
        fn = partial(validate_parquet_batches, raw_cols=raw_cols, tz_cols=tz_cols, sources=sources, predictor_bc=predictor_bc)
        frames.append(raw.mapInPandas(fn, VALIDATED_DDL))
    text_files = groups.get("CSV", []) + groups.get("JSON Lines", [])
    if text_files:
        txt = spark.read.text(text_files, wholetext=True).select("value", F.col("_metadata.file_path").alias("__file"))
        txt = txt.repartition(min(len(text_files), max(spark.sparkContext.defaultParallelism, 1)) or 1)
        fn = partial(validate_text_files, sources=sources, predictor_bc=predictor_bc, batch_rows=batch_rows)
        frames.append(txt.mapInPandas(fn, VALIDATED_DDL))
    validated = frames[0]
    for extra in frames[1:]:
        validated = validated.unionByName(extra)
    return validated, order


def score_spark(
    events_path,
    out_path,
    *,
    predictor,
    as_of=None,
    rejects=None,
    reasons: bool = False,
    master: str = "local[*]",
    partitions: int | None = None,
    progress=None,
    spark=None,
    conf: dict | None = None,
    batch_rows: int | None = None,
    min_partitions: int | None = None,
) -> dict:
    """Score ``events_path`` with Spark into one Parquet / CSV file at ``out_path`` (atomically).

    Same arguments, counts and output (columns, order, values) as :func:`serving.batch.score_file`
    with the local engine. ``spark``: an existing session (else the active one, else a new one on
    ``master``, stopped at the end). ``partitions``: customer partitions (default: at least
    ``min_partitions``, more for big inputs, as locally)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*PySpark does not yet fully support pandas.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module="pyspark.*")
        return _score_spark(events_path, out_path, predictor=predictor, as_of=as_of, rejects=rejects, reasons=reasons, master=master,
                            partitions=partitions, progress=progress, spark=spark, conf=conf, batch_rows=batch_rows,
                            min_partitions=min_partitions)


def _score_spark(events_path, out_path, *, predictor, as_of, rejects, reasons, master, partitions, progress, spark, conf, batch_rows,
                 min_partitions) -> dict:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from journey_stage.serving.batch import (BATCH_ROWS, DEFAULT_PARTITIONS, FileProblems, _bar, _Tasks,
                               open_output, output_kind, output_schema, partition_count)
    from journey_stage.core.coerce import parse_as_of
    from journey_stage.model.playbook import load_playbook
    from journey_stage.model.scoring import output_columns

    t0 = time.perf_counter()
    out_path = Path(out_path)
    output_kind(out_path)
    t_as_of = parse_as_of(as_of)
    own = False
    if spark is None:
        spark, own = get_session(master, conf)
    _check_session(spark)
    predictor_bc = spark.sparkContext.broadcast(predictor)
    playbook_bc = spark.sparkContext.broadcast(load_playbook())
    validated = None
    try:
        with _bar(progress) as bar:
            tasks = _Tasks(bar)
            step = tasks.add("Spark: read + validate, score, write", 3)
            validated, order = _read_validated(spark, events_path, predictor_bc, batch_rows or BATCH_ROWS)
            validated = validated.persist(StorageLevel.MEMORY_AND_DISK)
            phases = {"session_s": time.perf_counter() - t0}
            t1 = time.perf_counter()
            side = validated.filter(F.col("kind") != "e").select("kind", "source", "row", "info").toPandas()
            phases["read_validate_s"] = time.perf_counter() - t1
            stats = side[side["kind"] == "s"]
            rej = side[side["kind"] == "r"]
            rank = {s: i for i, s in enumerate(order)}
            infos = [json.loads(x) for x in stats["info"]]
            input_rows = sum(i["n"] for i in infos)
            if input_rows == 0:
                raise errors.no_events(str(events_path))
            valid_rows = sum(i["valid"] for i in infos)
            chunk_dups = sum(i["dups"] for i in infos)
            n_problems = sum(i["n_problems"] for i in infos)
            if n_problems and rejects is None:  # the first file with problems, as locally
                by_file: dict[str, FileProblems] = {}
                for src, info in zip(stats["source"], infos):
                    fp = by_file.setdefault(src, FileProblems(src))
                    fp.add([Problem(p["code"], p["message"], p["row"], p["column"], p.get("value")) for p in info["problems"]],
                           info["n_problems"], info["unknown"])
                first = min((s for s, fp in by_file.items() if fp.n_problems), key=lambda s: rank.get(s, len(rank)))
                raise by_file[first].error(predictor.taxonomy)
            max_ts = max((i["max_ts"] for i in infos if i["max_ts"] is not None), default=None)
            t = t_as_of if t_as_of is not None else (pd.Timestamp(max_ts * 1000, tz="UTC").as_unit("us") if max_ts is not None else None)
            as_of_us = int(t.value // 1000) if t is not None else None
            n_parts = int(partitions) if partitions else partition_count(valid_rows, min_partitions or DEFAULT_PARTITIONS)
            tasks.advance(step)

            columns = output_columns(predictor, reasons)
            schema = output_schema(predictor, reasons)
            ddl = ", ".join(f"`{f.name}` {_ddl_type(f.type)}" for f in schema) + ", `__part` long, `__stats` string"
            events = validated.filter(F.col("kind") == "e").select(*COLUMNS)
            events = events.withColumn("__part", F.pmod(F.crc32(F.col("customer_id").cast("binary")), F.lit(n_parts)))
            spark.conf.set("spark.sql.shuffle.partitions", str(n_parts))
            def fn(key, pdf):  # a plain function: PySpark inspects it (a functools.partial makes it warn)
                return score_group(key, pdf, predictor_bc=predictor_bc, playbook_bc=playbook_bc, as_of_us=as_of_us,
                                   reasons=reasons, columns=columns)

            scored = events.groupBy("__part").applyInPandas(fn, ddl)
            t1 = time.perf_counter()
            table = scored.toArrow() if hasattr(scored, "toArrow") else _to_arrow(scored)
            phases["score_collect_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            tasks.advance(step)

            stat_mask = table.column("__stats").is_valid()
            part_stats = [json.loads(x) for x in table.filter(stat_mask).column("__stats").to_pylist()]
            table = table.filter(_not(stat_mask))
            table = table.sort_by([("__part", "ascending"), ("customer_id", "ascending")]).select(schema.names)
            with io.atomic_path(out_path) as tmp:
                writer = open_output(tmp, out_path, predictor, reasons)
                try:
                    writer.write_arrow(table)
                    writer.close()
                except BaseException:
                    writer.abort()
                    raise
                if rejects is not None:
                    columns_of = {src: info["columns"] for src, info in zip(stats["source"], infos)}
                    io.write_table(_rejects_frame(rej, rank, columns_of), rejects)
            tasks.advance(step)
            phases["write_s"] = time.perf_counter() - t1
    finally:
        if validated is not None:
            validated.unpersist()
        predictor_bc.unpersist()
        playbook_bc.unpersist()
        if own:
            spark.stop()
    customers = sum(s["customers"] for s in part_stats)
    scored_n = sum(s["scored"] for s in part_stats)
    return {
        "scored": int(scored_n),
        "ineligible": int(customers - scored_n),
        "rejected": int(len(rej)),
        "duplicates": int(chunk_dups + sum(s["dups"] for s in part_stats)),
        "input_rows": int(input_rows),
        "events": int(sum(s["events"] for s in part_stats)),
        "customers": int(customers),
        "problems": int(n_problems),
        "partitions": int(n_parts),
        "as_of": t.isoformat() if t is not None else None,
        "engine": "spark",
        "out": str(out_path),
        "seconds": time.perf_counter() - t0,
        "spark_phases_s": phases,
    }


def _not(mask):
    import pyarrow.compute as pc

    return pc.invert(mask)


def _to_arrow(df):  # pragma: no cover - pyspark < 4
    import pyarrow as pa

    return pa.Table.from_pandas(df.toPandas(), preserve_index=False)


def _ddl_type(t) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_floating(t):
        return "double"
    return "string"


def _rejects_frame(rej: pd.DataFrame, rank: dict, columns_of: dict) -> pd.DataFrame:
    """Rejected rows in file, then row order, shaped like journey_stage.core.events' rejects."""
    from journey_stage.serving.batch import _empty_rejects

    if not len(rej):
        return _empty_rejects()
    rej = rej.assign(_rank=rej["source"].map(lambda s: rank.get(s, len(rank)))).sort_values(["_rank", "source", "row"], kind="stable")
    frames = []
    for source, g in rej.groupby("source", sort=False):
        infos = [json.loads(x) for x in g["info"]]
        body = pd.DataFrame([i["values"] for i in infos], columns=columns_of[source]).astype("str")
        body.insert(0, "reject_reason", pd.Series([i["reason"] for i in infos], dtype="str"))
        body.insert(0, "row", g["row"].to_numpy(dtype=np.int64))
        body.insert(0, "source", source)
        frames.append(body)
    return pd.concat(frames, ignore_index=True)

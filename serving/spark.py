"""Batch scoring on Apache Spark (``journey score --engine spark``): the same answers as the local
engine, computed by Spark executors. See ``docs/spark.md`` for running it on a cluster.

1. **Read with Spark.** Parquet files with ``spark.read.parquet`` (plus each row's file and row
   index from Spark's hidden ``_metadata`` column); CSV and JSON Lines files as bytes with
   ``spark.read.format("binaryFile")``, one file per row, parsed on the executors by the local
   engine's reader (:func:`journey_stage.core.io.raw_chunks`: ids keep their zero padding, a CSV
   line that is not a row is rejected on its own, exactly as locally).
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
   and written with the local engine's writer (:mod:`journey_stage.serving.writing`) to a temporary
   file that replaces the target.

The functions that run on the executors (steps 2 and 3) are in
:mod:`journey_stage.serving.spark_executors`; this module is the driver.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from journey_stage.core import errors, io
from journey_stage.core.coerce import parse_as_of
from journey_stage.core.errors import InputError, Problem
from journey_stage.core.events import COLUMNS
from journey_stage.core.runtime import RuntimeSettings
from journey_stage.model.playbook import load_playbook
from journey_stage.model.scoring import output_columns
from journey_stage.serving.partition import DEFAULT_PARTITIONS, partition_count
from journey_stage.serving.progress import Tasks, open_bar
from journey_stage.serving.reading import BATCH_ROWS, FileProblems, file_kind
from journey_stage.serving.spark_executors import VALIDATED_DDL, score_group, validate_parquet_batches, validate_text_files
from journey_stage.serving.writing import empty_rejects, output_kind, output_schema, write_atomically

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
    if master.startswith("local"):  # JOURNEY_SPARK_DRIVER_MEMORY, read now
        settings |= {"spark.driver.memory": RuntimeSettings.from_env().spark_driver_memory, "spark.ui.enabled": "false"}
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


# ---- driver --------------------------------------------------------------------------------------

def _is_uri(path) -> bool:
    return "://" in str(path)


def _read_validated(spark, events_path, predictor_bc, batch_rows: int):
    """Spark DataFrame of validated rows for every input file (Parquet / text), and the file order."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    if _is_uri(events_path):
        path = str(events_path)
        kind = file_kind(Path(urlparse(path).path)) or "Parquet"
        groups = {kind: [path]}
        order = [path]
        sources = {}
    else:
        files = io.event_files(events_path)
        groups: dict[str, list[str]] = {}
        for f in files:
            groups.setdefault(file_kind(f) or "Parquet", []).append(str(Path(f).resolve()))
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
        # the files' bytes (not Spark's text decoding): rows with bytes that are not UTF-8 are rejected as locally
        txt = spark.read.format("binaryFile").load(text_files).select(F.col("content").alias("value"), F.col("path").alias("__file"))
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

    Same arguments, counts and output (columns, order, values) as :func:`journey_stage.serving.batch.score_file`
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
        with open_bar(progress) as bar:
            tasks = Tasks(bar)
            step = tasks.add("Spark: read + validate, score, write", 3)
            validated, order = _read_validated(spark, events_path, predictor_bc, batch_rows or BATCH_ROWS)
            validated = validated.persist(StorageLevel.MEMORY_AND_DISK)
            phases = {"session_s": time.perf_counter() - t0}
            t1 = time.perf_counter()
            side = _side_rows(validated)
            phases["read_validate_s"] = time.perf_counter() - t1
            v = _check_validation(side, order, events_path, rejects, predictor.taxonomy)
            t = t_as_of if t_as_of is not None else v.latest_event()
            n_parts = int(partitions) if partitions else partition_count(v.valid_rows, min_partitions or DEFAULT_PARTITIONS)
            tasks.advance(step)

            scored = _score_plan(spark, validated, n_parts, predictor, predictor_bc, playbook_bc, t, reasons)
            t1 = time.perf_counter()
            table = scored.toArrow() if hasattr(scored, "toArrow") else _to_arrow(scored)
            phases["score_collect_s"] = time.perf_counter() - t1
            t1 = time.perf_counter()
            tasks.advance(step)

            table, part_stats = _split_stats(table, output_schema(predictor, reasons))
            write_atomically(out_path, predictor, reasons, lambda writer: writer.write_arrow(table), rejects,
                             lambda: _rejects_frame(v.rejects, v.rank, v.columns_of()))
            tasks.advance(step)
            phases["write_s"] = time.perf_counter() - t1
    finally:
        if validated is not None:
            validated.unpersist()
        predictor_bc.unpersist()
        playbook_bc.unpersist()
        if own:
            spark.stop()
    return _counts(v, part_stats, n_parts, t, out_path) | {"seconds": time.perf_counter() - t0, "spark_phases_s": phases}


def _side_rows(validated) -> pd.DataFrame:
    """The small part of the validated rows, on the driver: rejects ("r") and chunk stats ("s")."""
    from pyspark.sql import functions as F

    return validated.filter(F.col("kind") != "e").select("kind", "source", "row", "info").toPandas()


@dataclass
class _Validation:
    """What the executors' validation found, as the driver sees it."""

    stats: pd.DataFrame  # one row per validated chunk: source, first row, info (JSON counts and problems)
    rejects: pd.DataFrame  # rejected rows: source, row, info (JSON reason and raw values)
    infos: list[dict]  # the stats rows' info, parsed
    rank: dict  # source -> position in the input
    input_rows: int
    valid_rows: int
    chunk_dups: int
    n_problems: int
    max_ts: int | None  # latest valid event, microseconds since the epoch

    def latest_event(self) -> pd.Timestamp | None:
        return pd.Timestamp(self.max_ts * 1000, tz="UTC").as_unit("us") if self.max_ts is not None else None

    def columns_of(self) -> dict:
        """source -> the columns of its raw rows."""
        return {src: info["columns"] for src, info in zip(self.stats["source"], self.infos)}


def _check_validation(side: pd.DataFrame, order: list[str], events_path, rejects, taxonomy) -> _Validation:
    """The validation's totals; raises like the local engine when the input has no rows, or (without
    ``rejects``) with the error of the first file with problems."""
    stats = side[side["kind"] == "s"]
    rej = side[side["kind"] == "r"]
    rank = {s: i for i, s in enumerate(order)}
    infos = [json.loads(x) for x in stats["info"]]
    input_rows = sum(i["n"] for i in infos)
    if input_rows == 0:
        raise errors.no_events(str(events_path))
    n_problems = sum(i["n_problems"] for i in infos)
    if n_problems and rejects is None:  # the first file with problems, as locally
        raise _first_file_error(stats, infos, rank, taxonomy)
    max_ts = max((i["max_ts"] for i in infos if i["max_ts"] is not None), default=None)
    return _Validation(stats, rej, infos, rank, input_rows, valid_rows=sum(i["valid"] for i in infos),
                       chunk_dups=sum(i["dups"] for i in infos), n_problems=n_problems, max_ts=max_ts)


def _first_file_error(stats: pd.DataFrame, infos: list[dict], rank: dict, taxonomy) -> InputError:
    by_file: dict[str, FileProblems] = {}
    for src, info in zip(stats["source"], infos):
        fp = by_file.setdefault(src, FileProblems(src))
        fp.add([Problem(p["code"], p["message"], p["row"], p["column"], p.get("value")) for p in info["problems"]],
               info["n_problems"], info["unknown"])
    first = min((s for s, fp in by_file.items() if fp.n_problems), key=lambda s: rank.get(s, len(rank)))
    return by_file[first].error(taxonomy)


def _score_plan(spark, validated, n_parts: int, predictor, predictor_bc, playbook_bc, t, reasons: bool):
    """Spark DataFrame of the scored rows: valid events grouped by customer partition, score_group on each."""
    from pyspark.sql import functions as F

    columns = output_columns(predictor, reasons)
    schema = output_schema(predictor, reasons)
    as_of_us = int(t.value // 1000) if t is not None else None
    ddl = ", ".join(f"`{f.name}` {_ddl_type(f.type)}" for f in schema) + ", `__part` long, `__stats` string"
    events = validated.filter(F.col("kind") == "e").select(*COLUMNS)
    events = events.withColumn("__part", F.pmod(F.crc32(F.col("customer_id").cast("binary")), F.lit(n_parts)))
    spark.conf.set("spark.sql.shuffle.partitions", str(n_parts))

    def fn(key, pdf):  # a plain function: PySpark inspects it (a functools.partial makes it warn)
        return score_group(key, pdf, predictor_bc=predictor_bc, playbook_bc=playbook_bc, as_of_us=as_of_us,
                           reasons=reasons, columns=columns)

    return events.groupBy("__part").applyInPandas(fn, ddl)


def _split_stats(table: pa.Table, schema: pa.Schema) -> tuple[pa.Table, list[dict]]:
    """Collected scores -> (output rows ordered like the local engine's, each partition's stats)."""
    stat_mask = table.column("__stats").is_valid()
    part_stats = [json.loads(x) for x in table.filter(stat_mask).column("__stats").to_pylist()]
    table = table.filter(_not(stat_mask))
    table = table.sort_by([("__part", "ascending"), ("customer_id", "ascending")]).select(schema.names)
    return table, part_stats


def _counts(v: _Validation, part_stats: list[dict], n_parts: int, t, out_path: Path) -> dict:
    """The counts of score_file (without the timings)."""
    customers = sum(s["customers"] for s in part_stats)
    scored_n = sum(s["scored"] for s in part_stats)
    return {
        "scored": int(scored_n),
        "ineligible": int(customers - scored_n),
        "rejected": int(len(v.rejects)),
        "duplicates": int(v.chunk_dups + sum(s["dups"] for s in part_stats)),
        "input_rows": int(v.input_rows),
        "events": int(sum(s["events"] for s in part_stats)),
        "customers": int(customers),
        "problems": int(v.n_problems),
        "partitions": int(n_parts),
        "as_of": t.isoformat() if t is not None else None,
        "engine": "spark",
        "out": str(out_path),
    }


def _not(mask):
    return pc.invert(mask)


def _to_arrow(df):  # pragma: no cover - pyspark < 4
    return pa.Table.from_pandas(df.toPandas(), preserve_index=False)


def _ddl_type(t) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_floating(t):
        return "double"
    return "string"


def _rejects_frame(rej: pd.DataFrame, rank: dict, columns_of: dict) -> pd.DataFrame:
    """Rejected rows in file, then row order, shaped like journey_stage.core.events' rejects."""
    if not len(rej):
        return empty_rejects()
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

"""Batch scoring on Apache Spark (``journey score --engine spark``): the same answers as the local
engine, computed by Spark executors. See ``docs/spark.md`` for running it on a cluster.

1. **Read with Spark.** Parquet files with ``spark.read.parquet`` (plus each row's file and row
   index from Spark's hidden ``_metadata`` column); CSV and JSON Lines files as bytes with
   ``spark.read.format("binaryFile")``, one file per row, parsed on the executors by the local
   engine's reader (:func:`journey_stage.core.io.raw_chunks`: ids keep their zero padding, a CSV
   line that is not a row is rejected on its own, exactly as locally). A URI or a glob is Spark's
   to read; a catalog table's name, ``spark.table`` (:mod:`journey_stage.serving.spark_api`).
2. **Validate the same way.** ``mapInPandas`` runs :func:`journey_stage.core.events.validate_events` on
   contiguous row runs of each file with their true row numbers: valid canonical events, rejected
   rows (file, row, reason, raw values) and per-chunk counts come out of one pass. Rejects and
   counts are small and go to the driver, which writes the rejects file or raises the same
   one-line error as the local engine.
3. **Score by customer partition.** Events are grouped by ``pmod(crc32(customer_id), n)`` -- the
   local engine's partition function -- and ``applyInPandas`` deduplicates, sorts and calls
   :func:`journey_stage.model.scoring.score_events` on each group with the broadcast predictor and playbook and
   the same ``as_of`` (default: the latest valid event of the whole input).
4. **Write.** One file (the default of :func:`score_spark`; ``--single-file``): the scored rows
   (one per eligible customer) are collected to the driver as Arrow, ordered like the local
   engine's output (partition, then customer_id) and written with the local engine's writer
   (:mod:`journey_stage.serving.writing`) to a temporary file that replaces the target. A folder
   (``folder=True``, ``journey score --engine spark``): the executors write Parquet part files
   in that order (:func:`journey_stage.serving.spark_api.write_scores_folder`).

:func:`score_dataframe` is the same engine for a Spark DataFrame of events in Python: validated
now, scored lazily, a Spark DataFrame out. The functions that run on the executors (steps 2 and 3)
are in :mod:`journey_stage.serving.spark_executors`; this module and
:mod:`journey_stage.serving.spark_api` are the driver.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc

from journey_stage.core import errors, io
from journey_stage.core.coerce import parse_as_of
from journey_stage.core.events import COLUMNS
from journey_stage.core.runtime import DEFAULT_MODEL_URI, RuntimeSettings
from journey_stage.model.playbook import load_playbook
from journey_stage.model.scoring import output_columns
from journey_stage.serving.partition import DEFAULT_PARTITIONS, partition_count
from journey_stage.serving.progress import Tasks, open_bar
from journey_stage.serving.reading import BATCH_ROWS, file_kind
from journey_stage.serving.spark_api import (Validation, catalog_table, check_validation, frame_validated, is_uri, rejects_frame,
                                             side_rows, write_scores_folder)
from journey_stage.serving.spark_executors import VALIDATED_DDL, score_group, validate_parquet_batches, validate_text_files
from journey_stage.serving.writing import output_kind, output_schema, write_atomically

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

def _file_groups(events_path) -> tuple[dict[str, list[str]], list[str], dict]:
    """Input files by kind, their order, and Spark's name of each -> the name in messages. A URI or a path
    not here (a glob, Spark's default file system) goes to Spark as it is (Parquet unless .csv / .jsonl)."""
    if is_uri(events_path) or not Path(events_path).exists():
        path = str(events_path)
        return {file_kind(Path(urlparse(path).path)) or "Parquet": [path]}, [path], {}
    files = io.event_files(events_path)
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(file_kind(f) or "Parquet", []).append(str(Path(f).resolve()))
    return groups, [str(f) for f in files], {str(Path(f).resolve()): str(f) for f in files}


def _read_validated(spark, events_path, predictor_bc, batch_rows: int):
    """Spark DataFrame of validated rows for every input file (Parquet / text) or the rows of a
    catalog table, and the sources in input order."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    if not is_uri(events_path) and not Path(events_path).exists():
        table = catalog_table(spark, str(events_path))
        if table is not None:
            return frame_validated(table, str(events_path), predictor_bc)
    groups, order, sources = _file_groups(events_path)
    frames = []
    try:
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
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "Path does not exist" in str(exc):
            raise errors.events_not_found_spark(str(events_path)) from None
        raise
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
    folder: bool = False,
) -> dict:
    """Score ``events_path`` (files, a folder, a URI or a catalog table) with Spark into one
    Parquet / CSV file at ``out_path`` (atomically), or with ``folder`` into a folder of Parquet
    part files written by the executors.

    Same arguments, counts and output (columns, order, values) as :func:`journey_stage.serving.batch.score_file`
    with the local engine. ``spark``: an existing session (else the active one, else a new one on
    ``master``, stopped at the end). ``partitions``: customer partitions (default: at least
    ``min_partitions``, more for big inputs, as locally)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*PySpark does not yet fully support pandas.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module="pyspark.*")
        return _score_spark(events_path, out_path, predictor=predictor, as_of=as_of, rejects=rejects, reasons=reasons, master=master,
                            partitions=partitions, progress=progress, spark=spark, conf=conf, batch_rows=batch_rows,
                            min_partitions=min_partitions, folder=folder)


def _score_spark(events_path, out_path, *, predictor, as_of, rejects, reasons, master, partitions, progress, spark, conf, batch_rows,
                 min_partitions, folder) -> dict:
    from pyspark import StorageLevel

    t0 = time.perf_counter()
    out_path = out_path if folder and is_uri(out_path) else Path(out_path)
    if not folder:
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
            side = side_rows(validated)
            phases["read_validate_s"] = time.perf_counter() - t1
            v = check_validation(side, order, events_path, rejects, predictor.taxonomy)
            t = t_as_of if t_as_of is not None else v.latest_event()
            n_parts = int(partitions) if partitions else partition_count(v.valid_rows, min_partitions or DEFAULT_PARTITIONS)
            tasks.advance(step)

            scored = _score_plan(spark, validated, n_parts, predictor, predictor_bc, playbook_bc, t, reasons)
            write = write_scores_folder if folder else _write_file
            part_stats = write(scored, out_path, predictor, reasons, rejects, lambda: rejects_frame(v.rejects, v.rank, v.columns_of()),
                               phases, lambda: tasks.advance(step))
            tasks.advance(step)
    finally:
        if validated is not None:
            validated.unpersist()
        predictor_bc.unpersist()
        playbook_bc.unpersist()
        if own:
            spark.stop()
    return _counts(v, part_stats, n_parts, t, out_path) | {"seconds": time.perf_counter() - t0, "spark_phases_s": phases}


def _write_file(scored, out_path: Path, predictor, reasons: bool, rejects, make_rejects, phases: dict, scored_done) -> list[dict]:
    """The scores collected to the driver as Arrow, written to one file atomically (then the
    rejects); returns each partition's stats."""
    t1 = time.perf_counter()
    table = scored.toArrow() if hasattr(scored, "toArrow") else _to_arrow(scored)
    phases["score_collect_s"] = time.perf_counter() - t1
    scored_done()
    t1 = time.perf_counter()
    table, part_stats = _split_stats(table, output_schema(predictor, reasons))
    write_atomically(out_path, predictor, reasons, lambda writer: writer.write_arrow(table), rejects, make_rejects)
    phases["write_s"] = time.perf_counter() - t1
    return part_stats


def score_dataframe(spark_df, model_uri: str = DEFAULT_MODEL_URI, as_of=None, reasons: bool = False, *, rejects=None,
                    partitions: int | None = None, predictor=None):
    """Score the events of a Spark DataFrame: a Spark DataFrame with one row per eligible customer
    and the columns of batch scoring (:func:`journey_stage.model.scoring.output_columns`).

    ``spark_df``: raw events (``customer_id``, ``timestamp``, ``event_type``; optional ``channel``,
    ``value``, ``campaign``), as a file would hold them. The driver loads ``model_uri`` (or takes
    ``predictor``) and broadcasts it. Validation runs now: invalid rows raise the engine's one-line
    :class:`~journey_stage.core.errors.InputError` unless ``rejects`` (a local .parquet / .csv
    file) receives them; ``as_of`` defaults to the latest valid event. The scores are computed
    when the result is used (validation runs again then); rows come in no particular order. The
    session's time zone is set to UTC, as for :func:`score_spark`."""
    from pyspark.sql import functions as F

    from journey_stage.model.registry import load_predictor

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        predictor = predictor if predictor is not None else load_predictor(model_uri)
        spark = spark_df.sparkSession
        _check_session(spark)
        t_as_of = parse_as_of(as_of)
        predictor_bc, playbook_bc = spark.sparkContext.broadcast(predictor), spark.sparkContext.broadcast(load_playbook())
        validated, order = frame_validated(spark_df, "DataFrame", predictor_bc)
        v = check_validation(side_rows(validated), order, "DataFrame", rejects, predictor.taxonomy)
        if rejects is not None:
            io.write_table(rejects_frame(v.rejects, v.rank, v.columns_of()), rejects)
        t = t_as_of if t_as_of is not None else v.latest_event()
        n_parts = int(partitions) if partitions else partition_count(v.valid_rows, DEFAULT_PARTITIONS)
        scored = _score_plan(spark, validated, n_parts, predictor, predictor_bc, playbook_bc, t, reasons)
    return scored.filter(F.col("__stats").isNull()).select(*output_columns(predictor, reasons))


def _score_plan(spark, validated, n_parts: int, predictor, predictor_bc, playbook_bc, t, reasons: bool):
    """Spark DataFrame of the scored rows: valid events grouped by customer partition, score_group on each."""
    from pyspark.sql import functions as F

    columns = output_columns(predictor, reasons)
    schema = output_schema(predictor, reasons)
    as_of_us = int(t.value // 1000) if t is not None else None
    ddl = ", ".join(f"`{f.name}` {_ddl_type(f.type)}" for f in schema) + ", `__part` long, `__stats` string"
    events = validated.filter(F.col("kind") == "e").select(*COLUMNS)
    events = events.withColumn("__part", F.pmod(F.crc32(F.col("customer_id").cast("binary")), F.lit(n_parts)))
    events = events.repartition(n_parts, "__part")  # n_parts tasks; the session's settings are left alone

    def fn(key, pdf):  # a plain function: PySpark inspects it (a functools.partial makes it warn)
        return score_group(key, pdf, predictor_bc=predictor_bc, playbook_bc=playbook_bc, as_of_us=as_of_us,
                           reasons=reasons, columns=columns)

    return events.groupBy("__part").applyInPandas(fn, ddl)


def _split_stats(table: pa.Table, schema: pa.Schema) -> tuple[pa.Table, list[dict]]:
    """Collected scores -> (output rows ordered like the local engine's, each partition's stats)."""
    stat_mask = table.column("__stats").is_valid()
    part_stats = [json.loads(x) for x in table.filter(stat_mask).column("__stats").to_pylist()]
    table = table.filter(pc.invert(stat_mask))
    table = table.sort_by([("__part", "ascending"), ("customer_id", "ascending")]).select(schema.names)
    return table, part_stats


def _counts(v: Validation, part_stats: list[dict], n_parts: int, t, out_path: Path) -> dict:
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


def _to_arrow(df):  # pragma: no cover - pyspark < 4
    return pa.Table.from_pandas(df.toPandas(), preserve_index=False)


def _ddl_type(t) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_floating(t):
        return "double"
    return "string"

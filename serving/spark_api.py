"""The driver-side pieces of the Spark engine (:mod:`journey_stage.serving.spark`) that go beyond
reading local files and collecting one output file; ``score_dataframe``, the engine's Python API,
and ``journey score --engine spark`` are built from them.

- **DataFrames and tables in.** :func:`frame_validated` runs the engine's validation
  (:func:`journey_stage.serving.spark_executors.validate_parquet_batches`, ``mapInPandas``) on
  any DataFrame of raw events; a rejected row is named by its Spark partition and its row in that
  partition (``DataFrame, Spark partition 3, row 17``), as a file's rows are named by file and
  row. ``journey score --engine spark --events NAME`` reads the table or view ``NAME`` when no
  file or folder of that name exists (:func:`catalog_table`).
- **What validation found.** The rejected rows and per-chunk counts collected to the driver
  (:func:`side_rows`), their totals and the local engine's error for the first source with
  problems (:func:`check_validation`), the rejects file's rows (:func:`rejects_frame`).
- **A folder out.** :func:`write_scores_folder` (``journey score --engine spark`` without
  ``--single-file``): the scores are computed once (cached), each partition's counts go to the
  driver, and the executors write the rows (``DataFrame.write.parquet``) into a hidden temporary
  folder next to the target that replaces it only when the write succeeded (:func:`write_folder`;
  a URI such as ``s3a://`` is written in place by Spark's own committer). The part files are
  numbered in output order: read in name order (``pandas.read_parquet(folder)``), the rows come
  in the local engine's order. :func:`check_output_folder` refuses a bad target before any work.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from journey_stage.core import errors, io
from journey_stage.core.errors import InputError, Problem
from journey_stage.core.events import REQUIRED
from journey_stage.serving.reading import FileProblems, file_kind
from journey_stage.serving.spark_executors import VALIDATED_DDL, validate_parquet_batches
from journey_stage.serving.writing import check_writable_folder, empty_rejects, output_schema

_TABLE_NAME = re.compile(r"(`[^`]+`|[A-Za-z_]\w*)(\.(`[^`]+`|[A-Za-z_]\w*)){0,2}")  # table, db.table, catalog.db.table
# what Spark's Parquet writer leaves in an output folder (a folder with anything else is not replaced)
_SPARK_OUTPUT = re.compile(r"(part-.*|_SUCCESS|_committed_.*|_started_.*|\..*\.crc)")


def is_uri(path) -> bool:
    return "://" in str(path)


# ---- inputs --------------------------------------------------------------------------------------

def catalog_table(spark, name: str):
    """``spark.table(name)`` when ``name`` is a table or view of the session's catalog, else None
    (a name that reads as a path or an events file's name is not looked up: the catalog is not
    even started, nor its ``spark-warehouse`` folder created, for a mistyped path)."""
    if not _TABLE_NAME.fullmatch(name) or file_kind(Path(name)) is not None:
        return None
    try:
        exists = spark.catalog.tableExists(name)
    except Exception:  # noqa: BLE001 - a name that is not a table identifier (a path) is no table
        exists = False
    return spark.table(name) if exists else None


def frame_validated(df, name: str, predictor_bc):
    """A DataFrame of raw events -> (its validated rows (VALIDATED schema), the sources in order).

    Rows are numbered within their Spark partition (source ``"<name>, Spark partition <i>"``):
    a DataFrame has no global row order, a partition's rows do."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise errors.missing_columns(name, missing, list(df.columns))
    raw_cols = [c for c in df.columns if not c.startswith("__index_level_")]
    tz_cols = [f.name for f in df.schema.fields if isinstance(f.dataType, TimestampType)]
    prefix = f"{name}, Spark partition "
    pid = F.spark_partition_id()
    raw = df.select(*[F.col(f"`{c}`") for c in raw_cols],
                    F.concat(F.lit(prefix), pid.cast("string")).alias("__file"),
                    (F.monotonically_increasing_id() - F.shiftleft(pid.cast("long"), 33)).alias("__row"))
    fn = partial(validate_parquet_batches, raw_cols=raw_cols, tz_cols=tz_cols, sources={}, predictor_bc=predictor_bc)
    order = [f"{prefix}{i}" for i in range(df.rdd.getNumPartitions())]
    return raw.mapInPandas(fn, VALIDATED_DDL), order


# ---- a folder out --------------------------------------------------------------------------------

def check_output_folder(path, flag: str, *, inputs=(), rejects=None) -> None:
    """Before any work (a local folder): refuse one that is an input or inside an input folder, an
    existing folder with other files than a previous output's (or a file other than a Parquet
    file), a folder that cannot be written, and ``rejects`` inside it; remove what killed runs left
    next to it."""
    path = Path(path)
    if path.name.lower().endswith((".csv", ".csv.gz")):
        raise errors.folder_output_not_parquet(flag, path)
    for src in inputs:
        if src is None or is_uri(src) or not Path(src).exists():
            continue
        src = Path(src).resolve()
        if path.resolve() == src:
            raise errors.output_is_input(flag, path, src)
        if path.resolve().is_relative_to(src) and src.is_dir():
            raise errors.output_inside_input(flag, path, src)
        if src.is_relative_to(path.resolve()):  # replacing the folder would delete the events
            raise errors.output_is_input(flag, path, src)
    if path.is_dir() and not all(_SPARK_OUTPUT.fullmatch(e.name) for e in os.scandir(path)):
        raise errors.output_folder_not_ours(flag, path)
    if path.is_file() and not path.name.lower().endswith((".parquet", ".pq")):  # only a previous output file is replaced
        raise errors.output_not_writable(flag, path, "a file that is not a Parquet output is in the way")
    if rejects is not None and Path(rejects).resolve().is_relative_to(path.resolve()):
        raise errors.output_inside_output("--rejects", rejects, flag, path)
    check_writable_folder(flag, path)


def write_scores_folder(scored, out_path, predictor, reasons: bool, rejects, make_rejects, phases: dict, scored_done) -> list[dict]:
    """The engine's scored rows (with ``__part`` and the ``__stats`` rows) written by the
    executors as Parquet part files in the local engine's order (partition, then customer_id),
    then the rejects file; returns each partition's stats. The scores are cached, so they are
    computed once for the stats and the write."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        t1 = time.perf_counter()
        stats = scored.filter(F.col("__stats").isNotNull()).select("__stats").toPandas()["__stats"]
        part_stats = [json.loads(x) for x in stats]
        phases["score_s"] = time.perf_counter() - t1
        scored_done()
        t1 = time.perf_counter()
        rows = scored.filter(F.col("__stats").isNull()).orderBy("__part", "customer_id")
        write_folder(rows.select(*output_schema(predictor, reasons).names), out_path)
        if rejects is not None:
            io.write_table(make_rejects(), rejects)
        phases["write_s"] = time.perf_counter() - t1
    finally:
        scored.unpersist()
    return part_stats


def write_folder(rows, target) -> None:
    """The executors write ``rows`` (a Spark DataFrame, in output order) as Parquet part files:
    into a temporary folder that replaces ``target`` when complete (a local path), or in place
    (a URI)."""
    if is_uri(target):
        rows.write.mode("overwrite").parquet(str(target))
        return
    target = Path(target).absolute()
    io.remove_stale_temps(target)
    tmp = _temp_name(target)
    try:
        rows.write.parquet(tmp.as_uri())
        _replace(tmp, target)
    finally:
        _remove(tmp)


def _temp_name(target: Path) -> Path:
    """A new name next to ``target`` that removes the files of killed runs recognise as theirs."""
    tmp = io.new_temp_file(target)
    tmp.unlink()
    return tmp


def _replace(new: Path, target: Path) -> None:
    """``new`` (a folder) takes the place of ``target`` (absent, a file or a previous output folder)."""
    if not target.exists() and not target.is_symlink():
        os.rename(new, target)
        return
    old = _temp_name(target)
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    with suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


# ---- what the executors' validation found, on the driver ------------------------------------------

def side_rows(validated) -> pd.DataFrame:
    """The small part of the validated rows, on the driver: rejects ("r") and chunk stats ("s")."""
    from pyspark.sql import functions as F

    return validated.filter(F.col("kind") != "e").select("kind", "source", "row", "info").toPandas()


@dataclass
class Validation:
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


def check_validation(side: pd.DataFrame, order: list[str], events_path, rejects, taxonomy) -> Validation:
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
        raise first_file_error(stats, infos, rank, taxonomy)
    max_ts = max((i["max_ts"] for i in infos if i["max_ts"] is not None), default=None)
    return Validation(stats, rej, infos, rank, input_rows, valid_rows=sum(i["valid"] for i in infos),
                       chunk_dups=sum(i["dups"] for i in infos), n_problems=n_problems, max_ts=max_ts)


def first_file_error(stats: pd.DataFrame, infos: list[dict], rank: dict, taxonomy) -> InputError:
    by_file: dict[str, FileProblems] = {}
    for src, info in zip(stats["source"], infos):
        fp = by_file.setdefault(src, FileProblems(src))
        fp.add([Problem(p["code"], p["message"], p["row"], p["column"], p.get("value")) for p in info["problems"]],
               info["n_problems"], info["unknown"])
    first = min((s for s, fp in by_file.items() if fp.n_problems), key=lambda s: rank.get(s, len(rank)))
    return by_file[first].error(taxonomy)


def rejects_frame(rej: pd.DataFrame, rank: dict, columns_of: dict) -> pd.DataFrame:
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

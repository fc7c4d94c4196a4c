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
   at least ``partitions`` and grows with the input (about
   :data:`~journey_stage.serving.partition.TARGET_EVENTS_PER_PARTITION` events each), so the
   working memory does not grow with the number of customers.
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
   SIGTERM and SIGHUP stop a run like Ctrl-C (temporary files, spill folder and worker processes
   removed); workers die with the main process even when it is killed (SIGKILL), and the files a
   killed run leaves (named after its process id) are removed by the next run of the same output.

Before any work, outputs that would lose data are refused with one line: ``out`` or ``rejects``
equal to the input (or inside the input folder), ``rejects`` equal to ``out``, or an output that
cannot be written.

Big inputs (:data:`~journey_stage.serving.local.PARALLEL_MIN_ROWS` rows or more) use ``workers``
processes (default: one per core): Parquet read units are validated and partitions are scored in
parallel, the main process reads CSV / JSON Lines and writes the output in partition order.

``as_of`` defaults to the **latest valid event timestamp of the whole input** (not of each
partition), so every customer is scored at the same time. Output rows come grouped by customer
partition and sorted by ``customer_id`` inside a partition (the Spark engine writes the same
order); sort the file if you need one global order. Columns are those of the HTTP API flattened
(:func:`journey_stage.model.scoring.output_columns`), plus ``reasons`` (JSON text) with ``reasons=True``.

Modules: :mod:`~journey_stage.serving.reading` (input -> validated chunks),
:mod:`~journey_stage.serving.partition` (customer partitions, scoring one partition),
:mod:`~journey_stage.serving.writing` (atomic output), :mod:`~journey_stage.serving.local` and
:mod:`~journey_stage.serving.spark` (the two engines), :mod:`~journey_stage.serving.progress`.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from journey_stage.core import io
from journey_stage.core.coerce import parse_as_of
from journey_stage.core.errors import JourneyError
from journey_stage.core.runtime import DEFAULT_MODEL_URI
from journey_stage.serving.local import PARALLEL_MIN_ROWS, default_workers, score_local
from journey_stage.serving.partition import DEFAULT_PARTITIONS, partition_count
from journey_stage.serving.progress import Progress
from journey_stage.serving.reading import BATCH_ROWS, estimate_rows, file_kind
from journey_stage.serving.writing import check_output, output_kind


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP during :func:`score_file`: the run stops and cleans up like after Ctrl-C."""


@contextmanager
def signals_as_interrupt():
    """In the main thread, SIGTERM and SIGHUP (when they would kill the process) raise
    :class:`Terminated` instead, so the clean-up of an interrupted run happens; once: a second
    signal does not interrupt the clean-up. The previous handlers are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def stop(signum, frame):
        for s in previous:
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(f"stopped by signal {signum}")

    for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if s is not None and signal.getsignal(s) == signal.SIG_DFL:
            previous[s] = signal.signal(s, stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


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
    folder: bool = False,
) -> dict:
    """Score every eligible customer of an events file or folder into one Parquet or CSV file.

    ``as_of``: ISO 8601 text or timestamp; default the latest valid event timestamp of the whole
    input. ``workers``: processes for big inputs (default one per core; 1 = no worker processes).
    With ``engine="spark"``: ``events_path`` may also be a URI or a glob Spark reads, or the name
    of a table of the session's catalog; ``folder=True`` has the executors write ``out_path`` as a
    folder of Parquet part files (a local path or a URI) instead of one file written by the driver.

    Returns counts: ``scored`` (rows written), ``ineligible`` (customers with valid events that
    were not scored: no event in the eligibility window before ``as_of``, or only events after
    it), ``rejected`` (invalid input rows), ``duplicates`` (exact duplicate events removed),
    ``input_rows``, ``events`` (valid events after deduplication; ``events + rejected +
    duplicates == input_rows``), ``customers``, ``problems``, ``partitions``, ``as_of``,
    ``engine``, ``workers`` and ``seconds``.
    """
    t0 = time.perf_counter()
    rejects = Path(rejects) if rejects is not None else None
    if engine not in ("local", "spark"):
        raise JourneyError(f"--engine {engine!r}: expected local or spark.", "use --engine local or --engine spark.")
    out_path = _check_out(out_path, engine, folder)
    t_as_of = parse_as_of(as_of)
    if engine == "spark" and ("://" in str(events_path) or not Path(events_path).exists()):
        # hdfs://, s3a://, a glob or a table: listed and read by Spark itself (a missing path is an error there)
        partition_count(0, partitions)  # checks the value; Spark sizes the partitions once it has counted the rows
        n_parts = None
        files = None
    else:
        events_path = Path(events_path)
        files = io.event_files(events_path)  # clear error for a missing path or an unsupported type
        n_parts = partition_count(estimate_rows(files), partitions)
    if folder:
        from journey_stage.serving.spark_api import check_output_folder

        if "://" not in str(out_path):
            check_output_folder(out_path, "--out", inputs=[events_path], rejects=rejects)
    else:
        check_output(out_path, "--out", inputs=[events_path])
    if rejects is not None:
        check_output(rejects, "--rejects", inputs=[events_path], others=[("--out", out_path)])
    with signals_as_interrupt():
        return _run(events_path, out_path, files, n_parts, t0, model_uri=model_uri, t_as_of=t_as_of, engine=engine, rejects=rejects,
                    reasons=reasons, spark_master=spark_master, partitions=partitions, progress=progress, predictor=predictor,
                    batch_rows=batch_rows, workers=workers, folder=folder)


def _check_out(out_path, engine: str, folder: bool):
    """The output's name checked: a file of a known type, or (Spark) a folder; a URI only for a folder."""
    from journey_stage.core import errors

    if folder:
        if engine != "spark":
            raise errors.folder_output_needs_spark("--out", out_path)
        return str(out_path) if "://" in str(out_path) else Path(out_path)
    if "://" in str(out_path):
        raise errors.single_file_not_local("--out", out_path)
    out_path = Path(out_path)
    output_kind(out_path)
    if out_path.is_dir():
        raise JourneyError(f"{out_path}: is a folder; expected an output file.", "pass a file name such as scores.parquet.")
    return out_path


def _run(events_path, out_path: Path, files, n_parts, t0: float, *, model_uri, t_as_of, engine, rejects, reasons, spark_master, partitions,
         progress, predictor, batch_rows, workers, folder=False) -> dict:
    """Load the model and score with the engine (the arguments checked by score_file)."""
    if predictor is None:
        from journey_stage.model.registry import load_predictor

        predictor = load_predictor(model_uri)
    if engine == "spark":
        from journey_stage.serving.spark import score_spark

        counts = score_spark(events_path, out_path, predictor=predictor, as_of=t_as_of, rejects=rejects, reasons=reasons,
                             master=spark_master, partitions=n_parts, min_partitions=partitions, progress=progress,
                             batch_rows=batch_rows, folder=folder)
        return counts | {"seconds": time.perf_counter() - t0}
    n_rows = estimate_rows(files)
    if workers is None:
        workers = default_workers() if n_rows >= PARALLEL_MIN_ROWS else 1
    exact = all(file_kind(f) == "Parquet" for f in files)
    counts = score_local(files, events_path, out_path, predictor, t_as_of, rejects, reasons, n_parts, progress, batch_rows,
                         n_rows if exact else None, max(1, int(workers)))
    return counts | {"seconds": time.perf_counter() - t0}


__all__ = ["score_file"]

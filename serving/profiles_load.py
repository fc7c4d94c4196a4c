"""Bulk backfill of the profile store from event files (``journey profiles load``): every format
``journey score`` reads, streamed in chunks through the same validation; rejects like batch.

Reading and validating run on a helper thread, one or two chunks ahead of the store, so a chunk is
validated while the one before is written (SQLite and the Redis client release the GIL while they
work). The store is only used by the calling thread, in input order: the counts, the idempotence
and the "events stored before the problem" of an error are those of a plain loop.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd

from journey_stage.core import io
from journey_stage.core.errors import JourneyError
from journey_stage.serving.profiles import ProfileStore
from journey_stage.serving.reading import BATCH_ROWS, UnitResult, plan_units, validate_unit
from journey_stage.serving.writing import empty_rejects

AHEAD = 2  # validated chunks waiting for the store (about 100 MB each at the default batch size)


class _Stopped(Exception):
    """Raised inside the reader thread when the load stopped (an error of the store or of a file)."""


def _validated(units: list, taxonomy, batch_rows: int, allow_rejects: bool) -> Iterator[pd.DataFrame | tuple[int, UnitResult]]:
    """Valid events chunk by chunk, then ``(unit number, result)`` after each unit, read and
    validated on a helper thread; stops the thread when the consumer stops early."""
    items: queue.Queue = queue.Queue(maxsize=AHEAD)
    stop = threading.Event()

    def put(item) -> None:
        while not stop.is_set():
            try:
                return items.put(item, timeout=0.1)
            except queue.Full:
                continue
        raise _Stopped

    def read() -> None:
        last = None  # the end, or the error that ended the reading (raised by the consumer)
        try:
            for i, unit in enumerate(units):
                put((i + 1, validate_unit(unit, taxonomy, batch_rows, allow_rejects, put)))
        except _Stopped:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            last = exc
        with contextlib.suppress(_Stopped):
            put(last)

    reader = threading.Thread(target=read, name="profiles-load-reader", daemon=True)
    reader.start()
    try:
        while (item := items.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def load_events(store: ProfileStore, events_path: str | Path, taxonomy, *, rejects: Path | None = None,
                batch_rows: int = BATCH_ROWS, on_unit: Callable[[int, int], None] | None = None) -> dict:
    """Validate and store every event of ``events_path``; counts of rows read, stored, exact
    duplicates and rejected. Without ``rejects`` the first file with a problem stops the load
    with its message (the events stored before stay: loading is idempotent, so fix the file
    and load again)."""
    units = plan_units(io.event_files(events_path), batch_rows)
    counts = {"rows": 0, "stored": 0, "duplicates": 0, "rejected": 0}
    rejected: list[pd.DataFrame] = []
    for item in _validated(units, taxonomy, batch_rows, rejects is not None):
        if isinstance(item, pd.DataFrame):
            stored, dup = store.add(item)
            counts["stored"] += stored
            counts["duplicates"] += dup
            continue
        done, res = item
        counts["rows"] += res.n_input
        counts["duplicates"] += res.dups
        if res.problems.n_problems and rejects is None:
            err = res.problems.error(taxonomy)
            raise JourneyError(f"{err.message} {counts['stored']:,} valid event(s) were stored before it.",
                               f"{err.hint} Loading again after the fix stores each event once.")
        rejected += res.rejects
        if on_unit:
            on_unit(done, len(units))
    if rejects is not None:
        table = pd.concat(rejected, ignore_index=True) if rejected else empty_rejects()
        counts["rejected"] = len(table)
        io.write_table(table, rejects)
    return counts

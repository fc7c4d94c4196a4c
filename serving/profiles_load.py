"""Bulk backfill of the profile store from event files (``journey profiles load``): every format
``journey score`` reads, streamed in chunks through the same validation; rejects like batch."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from journey_stage.core import io
from journey_stage.core.errors import JourneyError
from journey_stage.serving.profiles import ProfileStore
from journey_stage.serving.reading import BATCH_ROWS, plan_units, validate_unit
from journey_stage.serving.writing import empty_rejects


def load_events(store: ProfileStore, events_path: str | Path, taxonomy, *, rejects: Path | None = None,
                batch_rows: int = BATCH_ROWS, on_unit: Callable[[int, int], None] | None = None) -> dict:
    """Validate and store every event of ``events_path``; counts of rows read, stored, exact
    duplicates and rejected. Without ``rejects`` the first file with a problem stops the load
    with its message (the events stored before stay: loading is idempotent, so fix the file
    and load again)."""
    units = plan_units(io.event_files(events_path), batch_rows)
    counts = {"rows": 0, "stored": 0, "duplicates": 0, "rejected": 0}
    rejected: list[pd.DataFrame] = []

    def add(events: pd.DataFrame) -> None:
        stored, dup = store.add(events)
        counts["stored"] += stored
        counts["duplicates"] += dup

    for i, unit in enumerate(units):
        res = validate_unit(unit, taxonomy, batch_rows, rejects is not None, add)
        counts["rows"] += res.n_input
        counts["duplicates"] += res.dups
        if res.problems.n_problems and rejects is None:
            err = res.problems.error(taxonomy)
            raise JourneyError(f"{err.message} {counts['stored']:,} valid event(s) were stored before it.",
                               f"{err.hint} Loading again after the fix stores each event once.")
        rejected += res.rejects
        if on_unit:
            on_unit(i + 1, len(units))
    if rejects is not None:
        table = pd.concat(rejected, ignore_index=True) if rejected else empty_rejects()
        counts["rejected"] = len(table)
        io.write_table(table, rejects)
    return counts

"""The stored history of the customers of one ``POST /predict`` (the profile store), as canonical
row tuples for the one scoring path; and the rules around it: customers without events need a
store; stored events of types the served model does not know are left out, with a warning; a
store that fails answers 503 when it must answer (customers asked by id), else the sent events
are scored alone, with a warning, and the reason goes to the log (never to the client)."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Sequence

import numpy as np
import pandas as pd

from journey_stage.core.errors import ProfileStoreError
from journey_stage.core.events import merge_rows, sort_events
from journey_stage.serving.problems import RequestProblems

logger = logging.getLogger("bentoml.journey")
STORE_DOWN = "the profile store is unavailable"
STORE_DOWN_HINT = "retry later; the service log says why (JOURNEY_PROFILE_STORE)."


def store_unavailable(exc: ProfileStoreError) -> RequestProblems:
    """A 503 for a store that failed: the client gets no detail (host, path); the log gets it."""
    logger.warning("journey service: %s", exc.message)
    return RequestProblems(503, STORE_DOWN, [], STORE_DOWN_HINT)


def read_history(store: Any, ids: list[str]) -> list[tuple]:
    """The stored events of ``ids`` as canonical row tuples; 503 (:class:`RequestProblems`) when the store fails."""
    try:
        return store.history_rows(ids)
    except ProfileStoreError as exc:
        raise store_unavailable(exc) from None


def require_events_or_store(customers: Sequence[Any], store: Any) -> None:
    """400 for customers sent without events when there is no profile store to read them from."""
    missing = [] if store is not None else [
        {"path": f"customers[{i}].events", "message": "events are required: no profile store is configured (JOURNEY_PROFILE_STORE=none)",
         "code": "missing"} for i, c in enumerate(customers) if c.events is None]
    if missing:
        raise RequestProblems(400, f"invalid request: {len(missing)} problem(s)", missing,
                              "send each customer's events, or configure a profile store and load their events (POST /events).")


def stored_rows(store: Any, customers: Sequence[Any], ids: list[str], taxonomy: Any, warnings: list[list[dict]]) -> list[tuple]:
    """The stored rows to merge with the sent events of a request (none without a store); appends
    the customers' warnings (``stored_events_ignored``, ``profile_store_unavailable``)."""
    if store is None:
        return []
    try:
        rows = store.history_rows(ids)
    except ProfileStoreError as exc:
        if any(c.events is None for c in customers):
            raise store_unavailable(exc) from None
        logger.warning("journey service: %s", exc.message)
        for w in warnings:
            w.append({"code": "profile_store_unavailable", "message": "the profile store did not answer: scored on the sent events alone",
                      "count": None})
        return []
    unknown = Counter(r[0] for r in rows if r[2] not in taxonomy.event_role)
    if unknown:  # stored under another taxonomy (a file loaded with another preset, a new model)
        rows = [r for r in rows if r[2] in taxonomy.event_role]
        for i, cid in enumerate(ids):
            if unknown.get(cid):
                warnings[i].append({"code": "stored_events_ignored", "count": unknown[cid],
                                    "message": f"{unknown[cid]} stored event(s) have event types the model's taxonomy does not know: ignored"})
    return rows


def merge_history(sent: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """Sent and stored canonical events as one canonical frame: exact duplicates once, canonical
    order (what a prediction with events and a store answers on)."""
    if stored.empty:
        return sent
    return sort_events(pd.concat([sent, stored], ignore_index=True).drop_duplicates(ignore_index=True))


def event_records(rows: list[tuple]) -> list[dict]:
    """Canonical row tuples (a store's ``history_rows``) as the event objects of the HTTP API, in
    canonical order (timestamps ISO 8601 in UTC)."""
    rows = merge_rows(rows)
    stamps = pd.to_datetime(np.asarray([r[1] for r in rows], dtype="int64"), unit="us", utc=True)
    return [{"timestamp": t.isoformat(), "event_type": r[2], "channel": r[3], "value": r[4], "campaign": r[5]} for t, r in zip(stamps, rows)]

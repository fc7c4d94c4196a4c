"""Request handling of the profile endpoints, pure Python (no BentoML, no ASGI): ``POST /events``
(validate, store), ``GET /customers/{customer_id}/events`` and ``DELETE /customers/{customer_id}``.

Events sent to ``POST /events`` are validated exactly like the events of ``POST /predict`` (the
same request model fields, the same fast path and general validation, the same field-level 400s
and 413 limits) and stored as canonical events; a prediction by id then reads them back through
the one feature and scoring path (:func:`journey_stage.serving.requests.score_request`).
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel

from journey_stage.core.errors import ProfileStoreError
from journey_stage.serving.history import event_records, read_history, store_unavailable
from journey_stage.serving.problems import validate_body
from journey_stage.serving.requests import _validated_events
from journey_stage.serving.schemas import CustomerErased, CustomerEvents, EventsAccepted, RequestModels


def validate_events_body(body: bytes, models: RequestModels) -> BaseModel:
    """Parse and validate a ``POST /events`` body; :class:`RequestProblems` (400, or 413 over the
    events limit) when invalid."""
    return validate_body(body, models.events, f"at most {models.max_events} events per request",
                         "split the events into smaller requests, or raise JOURNEY_MAX_EVENTS on the server.")


def ingest(store: Any, events: Sequence[Any], taxonomy: Any) -> BaseModel:
    """Validate the events of a ``POST /events`` request (``ProfileEventIn`` objects) like
    ``/predict`` events and store them: :class:`EventsAccepted` (exact duplicates
    within the request or of stored events are counted, not stored)."""
    from journey_stage.core.events import canonical_records

    records = [(e.customer_id.strip(), e.timestamp, e.event_type, e.channel, e.value, e.campaign) for e in events]
    events = canonical_records(records, taxonomy)
    if events is None:
        rows = list(range(len(records)))
        events = _validated_events(records, rows, rows, taxonomy, path_of=lambda i, j, column: f"events[{j}].{column}")
    try:
        stored, _ = store.add(events)
    except ProfileStoreError as exc:
        raise store_unavailable(exc) from None
    return EventsAccepted(received=len(records), stored=stored, duplicates=len(records) - stored)


def customer_events(store: Any, customer_id: str) -> BaseModel:
    """``GET /customers/{customer_id}/events``: the stored history, in event-time order."""
    cid = customer_id.strip()
    events = event_records(read_history(store, [cid]))
    return CustomerEvents(customer_id=cid, count=len(events), events=events)


def erase(store: Any, customer_id: str) -> BaseModel:
    """``DELETE /customers/{customer_id}``: every stored event of the customer removed."""
    cid = customer_id.strip()
    try:
        n = store.delete(cid)
    except ProfileStoreError as exc:
        raise store_unavailable(exc) from None
    return CustomerErased(customer_id=cid, deleted=n)

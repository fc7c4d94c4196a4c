"""Typed request and response models of the HTTP API (SPEC section 8), with descriptions and examples.

They drive validation, the OpenAPI document BentoML serves at ``/docs.json`` and the fuzz tests.
The request models depend on the limits (customers per request, events per customer): build them
for given limits with :func:`request_models`; the limits appear in the OpenAPI document as
``maxItems``. Nothing here reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import bentoml
from pydantic import BaseModel, ConfigDict, Field

from journey_stage.core.events import MAX_TEXT_CHARS
from journey_stage.core.runtime import RuntimeSettings

# ---- routes --------------------------------------------------------------------------------------

PREDICT_PATH = "/predict"
METADATA_PATH = "/metadata"
DOCS_PATH = "/docs.json"
METRICS_PATH = "/metrics"
PROBE_PATHS = frozenset({"/livez", "/healthz", "/readyz"})
EVENTS_PATH = "/events"
CUSTOMERS_PREFIX = "/customers/"  # GET /customers/{customer_id}/events, DELETE /customers/{customer_id}

# ---- request ---------------------------------------------------------------------------------

EXAMPLE_EVENTS = [
    {"timestamp": "2025-03-01T10:00:00Z", "event_type": "ad_click", "channel": "instagram", "value": None, "campaign": "spring"},
    {"timestamp": "2025-03-02T18:30:00+01:00", "event_type": "product_view", "channel": "search", "value": None, "campaign": None},
    {"timestamp": "2025-03-03T09:15:00Z", "event_type": "add_to_cart", "channel": "direct", "value": None, "campaign": None},
]


class EventIn(BaseModel):
    """One touchpoint (SPEC section 2). Validated by the same code as batch files."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": EXAMPLE_EVENTS[0]})

    timestamp: str = Field(
        ...,
        description="When the touchpoint happened: ISO 8601 with an offset (2025-03-01T14:30:00+01:00); naive means UTC.",
        examples=["2025-03-01T14:30:00+01:00", "2025-03-01T13:30:00Z"],
    )
    event_type: str = Field(
        ...,
        max_length=MAX_TEXT_CHARS,
        description="The touchpoint kind; must be an event type of the model's taxonomy (see GET /metadata).",
        examples=["product_view", "add_to_cart", "purchase"],
    )
    channel: Optional[str] = Field(
        None,
        max_length=MAX_TEXT_CHARS,
        description="facebook, instagram, tiktok, youtube, influencer, email, search, display, referral, direct, store, support, ...",
        examples=["instagram"],
    )
    value: Optional[float] = Field(  # strict: a JSON number (or null), never true or "12.5"
        None, ge=0, allow_inf_nan=False, strict=True, description="Money attached to the event (purchases): a JSON number >= 0, or null.",
        examples=[49.9],
    )
    campaign: Optional[str] = Field(None, max_length=MAX_TEXT_CHARS, description="Campaign or content id.", examples=["spring-sale"])


@dataclass(frozen=True)
class RequestModels:
    """The request models of ``POST /predict`` for one pair of limits (see :func:`request_models`)."""

    max_customers: int  # JOURNEY_MAX_CUSTOMERS: customers per request
    max_events: int  # JOURNEY_MAX_EVENTS: events per customer
    customer: type[BaseModel]  # CustomerIn
    request: type[bentoml.IODescriptor]  # PredictRequest, the API's input spec
    events: type[bentoml.IODescriptor]  # EventsRequest, the body of POST /events (at most max_events events)


def request_models(limits: RuntimeSettings) -> RequestModels:
    """``CustomerIn`` and ``PredictRequest`` with ``limits.max_events`` events per customer and
    ``limits.max_customers`` customers per request (the same classes for the same limits)."""
    return _request_models(limits.max_customers, limits.max_events)


@lru_cache(maxsize=None)
def _request_models(max_customers: int, max_events: int) -> RequestModels:
    class CustomerIn(BaseModel):
        """One customer and their recent touchpoints (any order; exact duplicates are removed)."""

        model_config = ConfigDict(extra="forbid")

        customer_id: str = Field(
            ...,
            min_length=1,
            max_length=MAX_TEXT_CHARS,
            pattern=r"\S",
            description="Stable customer key (a string, never parsed as a number); unique within a request.",
            examples=["c1"],
        )
        events: Optional[list[EventIn]] = Field(
            None,
            max_length=max_events,
            description=f"The customer's touchpoints, at most {max_events} (JOURNEY_MAX_EVENTS). "
            "Events after as_of are ignored and counted in the customer's warnings. Leave it out to score the history "
            "the profile store holds for this customer (POST /events); sent with a store configured, the sent events "
            "are merged with the stored ones (exact duplicates once) for this answer only, and not stored.",
        )

    class PredictRequest(bentoml.IODescriptor):
        """Body of ``POST /predict``."""

        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={
                "example": {"customers": [{"customer_id": "c1", "events": EXAMPLE_EVENTS}], "as_of": "2025-03-04T00:00:00Z"}
            },
        )

        customers: list[CustomerIn] = Field(
            ...,
            max_length=max_customers,
            description=f"Customers to score, at most {max_customers} (JOURNEY_MAX_CUSTOMERS). "
            "Predictions come back in the same order.",
        )
        as_of: Optional[str] = Field(
            None,
            description="Score as of this time (ISO 8601; naive means UTC). Default: now (UTC). "
            "Only events at or before as_of are used.",
            examples=["2025-03-04T00:00:00Z"],
        )

    class EventsRequest(bentoml.IODescriptor):
        """Body of ``POST /events``: touchpoints of any customers, in any order."""

        model_config = ConfigDict(
            extra="forbid", json_schema_extra={"example": {"events": [{"customer_id": "c1"} | EXAMPLE_EVENTS[0]]}}
        )

        events: list[ProfileEventIn] = Field(
            ..., max_length=max_events,
            description=f"Events to store, at most {max_events} per request (JOURNEY_MAX_EVENTS); late and out-of-order "
            "events are fine (features use event time); exact duplicates of stored events are ignored.",
        )

    return RequestModels(max_customers, max_events, CustomerIn, PredictRequest, EventsRequest)


class ProfileEventIn(EventIn):
    """One touchpoint of one customer, for the profile store (``POST /events``)."""

    customer_id: str = Field(
        ..., min_length=1, max_length=MAX_TEXT_CHARS, pattern=r"\S", description="Stable customer key (a string).", examples=["c1"],
    )


class EventsAccepted(BaseModel):
    """Body of a successful ``POST /events``."""

    received: int = Field(..., description="Events in the request.")
    stored: int = Field(..., description="Events newly stored.")
    duplicates: int = Field(..., description="Exact duplicates (within the request or of stored events), ignored.")


class StoredEvent(BaseModel):
    timestamp: str = Field(..., description="ISO 8601, UTC.")
    event_type: str
    channel: Optional[str] = None
    value: Optional[float] = None
    campaign: Optional[str] = None


class CustomerEvents(BaseModel):
    """Body of ``GET /customers/{customer_id}/events``: the stored history in event-time order."""

    customer_id: str
    count: int
    events: list[StoredEvent]


class CustomerErased(BaseModel):
    """Body of ``DELETE /customers/{customer_id}``."""

    customer_id: str
    deleted: int = Field(..., description="Stored events removed (0 when none were stored).")


# ---- response --------------------------------------------------------------------------------

class NextBestAction(BaseModel):
    action: str = Field(..., description="What to do next (playbook action).", examples=["cart_reminder"])
    message: str = Field(..., description="A suggested message for the customer.")
    because: str = Field(..., description="Why the rule fired for this customer.", examples=["predicted stage is decision; conversion likelihood 0.41 >= 0.3"])
    rule: Optional[str] = Field(..., description="Name of the playbook rule that fired (null when none matched).", examples=["hot_decision"])


class Reason(BaseModel):
    feature: str = Field(..., description="Feature name.", examples=["events_7d_by_stage_decision"])
    value: Optional[float] = Field(..., description="The customer's value of the feature (null = missing).", examples=[2.0])
    contribution: float = Field(..., description="Contribution to the model's raw score for this task (LightGBM SHAP-like).", examples=[0.8])


class ModelRef(BaseModel):
    model_config = ConfigDict(extra="allow")  # further fields the scoring core reports of the model pass through

    name: str = Field(..., examples=["journey-stage"])
    version: str = Field(..., description="The registered version that answered: the same for every worker until a restart.", examples=["3"])
    alias: Optional[str] = Field(
        None, description="The registry alias the version was resolved from at start-up (e.g. champion); null when a version was named.",
        examples=["champion"],
    )
    served: dict[str, str] = Field(
        default_factory=dict, description="task -> 'model', or 'baseline:<rule>' when the task's model did not beat its best rule on validation and the rule answers.",
        examples=[{"stage": "model", "churn": "baseline:recency", "advocacy": "model", "conversion": "model"}],
    )


class PredictionWarning(BaseModel):
    code: str = Field(
        ...,
        description="events_after_as_of | no_history | outside_eligibility_window | duplicate_events_removed | "
        "stored_events_ignored | profile_store_unavailable",
        examples=["events_after_as_of"],
    )
    message: str = Field(..., description="Human-readable explanation.")
    count: Optional[int] = Field(None, description="How many events the warning concerns, where it applies.")


class Prediction(BaseModel):
    """Per customer, in request order (SPEC section 8), plus ``warnings``."""

    customer_id: str = Field(..., examples=["c1"])
    as_of: str = Field(..., description="The cutoff used (ISO 8601, UTC).", examples=["2025-03-04T00:00:00+00:00"])
    observed_stage: Optional[str] = Field(..., description="Rule-based stage from the history (null when there is no history at or before as_of).")
    stage: Optional[str] = Field(..., description="Predicted stage (argmax of the calibrated stage model; null when not scorable).", examples=["decision"])
    stage_probabilities: Optional[dict[str, Optional[float]]] = Field(
        ...,
        description="Calibrated probability per stage of the taxonomy (sums to 1); null when not scorable.",
        examples=[{"awareness": 0.05, "consideration": 0.2, "decision": 0.6, "retention": 0.0, "advocacy": 0.0, "lapsed": 0.15}],
    )
    churn_probability: Optional[float] = Field(..., description="Null for customers who have not converted (or when the task was not trained).")
    advocacy_probability: Optional[float] = Field(...)
    conversion_probability: Optional[float] = Field(...)
    next_best_action: Optional[NextBestAction] = Field(..., description="Playbook decision (SPEC section 10); null when not scorable.")
    reasons: dict[str, list[Reason]] = Field(..., description="Top feature contributions per task.")
    model: ModelRef
    warnings: list[PredictionWarning] = Field(default_factory=list, description="Point-in-time and data notes for this customer.")


class PredictResponse(BaseModel):
    """Body of a successful ``POST /predict``: ``{"predictions": [...]}`` in request order."""

    predictions: list[Prediction]


# ---- errors ----------------------------------------------------------------------------------

class Problem(BaseModel):
    path: str = Field(..., description="JSON path of the offending value, e.g. customers[0].events[3].timestamp ($ = the whole body).")
    message: str = Field(..., description="What was expected and what was found.")
    code: str = Field(..., description="Machine-readable kind, e.g. bad_timestamp, unknown_event_type, missing, too_long.")


class ErrorResponse(BaseModel):
    """Every error answer: a one-line ``error`` and, for invalid requests, field-level ``problems``."""

    error: str = Field(..., description="One line saying what went wrong.")
    hint: Optional[str] = Field(None, description="How to fix it.")
    problems: list[Problem] = Field(default_factory=list, description="Field-level problems (400 and 413).")
    total_problems: Optional[int] = Field(None, description="Number of problems found (problems lists at most 100).")


# ---- metadata --------------------------------------------------------------------------------

class ModelInfo(BaseModel):
    name: str
    version: str = Field(..., description="The registered version every worker serves (fixed at start-up).")
    alias: Optional[str] = Field(None, description="The registry alias the version was resolved from at start-up (e.g. champion).")
    served: dict[str, str] = Field(
        default_factory=dict, description="task -> 'model', or 'baseline:<rule>' when the task's model did not beat its best rule on validation and the rule answers.",
        examples=[{"stage": "model", "churn": "baseline:recency", "advocacy": "model", "conversion": "model"}],
    )
    uri: str = Field(..., description="The MLflow model URI the service loaded (an alias is pinned to its version: models:/name/3).")


class TaxonomyInfo(BaseModel):
    name: str
    description: str = ""
    stages: list[str] = Field(..., description="Stage names in funnel order, then lapsed.")
    event_types: dict[str, str] = Field(..., description="Every accepted event type -> its stage.")
    conversion_events: list[str]


class Metadata(BaseModel):
    """Body of ``GET /metadata``."""

    model: ModelInfo
    taxonomy: TaxonomyInfo
    training_data: dict[str, Any] = Field(..., description="Fingerprint of the training events: events, customers, start, end, fingerprint.")
    test_metrics: dict[str, Optional[float]] = Field(..., description="The model's test metrics, task.metric -> value.")
    tasks: dict[str, str] = Field(..., description="task -> 'trained' or why it was skipped.")
    feature_version: str
    horizons_days: dict[str, float]
    limits: dict[str, int] = Field(..., description="max_customers, max_events (per customer), max_body_bytes, max_concurrency, queue_length and queue_wait_ms (per worker), timeout_s, workers.")
    auth_required: bool = Field(..., description="Whether a bearer token is required (JOURNEY_API_TOKEN).")

"""The HTTP prediction service (SPEC section 8), a BentoML 1.4 service: the entry module of
``bentoml serve journey_stage.serving.service:JourneyService`` (what ``journey serve`` runs).

Importing this module builds the service: it reads the environment once, into one
:class:`~journey_stage.core.runtime.RuntimeSettings` (:data:`SETTINGS`; a bad value stops the start
with a :class:`~journey_stage.core.errors.ConfigError` naming the variable), and builds the service
class for it (:func:`build_service`). The rest lives in plain modules that receive the settings:
:mod:`journey_stage.serving.requests` (validation, scoring, metadata, the loaded model),
:mod:`journey_stage.serving.middleware` (known paths, auth, admission control, body limit, errors
as JSON), :mod:`journey_stage.serving.openapi` (the amended OpenAPI document) and
:mod:`journey_stage.serving.schemas` (the request and response models).

Endpoints
- ``POST /predict``: ``{"customers": [{"customer_id", "events": [...]}], "as_of"?}`` ->
  ``{"predictions": [...]}``, one prediction per customer in request order (see
  :class:`journey_stage.serving.schemas.Prediction` and docs/http_api.md); each names the model
  version that answered and the alias it was resolved from.
- ``GET /metadata``: the loaded model (name, version, alias, pinned URI), taxonomy, training data
  fingerprint, test metrics, limits.
- Live profiles (:mod:`journey_stage.serving.ingest`): ``POST /events`` stores touchpoints in the
  profile store; ``POST /predict`` answers customers sent without ``events`` from it (events sent
  with a store configured are merged with the stored ones for that answer);
  ``GET /customers/{customer_id}/events`` and ``DELETE /customers/{customer_id}``.
- BentoML's probes ``/livez`` (``/healthz``) and ``/readyz`` (503 until the model is loaded),
  ``/metrics`` (Prometheus), and the OpenAPI document at ``/docs.json`` (UI at ``/``). Any other
  path is a JSON 404 that never reaches BentoML's metrics (no series per unknown path).

Environment (fields of :class:`~journey_stage.core.runtime.RuntimeSettings`)
- ``JOURNEY_MODEL_URI``: MLflow model URI (default ``models:/journey-stage@champion``);
  ``MLFLOW_TRACKING_URI`` / ``JOURNEY_HOME`` say where the registry is. One version for every
  worker: an alias (``@champion``) is resolved once, before the workers start (``journey serve``
  does it; started directly with ``bentoml serve``, the service's ``on_deployment`` hook does it
  in BentoML's parent process and exports ``JOURNEY_MODEL_URI=models:/name/<version>`` and
  ``JOURNEY_MODEL_ALIAS=<alias>`` to the environment every worker, restarted ones included,
  inherits). A later promotion changes nothing until the service is restarted: reloading a new
  champion is that explicit restart.
- ``JOURNEY_BENTO_MODEL``: set in a Bento built by ``journey bento``: the service loads that
  model from the Bento's own model store and never contacts a registry.
- ``JOURNEY_PROFILE_STORE``: the profile store (default ``profiles.db`` under ``JOURNEY_HOME``;
  ``redis://HOST:PORT/DB``; ``none``: profiles off), opened by each worker at start.
- ``JOURNEY_API_TOKEN``: when set, ``/predict``, ``/metadata``, ``/metrics``, ``/events`` and ``/customers/...`` need
  ``Authorization: Bearer <token>`` (401 otherwise); probes and docs stay open.
- ``JOURNEY_MAX_CUSTOMERS`` (100), ``JOURNEY_MAX_EVENTS`` (5000 per customer),
  ``JOURNEY_MAX_BODY_BYTES`` (5 MB): exceeding one answers 413.
- ``JOURNEY_WORKERS`` (1): server worker processes, each with its own copy of the model (about
  0.5 GB each). Use one per core for throughput.
- Overload is shed, not queued without end: ``JOURNEY_MAX_CONCURRENCY`` (16, service-wide, i.e.
  ``ceil(16 / workers)`` per worker) requests in progress, beyond that 429 at once; each worker
  validates and scores one ``/predict`` at a time on its scoring thread (never on the event loop:
  probes answer while it scores), with at most ``JOURNEY_QUEUE_LENGTH`` (8) waiting, each at most
  ``JOURNEY_QUEUE_WAIT_MS`` (50 ms); a request finding the queue full or too slow to reach it in
  time gets 429 with ``Retry-After`` at once, one waiting longer gets it then; neither is scored,
  nor is one whose client left while it waited.
  ``JOURNEY_TIMEOUT_S`` (60): unanswered after that, 504. After loading, the long-lived objects
  are frozen out of the garbage collector (``gc.freeze``): without it, full collections over the
  model and libraries put 200-300 ms pauses into the p99 latency.
"""

import functools
import os
from types import SimpleNamespace
from typing import Any, Optional

import bentoml
from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from journey_stage.core.errors import JourneyError
from journey_stage.core.runtime import ENV_NAMES, RuntimeSettings
from journey_stage.serving.admission import ScoringQueue
from journey_stage.serving.ingest import validate_events_body
from journey_stage.serving.middleware import Edge, Post
from journey_stage.serving import ingest
from journey_stage.serving.problems import RequestProblems, validate_request_body
from journey_stage.serving.requests import Scorer
from journey_stage.serving.schemas import (
    CUSTOMERS_PREFIX, EVENTS_PATH, METADATA_PATH, PREDICT_PATH, CustomerErased, CustomerEvents, ErrorResponse, EventsAccepted, Metadata,
    PredictResponse, ProfileEventIn, request_models,
)

NOT_READY = "the model is not loaded yet"


def _answer(ctx: Any, status: int, body: dict, headers: Optional[dict] = None) -> JSONResponse:
    """A JSON answer from an API method; BentoML applies ``ctx.response.status_code`` last."""
    if ctx is not None:
        ctx.response.status_code = status
    return JSONResponse(body, status_code=status, headers=headers)


def _error(ctx: Any, exc: RequestProblems) -> JSONResponse:
    return _answer(ctx, exc.status, exc.body(), exc.headers)


def _ready(scorer: Scorer) -> Scorer:
    """``scorer`` once its model is loaded; 503 (with Retry-After and the loading error, if any) before."""
    if not scorer.ready:
        raise RequestProblems(503, NOT_READY, [], scorer.load_error or "retry when GET /readyz answers 200.", headers={"Retry-After": "5"},
                              counted=False)
    return scorer


NO_STORE = "profiles are off: no profile store is configured (JOURNEY_PROFILE_STORE=none)"
NO_STORE_HINT = "send each customer's events to POST /predict, or configure a profile store and restart the service."
STORE_ANSWERS = {401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 429: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}


def _store(scorer: Scorer) -> Any:
    """The loaded scorer's profile store; 503 before the model is loaded, 404 when profiles are off."""
    store = _ready(scorer).store
    if store is None:
        raise RequestProblems(404, NO_STORE, [], NO_STORE_HINT, counted=False)
    return store


def predict_answer(scorer: Scorer, request: Any) -> bytes:
    """The 200 body of ``POST /predict`` for a validated request (on the scoring thread)."""
    return _ready(scorer).answer(request.customers, request.as_of)


def events_answer(scorer: Scorer, request: Any) -> bytes:
    """The 200 body of ``POST /events`` for a validated request (on the scoring thread); 404 when profiles are off."""
    return ingest.ingest(_store(scorer), request.events, scorer.predictor.taxonomy).model_dump_json().encode()


async def _direct(ctx: Any, queue: ScoringQueue, answer: Any, scorer: Scorer, request: Any) -> Response:
    """An API method's own answer (over HTTP the :class:`Edge` answers both POSTs with the same
    functions before BentoML's router; this serves calls that do not come through it)."""
    try:
        body = await queue.run(answer, scorer, request)
    except RequestProblems as exc:
        return _error(ctx, exc)
    return Response(body, media_type="application/json")


async def _with_store(scorer: Scorer, queue: ScoringQueue, fn: Any, *args: Any) -> Any:
    """``fn(store, *args)`` on the scoring thread, or the JSON error answer (not ready, profiles off,
    the store failing)."""
    try:
        return await queue.run(fn, _store(scorer), *args)
    except RequestProblems as exc:
        return _error(None, exc)


def pin_model(settings: RuntimeSettings) -> None:
    """Resolve an alias model URI (``models:/name@alias``) to one version, once, and export it to
    the environment the workers inherit (``JOURNEY_MODEL_URI``, ``JOURNEY_MODEL_ALIAS``): BentoML
    runs this in its parent process before it spawns (and respawns) workers, so every worker, a
    restarted one included, serves that version. A version or run URI is left as it is. An alias
    the registry cannot resolve stops the start with one line."""
    uri = settings.model_uri
    if settings.bento_model or not (uri.startswith("models:/") and "@" in uri):
        return  # an embedded model or a pinned version: nothing to resolve
    from journey_stage.model.registry import pin

    try:
        pinned, alias = pin(uri, settings)
    except JourneyError as exc:
        raise SystemExit(f"journey service: {exc}") from None
    os.environ[ENV_NAMES["model_uri"]] = pinned
    if alias:
        os.environ[ENV_NAMES["model_alias"]] = alias


def build_service(settings: RuntimeSettings) -> Any:
    """The BentoML service class for ``settings``: workers, timeout, request models (limits as
    ``maxItems``), middleware (token, load limits, body limit) and model URI all come from it."""
    models = request_models(settings)
    CustomerIn, PredictRequest, EventsRequest = models.customer, models.request, models.events  # noqa: N806 - classes
    meta_app = FastAPI(title="journey metadata", docs_url=None, redoc_url=None, openapi_url=None)
    queue = ScoringQueue(settings.queue_length, settings.queue_wait_ms)  # the worker's scoring thread
    scorer = Scorer(settings)  # loads its model in the worker (JourneyService.__init__)
    posts = {PREDICT_PATH: Post(validate_request_body, functools.partial(predict_answer, scorer)),
             EVENTS_PATH: Post(validate_events_body, functools.partial(events_answer, scorer))}
    # JOURNEY_MAX_CONCURRENCY and JOURNEY_TIMEOUT_S are enforced by the Edge for the POSTs it answers.
    traffic = {"timeout": settings.timeout_s}

    class EdgeService(bentoml.Service):
        """BentoML's service whose ASGI application sits behind :class:`Edge`."""

        __slots__ = ()

        def to_asgi(self, is_main: bool = True) -> Any:
            return Edge(super().to_asgi(is_main), settings, models, queue, posts)

    @bentoml.service(name="journey_service", workers=settings.workers, traffic=traffic, service_class=EdgeService)
    @bentoml.asgi_app(meta_app, path="/")
    class JourneyService:
        """Customer journey stage prediction: stage, churn, advocacy and conversion likelihoods, top
        reasons and the next best action for each customer's recent touchpoints."""

        if settings.bento_model:  # the model travels in the Bento (journey bento); bentoml build packs it
            embedded = bentoml.models.BentoModel(settings.bento_model)

        def __init__(self) -> None:
            scorer.model_folder = str(self.embedded.path) if settings.bento_model else None
            self.scorer = scorer
            self.scorer.start()

        @bentoml.on_deployment
        def resolve_model_alias() -> None:  # once, in BentoML's parent process, before any worker starts
            pin_model(settings)

        def __is_ready__(self) -> bool:
            return self.scorer.ready

        @bentoml.api(route=PREDICT_PATH, input_spec=PredictRequest)
        async def predict(self, ctx: bentoml.Context, customers: list[CustomerIn], as_of: Optional[str] = None) -> PredictResponse:
            """Stage probabilities, churn/advocacy/conversion likelihoods, top reasons and next best action per customer, in request order, as of `as_of` (default: now, UTC). Events after `as_of` are ignored and counted in the customer's `warnings`."""
            return await _direct(ctx, queue, predict_answer, self.scorer, SimpleNamespace(customers=customers, as_of=as_of))

        @bentoml.api(route=EVENTS_PATH, input_spec=EventsRequest)
        async def events(self, ctx: bentoml.Context, events: list[ProfileEventIn]) -> EventsAccepted:
            """Store touchpoints in the profile store (validated like /predict events; late and out-of-order events are fine; exact duplicates ignored), for predictions by customer id."""
            return await _direct(ctx, queue, events_answer, self.scorer, SimpleNamespace(events=events))

        @meta_app.get(CUSTOMERS_PREFIX + "{customer_id:path}/events", response_model=CustomerEvents, responses=STORE_ANSWERS,
                      summary="The stored events of one customer, in event-time order")
        async def customer_events(self, customer_id: str) -> CustomerEvents:
            return await _with_store(self.scorer, queue, ingest.customer_events, customer_id)

        @meta_app.delete(CUSTOMERS_PREFIX + "{customer_id:path}", response_model=CustomerErased, responses=STORE_ANSWERS,
                         summary="Erase every stored event of one customer")
        async def erase_customer(self, customer_id: str) -> CustomerErased:
            return await _with_store(self.scorer, queue, ingest.erase, customer_id)

        @meta_app.get(
            METADATA_PATH,
            response_model=Metadata,
            summary="The loaded model, its taxonomy, training data and test metrics",
            responses={401: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
        )
        def metadata(self) -> Metadata:
            try:
                return _ready(self.scorer).metadata()
            except RequestProblems as exc:
                return _error(None, exc)

    return JourneyService


def bento_settings(settings: RuntimeSettings) -> RuntimeSettings:
    """The settings with the model a Bento carries: ``journey bento`` builds with the argument
    ``bento_model`` (BentoML keeps build arguments in the Bento and hands them back when it serves)."""
    embedded = getattr(bentoml.use_arguments(), "bento_model", None)
    return settings.model_copy(update={"bento_model": embedded}) if embedded and not settings.bento_model else settings


SETTINGS = bento_settings(RuntimeSettings.from_env())  # the one read of the environment: this import starts the service
JourneyService = build_service(SETTINGS)

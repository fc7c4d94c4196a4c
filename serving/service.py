"""The HTTP prediction service (SPEC section 8), a BentoML 1.4 service: the entry module of
``bentoml serve journey_stage.serving.service:JourneyService`` (what ``journey serve`` runs).

Importing this module starts the service: it reads the environment once, into one
:class:`~journey_stage.core.runtime.RuntimeSettings` (:data:`SETTINGS`; a bad value stops the start
with a :class:`~journey_stage.core.errors.ConfigError` naming the variable), and builds the service
class for it (:func:`build_service`). The rest lives in plain modules that receive the settings:
:mod:`journey_stage.serving.requests` (validation, scoring, metadata, the loaded model),
:mod:`journey_stage.serving.middleware` (auth, body limit, errors as JSON),
:mod:`journey_stage.serving.openapi` (the amended OpenAPI document) and
:mod:`journey_stage.serving.schemas` (the request and response models).

Endpoints
- ``POST /predict``: ``{"customers": [{"customer_id", "events": [...]}], "as_of"?}`` ->
  ``{"predictions": [...]}``, one prediction per customer in request order (see
  :class:`journey_stage.serving.schemas.Prediction` and docs/http_api.md).
- ``GET /metadata``: the loaded model (name, version, alias), taxonomy, training data
  fingerprint, test metrics, limits.
- BentoML's probes ``/livez`` (``/healthz``) and ``/readyz`` (503 until the model is loaded),
  ``/metrics``, and the OpenAPI document at ``/docs.json`` (UI at ``/``).

Environment (fields of :class:`~journey_stage.core.runtime.RuntimeSettings`)
- ``JOURNEY_MODEL_URI``: MLflow model URI (default ``models:/journey-stage@champion``), loaded
  once at start-up; ``MLFLOW_TRACKING_URI`` / ``JOURNEY_HOME`` say where the registry is.
- ``JOURNEY_API_TOKEN``: when set, ``/predict`` and ``/metadata`` need
  ``Authorization: Bearer <token>`` (401 otherwise); probes and docs stay open.
- ``JOURNEY_MAX_CUSTOMERS`` (100), ``JOURNEY_MAX_EVENTS`` (5000 per customer),
  ``JOURNEY_MAX_BODY_BYTES`` (5 MB): exceeding one answers 413.
- ``JOURNEY_WORKERS`` (1): server worker processes, each with its own copy of the model (about
  0.5 GB each). Use one per core for throughput: the load benchmark (2 cores, 100 requests/s)
  runs 2.
- ``JOURNEY_MAX_CONCURRENCY`` (16): requests in progress at once (service-wide); beyond, 429
  at once instead of an ever longer queue. ``JOURNEY_TIMEOUT_S`` (60): unanswered after that,
  504. Each worker scores one request at a time, on its event loop (a request takes a few
  milliseconds of CPU; handing it to a thread cost more in GIL hand-offs than it gained); a
  request whose client has disconnected while waiting is not scored. After loading, the
  long-lived objects are frozen out of the garbage collector (``gc.freeze``): without it, full
  collections over the model and libraries put 200-300 ms pauses into the p99 latency.
"""

import asyncio
from typing import Any, Optional

import bentoml
from fastapi import FastAPI
from starlette.responses import JSONResponse

from journey_stage.core.runtime import RuntimeSettings
from journey_stage.serving.middleware import JourneyMiddleware
from journey_stage.serving.requests import RequestProblems, Scorer, error_body
from journey_stage.serving.schemas import METADATA_PATH, PREDICT_PATH, ErrorResponse, Metadata, PredictResponse, request_models

NOT_READY = "the model is not loaded yet"


def _answer(ctx: Any, status: int, body: dict, headers: Optional[dict] = None) -> JSONResponse:
    """A JSON answer from an API method; BentoML applies ``ctx.response.status_code`` last."""
    if ctx is not None:
        ctx.response.status_code = status
    return JSONResponse(body, status_code=status, headers=headers)


def _not_ready(scorer: Scorer, ctx: Any = None) -> JSONResponse:
    hint = scorer.load_error or "retry when GET /readyz answers 200."
    return _answer(ctx, 503, error_body(NOT_READY, hint), {"Retry-After": "5"})


def build_service(settings: RuntimeSettings) -> Any:
    """The BentoML service class for ``settings``: workers, traffic limits, request models (limits
    as ``maxItems``), middleware (token, body limit) and model URI all come from it."""
    models = request_models(settings)
    CustomerIn, PredictRequest = models.customer, models.request  # noqa: N806 - classes
    meta_app = FastAPI(title="journey metadata", docs_url=None, redoc_url=None, openapi_url=None)
    traffic = {"timeout": settings.timeout_s, "max_concurrency": settings.max_concurrency}

    @bentoml.service(name="journey_service", workers=settings.workers, traffic=traffic)
    @bentoml.asgi_app(meta_app, path="/")
    class JourneyService:
        """Customer journey stage prediction: stage, churn, advocacy and conversion likelihoods, top
        reasons and the next best action for each customer's recent touchpoints."""

        def __init__(self) -> None:
            self.scorer = Scorer(settings)
            self._slot: Optional[asyncio.Semaphore] = None
            self.scorer.start()

        def __is_ready__(self) -> bool:
            return self.scorer.ready

        @bentoml.api(route=PREDICT_PATH, input_spec=PredictRequest)
        async def predict(self, ctx: bentoml.Context, customers: list[CustomerIn], as_of: Optional[str] = None) -> PredictResponse:
            """Stage probabilities, churn/advocacy/conversion likelihoods, top reasons and next best action per customer, in request order, as of `as_of` (default: now, UTC). Events after `as_of` are ignored and counted in the customer's `warnings`."""
            if not self.scorer.ready:
                return _not_ready(self.scorer, ctx)
            if self._slot is None:
                self._slot = asyncio.Semaphore(1)
            async with self._slot:  # one scoring at a time per worker (CPU-bound); others wait here
                if await ctx.request.is_disconnected():  # the client gave up while waiting: do not score
                    return _answer(ctx, 499, error_body("client closed the request"))
                try:
                    records = self.scorer.predict(customers, as_of)
                except RequestProblems as exc:
                    return _answer(ctx, exc.status, exc.body())
            return PredictResponse.model_validate({"predictions": records})

        @meta_app.get(
            METADATA_PATH,
            response_model=Metadata,
            summary="The loaded model, its taxonomy, training data and test metrics",
            responses={401: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
        )
        def metadata(self) -> Metadata:
            if not self.scorer.ready:
                return _not_ready(self.scorer)
            return self.scorer.metadata()

    JourneyService.add_asgi_middleware(JourneyMiddleware, settings=settings, models=models)
    return JourneyService


SETTINGS = RuntimeSettings.from_env()  # the one read of the environment: this import starts the service
JourneyService = build_service(SETTINGS)

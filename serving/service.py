"""The HTTP prediction service (SPEC section 8), a BentoML 1.4 service.

Endpoints
- ``POST /predict``: ``{"customers": [{"customer_id", "events": [...]}], "as_of"?}`` ->
  ``{"predictions": [...]}``, one prediction per customer in request order (see
  :class:`serving.schemas.Prediction` and docs/http_api.md).
- ``GET /metadata``: the loaded model (name, version, alias), taxonomy, training data
  fingerprint, test metrics, limits.
- BentoML's probes ``/livez`` (``/healthz``) and ``/readyz`` (503 until the model is loaded),
  ``/metrics``, and the OpenAPI document at ``/docs.json`` (UI at ``/``).

Environment
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

Scoring goes through :func:`journey_stage.model.scoring.score_records`, the same core
(:func:`journey_stage.model.scoring.score_columns`) as batch scoring and the Python API's
:func:`journey_stage.model.scoring.score_events`, so the same history gets the same answer.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import os
import threading
import time
from collections import Counter
from typing import Any

import bentoml
import numpy as np
import pandas as pd
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.responses import JSONResponse

from journey_stage.core.runtime import DEFAULT_MODEL_URI
from journey_stage.serving.schemas import (
    LIMITS,
    CustomerIn,
    ErrorResponse,
    Metadata,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    TaxonomyInfo,
)

logger = logging.getLogger("bentoml.journey")

PREDICT_PATH = "/predict"
METADATA_PATH = "/metadata"
PROTECTED_PATHS = frozenset({PREDICT_PATH, METADATA_PATH})
STATE_KEY = "journey.predict_request"
MAX_PROBLEMS_SHOWN = 100
LIMIT_ERROR_TYPES = frozenset({"too_long"})
INPUT_HINT = "fix the listed fields; GET /metadata lists the accepted event types of the model's taxonomy."


# ---- errors as JSON ----------------------------------------------------------------------------

class RequestProblems(Exception):
    """An invalid request: answered with ``status`` and field-level problems."""

    def __init__(self, status: int, error: str, problems: list[dict], hint: str | None = None, total: int | None = None):
        super().__init__(error)
        self.status, self.error, self.problems, self.hint = status, error, problems, hint
        self.total = len(problems) if total is None else total

    def body(self) -> dict:
        return ErrorResponse(
            error=self.error, hint=self.hint, problems=self.problems[:MAX_PROBLEMS_SHOWN], total_problems=self.total
        ).model_dump(mode="json")


def error_body(error: str, hint: str | None = None) -> dict:
    return ErrorResponse(error=error, hint=hint).model_dump(mode="json")


def json_path(loc: tuple | list) -> str:
    """Pydantic ``loc`` -> ``customers[0].events[3].timestamp`` (``$`` for the whole body)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "$"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def problems_from_validation(exc: ValidationError) -> list[dict]:
    problems = []
    for err in exc.errors(include_url=False):
        msg = err.get("msg", "invalid value")
        inp = err.get("input")
        if err.get("type") not in ("missing", "extra_forbidden", "json_invalid", "too_long") and (
            inp is None or isinstance(inp, (str, int, float, bool))
        ):
            msg = f"{msg}, got {_shown(inp)}"
        problems.append({"path": json_path(err.get("loc", ())), "message": msg, "code": err.get("type", "invalid")})
    return problems


def validate_request_body(body: bytes) -> PredictRequest:
    """Parse and validate a ``/predict`` body; :class:`RequestProblems` (400 or 413) when invalid."""
    try:
        return PredictRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        problems = problems_from_validation(exc)
        over = [p for p in problems if p["code"] in LIMIT_ERROR_TYPES]
        if over:
            error = (
                f"request exceeds a limit: at most {LIMITS.max_customers} customers per request "
                f"and {LIMITS.max_events} events per customer"
            )
            raise RequestProblems(
                413, error, over,
                "split the request, or raise JOURNEY_MAX_CUSTOMERS / JOURNEY_MAX_EVENTS on the server.",
            ) from None
        raise RequestProblems(400, f"invalid request: {len(problems)} problem(s)", problems, "fix the listed fields (see /docs.json).") from None


# ---- ASGI middleware: auth, body limit, request validation, OpenAPI touch-ups -----------------

class JourneyMiddleware:
    """Bearer-token auth for /predict and /metadata, the body-size limit, field-level 400s for
    /predict and the error answers in the OpenAPI document. Probes and docs stay open."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.token = os.environ.get("JOURNEY_API_TOKEN") or None
        self.max_body = LIMITS.max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == "/docs.json":
            return await self.app(scope, receive, self._patch_openapi(send))
        if path not in PROTECTED_PATHS:
            return await self.app(scope, receive, send)
        if self.token is not None and not self._authorized(scope):
            return await _send_json(
                send, 401, error_body("missing or invalid bearer token", "send the header 'Authorization: Bearer <token>' (JOURNEY_API_TOKEN)."),
                extra_headers=[(b"www-authenticate", b'Bearer realm="journey"')],
            )
        if path != PREDICT_PATH or scope.get("method") != "POST":
            return await self.app(scope, receive, send)

        too_large = RequestProblems(
            413, f"request body exceeds {self.max_body} bytes",
            [{"path": "$", "message": f"the body must be at most {self.max_body} bytes (JOURNEY_MAX_BODY_BYTES)", "code": "body_too_large"}],
            "split the request into smaller ones.",
        )
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await _send_json(send, 413, too_large.body(), close=True)
        body = await _read_body(receive, self.max_body)
        if body is None:
            return await _send_json(send, 413, too_large.body(), close=True)
        try:
            request = validate_request_body(body)
        except RequestProblems as exc:
            return await _send_json(send, exc.status, exc.body())
        scope.setdefault("state", {})[STATE_KEY] = request
        # BentoML picks its deserializer by content type: the body is JSON whatever the client said.
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"] + [(b"content-type", b"application/json")]
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    def _authorized(self, scope: dict) -> bool:
        value = _header(scope, b"authorization") or ""
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.token.encode())

    def _patch_openapi(self, send: Any) -> Any:
        start: dict | None = None
        chunks: list[bytes] = []

        async def wrapped(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if start["status"] == 200:
                try:
                    body = json.dumps(patch_openapi(json.loads(body), auth=self.token is not None)).encode()
                except Exception:  # noqa: BLE001 - serve BentoML's document unchanged rather than fail
                    logger.exception("could not amend the OpenAPI document")
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        return wrapped


def _header(scope: dict, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


async def _read_body(receive: Any, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it exceeds ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Any, status: int, payload: dict, extra_headers: list | None = None, close: bool = False) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the unread rest of an oversized body must not be taken for the next request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _openapi_30(node: Any) -> Any:
    """Pydantic emits JSON Schema 2020-12; OpenAPI 3.0 has no ``type: null`` and a single
    ``example``: ``anyOf: [X, {type: null}]`` -> X + ``nullable: true``, ``examples: [a, ...]`` -> ``example: a``."""
    if isinstance(node, list):
        return [_openapi_30(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            del node[key]
            if len(rest) == 1 and "$ref" not in rest[0]:
                node.update({k: v for k, v in rest[0].items() if k not in node})
            elif len(rest) == 1:
                node["allOf"] = rest
            else:
                node[key] = rest
            node["nullable"] = True
    if isinstance(node.get("examples"), list):  # a schema's examples (a Media Type's examples is a map)
        examples = node.pop("examples")
        if examples and "example" not in node:
            node["example"] = examples[0]
    return {k: _openapi_30(v) for k, v in node.items()}


def patch_openapi(doc: dict, auth: bool) -> dict:
    """Document this service's real error answers (400/401/413/503 with :class:`ErrorResponse`)
    and make the schemas valid OpenAPI 3.0."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    err_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in err_schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas["ErrorResponse"] = err_schema
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    answers = {
        "400": "Invalid request: field-level problems with JSON paths.",
        "401": "Missing or wrong bearer token (only when JOURNEY_API_TOKEN is set).",
        "413": "Body, customer count or event count over the limits.",
        "429": "Too many requests in progress (JOURNEY_MAX_CONCURRENCY): retry later.",
        "503": "The model is not loaded yet.",
        "504": "Not answered within JOURNEY_TIMEOUT_S seconds.",
    }
    for path, method, codes in ((PREDICT_PATH, "post", ("400", "401", "413", "429", "503", "504")), (METADATA_PATH, "get", ("401", "429", "503"))):
        op = doc.get("paths", {}).get(path, {}).get(method)
        if op is None:
            continue
        responses = op.setdefault("responses", {})
        responses.pop("404", None)
        for code in codes:
            responses[code] = {"description": answers[code], "content": ref}
        if auth:
            op["security"] = [{"bearerAuth": []}]
    if auth:
        doc["components"].setdefault("securitySchemes", {})["bearerAuth"] = {"type": "http", "scheme": "bearer"}
    doc["components"]["schemas"] = _openapi_30(doc["components"]["schemas"])
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if isinstance(op, dict):
                for key in ("responses", "requestBody", "parameters"):
                    if key in op:
                        op[key] = _openapi_30(op[key])
    return doc


# ---- the scoring core (pure Python, no HTTP) ---------------------------------------------------

def parse_as_of(as_of: str | None) -> pd.Timestamp:
    """``as_of`` of a request (ISO 8601, naive = UTC) or now; :class:`RequestProblems` if invalid."""
    if as_of is None:
        return pd.Timestamp.now(tz="UTC").floor("us")
    text = as_of.strip()
    from journey_stage.core.events import iso_us

    us = iso_us(text)  # plain ISO 8601: the same instant pandas would parse, without its overhead
    if us is not None:
        return pd.Timestamp(us, unit="us", tz="UTC")
    ts = pd.to_datetime(pd.Series([text]), utc=True, errors="coerce", format="ISO8601").iloc[0] if text else pd.NaT
    if pd.isna(ts):
        raise RequestProblems(
            400, "invalid request: 1 problem(s)",
            [{"path": "as_of", "message": f"expected an ISO 8601 timestamp such as 2025-03-01T14:30:00+01:00, got {_shown(as_of)}", "code": "bad_timestamp"}],
            "fix the listed fields.",
        )
    return ts


def score_request(predictor: Any, customers: list[CustomerIn], as_of: str | None, playbook: Any = None) -> list[dict]:
    """Records of SPEC 8 (plus ``warnings``) for the customers of one request, in request order."""
    from journey_stage.core.events import canonical_records
    from journey_stage.model.scoring import score_records

    t = parse_as_of(as_of)
    ids = [c.customer_id.strip() for c in customers]
    first_at: dict[str, int] = {}
    dup = []
    for i, cid in enumerate(ids):
        if cid in first_at:
            dup.append({"path": f"customers[{i}].customer_id", "message": f"duplicate customer_id {cid!r} (also at customers[{first_at[cid]}])", "code": "duplicate_customer"})
        else:
            first_at[cid] = i
    if dup:
        raise RequestProblems(400, f"invalid request: {len(dup)} problem(s)", dup, "send each customer once per request.")

    cust_of_row, event_of_row, records = [], [], []
    for i, c in enumerate(customers):
        for j, e in enumerate(c.events):
            cust_of_row.append(i)
            event_of_row.append(j)
            records.append((ids[i], e.timestamp, e.event_type, e.channel, e.value, e.campaign))

    warnings: list[list[dict]] = [[] for _ in customers]
    recs_by_id: dict[str, dict] = {}
    eligible_by_id: dict[str, bool] = {}
    if records:
        events = canonical_records(records, predictor.taxonomy)  # plain clean input: no pandas costs
        if events is None:
            events = _validated_events(records, cust_of_row, event_of_row, predictor.taxonomy)
        kept_ids = np.asarray(events["customer_id"].tolist(), dtype=object)
        after = events["timestamp"].array.asi8 > t.value // 1000  # microseconds, UTC
        n_raw, n_kept, late = Counter(r[0] for r in records), Counter(kept_ids.tolist()), Counter(kept_ids[after].tolist())
        for i, cid in enumerate(ids):
            removed = int(n_raw.get(cid, 0) - n_kept.get(cid, 0))
            if removed:
                warnings[i].append({"code": "duplicate_events_removed", "message": f"{removed} exact duplicate event(s) removed", "count": removed})
            n_late = int(late.get(cid, 0))
            if n_late:
                warnings[i].append({
                    "code": "events_after_as_of",
                    "message": f"{n_late} event(s) after as_of were ignored (point-in-time scoring)",
                    "count": n_late,
                })
        if not after.all():
            for rec in score_records(predictor, events, t, playbook=playbook):
                eligible_by_id[rec["customer_id"]] = rec.pop("eligible")
                recs_by_id[rec["customer_id"]] = rec

    as_of_iso = _iso(t)
    model = {"name": str(predictor.info.get("name", "")), "version": str(predictor.info.get("version", ""))}
    out = []
    for i, cid in enumerate(ids):
        rec = recs_by_id.get(cid)
        if rec is None:
            rec = {
                "customer_id": cid, "as_of": as_of_iso, "observed_stage": None, "stage": None, "stage_probabilities": None,
                "churn_probability": None, "advocacy_probability": None, "conversion_probability": None,
                "next_best_action": None, "reasons": {}, "model": model,
            }
            warnings[i].append({"code": "no_history", "message": "no event at or before as_of: the customer cannot be scored", "count": 0})
        elif not eligible_by_id.get(cid, True):
            days = predictor.settings.eligibility_days
            warnings[i].append({
                "code": "outside_eligibility_window",
                "message": f"no event in the {days:g} days before as_of: batch scoring skips such customers and the model saw none in training",
                "count": None,
            })
        rec["warnings"] = warnings[i]
        out.append(rec)
    return out


def _validated_events(records: list[tuple], cust_of_row: list[int], event_of_row: list[int], taxonomy: Any) -> pd.DataFrame:
    """The general validation path (the one batch files take); its problems become field-level 400s."""
    from journey_stage.core.errors import InputError, JourneyError, where
    from journey_stage.core.events import canonical_events

    columns = ("customer_id", "timestamp", "event_type", "channel", "value", "campaign")
    raw = pd.DataFrame({
        k: np.array([r[i] for r in records], dtype=np.float64 if k == "value" else object) for i, k in enumerate(columns)
    })
    try:
        return canonical_events(raw, "request", taxonomy).events
    except InputError as exc:
        problems = []
        for p in exc.problems:
            i, j = cust_of_row[p.row - 1], event_of_row[p.row - 1]
            path = f"customers[{i}].customer_id" if p.column == "customer_id" else f"customers[{i}].events[{j}].{p.column}"
            prefix = f"{where('request', p.row, p.column)}: "
            msg = p.message[len(prefix):] if p.message.startswith(prefix) else p.message
            problems.append({"path": path, "message": msg, "code": p.code})
        raise RequestProblems(400, f"invalid request: {len(problems)} problem(s)", problems, INPUT_HINT) from None
    except JourneyError as exc:
        raise RequestProblems(400, f"invalid request: {exc.message}", [], exc.hint) from None


def _iso(t: pd.Timestamp) -> str:
    from journey_stage.features.encode import from_us, to_us

    return from_us(to_us(t)).isoformat()


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f or f in (float("inf"), float("-inf")) else f


def metadata_of(predictor: Any, model_uri: str, auth: bool) -> Metadata:
    info = predictor.info
    tax = predictor.taxonomy
    tasks = {t: "trained" for t in predictor.models} | {t: f"skipped: {why}" for t, why in predictor.skipped.items()}
    return Metadata(
        model=ModelInfo(name=str(info.get("name", "")), version=str(info.get("version", "")), alias=info.get("alias"), uri=str(info.get("uri", model_uri))),
        taxonomy=TaxonomyInfo(
            name=tax.name, description=tax.description or "", stages=tax.stages,
            event_types={e: tax.role_stage[r] for e, r in sorted(tax.event_role.items())},
            conversion_events=sorted(tax.conversion_events),
        ),
        training_data=dict(info.get("dataset", {})),
        test_metrics={k: _num(v) for k, v in info.get("test_metrics", {}).items()},
        tasks=tasks,
        feature_version=str(predictor.feature_version),
        horizons_days={k: float(v) for k, v in predictor.settings.horizons.model_dump().items()},
        limits={
            "max_customers": LIMITS.max_customers, "max_events": LIMITS.max_events, "max_body_bytes": LIMITS.max_body_bytes,
            "max_concurrency": MAX_CONCURRENCY, "timeout_s": TIMEOUT_S,
        },
        auth_required=auth,
    )


# ---- the BentoML service -----------------------------------------------------------------------

def _answer(ctx: Any, status: int, body: dict, headers: dict | None = None) -> JSONResponse:
    """A JSON answer from an API method; BentoML applies ``ctx.response.status_code`` last."""
    if ctx is not None:
        ctx.response.status_code = status
    return JSONResponse(body, status_code=status, headers=headers)


meta_app = FastAPI(title="journey metadata", docs_url=None, redoc_url=None, openapi_url=None)
NOT_READY = "the model is not loaded yet"


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, "") or default))
    except ValueError:
        return default


WORKERS = _env_int("JOURNEY_WORKERS", 1)  # server processes, each with its own copy of the model
MAX_CONCURRENCY = _env_int("JOURNEY_MAX_CONCURRENCY", 16)  # requests in progress (service-wide); beyond: 429
TIMEOUT_S = _env_int("JOURNEY_TIMEOUT_S", 60)  # a request not answered in time gets 504 (and is not scored)


@bentoml.service(name="journey_service", workers=WORKERS, traffic={"timeout": TIMEOUT_S, "max_concurrency": MAX_CONCURRENCY})
@bentoml.asgi_app(meta_app, path="/")
class JourneyService:
    """Customer journey stage prediction: stage, churn, advocacy and conversion likelihoods, top
    reasons and the next best action for each customer's recent touchpoints."""

    def __init__(self) -> None:
        self.model_uri = os.environ.get("JOURNEY_MODEL_URI") or DEFAULT_MODEL_URI
        self.auth = bool(os.environ.get("JOURNEY_API_TOKEN"))
        self.predictor: Any = None
        self.playbook: Any = None
        self.load_error: str | None = None
        self._slot: asyncio.Semaphore | None = None
        self._loader = threading.Thread(target=self._load, name="journey-model-loader", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        from journey_stage.core.errors import JourneyError
        from journey_stage.model.playbook import load_playbook
        from journey_stage.model.registry import load_predictor

        t0 = time.time()
        try:
            predictor = load_predictor(self.model_uri)
            playbook = load_playbook()
            self._warm_up(predictor, playbook)
        except JourneyError as exc:
            self.load_error = str(exc)
            logger.error("journey service: %s", exc)
            return
        except Exception as exc:  # noqa: BLE001 - keep serving probes; the log has the details
            self.load_error = f"cannot load model {self.model_uri!r}: {type(exc).__name__}"
            logger.exception("journey service: cannot load model %s", self.model_uri)
            return
        # Everything loaded so far (model, libraries) lives as long as the process: move it out of
        # the garbage collector's sight, so full collections stay short under load (gc.freeze).
        gc.collect()
        gc.freeze()
        self.playbook = playbook
        self.predictor = predictor
        logger.info(
            "journey service: loaded %s (%s v%s) in %.1fs",
            self.model_uri, predictor.info.get("name"), predictor.info.get("version"), time.time() - t0,
        )

    @staticmethod
    def _warm_up(predictor: Any, playbook: Any) -> None:
        """One prediction before declaring readiness, so the first request is not slow."""
        event_type = predictor.taxonomy.event_types[0]
        customer = CustomerIn(customer_id="warm-up", events=[{"timestamp": "2025-01-01T00:00:00Z", "event_type": event_type}])
        score_request(predictor, [customer], "2025-01-02T00:00:00Z", playbook)

    def __is_ready__(self) -> bool:
        return self.predictor is not None

    def _not_ready(self, ctx: Any = None) -> JSONResponse:
        hint = self.load_error or "retry when GET /readyz answers 200."
        return _answer(ctx, 503, error_body(NOT_READY, hint), {"Retry-After": "5"})

    @bentoml.api(route=PREDICT_PATH, input_spec=PredictRequest)
    async def predict(self, ctx: bentoml.Context, customers: list[CustomerIn], as_of: str | None = None) -> PredictResponse:
        """Stage probabilities, churn/advocacy/conversion likelihoods, top reasons and next best action per customer, in request order, as of `as_of` (default: now, UTC). Events after `as_of` are ignored and counted in the customer's `warnings`."""
        if self.predictor is None:
            return self._not_ready(ctx)
        if self._slot is None:
            self._slot = asyncio.Semaphore(1)
        async with self._slot:  # one scoring at a time per worker (CPU-bound); others wait here
            if await ctx.request.is_disconnected():  # the client gave up while waiting: do not score
                return _answer(ctx, 499, error_body("client closed the request"))
            try:
                records = score_request(self.predictor, customers, as_of, self.playbook)
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
        if self.predictor is None:
            return self._not_ready()
        return metadata_of(self.predictor, self.model_uri, self.auth)


JourneyService.add_asgi_middleware(JourneyMiddleware)

"""The ASGI layer of the HTTP service: which paths exist, bearer-token auth, admission control,
the body-size limit, field-level 400/413 answers for ``/predict`` (errors as JSON) and the amended
OpenAPI document.

* :class:`KnownPaths` wraps BentoML's whole application (outermost, see
  ``serving/service.py``): a path that no route serves is answered 404 there, so it never reaches
  BentoML's metrics middleware and never becomes a metric series of its own.
* :class:`JourneyMiddleware` (inside BentoML's middlewares): the token for ``/predict``,
  ``/metadata``, ``/metrics``, ``/events`` and ``/customers/...`` (probes and docs stay open); at
  most ``ceil(JOURNEY_MAX_CONCURRENCY / JOURNEY_WORKERS)`` requests in progress per worker (probes
  and metrics excepted); for ``POST /predict`` and ``POST /events`` the body limit, then a place in
  the worker's :class:`ScoringQueue`, then validation on the scoring thread.
* :class:`ScoringQueue`: one worker's scoring thread (validation and scoring run there, never on
  the event loop, so probes answer while a request is scored) and the bounded queue in front of
  it: one request scored, at most ``JOURNEY_QUEUE_LENGTH`` waiting, each for at most
  ``JOURNEY_QUEUE_WAIT_MS``. Beyond capacity, or when the wait runs out, 429 with ``Retry-After``;
  a request whose client left while it waited is not scored.

It reads no environment: the middlewares get the service's
:class:`~journey_stage.core.runtime.RuntimeSettings`, request models and queue as options.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import math
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from journey_stage.core.runtime import RuntimeSettings
from journey_stage.serving.openapi import patching_send
from journey_stage.serving.ingest import validate_events_body
from journey_stage.serving.problems import RequestProblems, error_body, validate_request_body
from journey_stage.serving.schemas import (
    CUSTOMERS_PREFIX, DOCS_PATH, EVENTS_PATH, EVENTS_STATE_KEY, METADATA_PATH, METRICS_PATH, PREDICT_PATH, PREDICT_STATE_KEY,
    PROBE_PATHS, RequestModels,
)

T = TypeVar("T")
PROTECTED_PATHS = frozenset({PREDICT_PATH, METADATA_PATH, METRICS_PATH, EVENTS_PATH})  # and every path under CUSTOMERS_PREFIX
# POST bodies read, limited, queued and validated here: path -> (validator, ASGI state key)
VALIDATED_POSTS = {PREDICT_PATH: (validate_request_body, PREDICT_STATE_KEY), EVENTS_PATH: (validate_events_body, EVENTS_STATE_KEY)}
UNCOUNTED_PATHS = PROBE_PATHS | {METRICS_PATH}  # never refused for load: probes and scrapes answer under overload
AUTH_ERROR = "missing or invalid bearer token"
AUTH_HINT = "send the header 'Authorization: Bearer <token>' (JOURNEY_API_TOKEN)."
NOT_FOUND = "not found: no endpoint at this path"
NOT_FOUND_HINT = "GET /docs.json lists the endpoints."
RETRY_AFTER_S = 1
BUSY_HINT = f"the service is at capacity: retry after {RETRY_AFTER_S} s (Retry-After), with back-off."
TOO_MANY = "too many requests in progress (JOURNEY_MAX_CONCURRENCY)"
QUEUE_FULL = "the scoring queue is full (JOURNEY_QUEUE_LENGTH): not scored"
QUEUE_SLOW = "the scoring queue would not reach this request within JOURNEY_QUEUE_WAIT_MS: not scored"
QUEUE_LATE = "waited longer than JOURNEY_QUEUE_WAIT_MS for scoring: not scored"
CLIENT_LEFT = "client closed the request"


# ---- unknown paths ---------------------------------------------------------------------------

class KnownPaths:
    """The outermost ASGI layer: requests for a path no route of ``app`` (a Starlette app) serves
    get a JSON 404 here, before BentoML's own middlewares (metrics label every request with its
    path: without this, every random path would become a new series of ``/metrics``)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._known(scope):
            return await _send_json(send, 404, error_body(NOT_FOUND, NOT_FOUND_HINT))
        return await self.app(scope, receive, send)

    def _known(self, scope: dict) -> bool:
        from starlette.routing import Match
        from starlette.staticfiles import StaticFiles

        for route in getattr(self.app, "routes", ()):
            match, child = route.matches(scope)
            if match is Match.NONE:
                continue
            files = getattr(route, "app", None)
            if isinstance(files, StaticFiles):  # a mounted folder: only its files exist
                try:
                    _, found = files.lookup_path(files.get_path({**scope, **child}))
                except (OSError, ValueError):
                    return False
                return found is not None and stat.S_ISREG(found.st_mode)
            return True
        return False


# ---- one worker's scoring thread and its queue -----------------------------------------------

class ScoringQueue:
    """Admission to one worker's scoring thread: one request at a time holds it (validation and
    scoring, see :meth:`run`), at most ``length`` more wait, each at most ``wait_ms``. A request is
    refused at once when the queue is full, or when the requests ahead of it would already take
    longer than ``wait_ms`` at the recent time per turn (so most refusals are immediate); the
    deadline catches the rest (a turn far longer than the recent ones).

    Built once per process (the entry module builds it in the parent too, where it stays unused);
    the lock binds to the worker's event loop and the thread starts on first use."""

    def __init__(self, length: int, wait_ms: int) -> None:
        self.capacity = length + 1  # the request being scored + those waiting
        self.wait_s = wait_ms / 1000
        self.admitted = 0
        self.turn_s = 0.0  # moving average of how long a request holds the scoring thread
        self._since = 0.0
        self._turn = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None

    async def wait_turn(self) -> str | None:
        """None once this request holds the scoring thread (then :meth:`leave` when done); otherwise
        why not: at once when the queue is full or too slow, after ``wait_ms`` when the turn did not come."""
        if self.admitted >= self.capacity:
            return QUEUE_FULL
        if self.admitted * self.turn_s > self.wait_s:
            return QUEUE_SLOW
        self.admitted += 1
        try:
            await asyncio.wait_for(self._turn.acquire(), self.wait_s)
        except asyncio.TimeoutError:
            self.admitted -= 1
            return QUEUE_LATE
        except BaseException:  # cancelled (the 504 timeout, shutdown)
            self.admitted -= 1
            raise
        self._since = time.perf_counter()
        return None

    def leave(self) -> None:
        held = time.perf_counter() - self._since
        self.turn_s = held if self.turn_s == 0.0 else 0.8 * self.turn_s + 0.2 * held
        self._turn.release()
        self.admitted -= 1

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the scoring thread, the event loop staying free for other requests."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journey-scoring")
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))


# ---- auth, load limits, body limit, validation -------------------------------------------------

class JourneyMiddleware:
    """Bearer-token auth for /predict, /metadata and /metrics; the per-worker limit of requests in
    progress; for ``POST /predict`` the body limit, admission to the scoring queue and field-level
    400s; the error answers in the OpenAPI document. Probes and docs stay open."""

    def __init__(self, app: Any, settings: RuntimeSettings, models: RequestModels, queue: ScoringQueue) -> None:
        self.app = app
        self.token = settings.token
        self.max_body = settings.max_body_bytes
        self.models = models
        self.queue = queue
        self.max_in_progress = math.ceil(settings.max_concurrency / settings.workers)
        self.in_progress = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in UNCOUNTED_PATHS:
            return await self._route(path, scope, receive, send)
        if self.in_progress >= self.max_in_progress:
            return await _send_busy(send, TOO_MANY)
        self.in_progress += 1
        try:
            return await self._route(path, scope, receive, send)
        finally:
            self.in_progress -= 1

    async def _route(self, path: str, scope: dict, receive: Any, send: Any) -> None:
        if path == DOCS_PATH:
            return await self.app(scope, receive, patching_send(send, auth=self.token is not None))
        if path not in PROTECTED_PATHS and not path.startswith(CUSTOMERS_PREFIX):
            return await self.app(scope, receive, send)
        if self.token is not None and not self._authorized(scope):
            return await _send_json(
                send, 401, error_body(AUTH_ERROR, AUTH_HINT),
                extra_headers=[(b"www-authenticate", b'Bearer realm="journey"')],
            )
        if path not in VALIDATED_POSTS or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        return await self._validated_post(scope, receive, send, *VALIDATED_POSTS[path])

    async def _validated_post(self, scope: dict, receive: Any, send: Any, validate: Callable, state_key: str) -> None:
        """``POST /predict`` and ``POST /events``: the body within the size limit, a turn on the
        scoring thread, a valid body (checked on that thread), or a JSON error answer; the
        validated request goes on in the scope's state and the endpoint scores (or stores) it
        while this request holds the turn."""
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
        refused = await self.queue.wait_turn()
        if refused is not None:
            return await _send_busy(send, refused)
        try:
            if await _client_left(receive):  # gave up while waiting: not scored
                return await _send_json(send, 499, error_body(CLIENT_LEFT))
            try:
                request = await self.queue.run(validate, body, self.models)
            except RequestProblems as exc:
                return await _send_json(send, exc.status, exc.body())
            scope.setdefault("state", {})[state_key] = request
            # BentoML picks its deserializer by content type: the body is JSON whatever the client said.
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"] + [(b"content-type", b"application/json")]
            return await self.app(scope, _replaying(body, receive), send)
        finally:
            self.queue.leave()

    def _authorized(self, scope: dict) -> bool:
        value = _header(scope, b"authorization") or ""
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.token.encode())


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


async def _client_left(receive: Any) -> bool:
    """Whether the client has disconnected, without waiting (the body has been read: the server
    answers the next ``receive`` at once when the connection is gone)."""
    import anyio

    message: dict = {}
    with anyio.CancelScope() as scope:
        scope.cancel()
        message = await receive()
    return message.get("type") == "http.disconnect"


def _replaying(body: bytes, receive: Any) -> Callable[[], Any]:
    """``receive`` that hands the already read body out once more, then defers to the server."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_busy(send: Any, error: str) -> None:
    await _send_json(send, 429, error_body(error, BUSY_HINT), extra_headers=[(b"retry-after", str(RETRY_AFTER_S).encode())])


async def _send_json(send: Any, status: int, payload: dict, extra_headers: list | None = None, close: bool = False) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the unread rest of an oversized body must not be taken for the next request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body, "more_body": False})

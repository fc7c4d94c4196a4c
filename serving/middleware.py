"""The ASGI layer in front of BentoML's application (:class:`Edge`, outermost: see
``serving/service.py``): which paths exist, bearer-token auth, admission control, and the two POST
endpoints answered here, in one turn of the worker's scoring thread.

* Unknown paths get a JSON 404 before BentoML's metrics middleware sees them (its metrics label
  every request with its path: without this, every random path would become a series).
* The token for ``/predict``, ``/metadata``, ``/metrics``, ``/events`` and ``/customers/...``
  (probes and docs stay open); at most ``ceil(JOURNEY_MAX_CONCURRENCY / JOURNEY_WORKERS)``
  requests in progress per worker (probes and metrics excepted); beyond that 429 at once.
* ``POST /predict`` and ``POST /events`` (:class:`Post`): the body limit (413), a place in the
  worker's :class:`~journey_stage.serving.admission.ScoringQueue` (429 with ``Retry-After``), then
  validation and the answer on the scoring thread in one turn (field-level 400s), 504 after
  ``JOURNEY_TIMEOUT_S``. Answered here, not by BentoML's router: measured on one worker, BentoML's
  request path (middlewares, router, endpoint wrapper, a second thread hop) cost 1.7 ms of CPU per
  request on top of the 3.8 ms this path costs (docs/performance.md). The BentoML API methods stay
  the typed declaration of both endpoints (OpenAPI document, clients); these answers are counted in
  :mod:`journey_stage.serving.edge_metrics` instead of BentoML's request metrics.

It reads no environment: :class:`Edge` gets the service's
:class:`~journey_stage.core.runtime.RuntimeSettings`, request models, queue and POST handlers.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import math
import stat
import time
from dataclasses import dataclass
from typing import Any, Callable

from journey_stage.core.runtime import RuntimeSettings
from journey_stage.serving.admission import ScoringQueue
from journey_stage.serving.edge_metrics import EdgeMetrics, shared_metrics
from journey_stage.serving.openapi import patching_send
from journey_stage.serving.problems import RequestProblems, error_body
from journey_stage.serving.schemas import (
    CUSTOMERS_PREFIX, DOCS_PATH, EVENTS_PATH, METADATA_PATH, METRICS_PATH, PREDICT_PATH, PROBE_PATHS, RequestModels,
)

logger = logging.getLogger("bentoml.journey")
PROTECTED_PATHS = frozenset({PREDICT_PATH, METADATA_PATH, METRICS_PATH, EVENTS_PATH})  # and every path under CUSTOMERS_PREFIX
UNCOUNTED_PATHS = PROBE_PATHS | {METRICS_PATH}  # never refused for load: probes and scrapes answer under overload
AUTH_ERROR = "missing or invalid bearer token"
AUTH_HINT = "send the header 'Authorization: Bearer <token>' (JOURNEY_API_TOKEN)."
NOT_FOUND = "not found: no endpoint at this path"
NOT_FOUND_HINT = "GET /docs.json lists the endpoints."
RETRY_AFTER_S = 1
BUSY_HINT = f"the service is at capacity: retry after {RETRY_AFTER_S} s (Retry-After), with back-off."
TOO_MANY = "too many requests in progress (JOURNEY_MAX_CONCURRENCY)"
CLIENT_LEFT = "client closed the request"
TIMED_OUT = "not answered within JOURNEY_TIMEOUT_S"
TIMED_OUT_HINT = "retry later, or send fewer customers or events per request."
INTERNAL = "internal error: the service log has the details"
Reply = Callable[..., Any]


@dataclass(frozen=True)
class Post:
    """A POST endpoint answered by :class:`Edge`: ``validate(body, models)`` -> the request,
    ``answer(request)`` -> the JSON body of its 200; both run on the scoring thread, in one turn.
    Either raises :class:`RequestProblems` for an error answer."""

    validate: Callable[[bytes, RequestModels], Any]
    answer: Callable[[Any], bytes]

    def __call__(self, body: bytes, models: RequestModels) -> bytes:
        return self.answer(self.validate(body, models))


class Edge:
    """The outermost ASGI application: unknown paths, auth, load limits, and the :class:`Post`
    endpoints in ``posts`` (path -> handler) answered here; every other request goes on to ``app``
    (BentoML's application, a Starlette app)."""

    def __init__(self, app: Any, settings: RuntimeSettings, models: RequestModels, queue: ScoringQueue,
                 posts: dict[str, Post], metrics: EdgeMetrics | None = None) -> None:
        self.app, self.models, self.queue, self.posts = app, models, queue, posts
        self.token = settings.token
        self.max_body = settings.max_body_bytes
        self.timeout_s = settings.timeout_s
        self.max_in_progress = math.ceil(settings.max_concurrency / settings.workers)
        self.in_progress = 0
        self.metrics = metrics or shared_metrics()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        post = self.posts.get(path) if scope.get("method") == "POST" else None
        if post is None and not known_path(self.app, scope):
            return await _send_json(send, 404, error_body(NOT_FOUND, NOT_FOUND_HINT))
        since = time.perf_counter()
        reply = functools.partial(self._reply, send, path, since)
        if path in UNCOUNTED_PATHS:
            return await self._route(path, post, scope, receive, send, reply, since)
        if self.in_progress >= self.max_in_progress:
            return await _busy(reply, TOO_MANY)
        self.in_progress += 1
        try:
            return await self._route(path, post, scope, receive, send, reply, since)
        finally:
            self.in_progress -= 1

    async def _route(self, path: str, post: Post | None, scope: dict, receive: Any, send: Any, reply: Reply, since: float) -> None:
        if path == DOCS_PATH:
            return await self.app(scope, receive, patching_send(send, auth=self.token is not None))
        protected = path in PROTECTED_PATHS or path.startswith(CUSTOMERS_PREFIX)
        if protected and self.token is not None and not self._authorized(scope):
            return await reply(401, error_body(AUTH_ERROR, AUTH_HINT), [(b"www-authenticate", b'Bearer realm="journey"')])
        if post is None:
            return await self.app(scope, receive, send)
        self.metrics.started(path)
        try:
            return await self._answer_post(post, scope, receive, reply, since)
        finally:
            self.metrics.finished(path)

    async def _answer_post(self, post: Post, scope: dict, receive: Any, reply: Reply, since: float) -> None:
        """The body within the size limit, a turn on the scoring thread, then validation and the
        answer there (one hop), or a JSON error answer."""
        too_large = RequestProblems(
            413, f"request body exceeds {self.max_body} bytes",
            [{"path": "$", "message": f"the body must be at most {self.max_body} bytes (JOURNEY_MAX_BODY_BYTES)", "code": "body_too_large"}],
            "split the request into smaller ones.",
        )
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await reply(413, too_large.body(), close=True)
        try:  # a body that does not arrive in time must not hold its place (slow clients)
            body = await asyncio.wait_for(_read_body(receive, self.max_body), self._left(since))
        except asyncio.TimeoutError:
            return await reply(504, _timed_out().body(), close=True)
        if body is None:
            return await reply(413, too_large.body(), close=True)
        refused = await self.queue.wait_turn()
        if refused is not None:
            return await _busy(reply, refused)
        job: asyncio.Future | None = None  # the request's work on the scoring thread
        try:
            if await _client_left(receive):  # gave up while waiting: not scored
                return await reply(499, error_body(CLIENT_LEFT))
            left = self._left(since)
            if left <= 0:
                raise _timed_out()
            job = self.queue.submit(post, body, self.models)
            return await reply(200, await _answer_of(job, left))
        except RequestProblems as exc:
            return await reply(exc.status, exc.body(), [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()])
        finally:
            self._leave_when_done(job)

    def _left(self, since: float) -> float:
        """Seconds left of JOURNEY_TIMEOUT_S for a request that arrived at ``since``."""
        return self.timeout_s - (time.perf_counter() - since)

    def _leave_when_done(self, job: asyncio.Future | None) -> None:
        """Release the turn once the scoring thread is done with this request: now, or, for one
        answered 504 while the thread still works on it, when that work ends (so the next request
        waits for a free thread, not behind a hidden one)."""
        if job is None or job.done():
            self.queue.leave()
        else:
            job.add_done_callback(functools.partial(_release_when_done, self.queue.leave))

    async def _reply(self, send: Any, path: str, since: float, status: int, payload: dict | bytes,
                     headers: list | None = None, close: bool = False) -> None:
        await _send_json(send, status, payload, headers, close)
        self.metrics.answered(endpoint_of(path), status, time.perf_counter() - since)

    def _authorized(self, scope: dict) -> bool:
        value = _header(scope, b"authorization") or ""
        scheme, _, token = value.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.token.encode())


def endpoint_of(path: str) -> str:
    """The metrics label of a known path: customer ids become a template (no series, no id, per customer)."""
    return CUSTOMERS_PREFIX + "{customer_id}" if path.startswith(CUSTOMERS_PREFIX) else path


def known_path(app: Any, scope: dict) -> bool:
    """Whether a route of ``app`` (a Starlette app) serves the request's path (a mounted folder:
    only its files)."""
    from starlette.routing import Match
    from starlette.staticfiles import StaticFiles

    for route in getattr(app, "routes", ()):
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


async def _answer_of(job: asyncio.Future, left: float) -> bytes:
    """The job's answer within ``left`` seconds: 504 after that (the job goes on, unseen), a JSON
    500 for a bug."""
    try:
        return await asyncio.wait_for(asyncio.shield(job), left)
    except asyncio.TimeoutError:
        raise _timed_out() from None
    except RequestProblems:
        raise
    except Exception:  # noqa: BLE001 - a bug: logged with its traceback, answered as JSON
        logger.exception("journey service: unexpected error answering a request")
        raise RequestProblems(500, INTERNAL, [], counted=False) from None


def _timed_out() -> RequestProblems:
    return RequestProblems(504, TIMED_OUT, [], TIMED_OUT_HINT, counted=False)


def _release_when_done(leave: Callable[[], None], job: asyncio.Future) -> None:
    """Done-callback of a job answered 504 before it finished: its outcome is dropped (read, so
    asyncio does not report it), then the turn it held is released."""
    if not job.cancelled() and job.exception() is not None:
        logger.info("journey service: a request answered 504 ended with %s", type(job.exception()).__name__)
    leave()


async def _busy(reply: Reply, error: str) -> None:
    await reply(429, error_body(error, BUSY_HINT), [(b"retry-after", str(RETRY_AFTER_S).encode())])


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


async def _send_json(send: Any, status: int, payload: dict | bytes, extra_headers: list | None = None, close: bool = False) -> None:
    """A JSON answer: ``payload`` as a dict, or already JSON bytes."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the unread rest of an oversized body must not be taken for the next request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body, "more_body": False})

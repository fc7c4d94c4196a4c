"""The ASGI middleware of the HTTP service: bearer-token auth for ``/predict`` and ``/metadata``,
the body-size limit, field-level 400/413 answers for ``/predict`` (errors as JSON) and the amended
OpenAPI document. Probes, metrics and docs stay open.

It reads no environment: :class:`JourneyMiddleware` gets the service's
:class:`~journey_stage.core.runtime.RuntimeSettings` and request models as options
(``Service.add_asgi_middleware(JourneyMiddleware, settings=..., models=...)``).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from journey_stage.core.runtime import RuntimeSettings
from journey_stage.serving.openapi import patching_send
from journey_stage.serving.requests import RequestProblems, error_body, validate_request_body
from journey_stage.serving.schemas import DOCS_PATH, METADATA_PATH, PREDICT_PATH, PREDICT_STATE_KEY, RequestModels

PROTECTED_PATHS = frozenset({PREDICT_PATH, METADATA_PATH})
AUTH_ERROR = "missing or invalid bearer token"
AUTH_HINT = "send the header 'Authorization: Bearer <token>' (JOURNEY_API_TOKEN)."


class JourneyMiddleware:
    """Bearer-token auth for /predict and /metadata, the body-size limit, field-level 400s for
    /predict and the error answers in the OpenAPI document. Probes and docs stay open."""

    def __init__(self, app: Any, settings: RuntimeSettings, models: RequestModels) -> None:
        self.app = app
        self.token = settings.token
        self.max_body = settings.max_body_bytes
        self.models = models

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == DOCS_PATH:
            return await self.app(scope, receive, patching_send(send, auth=self.token is not None))
        if path not in PROTECTED_PATHS:
            return await self.app(scope, receive, send)
        if self.token is not None and not self._authorized(scope):
            return await _send_json(
                send, 401, error_body(AUTH_ERROR, AUTH_HINT),
                extra_headers=[(b"www-authenticate", b'Bearer realm="journey"')],
            )
        if path != PREDICT_PATH or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        return await self._predict(scope, receive, send)

    async def _predict(self, scope: dict, receive: Any, send: Any) -> None:
        """``POST /predict``: the body within the size limit and valid, or a JSON error answer;
        the validated request goes on to BentoML in the scope's state."""
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
            request = validate_request_body(body, self.models)
        except RequestProblems as exc:
            return await _send_json(send, exc.status, exc.body())
        scope.setdefault("state", {})[PREDICT_STATE_KEY] = request
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

"""The OpenAPI document of the HTTP service: BentoML's ``/docs.json`` amended with this service's
real error answers (400/401/413/429/503/504 with :class:`ErrorResponse`, ``Retry-After`` where the
service sends it), the bearer-token scheme when a token is required, and schemas made valid
OpenAPI 3.0."""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable

from journey_stage.serving.schemas import CUSTOMERS_PREFIX, EVENTS_PATH, METADATA_PATH, METRICS_PATH, PREDICT_PATH, ErrorResponse

logger = logging.getLogger("bentoml.journey")

ERROR_ANSWERS = {
    "400": "Invalid request: field-level problems with JSON paths.",
    "404": "Profiles are off: no profile store is configured (JOURNEY_PROFILE_STORE=none).",
    "401": "Missing or wrong bearer token (only when JOURNEY_API_TOKEN is set).",
    "413": "Body, customer count or event count over the limits.",
    "429": "Over capacity, not scored: more than JOURNEY_MAX_CONCURRENCY requests in progress, the worker's scoring queue "
           "full (JOURNEY_QUEUE_LENGTH) or no turn within JOURNEY_QUEUE_WAIT_MS. Retry after Retry-After seconds.",
    "503": "The model is not loaded yet (Retry-After says when to retry), or the profile store is unavailable.",
    "504": "Not answered within JOURNEY_TIMEOUT_S seconds.",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}}
# (path, method, error answers documented)
OPERATIONS = (
    (PREDICT_PATH, "post", ("400", "401", "413", "429", "503", "504")),
    (METADATA_PATH, "get", ("401", "429", "503")),
    (METRICS_PATH, "get", ("401",)),
    (EVENTS_PATH, "post", ("400", "401", "413", "429", "503", "504")),
    (CUSTOMERS_PREFIX + "{customer_id}/events", "get", ("401", "404", "429", "503")),
    (CUSTOMERS_PREFIX + "{customer_id}", "delete", ("401", "404", "429", "503")),
)


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
    """Document this service's real error answers (400/401/413/429/503/504 with :class:`ErrorResponse`)
    and make the schemas valid OpenAPI 3.0."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    err_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in err_schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas["ErrorResponse"] = err_schema
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    for path, method, codes in OPERATIONS:
        op = doc.get("paths", {}).get(path, {}).get(method)
        if op is None:
            continue
        responses = op.setdefault("responses", {})
        responses.pop("404", None)
        for code in codes:
            responses[code] = {"description": ERROR_ANSWERS[code], "content": ref} | ({"headers": RETRY_AFTER} if code in ("429", "503") else {})
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


def patching_send(send: Callable[[dict], Awaitable[None]], auth: bool) -> Callable[[dict], Awaitable[None]]:
    """An ASGI ``send`` that buffers BentoML's OpenAPI answer and sends it amended by
    :func:`patch_openapi` (unchanged when that fails, or when the answer is not a 200)."""
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
                body = json.dumps(patch_openapi(json.loads(body), auth=auth)).encode()
            except Exception:  # noqa: BLE001 - serve BentoML's document unchanged rather than fail
                logger.exception("could not amend the OpenAPI document")
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return wrapped

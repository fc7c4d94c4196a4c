"""Errors as JSON for the HTTP service: :class:`RequestProblems` (an invalid request, answered
with a status and field-level problems), the error body, pydantic errors as field-level problems
with JSON paths, and :func:`validate_body` (a JSON body parsed and validated as a request model:
400, or 413 over the limits). Pure Python, no BentoML."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from journey_stage.core.errors import problem_text_too_long
from journey_stage.core.events import MAX_TEXT_CHARS
from journey_stage.serving.schemas import ErrorResponse, RequestModels

MAX_PROBLEMS_SHOWN = 100
MAX_MESSAGE_CHARS = 200  # an error text quotes at most this much of what the client sent
LIMIT_ERROR_TYPES = frozenset({"too_long"})
INPUT_HINT = "fix the listed fields; GET /metadata lists the accepted event types of the model's taxonomy."


class RequestProblems(Exception):
    """A request answered with an error: ``status``, field-level problems (none for a refusal such
    as "not ready"), and extra ``headers``."""

    def __init__(self, status: int, error: str, problems: list[dict], hint: str | None = None, total: int | None = None,
                 headers: dict[str, str] | None = None, counted: bool = True):
        super().__init__(error)
        self.status, self.error, self.problems, self.hint = status, error, problems, hint
        self.total = len(problems) if total is None else total
        self.headers = headers or {}  # e.g. Retry-After
        self.counted = counted  # False: a refusal (not ready, timed out, ...), whose total_problems is null

    def body(self) -> dict:
        shown = [p | {"message": clip(p["message"])} for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        return ErrorResponse(error=clip(self.error), hint=self.hint, problems=shown,
                             total_problems=self.total if self.counted else None).model_dump(mode="json")


def error_body(error: str, hint: str | None = None) -> dict:
    return ErrorResponse(error=error, hint=hint).model_dump(mode="json")


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters (messages quote the offending value: a 4 MB value is
    not sent back)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit:,} more characters)"


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
        msg, code = err.get("msg", "invalid value"), err.get("type", "invalid")
        inp = err.get("input")
        if code == "string_too_long":  # the event validator's rule, code and message (core.events.MAX_TEXT_CHARS)
            code, msg = "text_too_long", problem_text_too_long("", None, None, MAX_TEXT_CHARS, len(inp)).message.split(": ", 1)[1]
        elif code == "float_type":
            msg = f"expected a JSON number or null, got {_shown(inp)}"
        elif code not in ("missing", "extra_forbidden", "json_invalid", "too_long") and (
            inp is None or isinstance(inp, (str, int, float, bool))
        ):
            msg = f"{msg}, got {_shown(inp)}"
        problems.append({"path": json_path(err.get("loc", ())), "message": msg, "code": code})
    return problems


def validate_request_body(body: bytes, models: RequestModels) -> BaseModel:
    """Parse and validate a ``/predict`` body as ``models.request``; :class:`RequestProblems`
    (400, or 413 over the limits of ``models``) when invalid."""
    return validate_body(
        body, models.request,
        f"at most {models.max_customers} customers per request and {models.max_events} events per customer",
        "split the request, or raise JOURNEY_MAX_CUSTOMERS / JOURNEY_MAX_EVENTS on the server.",
    )


def validate_body(body: bytes, model: type[BaseModel], limits: str, limit_hint: str) -> BaseModel:
    """Parse and validate a JSON body as ``model``; :class:`RequestProblems` when invalid: 413 when
    a list is over its limit (``limits`` says them), else 400 with every field-level problem."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        problems = problems_from_validation(exc)
        over = [p for p in problems if p["code"] in LIMIT_ERROR_TYPES]
        if over:
            raise RequestProblems(413, f"request exceeds a limit: {limits}", over, limit_hint) from None
        raise RequestProblems(400, f"invalid request: {len(problems)} problem(s)", problems, "fix the listed fields (see /docs.json).") from None

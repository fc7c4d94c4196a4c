"""The service's edge (serving/middleware.py :class:`Edge`), called in process as the ASGI
application it is: POSTs validated and answered in one turn of the scoring thread, 504 after
JOURNEY_TIMEOUT_S, a bug answered as JSON without its details, refusals with their headers, a
client that left not answered, unknown paths, auth, and what each answer adds to the metrics.
Over HTTP, in real services, the same layer is tested by test_service.py, test_service_faults.py
and test_hostile_http.py."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from journey_stage.core.runtime import RuntimeSettings
from journey_stage.serving.admission import ScoringQueue
from journey_stage.serving.middleware import INTERNAL, TIMED_OUT, Edge, Post
from journey_stage.serving.problems import RequestProblems


class Recorder:
    """The metrics interface of :class:`journey_stage.serving.edge_metrics.EdgeMetrics`, recorded."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, int]] = []
        self.in_progress = 0

    def started(self, endpoint: str) -> None:
        self.in_progress += 1

    def finished(self, endpoint: str) -> None:
        self.in_progress -= 1

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        self.answers.append((endpoint, status))


def inner_app() -> Starlette:
    async def metadata(request):
        return JSONResponse({"inner": True})

    return Starlette(routes=[Route("/metadata", metadata)])


def edge(answer, token: str | None = None, timeout_s: int = 60, seen: list | None = None) -> tuple[Edge, Recorder]:
    def validate(body: bytes, models) -> dict:
        if seen is not None:
            seen.append(("validate", threading.current_thread().name))
        return json.loads(body)

    settings = RuntimeSettings(timeout_s=timeout_s, api_token=token)
    metrics = Recorder()
    return Edge(inner_app(), settings, None, ScoringQueue(8, 50), {"/predict": Post(validate, answer)}, metrics), metrics


async def acall(app, method: str, path: str, body: bytes = b"", headers: list | None = None, disconnect: bool = False,
                body_arrives: bool = True):
    """(status, headers, body) of one request through ``app``; ``disconnect``: the client hangs up
    once its body is sent; ``body_arrives=False``: the client announces a body and never sends it."""
    sent: list[dict] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}] if body_arrives else []
    if disconnect:
        incoming.append({"type": "http.disconnect"})

    async def receive() -> dict:
        if incoming:
            return incoming.pop(0)
        await asyncio.sleep(3600)  # the connection stays open

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-length", str(len(body)).encode()), *(headers or [])],
             "query_string": b"", "root_path": ""}
    await app(scope, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def call(app, method: str, path: str, body: bytes = b"", headers: list | None = None, disconnect: bool = False):
    """:func:`acall` in an event loop of its own."""
    return asyncio.run(acall(app, method, path, body, headers, disconnect))


def test_a_post_is_validated_and_answered_on_the_scoring_thread_in_one_turn():
    seen: list = []

    def answer(request: dict) -> bytes:
        seen.append(("answer", threading.current_thread().name))
        return json.dumps({"echo": request}).encode()

    app, metrics = edge(answer, seen=seen)
    status, headers, body = call(app, "POST", "/predict", b'{"x": 1}')
    assert status == 200 and json.loads(body) == {"echo": {"x": 1}}
    assert headers[b"content-type"] == b"application/json"
    assert [step for step, _ in seen] == ["validate", "answer"]
    assert {thread for _, thread in seen} == {"journey-scoring_0"}  # both on the one scoring thread
    assert metrics.answers == [("/predict", 200)] and metrics.in_progress == 0


def test_an_answer_later_than_the_timeout_is_a_504_at_the_deadline():
    def slow(request: dict) -> bytes:
        time.sleep(2.0)
        return b"{}"

    app, metrics = edge(slow, timeout_s=1)
    t0 = time.perf_counter()
    status, _, body = call(app, "POST", "/predict", b"{}")
    took = time.perf_counter() - t0
    assert status == 504 and json.loads(body)["error"] == TIMED_OUT
    assert 0.9 < took < 1.8, took
    assert metrics.answers == [("/predict", 504)]


def test_after_a_504_the_turn_stays_taken_until_the_thread_is_done():
    """The 504 answers the client; the scoring thread still works on that request, so the next one
    is refused at once (429) instead of waiting behind hidden work, and is served once the thread is free."""
    def answer(request: dict) -> bytes:
        time.sleep(request["sleep"])
        return b"{}"

    app, metrics = edge(answer, timeout_s=1)

    async def main() -> list:
        first = await acall(app, "POST", "/predict", b'{"sleep": 2.0}')
        second = await acall(app, "POST", "/predict", b'{"sleep": 0}')  # the thread is still busy with the first
        await asyncio.sleep(1.5)  # the first request's work ends
        third = await acall(app, "POST", "/predict", b'{"sleep": 0}')
        return [first[0], second[0], third[0]]

    assert asyncio.run(main()) == [504, 429, 200]
    assert metrics.answers == [("/predict", 504), ("/predict", 429), ("/predict", 200)] and metrics.in_progress == 0


def test_a_body_that_never_arrives_is_a_504_at_the_deadline_and_frees_its_place():
    called: list = []
    app, metrics = edge(lambda request: called.append(request) or b"{}", timeout_s=1)
    t0 = time.perf_counter()
    status, headers, body = asyncio.run(acall(app, "POST", "/predict", b'{"x": 1}', body_arrives=False))
    assert status == 504 and headers[b"connection"] == b"close" and json.loads(body)["error"] == TIMED_OUT
    assert time.perf_counter() - t0 < 1.8 and called == []
    assert app.in_progress == 0 and metrics.in_progress == 0


def test_customer_paths_are_one_metrics_label():
    app, metrics = edge(lambda request: b"{}", token="t0k3n")
    assert call(app, "GET", "/metadata")[0] == 401
    app.app.routes.append(Route("/customers/{customer_id:path}", lambda request: JSONResponse({})))
    for cid in ("a", "b/c"):
        assert call(app, "GET", f"/customers/{cid}/events")[0] == 401
    assert metrics.answers == [("/metadata", 401), ("/customers/{customer_id}", 401), ("/customers/{customer_id}", 401)]


def test_a_bug_is_a_json_500_without_its_details(caplog):
    def broken(request: dict) -> bytes:
        raise KeyError("secret-internal-detail")

    app, metrics = edge(broken)
    status, _, body = call(app, "POST", "/predict", b"{}")
    assert status == 500 and json.loads(body)["error"] == INTERNAL
    assert b"secret-internal-detail" not in body and b"Traceback" not in body
    assert "secret-internal-detail" in caplog.text  # the service log has it
    assert metrics.answers == [("/predict", 500)]


def test_a_refusal_keeps_its_status_and_headers():
    def not_ready(request: dict) -> bytes:
        raise RequestProblems(503, "the model is not loaded yet", [], "retry", headers={"Retry-After": "5"})

    app, _ = edge(not_ready)
    status, headers, body = call(app, "POST", "/predict", b"{}")
    assert status == 503 and headers[b"retry-after"] == b"5"
    assert json.loads(body) == {"error": "the model is not loaded yet", "hint": "retry", "problems": [], "total_problems": 0}
    # a refusal (counted=False) has no problem count
    problems = RequestProblems(503, "not ready", [], "retry", counted=False)
    assert problems.body()["total_problems"] is None


def test_a_client_that_left_is_not_answered():
    called: list = []
    app, metrics = edge(lambda request: called.append(request) or b"{}")
    status, _, _ = call(app, "POST", "/predict", b"{}", disconnect=True)
    assert status == 499 and called == []
    assert metrics.answers == [("/predict", 499)]


def test_unknown_paths_auth_and_passing_on():
    app, metrics = edge(lambda request: b"{}", token="t0k3n")
    assert call(app, "GET", "/no-such-path")[0] == 404
    status, headers, _ = call(app, "GET", "/metadata")
    assert status == 401 and headers[b"www-authenticate"].startswith(b"Bearer")
    assert call(app, "POST", "/predict", b"{}")[0] == 401
    status, _, body = call(app, "GET", "/metadata", headers=[(b"authorization", b"Bearer t0k3n")])
    assert status == 200 and json.loads(body) == {"inner": True}  # BentoML's application answers the rest
    assert call(app, "POST", "/predict", b"{}", headers=[(b"authorization", b"Bearer t0k3n")])[0] == 200
    # 404s add no series; the edge's own refusals and answers are counted
    assert metrics.answers == [("/metadata", 401), ("/predict", 401), ("/predict", 200)]

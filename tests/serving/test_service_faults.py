"""The HTTP service under faults (issue 13 defects 3, 4, 6, 7): overload, a client that leaves, a
heavy request next to the probes, `/metrics` fed with random paths, a worker killed under load
while the champion alias moves. Real `bentoml serve` processes, called over HTTP.

Three services, one per concern, each started once for the module:
* ``service``: one worker, every limit at its default, a token (the overload of defect 3 was
  measured "with one worker and defaults").
* ``patient``: one worker whose queue wait is long, so a waiting request outlives its client.
* ``two_workers``: ``bentoml serve`` itself (no `journey serve` resolving the alias first) on a
  private copy of the registry, two workers.

Time limits here are generous liveness deadlines (seconds where the service needs milliseconds);
speed is measured by ``benchmarks/bench_service.py``.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import string
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import pytest

from serving_fixtures import (  # noqa: F401 (fixture)
    bad_timestamps_body, history_body, predict_status_counts, private_store, promote_new_version, run_service,
    service_model, worker_pids,
)

pytestmark = pytest.mark.slow

TOKEN = "faults-token-7"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"content-type": "application/json"}
LIVENESS_DEADLINE_S = 1.0  # a probe must answer within this, whatever the service is doing
CLIENT_TIMEOUT_S = 5.0  # far above any answer of a service that sheds load


@pytest.fixture(scope="module")
def service(service_model, tmp_path_factory):  # noqa: F811
    with run_service(service_model, tmp_path_factory.mktemp("faults"), {"JOURNEY_API_TOKEN": TOKEN}) as svc:
        yield svc


@pytest.fixture(scope="module")
def patient(service_model, tmp_path_factory):  # noqa: F811
    env = {"JOURNEY_API_TOKEN": TOKEN, "JOURNEY_QUEUE_WAIT_MS": "60000"}
    with run_service(service_model, tmp_path_factory.mktemp("patient"), env) as svc:
        yield svc


@pytest.fixture(scope="module")
def payload(service_model) -> bytes:  # noqa: F811
    return history_body(service_model)


class Liveness:
    """Polls ``/livez`` every 20 ms in a thread while in use; ``worst`` is the slowest answer (a probe
    that fails or times out counts as ``inf``)."""

    def __init__(self, url: str) -> None:
        self.url, self.worst, self.probes = url, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = client.get(self.url + "/livez").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.worst = max(self.worst, time.perf_counter() - t0 if ok else float("inf"))
                self.probes += 1
                time.sleep(0.02)

    def __enter__(self) -> Liveness:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)


def bursts(url: str, body: bytes, n_bursts: int, size: int) -> list[tuple[object, dict]]:
    """``n_bursts`` bursts of ``size`` simultaneous requests, 0.1 s apart: (status or error kind,
    headers) per request."""
    import aiohttp

    async def main() -> list[tuple[object, dict]]:
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
            async def one() -> tuple[object, dict]:
                try:
                    async with session.post(url + "/predict", data=body, headers=AUTH | JSON) as r:
                        await r.read()
                        return r.status, dict(r.headers)
                except asyncio.TimeoutError:
                    return "timeout", {}
                except aiohttp.ClientError as exc:
                    return type(exc).__name__, {}

            out: list[tuple[object, dict]] = []
            for _ in range(n_bursts):
                out += await asyncio.gather(*[one() for _ in range(size)])
                await asyncio.sleep(0.1)
            return out

    return asyncio.run(main())


# ---- defect 3: overload -------------------------------------------------------------------------

def test_overload_is_shed_at_once_with_retry_after(service, payload):
    """Far more simultaneous requests than one worker can score: the excess gets 429 with
    Retry-After at once, nothing times out, probes answer, and the service scores only what it
    answers (no backlog scored for clients that are gone), so the next request is answered at once."""
    before = predict_status_counts(service.url, TOKEN)
    with Liveness(service.url) as live:
        answers = bursts(service.url, payload, n_bursts=10, size=40)
    codes = Counter(code for code, _ in answers)
    assert set(codes) <= {200, 429}, codes  # no timeout, no connection error, no 5xx
    assert codes[200] > 0 and codes[429] > 0, codes
    for code, headers in answers:
        if code == 429:
            assert int(headers["Retry-After"]) >= 1, headers
    assert live.worst < LIVENESS_DEADLINE_S, f"/livez took {live.worst:.2f}s under load"
    after = predict_status_counts(service.url, TOKEN)
    assert after.get(200, 0) - before.get(200, 0) == codes[200]  # scored = answered 200
    t0 = time.perf_counter()
    r = httpx.post(service.url + "/predict", content=payload, headers=AUTH | JSON, timeout=60)
    assert r.status_code == 200 and time.perf_counter() - t0 < 2.0


def _in_flight(url: str, body: bytes, done: list) -> threading.Thread:
    """POST ``body`` in a thread; its answer goes into ``done`` (with the time it arrived)."""

    def run() -> None:
        r = httpx.post(url + "/predict", content=body, headers=AUTH | JSON, timeout=120)
        done.append((time.perf_counter(), r))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _until_in_progress(url: str, deadline_s: float = 30.0) -> None:
    """Wait until the service reports a ``/predict`` request in progress (its ``/metrics``)."""
    end = time.time() + deadline_s
    while time.time() < end:
        text = httpx.get(url + "/metrics", headers=AUTH, timeout=30).text
        for line in text.splitlines():
            if "request_in_progress{" in line and 'endpoint="/predict"' in line and float(line.rsplit(" ", 1)[1]) >= 1:
                return
        time.sleep(0.02)
    raise AssertionError("the heavy request never showed as in progress")


def test_a_request_that_cannot_start_in_time_is_refused_not_scored(service, payload):
    """While the worker is busy for longer than JOURNEY_QUEUE_WAIT_MS (a 3.4 MB body to validate),
    waiting requests get 429 with Retry-After before the busy one is answered, and are not scored."""
    heavy: list = []
    before = predict_status_counts(service.url, TOKEN)
    thread = _in_flight(service.url, bad_timestamps_body(), heavy)
    _until_in_progress(service.url)
    time.sleep(0.3)  # its body is read: it holds the worker now
    with ThreadPoolExecutor(3) as pool:
        waiting = list(pool.map(lambda _: (httpx.post(service.url + "/predict", content=payload, headers=AUTH | JSON, timeout=60),
                                          time.perf_counter()), range(3)))
    thread.join(120)
    assert heavy and heavy[0][1].status_code == 400
    for r, answered_at in waiting:
        assert r.status_code == 429, r.text
        assert r.headers["Retry-After"] == "1" and r.json()["error"]
        assert answered_at < heavy[0][0]  # refused while the worker was still busy, not after
    after = predict_status_counts(service.url, TOKEN)
    assert after.get(200, 0) == before.get(200, 0)


def _send_and_leave(url: str, body: bytes) -> socket.socket:
    """A raw HTTP request whose client will hang up without reading the answer."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (f"POST /predict HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    sock.sendall(head.encode() + body)
    return sock


def test_a_request_whose_client_left_is_not_scored(patient, payload):
    """Requests waiting behind a busy worker whose clients hang up are dropped when their turn
    comes (499 in the service's metrics), never scored."""
    heavy: list = []
    before = predict_status_counts(patient.url, TOKEN)
    threads = [_in_flight(patient.url, bad_timestamps_body(), heavy) for _ in range(2)]  # seconds of work, queued
    _until_in_progress(patient.url)
    time.sleep(0.3)
    socks = [_send_and_leave(patient.url, payload) for _ in range(4)]
    time.sleep(0.3)  # the service has read the requests; they wait behind the heavy ones
    for sock in socks:
        sock.close()
    for thread in threads:
        thread.join(120)
    assert [r.status_code for _, r in heavy] == [400, 400]
    end = time.time() + 30
    while True:
        after = predict_status_counts(patient.url, TOKEN)
        if after.get(499, 0) - before.get(499, 0) >= 4 or time.time() > end:
            break
        time.sleep(0.1)
    assert after.get(499, 0) - before.get(499, 0) == 4, after
    assert after.get(200, 0) == before.get(200, 0), after


# ---- defect 7: a heavy request does not stall the probes -----------------------------------

def test_liveness_answers_while_a_heavy_request_is_validated(service):
    """A 4.7 MB body with 100,000 bad timestamps and as many unknown event types takes the worker
    seconds; /livez answers within the liveness deadline all along."""
    heavy: list = []
    with Liveness(service.url) as live:
        thread = _in_flight(service.url, bad_timestamps_body(customers=20, unknown_types=True), heavy)
        thread.join(120)
    assert live.probes >= 2
    assert live.worst < LIVENESS_DEADLINE_S, f"/livez took {live.worst:.2f}s while a heavy request was validated"
    assert heavy and heavy[0][1].status_code == 400 and heavy[0][1].json()["total_problems"] == 200_000


# ---- defect 4: /metrics behind the token, bounded ----------------------------------------------

def test_metrics_need_the_token_probes_and_docs_do_not(service):
    url = service.url
    r = httpx.get(url + "/metrics", timeout=30)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(url + "/metrics", headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
    assert httpx.get(url + "/metrics", headers=AUTH, timeout=30).status_code == 200
    for path in ("/livez", "/healthz", "/readyz", "/docs.json", "/"):
        assert httpx.get(url + path, timeout=30).status_code == 200, path


def test_metrics_do_not_grow_with_unknown_paths(service):
    url = service.url
    size = len(httpx.get(url + "/metrics", headers=AUTH, timeout=30).content)
    rng = random.Random(4)
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(2000):
            path = "/" + "/".join("".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(1, 12))) for _ in range(1 + i % 3))
            r = client.get(path)
            assert r.status_code == 404, (path, r.status_code)
    grown = len(httpx.get(url + "/metrics", headers=AUTH, timeout=30).content) - size
    assert grown < 4096, f"/metrics grew by {grown:,} bytes for 2,000 unknown paths"
    assert r.json()["error"] and path not in r.text  # a JSON error that does not echo the path


# ---- defect 6: one model version for every worker, restarts included -------------------------

@pytest.fixture(scope="module")
def two_workers(service_model, tmp_path_factory):  # noqa: F811
    """`bentoml serve` itself, with an alias URI, two workers, on a private copy of the registry."""
    store = private_store(service_model, tmp_path_factory.mktemp("store"))
    env = {"JOURNEY_API_TOKEN": TOKEN, "JOURNEY_WORKERS": "2"}
    with run_service(store, tmp_path_factory.mktemp("two"), env, entry="bentoml", model_uri="models:/journey-stage@champion") as svc:
        yield svc, store


def _loaded_lines(svc) -> list[str]:
    return [line for line in svc.log_path.read_text().splitlines() if "journey service: loaded" in line]


def _until_loaded(svc, n: int, deadline_s: float = 300.0) -> None:
    """Wait until ``n`` worker starts have loaded their model (each logs one line)."""
    end = time.time() + deadline_s
    while len(_loaded_lines(svc)) < n:
        assert time.time() < end, f"fewer than {n} model loads:\n" + svc.log()
        time.sleep(0.5)


def test_every_worker_serves_one_version_after_a_restart_under_load(two_workers, payload):
    svc, store = two_workers
    _until_loaded(svc, 2)  # /readyz answered once one worker was ready
    meta = httpx.get(svc.url + "/metadata", headers=AUTH, timeout=30).json()["model"]
    v1 = meta["version"]
    assert {k: meta[k] for k in ("name", "version", "alias", "uri")} == {"name": "journey-stage", "version": v1, "alias": "champion",
                                                                      "uri": f"models:/journey-stage/{v1}"}
    v2 = promote_new_version(store)  # the alias moves while the service runs
    assert v2 != v1
    workers = worker_pids(svc.proc)
    assert len(workers) == 2, workers

    answers: list = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=30, headers=AUTH | JSON) as client:
            while not stop.is_set():
                try:
                    r = client.post(svc.url + "/predict", content=payload)
                    answers.append((r.status_code, r.json()))
                except httpx.TimeoutException:
                    answers.append(("timeout", None))
                except httpx.TransportError as exc:  # a request in flight on the killed worker
                    answers.append((type(exc).__name__, None))

    threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    os.kill(workers[0], signal.SIGKILL)
    _until_loaded(svc, 3)  # the replacement of the killed worker has loaded its model
    time.sleep(1.0)  # let the load reach the new worker too
    stop.set()
    for t in threads:
        t.join(60)

    codes = Counter(code for code, _ in answers)
    assert codes[200] > 0 and "timeout" not in codes, codes
    assert not [c for c in codes if isinstance(c, int) and c >= 500 and c != 503], codes  # 503: a worker still loading
    assert all(f"loaded models:/journey-stage/{v1} " in line for line in _loaded_lines(svc)), _loaded_lines(svc)
    assert len(set(worker_pids(svc.proc)) - set(workers)) == 1
    versions = Counter((p["model"]["version"], p["model"]["alias"]) for code, body in answers if code == 200 for p in body["predictions"])
    with ThreadPoolExecutor(4) as pool:  # new connections, spread over both workers
        after = list(pool.map(lambda _: httpx.post(svc.url + "/predict", content=payload, headers=AUTH | JSON, timeout=60), range(40)))
    versions.update((p["model"]["version"], p["model"]["alias"]) for r in after if r.status_code == 200 for p in r.json()["predictions"])
    assert set(versions) == {(v1, "champion")}, versions
    meta = httpx.get(svc.url + "/metadata", headers=AUTH, timeout=30).json()["model"]
    assert (meta["version"], meta["uri"]) == (v1, f"models:/journey-stage/{v1}")

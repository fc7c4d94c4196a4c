"""Benchmark of the HTTP prediction service (SPEC section 8) under load.

1. Starts `journey serve` (a real `bentoml serve`) on a free loopback port with a registered model
   (``--journey-home`` / ``JOURNEY_HOME``; without either, ``journey demo --customers 1500`` builds
   one in a temporary folder first).
2. In-process reference, measured while the server is idle: the same payloads through the API
   method's body in Python (``predict`` = ``serving.requests.score_request``: validation,
   features, models, reasons, next best action) and the scoring part alone on canonical events
   (``score`` = ``journey_stage.model.scoring.score_records``); then the same requests over HTTP one at a time
   (``http_sequential``): the ratio of HTTP to ``predict`` is the HTTP overhead without queueing.
3. Open-loop load (aiohttp): single-customer requests with 200-event histories due at ``--rate``
   requests/s for ``--seconds`` (a fixed schedule; at most ``--max-in-flight`` on the wire, the
   rest wait in the client). Latency counts from each request's due time (no coordinated
   omission); one not answered within ``--timeout`` s of it is a ``timeout`` error. Recorded:
   p50/p95/p99 of the answered requests, errors by kind, achieved rate (200s per second of the
   sending window), peak RSS of the service's process tree (sampled every 0.25 s).

   Targets (in the JSON): p99 <= 50 ms, zero errors, peak RSS <= 1.5 GB.
4. ``--sweep 100,200,300,400`` (instead of 2 and 3): the same load at each rate for ``--sweep-seconds``,
   past capacity, with the service's default admission settings. Per rate: answered (200), shed
   (429/503) and their latency, timeouts, other 5xx, accepted p50/p99; and the highest swept rate
   with p99 <= 50 ms and nothing shed. Targets: shed p99 <= 100 ms, no timeout, no 5xx, accepted
   p99 <= 100 ms. Written to ``benchmarks/results/service_overload.json`` with the load averages.

5. ``--in-process-only``: step 2's in-process reference alone, no service started: ``floor`` (the
   four served models' probabilities on the request's one feature row), ``score``, ``predict`` and
   ``answer`` (body bytes -> validation -> scoring -> JSON bytes), each call measured back to back,
   their p50 ratios to the floor and the load averages; written to
   ``benchmarks/results/service_in_process.json``.

    python benchmarks/bench_service.py                        # 100 req/s for 60 s
    python benchmarks/bench_service.py --rate 20 --seconds 10 # quick run
    python benchmarks/bench_service.py --sweep 100,200,300,400 --sweep-seconds 60
    python benchmarks/bench_service.py --in-process-only --in-process-calls 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test-process helpers live with the tests
from processes import free_port, stop_process_group, tree_rss_bytes  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from open_loop import load, summary  # noqa: E402,F401 - the open-loop load generator (bench_profiles uses it too)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
TARGET_P99_MS = 50.0
TARGET_ERRORS = 0
TARGET_PEAK_RSS_GB = 1.5
SWEEP_TARGETS = {"shed_p99_ms": 100.0, "timeouts": 0, "server_errors": 0, "accepted_p99_ms": 100.0, "clean_p99_ms": TARGET_P99_MS}
EVENTS_PER_REQUEST = 200
N_PAYLOADS = 50


# ---- the service process -------------------------------------------------------------------------

def start_service(home: Path, model: str, workdir: Path, workers: int, timeout: float = 600) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "MLFLOW_TRACKING_URI"))}
    env |= {"JOURNEY_HOME": str(home), "JOURNEY_WORKERS": str(workers), "BENTOML_HOME": str(workdir / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    log = open(workdir / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "journey_stage.cli", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"journey serve exited:\n{(workdir / 'serve.log').read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return proc, url
            r = httpx.get(url + "/metadata", timeout=5)  # 503 with the reason once loading failed
            hint = (r.json().get("hint") or "") if r.status_code == 503 else ""
            if hint and not hint.startswith("retry when"):
                stop_process_group(proc)
                raise SystemExit(f"the service could not load its model: {hint}")
        time.sleep(1)
    stop_process_group(proc)
    raise SystemExit(f"journey serve not ready after {timeout:.0f}s:\n{(workdir / 'serve.log').read_text()[-3000:]}")


def ensure_model(home: Path | None, workdir: Path) -> Path:
    if home is not None:
        return home
    demo = workdir / "demo"
    print(f"no --journey-home: building a model with `journey demo --customers 1500` in {demo} ...", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "MLFLOW_TRACKING_URI"))} | {"JOURNEY_HOME": str(demo / "mlflow")}
    subprocess.run([sys.executable, "-m", "journey_stage.cli", "demo", "--customers", "1500", "--workdir", str(demo)], cwd=workdir, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return demo / "mlflow"


# ---- payloads ----------------------------------------------------------------------------------

def make_payloads(n: int, events_per_request: int, seed: int = 0) -> tuple[list[dict], str]:
    """``n`` single-customer requests of exactly ``events_per_request`` events from synthetic
    journeys (the longest real histories, topped up with other customers' touchpoints)."""
    import pandas as pd

    from journey_stage.synthetic.generate import generate_events

    df = generate_events(3000, seed=seed + 101).drop(columns=["true_stage"], errors="ignore")
    as_of, rng, pool = df["timestamp"].max(), random.Random(seed), df.sample(frac=1.0, random_state=seed)
    by_customer = {cid: g for cid, g in df.groupby("customer_id", sort=False)}
    longest = sorted(by_customer, key=lambda c: -len(by_customer[c]))
    payloads = []
    for i in range(n):
        own = by_customer[longest[i % len(longest)]]
        need = max(0, events_per_request - len(own))
        start = rng.randrange(0, max(1, len(pool) - need))
        rows = pd.concat([own, pool.iloc[start:start + need]]).head(events_per_request).sort_values("timestamp")
        events = [
            {"timestamp": ts.isoformat(), "event_type": et, "channel": None if pd.isna(ch) else ch,
             "value": None if pd.isna(v) else float(v), "campaign": None if pd.isna(cp) else cp}
            for ts, et, ch, v, cp in zip(rows["timestamp"], rows["event_type"], rows["channel"], rows["value"], rows["campaign"])
        ]
        payloads.append({"customers": [{"customer_id": f"bench-{i}", "events": events}], "as_of": as_of.isoformat()})
    return payloads, as_of.isoformat()


# ---- in-process reference ---------------------------------------------------------------------

def in_process_times(home: Path, model: str, payloads: list[dict], repeats: int) -> dict:
    """What one worker does per request, in this process: ``predict`` = the API method's body
    (:func:`serving.requests.score_request`: validation + features + models + reasons + next best
    action, from the parsed request); ``answer`` = the whole in-process handling of a body
    (:func:`serving.problems.validate_request_body` + :meth:`serving.requests.Scorer.answer`, JSON
    out); ``score`` = the scoring part alone on canonical events; ``floor`` = the four models alone
    (each served task model's calibrated probabilities on the request's one feature row). Each
    call of the loop measures all four back to back, so the ratios compare the same moments of a
    shared machine."""
    import pandas as pd

    os.environ["JOURNEY_HOME"] = str(home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    from journey_stage.core.events import canonical_records
    from journey_stage.core.runtime import RuntimeSettings
    from journey_stage.features.encode import encode, to_us
    from journey_stage.model import playbook as playbooks, registry, scoring
    from journey_stage.serving.problems import validate_request_body
    from journey_stage.serving.requests import Scorer, score_request
    from journey_stage.serving.schemas import request_models

    load_before = [round(x, 2) for x in os.getloadavg()]
    predictor, playbook = registry.load_predictor(model), playbooks.load_playbook()
    models = request_models(RuntimeSettings())  # the limits of the service started here (defaults)
    scorer = Scorer(RuntimeSettings())
    scorer.predictor, scorer.playbook = predictor, playbook
    bodies = [json.dumps(p).encode() for p in payloads]
    requests = [models.request.model_validate(p) for p in payloads]
    canon, rows = [], []
    for r in requests:
        recs = [(r.customers[0].customer_id, e.timestamp, e.event_type, e.channel, e.value, e.campaign) for e in r.customers[0].events]
        events = canonical_records(recs, predictor.taxonomy)
        canon.append((events, r.as_of))
        rows.append(predictor.features(encode(events, predictor.taxonomy), to_us(pd.Timestamp(r.as_of))).X[:1])
    served = [predictor.serving_model(t) for t in predictor.models]
    for k, r in enumerate(requests[:3]):  # warm-up
        score_request(predictor, r.customers, r.as_of, playbook)
        scorer.answer(validate_request_body(bodies[k], models).customers, r.as_of)
    times: dict[str, list[float]] = {"floor": [], "score": [], "predict": [], "answer": []}
    for k in range(repeats):
        i = k % len(requests)
        r, (events, as_of) = requests[i], canon[i]
        t0 = time.perf_counter()
        for m in served:
            m.proba(rows[i])
        t1 = time.perf_counter()
        scoring.score_records(predictor, events, pd.Timestamp(as_of), playbook=playbook)
        t2 = time.perf_counter()
        score_request(predictor, r.customers, r.as_of, playbook)
        t3 = time.perf_counter()
        req = validate_request_body(bodies[i], models)
        scorer.answer(req.customers, req.as_of)
        t4 = time.perf_counter()
        for name, a, b in (("floor", t0, t1), ("score", t1, t2), ("predict", t2, t3), ("answer", t3, t4)):
            times[name].append((b - a) * 1000)
    out = {name: summary(ms) for name, ms in times.items()}
    floor = out["floor"]["p50_ms"]
    return out | {
        "calls": repeats, "fast_path_taken": sum(e is not None for e, _ in canon) / len(canon),
        "p50_ratio_to_floor": {name: round(out[name]["p50_ms"] / floor, 2) for name in ("score", "predict", "answer")},
        "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "model": {"name": predictor.info.get("name"), "version": predictor.info.get("version"), "served": predictor.served},
    }


def sequential_times(url: str, payloads: list[dict], calls: int) -> dict:
    """Closed loop, one request at a time: the HTTP cost without queueing (vs the in-process cost)."""
    import httpx

    bodies, ms = [json.dumps(p).encode() for p in payloads], []
    with httpx.Client(base_url=url, timeout=60, headers={"content-type": "application/json"}) as client:
        for i in range(calls):
            t0 = time.perf_counter()
            r = client.post("/predict", content=bodies[i % len(bodies)])
            ms.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
    return summary(ms)


def machine() -> dict:
    load = [round(x, 2) for x in os.getloadavg()]
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(), "load_average_at_end": load}


@contextlib.contextmanager
def running_service(args: argparse.Namespace):
    """(JOURNEY_HOME, service process, URL, payloads, as_of) with the service started and warmed up."""
    import httpx

    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        workdir = Path(tmp)
        home = ensure_model(args.journey_home.resolve() if args.journey_home else None, workdir)
        payloads, as_of = make_payloads(N_PAYLOADS, args.events)
        print(f"starting the service (model {args.model}, {args.workers} workers, JOURNEY_HOME={home}) ...", flush=True)
        proc, url = start_service(home, args.model, workdir, args.workers)
        try:
            for p in payloads[:5]:  # warm the server path
                httpx.post(url + "/predict", json=p, timeout=60).raise_for_status()
            yield home, proc, url, payloads, as_of
        finally:
            stop_process_group(proc)


# ---- overload sweep ----------------------------------------------------------------------------

def sweep_run(r: dict) -> dict:
    """One rate of the overload sweep, from :func:`load`'s result."""
    kinds, acc, sh, t = r["errors_by_kind"], r["latency"], r["shed"], SWEEP_TARGETS
    shed = sum(v for k, v in kinds.items() if k in ("http_429", "http_503"))
    server, timeouts = sum(v for k, v in kinds.items() if k.startswith("http_5") and k != "http_503"), kinds.get("timeout", 0)
    return {
        "rate": r["target_rate"], "requests": r["requests"], "answered": r["ok"], "shed": shed, "timeouts": timeouts, "server_errors": server,
        "other_errors": r["errors"] - shed - server - timeouts, "errors_by_kind": kinds, "accepted_latency": acc, "shed_latency": sh,
        "achieved_rate": r["achieved_rate"], "max_sender_lag_ms": r["max_sender_lag_ms"], "peak_rss_gb": r["peak_rss_gb"],
        "meets_targets": (sh.get("p99_ms", 0.0) <= t["shed_p99_ms"] and timeouts <= t["timeouts"] and server <= t["server_errors"]
                          and acc.get("p99_ms", float("inf")) <= t["accepted_p99_ms"]),
        "clean": shed == 0 and r["errors"] == 0 and acc.get("p99_ms", float("inf")) <= t["clean_p99_ms"],
    }


def sweep(args: argparse.Namespace, rates: list[float]) -> dict:
    """The overload sweep: each rate for ``args.sweep_seconds`` on one service, a pause between rates."""
    from journey_stage.core.runtime import RuntimeSettings

    defaults, runs = RuntimeSettings(), []
    with running_service(args) as (_, proc, url, payloads, _):
        for rate in rates:
            before = os.getloadavg()
            print(f"sweep: {rate:g} req/s for {args.sweep_seconds:g} s (load {before[0]:.2f}) ...", flush=True)
            r = asyncio.run(load(url, payloads, rate, args.sweep_seconds, args.timeout, proc.pid, None, args.max_in_flight))
            runs.append(sweep_run(r) | {"load_average_before": [round(x, 2) for x in before], "load_average_after": machine()["load_average_at_end"]})
            time.sleep(5)  # let the service drain before the next rate
    clean = [run["rate"] for run in runs if run["clean"]]
    return {
        "benchmark": f"http service overload sweep: POST /predict, one customer with {args.events} events per request, open loop",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
        "config": {"rates": rates, "seconds": args.sweep_seconds, "workers": args.workers, "events_per_request": args.events,
                   "client_timeout_s": args.timeout, "max_in_flight": args.max_in_flight, "model": args.model,
                   "queue_length": defaults.queue_length, "queue_wait_ms": defaults.queue_wait_ms, "max_concurrency": defaults.max_concurrency},
        "targets": SWEEP_TARGETS, "runs": runs, "highest_clean_rate": max(clean) if clean else None,
        "pass": all(run["meets_targets"] for run in runs),
    }


# ---- main --------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the load window")
    ap.add_argument("--rate", type=float, default=100.0, help="requests per second (open loop)")
    ap.add_argument("--events", type=int, default=EVENTS_PER_REQUEST, help="events per request (one customer)")
    ap.add_argument("--timeout", type=float, default=10.0, help="a request unanswered this many seconds after its due time is an error")
    ap.add_argument("--max-in-flight", type=int, default=64, help="requests on the wire at once (client connections)")
    ap.add_argument("--workers", type=int, default=2, help="service worker processes (JOURNEY_WORKERS; 2 = one per core here)")
    home = Path(os.environ["JOURNEY_HOME"]) if os.environ.get("JOURNEY_HOME") else None
    ap.add_argument("--journey-home", type=Path, default=home, help="JOURNEY_HOME with a registered model (default: $JOURNEY_HOME, else journey demo)")
    ap.add_argument("--model", default="models:/journey-stage@champion", help="MLflow model URI")
    ap.add_argument("--in-process-calls", type=int, default=200)
    ap.add_argument("--in-process-only", action="store_true", help="only the in-process reference (no service): predict, answer and the four-model floor")
    ap.add_argument("--in-process-out", type=Path, default=RESULTS / "service_in_process.json")
    ap.add_argument("--sequential-calls", type=int, default=100, help="HTTP requests one at a time before the load")
    ap.add_argument("--out", type=Path, default=RESULTS / "service.json")
    ap.add_argument("--sweep", default=None, help="overload sweep instead: comma-separated rates (requests/s), e.g. 100,200,300,400")
    ap.add_argument("--sweep-seconds", type=float, default=60.0, help="load window of each sweep rate")
    ap.add_argument("--sweep-out", type=Path, default=RESULTS / "service_overload.json")
    return ap.parse_args()


def measure(args: argparse.Namespace) -> dict:
    """Steps 1-3: in-process reference, sequential HTTP, the open-loop load at ``args.rate``."""
    with running_service(args) as (home, proc, url, payloads, as_of):
        idle_rss = tree_rss_bytes(proc.pid)
        print("in-process reference ...", flush=True)
        inproc = in_process_times(home, args.model, payloads, args.in_process_calls)
        print("sequential HTTP (one request at a time) ...", flush=True)
        sequential = sequential_times(url, payloads, args.sequential_calls)
        print(f"load: {args.rate:g} req/s for {args.seconds:g} s ...", flush=True)
        result = asyncio.run(load(url, payloads, args.rate, args.seconds, args.timeout, proc.pid, None, args.max_in_flight))
    http_p50, http_p99 = result["latency"].get("p50_ms"), result["latency"].get("p99_ms")
    checks = {
        "p99_ms": {"target": TARGET_P99_MS, "value": http_p99, "pass": http_p99 is not None and http_p99 <= TARGET_P99_MS},
        "errors": {"target": TARGET_ERRORS, "value": result["errors"], "pass": result["errors"] <= TARGET_ERRORS},
        "peak_rss_gb": {"target": TARGET_PEAK_RSS_GB, "value": result["peak_rss_gb"], "pass": result["peak_rss_gb"] <= TARGET_PEAK_RSS_GB},
    }
    return {
        "benchmark": "http service: POST /predict, one customer with a 200-event history per request",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
        "config": {"rate": args.rate, "seconds": args.seconds, "events_per_request": args.events, "client_timeout_s": args.timeout, "max_in_flight": args.max_in_flight,
                   "workers": args.workers, "model": args.model, "payloads": len(payloads), "as_of": as_of},
        "targets": {"p99_ms": TARGET_P99_MS, "errors": TARGET_ERRORS, "peak_rss_gb": TARGET_PEAK_RSS_GB},
        "http": result | {"idle_rss_gb": round(idle_rss / 1e9, 3)}, "http_sequential": sequential, "in_process": inproc,
        "http_overhead": {
            "note": "sequential = one request at a time (HTTP + validation cost, no queueing); load = under the open-loop load (queueing included)",
            "sequential_p50_ratio_to_score": round(sequential["p50_ms"] / inproc["score"]["p50_ms"], 2),
            "sequential_p50_ratio_to_predict": round(sequential["p50_ms"] / inproc["predict"]["p50_ms"], 2),
            "sequential_p50_minus_predict_ms": round(sequential["p50_ms"] - inproc["predict"]["p50_ms"], 2),
            "load_p50_ratio_to_score": round(http_p50 / inproc["score"]["p50_ms"], 2) if http_p50 else None,
        },
        "checks": checks, "pass": all(c["pass"] for c in checks.values()),
    }


def main() -> None:
    args = parse_args()
    if args.in_process_only:
        with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
            home = ensure_model(args.journey_home.resolve() if args.journey_home else None, Path(tmp))
            payloads, as_of = make_payloads(N_PAYLOADS, args.events)
            inproc = in_process_times(home, args.model, payloads, args.in_process_calls)
        out, path = {
            "benchmark": f"in-process POST /predict handling, one customer with {args.events} events, beside the four-model floor",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(), "as_of": as_of, "in_process": inproc,
        }, args.in_process_out
        print(json.dumps({k: inproc[k] for k in ("floor", "score", "predict", "answer", "p50_ratio_to_floor", "load_average_before", "load_average_after")}, indent=2))
    elif args.sweep:
        out, path = sweep(args, [float(x) for x in args.sweep.split(",") if x.strip()]), args.sweep_out
        for run in out["runs"]:
            print(json.dumps({k: run[k] for k in ("rate", "answered", "shed", "timeouts", "server_errors", "meets_targets", "clean")}
                             | {"accepted_p99_ms": run["accepted_latency"].get("p99_ms"), "shed_p99_ms": run["shed_latency"].get("p99_ms")}))
        print(f"highest clean rate: {out['highest_clean_rate']}")
    else:
        out, path = measure(args), args.out
        h = out["http"]
        print(json.dumps({"http": {k: h[k] for k in ("requests", "ok", "errors", "errors_by_kind", "achieved_rate", "peak_rss_gb", "latency")},
                          "http_sequential": out["http_sequential"],
                          "in_process": {k: out["in_process"][k] for k in ("score", "predict")}, "pass": out["pass"]}, indent=2))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()

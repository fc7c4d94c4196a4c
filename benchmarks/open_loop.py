"""The open-loop HTTP load generator of the service benchmarks (``bench_service.py``,
``bench_profiles.py``) and their latency summary."""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test-process helpers live with the tests
from processes import tree_rss_bytes  # noqa: E402


def summary(ms: list[float]) -> dict:
    if not ms:
        return {"n": 0}
    s = sorted(ms)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))], 3)

    return {"n": len(s), "mean_ms": round(statistics.fmean(s), 3), "p50_ms": q(50), "p95_ms": q(95), "p99_ms": q(99), "max_ms": round(s[-1], 3)}


async def load(url: str, payloads: list[dict], rate: float, seconds: float, timeout: float, pid: int, token: str | None,
               max_in_flight: int) -> dict:
    """Open-loop load: request i is due at ``start + i / rate``; its latency counts from then (client
    queueing included). At most ``max_in_flight`` requests on the wire; one not answered within
    ``timeout`` seconds of its due time is a ``timeout`` error."""
    import aiohttp

    bodies = [json.dumps(p).encode() for p in payloads]
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
    latencies: list[float] = []  # 200s
    shed: list[float] = []  # 429/503: refused by admission control (or not ready), not scored
    errors: dict[str, int] = {}
    peak, done, slots = [tree_rss_bytes(pid)], asyncio.Event(), asyncio.Semaphore(max_in_flight)

    async def sample_memory() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], await asyncio.to_thread(tree_rss_bytes, pid))
            await asyncio.sleep(0.25)

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    # aiohttp (BentoML's own HTTP client library): about a third of httpx's client CPU per
    # request, which matters when client and server share two cores.
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as client:
        async def send(i: int) -> tuple[int, bytes]:
            async with slots:
                async with client.post("/predict", data=bodies[i % len(bodies)], headers=headers) as r:
                    return r.status, await r.read()

        async def one(i: int, due: float) -> None:
            try:
                status, _ = await asyncio.wait_for(send(i), timeout=max(0.001, due + timeout - time.perf_counter()))
            except asyncio.TimeoutError:
                return error("timeout")
            except aiohttp.ClientError as exc:
                return error(type(exc).__name__)
            if status != 200:
                error(f"http_{status}")
                refused_at.append(round(due - start, 2))
            (latencies if status == 200 else shed if status in (429, 503) else []).append((time.perf_counter() - due) * 1000)

        # The generator's own garbage collector must not pause the schedule: a full collection over
        # this process's objects (payloads, and the in-process reference's model) took ~250 ms and
        # then sent a second's worth of requests as one burst. Collected before, frozen, off during the load.
        gc.collect()
        gc.freeze()
        gc.disable()
        sampler = asyncio.create_task(sample_memory())
        n, tasks, start, behind = int(rate * seconds), [], time.perf_counter(), 0.0
        refused_at: list[float] = []  # due time (s from the start) of each answer other than 200
        for i in range(n):
            due = start + i / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                behind = max(behind, -wait)
            tasks.append(asyncio.create_task(one(i, due)))
        send_window = time.perf_counter() - start
        await asyncio.gather(*tasks)
        total = time.perf_counter() - start
        gc.enable()
        done.set()
        await sampler
    return {
        "requests": n, "ok": len(latencies), "errors": sum(errors.values()), "errors_by_kind": errors,
        "latency": summary(latencies), "shed": summary(shed), "target_rate": rate, "send_window_s": round(send_window, 3),
        "achieved_rate": round(len(latencies) / max(send_window, 1e-9), 2), "completion_rate": round(len(latencies) / max(total, 1e-9), 2),
        "all_answered_after_s": round(total, 3), "max_sender_lag_ms": round(behind * 1000, 2), "max_in_flight": max_in_flight,
        "peak_rss_bytes": peak[0], "peak_rss_gb": round(peak[0] / 1e9, 3),
        "non_200_due_at_s": sorted(refused_at)[:200],  # when the refusals came (stalls show as clusters)
    }

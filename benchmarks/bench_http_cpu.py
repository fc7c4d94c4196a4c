"""Server CPU per ``POST /predict`` request: what the HTTP plumbing costs beside the scoring.

Starts `journey serve` with one worker (bench_service.start_service), sends ``--calls`` requests
one at a time (one customer with 200 events, bench_service's payloads) and reads the CPU time
(user + system) of the service's whole process tree before and after (psutil). Beside it, in the
same run, the floor: the in-process handling of the same bodies (``answer`` of bench_service:
body bytes -> validation -> scoring -> JSON bytes) timed with ``time.process_time`` in this process.
``plumbing_ms`` = server CPU per request - the in-process answer's CPU: what uvicorn, the ASGI
layers and the thread hand-off add.

Run it at two commits to compare request paths (docs/performance.md does, for the edge layer;
the JSON records the commit of the code measured):

    JOURNEY_HOME=... python benchmarks/bench_http_cpu.py --model models:/journey-stage/1
    # the code of another commit: a checkout whose folders are linked as a journey_stage package
    # (cli/* files, core, features, ... folders) first on PYTHONPATH
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_service as bs  # noqa: E402


def tree_cpu_s(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def in_process_cpu_ms(home: Path, model: str, bodies: list[bytes], calls: int) -> float:
    """CPU ms per in-process answer of the same bodies (validation, scoring, JSON), median of 5 rounds."""
    os.environ["JOURNEY_HOME"] = str(home)
    from journey_stage.core.runtime import RuntimeSettings
    from journey_stage.model import playbook as playbooks, registry
    from journey_stage.serving.problems import validate_request_body
    from journey_stage.serving.requests import Scorer
    from journey_stage.serving.schemas import request_models

    models, scorer = request_models(RuntimeSettings()), Scorer(RuntimeSettings())
    scorer.predictor, scorer.playbook = registry.load_predictor(model), playbooks.load_playbook()
    rounds = []
    for _ in range(5):
        c0 = time.process_time()
        for i in range(calls // 5):
            req = validate_request_body(bodies[i % len(bodies)], models)
            scorer.answer(req.customers, req.as_of)
        rounds.append((time.process_time() - c0) * 1000 / (calls // 5))
    return statistics.median(rounds)


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models:/journey-stage@champion")
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds of --calls requests (median reported)")
    ap.add_argument("--out", type=Path, default=bs.RESULTS / "http_cpu.json")
    args = ap.parse_args()
    home = Path(os.environ["JOURNEY_HOME"]).resolve()
    payloads, _ = bs.make_payloads(bs.N_PAYLOADS, bs.EVENTS_PER_REQUEST)
    bodies = [json.dumps(p).encode() for p in payloads]
    import journey_stage

    code = Path(journey_stage.__file__).resolve().parent  # the code measured (the service imports the same)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True).stdout.strip()
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-http-cpu-") as tmp:
        proc, url = bs.start_service(home, args.model, Path(tmp), workers=1)
        try:
            rounds, walls = [], []
            with httpx.Client(base_url=url, timeout=60, headers={"content-type": "application/json"}) as client:
                for i in range(100):  # warm-up
                    client.post("/predict", content=bodies[i % len(bodies)]).raise_for_status()
                for _ in range(args.rounds):
                    c0, t0 = tree_cpu_s(proc.pid), time.perf_counter()
                    for i in range(args.calls):
                        client.post("/predict", content=bodies[i % len(bodies)]).raise_for_status()
                    rounds.append((tree_cpu_s(proc.pid) - c0) * 1000 / args.calls)
                    walls.append((time.perf_counter() - t0) * 1000 / args.calls)
        finally:
            bs.stop_process_group(proc)
    floor = in_process_cpu_ms(home, args.model, bodies, args.calls)
    server = statistics.median(rounds)
    out = {
        "benchmark": "server CPU per POST /predict (one customer, 200 events), one worker, one request at a time",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit, "code": str(code), "machine": bs.machine(),
        "load_average_before": load_before, "calls_per_round": args.calls,
        "server_cpu_ms_per_request": round(server, 3), "server_cpu_ms_rounds": [round(x, 3) for x in rounds],
        "wall_ms_per_request": round(statistics.median(walls), 3),
        "floor_in_process_answer_cpu_ms": round(floor, 3), "ratio_to_floor": round(server / floor, 2),
        "plumbing_ms": round(server - floor, 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark: training on synthetic customers (default 200,000), end to end in-process.

    /work/venv/bin/python benchmarks/bench_train.py [--customers N] [--parts P] [--n-jobs 2] [--out PATH] [--before PATH]

1. Generates the log in child processes (not measured; ``--parts P`` writes P files of N/P
   customers each, seeds 1..P, ids prefixed ``p<k>-``; one part = seed 1 as before), so the peak
   memory below is the training's alone.
2. A floor, in a child process: pyarrow reads the whole log and counts events per customer (the
   least any training that looks at every event must do); its wall time and peak RSS.
3. Measured in this process: read + validate (``training.sampling.read_training_events``: above
   ``eval_customers_cap`` customers only the sampled customers' rows are read) + snapshots + four
   LightGBM models + calibration + baselines + bootstrap + report (no MLflow logging, which is I/O
   of the store). Wall time, peak RSS (``ru_maxrss``), and the 1-minute load average sampled every
   5 s during the run (the machine has 2 cores shared with other jobs).

Writes benchmarks/results/train.json (200,000 customers) or train_<N>.json: times, peak memory, each
as a ratio to the floor, the load averages, the sample, rows per task (used, and the full-log sizes
estimated), and test metrics with their 95% customer-bootstrap intervals; with ``--before`` a
previous result's metrics beside them. Targets (issue 17): 1,000,000 customers <= 10 min and
<= 8 GB on 2 cores; 3,000,000 customers <= 12 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PRIMARY = {"stage": "macro_f1", "churn": "roc_auc", "advocacy": "roc_auc", "conversion": "roc_auc"}


def _peak_gb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss * 1024 / 1e9


def _generate_part(customers: int, seed: int, prefix: str, path: str) -> None:
    from journey_stage.core.io import write_table
    from journey_stage.synthetic.generate import generate_events

    df = generate_events(customers, seed=seed)
    if prefix:
        df["customer_id"] = prefix + df["customer_id"].astype(str)
    write_table(df, Path(path))


def _floor(path: str) -> None:
    import pyarrow.dataset as ds

    t = time.perf_counter()
    table = ds.dataset(path, format="parquet").to_table()
    counts = table.group_by("customer_id").aggregate([("customer_id", "count")])
    print(json.dumps({"s": time.perf_counter() - t, "events": table.num_rows, "customers": counts.num_rows, "peak_rss_gb": _peak_gb()}))


def _child(*args: str) -> str:
    return subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout


class LoadSampler(threading.Thread):
    """The 1-minute load average every ``every`` seconds while the run lasts."""

    def __init__(self, every: float = 5.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [os.getloadavg()[0]], threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict:
        s = self.samples
        return {"1min_at_start": round(s[0], 2), "1min_mean_during": round(sum(s) / len(s), 2), "1min_max_during": round(max(s), 2),
                "1_5_15min_at_end": [round(x, 2) for x in os.getloadavg()], "samples": len(s)}


def _train(path: Path, n_jobs: int, report_dir: Path, cap: int | None = 200_000) -> dict:
    from journey_stage.core.settings import TASKS, Settings
    from journey_stage.core.taxonomy import load_taxonomy
    from journey_stage.training.pipeline import train_and_evaluate
    from journey_stage.training.report import write_report
    from journey_stage.training.sampling import read_training_events

    tax, settings = load_taxonomy("five_stage"), Settings(n_jobs=n_jobs, eval_customers_cap=cap)
    t0 = time.perf_counter()
    validated, sample = read_training_events(path, tax, settings)
    read_s = time.perf_counter() - t0
    marks: dict[str, float] = {}
    t1 = time.perf_counter()

    def progress(stage: str, i: int, n: int) -> None:
        if stage == "snapshots" and i == n:
            marks["snapshots"] = time.perf_counter() - t1
        elif stage == "models" and i > 0:
            marks[f"model_{TASKS[i - 1]}"] = time.perf_counter() - t1

    outcome = train_and_evaluate(validated.events, tax, settings, progress=progress, sample=sample)
    train_s = time.perf_counter() - t1
    write_report(outcome, report_dir)
    prev, phases = 0.0, {}
    for k, v in marks.items():  # per phase: snapshots, then each task (fit, calibration, baselines, bootstrap)
        phases[k], prev = round(v - prev, 1), v
    return {"read_s": read_s, "train_s": train_s, "total_s": time.perf_counter() - t0, "phases": phases, "report": outcome.report,
            "events": int(len(validated.events)), "snapshot_rows": int(len(outcome.snapshots.X)), "eval_customers_cap": settings.eval_customers_cap}


def _metrics(report: dict) -> dict:
    out = {}
    for task, r in report["tasks"].items():
        m = PRIMARY[task]
        if "model" in r:
            out[task] = {m: r["model"][m], "ci95": r.get("ci95", {}).get(f"model.{m}"), "n_test": r["n_test"], "served": r.get("served")}
    return out


def _versus(now: dict, before: dict) -> dict:
    """Per task: the metric now and before, and whether each lies in the other's interval."""
    out = {}
    for task, r in now.items():
        b = before.get(task) or {}
        m = PRIMARY[task]
        if m not in b:
            continue
        lo_b, hi_b = (b.get("ci95") or [None, None])
        out[task] = {"now": r[m], "now_ci95": r["ci95"], "before": b[m], "before_ci95": b.get("ci95"), "difference": round(r[m] - b[m], 4),
                     "now_within_before_ci95": (lo_b <= r[m] <= hi_b) if lo_b is not None else None,
                     "before_within_now_ci95": (r["ci95"][0] <= b[m] <= r["ci95"][1]) if r["ci95"] else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--parts", type=int, default=1)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--before", type=Path, help="a previous result: its test metrics are compared with this run's")
    ap.add_argument("--eval-customers-cap", default="200000", help="the setting (\"none\": no sampling, every customer's rows)")
    args = ap.parse_args()
    cap = None if args.eval_customers_cap.lower() == "none" else int(args.eval_customers_cap)
    out = args.out or RESULTS / ("train.json" if args.customers == 200_000 else f"train_{args.customers}.json")
    before = json.loads(args.before.read_text()) if args.before else None

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("events.parquet" if args.parts == 1 else "events")
        path.mkdir() if args.parts > 1 else None
        t = time.perf_counter()
        for k in range(args.parts):
            n = args.customers // args.parts + (k < args.customers % args.parts)
            target = path if args.parts == 1 else path / f"part-{k:03d}.parquet"
            _child("--_generate", str(n), str(1 + k), f"p{k}-" if args.parts > 1 else "", str(target))
        gen_s = time.perf_counter() - t
        floor = json.loads(_child("--_floor", str(path)))
        sampler = LoadSampler()
        sampler.start()
        run = _train(path, args.n_jobs, Path(tmp) / "report", cap)
        sampler.stop.set()
    peak = _peak_gb()
    rep = run["report"]
    limit_gb = 12.0 if args.customers > 1_000_000 else 8.0
    result = {
        "benchmark": "train",
        "customers": args.customers,
        "parts": args.parts,
        "events": floor["events"],
        "events_trained": run["events"],
        "snapshot_rows": run["snapshot_rows"],
        "sample": rep["sample"],
        "generate_s": round(gen_s, 1),
        "read_validate_s": round(run["read_s"], 1),
        "train_evaluate_s": round(run["train_s"], 1),
        "train_phases_s": run["phases"],
        "total_s_excluding_generation": round(run["total_s"], 1),
        "peak_rss_gb": round(peak, 2),
        "floor": {"what": "child process: pyarrow.dataset read of the whole log + group_by(customer_id).count",
                  "s": round(floor["s"], 2), "peak_rss_gb": round(floor["peak_rss_gb"], 2)},
        "ratio_to_floor": {"time": round(run["total_s"] / floor["s"], 1), "peak_memory": round(peak / floor["peak_rss_gb"], 2)},
        "rows": {t: {"train": r.get("train_rows"), "validation": r.get("validation_rows"), "test": r.get("n_test"),
                     "validation_full_estimate": (r.get("sampled") or {}).get("validation_rows_full_estimate"),
                     "test_full_estimate": (r.get("sampled") or {}).get("test_rows_full_estimate")} for t, r in rep["tasks"].items()},
        "test_metrics": _metrics(rep),
        "targets": {"total_s_max": 600, "peak_rss_gb_max": limit_gb, "cores": 2},
        "pass": run["total_s"] <= 600 and peak <= limit_gb,
        "loadavg": sampler.summary(),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform()},
    }
    if before is not None:
        result["versus_before"] = {"before": str(args.before), "before_customers": before.get("customers"),
                                   "tasks": _versus(result["test_metrics"], _before_metrics(before))}
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def _before_metrics(before: dict) -> dict:
    """Test metrics of a previous result (this format, or the earlier one: a bare value per task)."""
    out = {}
    for task, r in (before.get("test_metrics") or {}).items():
        m = PRIMARY[task]
        if isinstance(r, dict) and m in r:
            out[task] = {m: r[m], "ci95": r.get("ci95")}
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_generate":
        _generate_part(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif len(sys.argv) > 1 and sys.argv[1] == "--_floor":
        _floor(sys.argv[2])
    else:
        main()

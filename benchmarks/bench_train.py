"""Benchmark: `journey train` on synthetic customers (default 200,000), end to end in-process.

Measures generation separately, then read + validate + snapshots + four LightGBM models +
calibration + baselines + bootstrap + report (no MLflow logging, which is I/O of the store).
Writes benchmarks/results/train.json. Target: training <= 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args()

    from journey_stage.synthetic.generate import generate_events
    from journey_stage.core.io import read_events, write_table
    from journey_stage.core.settings import Settings
    from journey_stage.core.taxonomy import load_taxonomy
    from journey_stage.training.pipeline import train_and_evaluate
    from journey_stage.training.report import write_report

    tax = load_taxonomy("five_stage")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.parquet"
        t0 = time.perf_counter()
        write_table(generate_events(args.customers, seed=1), path)
        gen_s = time.perf_counter() - t0
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        events = read_events(path, tax).events
        read_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        marks: dict[str, float] = {}

        def progress(stage: str, i: int, n: int) -> None:
            from journey_stage.core.settings import TASKS

            if stage == "snapshots" and i == n:
                marks["snapshots"] = time.perf_counter() - t1
            elif stage == "models" and i > 0:
                marks[f"model_{TASKS[i - 1]}"] = time.perf_counter() - t1

        outcome = train_and_evaluate(events, tax, Settings(n_jobs=args.n_jobs), progress=progress)
        train_s = time.perf_counter() - t1
        prev, phases = 0.0, {}
        for k, v in marks.items():  # per phase: snapshots, then each task (fit, calibration, baselines, bootstrap)
            phases[k] = round(v - prev, 1)
            prev = v
        write_report(outcome, Path(tmp) / "report")
        total_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tasks = {t: {k: r["model"].get(k) for k in ("macro_f1", "roc_auc") if k in r.get("model", {})} for t, r in outcome.report["tasks"].items()}
    result = {
        "benchmark": "train",
        "customers": args.customers,
        "events": int(len(events)),
        "snapshot_rows": int(len(outcome.snapshots.X)),
        "generate_s": round(gen_s, 1),
        "read_validate_s": round(read_s, 1),
        "train_evaluate_s": round(train_s, 1),
        "train_phases_s": phases,
        "rows": {t: {"train": r.get("train_rows"), "validation": r.get("validation_rows"), "test": r.get("n_test")} for t, r in outcome.report["tasks"].items()},
        "total_s_excluding_generation": round(total_s, 1),
        "peak_rss_gb": round(peak / 1e9, 2),
        "test_metrics": tasks,
        "targets": {"total_s_max": 600, "cores": 2},
        "pass": total_s <= 600,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(), "loadavg_1min_at_start": load0, "loadavg_1_5_15min_at_end": list(os.getloadavg())},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

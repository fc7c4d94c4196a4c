"""Benchmark: the documented real-data commands, run through the CLI exactly as a user types them.

For CDNOW (churn) and the Olist marketing funnel (conversion): `journey convert ...` then
`journey train ...`, each in a subprocess, in a temporary folder with its own JOURNEY_HOME (MLflow
store). Reads every run's report.json and writes benchmarks/results/real_data.json with the test
metrics, 95% intervals, baselines, test row counts, cutoffs, the commands and their wall times.

    python benchmarks/bench_real_data.py [--only cdnow|olist-funnel]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# The README's "Results on real data" commands, verbatim (run in a temporary folder in which
# `data` links to the repository's data folder).
RUNS = [
    {"dataset": "cdnow", "task": "churn", "report": "cdnow-report", "commands": [
        "journey convert cdnow data/real/cdnow/CDNOW_master.txt --out cdnow.parquet",
        "journey train --events cdnow.parquet --horizon churn=91 --test-from 1998-04-01 --report cdnow-report",
    ]},
    {"dataset": "olist-funnel", "task": "conversion", "report": "olist-report", "commands": [
        "journey convert olist-funnel data/real/olist_marketing_funnel --out olist.parquet",
        "journey train --events olist.parquet --horizon conversion=90 --test-from 2018-02-01 --report olist-report",
    ]},
]
METRIC = {"stage": "macro_f1"}  # binary tasks: roc_auc
OTHER = {"stage": ("accuracy", "log_loss"), "binary": ("pr_auc", "brier", "ece", "lift_top_decile")}


def journey_exe() -> list[str]:
    exe = shutil.which("journey", path=str(Path(sys.executable).parent)) or shutil.which("journey")
    return [exe] if exe else [sys.executable, "-m", "journey_stage.cli"]


def run(cmd: str, cwd: Path, env: dict) -> dict:
    argv = shlex.split(cmd)
    t0 = time.perf_counter()
    proc = subprocess.run(journey_exe() + argv[1:], cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"command failed ({proc.returncode}): {cmd}")
    return {"command": cmd, "seconds": round(took, 1)}


def task_result(task: str, res: dict, horizon: float) -> dict:
    """One task of report.json in the shape benchmarks/readme_tables.py reads (plus details)."""
    if "skipped" in res:
        return {"skipped": res["skipped"], "sufficiency": res.get("sufficiency")}
    metric = METRIC.get(task, "roc_auc")
    ci = res.get("ci95", {})
    base = {}
    for name, m in res["baselines"].items():
        b_ci = ci.get(f"{name}.{metric}")
        base[name] = {"value": m[metric], "ci": b_ci} if b_ci else m[metric]
    other = OTHER["stage" if task == "stage" else "binary"]
    out = {
        "metric": metric, "value": res["model"][metric], "ci": ci.get(f"model.{metric}"), "n_test": res["n_test"],
        "horizon_days": horizon, "other": {k: res["model"][k] for k in other if k in res["model"]},
        "baselines": base,
        "baseline_metrics": res["baselines"],
    }
    for k in ("positive_rate", "test_cutoffs", "train_rows", "validation_rows", "best_iteration", "calibration", "ci95",
              "protocol", "served", "served_metrics", "validation", "versus_best_baseline", "sufficiency"):
        if k in res:
            out[k] = res[k]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=[r["dataset"] for r in RUNS], action="append")
    args = ap.parse_args()
    results: dict = {"benchmark": "real_data", "runs": []}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data").symlink_to(ROOT / "data", target_is_directory=True)
        env = dict(os.environ, JOURNEY_HOME=str(work / "home"))
        env.pop("MLFLOW_TRACKING_URI", None)
        for spec in RUNS:
            if args.only and spec["dataset"] not in args.only:
                continue
            done = [run(cmd, work, env) for cmd in spec["commands"]]
            report = json.loads((work / spec["report"] / "report.json").read_text())
            horizons = report["settings"]["horizons_days"]
            horizons = {t: int(h) if float(h).is_integer() else h for t, h in horizons.items()}
            tasks = {t: task_result(t, res, horizons.get(t)) for t, res in report["tasks"].items()}
            results["runs"].append({
                "dataset": spec["dataset"], "command": spec["commands"][-1], "commands": done, "tasks": tasks,
                "data": report["dataset"], "settings": report["settings"]["all"],
                "cutoffs": report["cutoffs"]["tasks"].get(spec["task"]), "messages": report.get("messages", []),
            })
            h = tasks[spec["task"]]
            print(f"{spec['dataset']}: {spec['task']} ROC-AUC {h['value']:.4f} {h['ci']} baselines {h['baselines']} n_test {h['n_test']}"
                  f" protocol {h.get('protocol')} served {h.get('served')}")
    results["machine"] = {
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
        "loadavg_at_start": load0, "loadavg_at_end": os.getloadavg(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "real_data.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'real_data.json'}")


if __name__ == "__main__":
    main()

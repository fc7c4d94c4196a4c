"""Benchmark: the documented real-data commands, run through the CLI exactly as a user types them.

For CDNOW (churn) and the Olist marketing funnel (conversion): `journey convert ...` then
`journey train ...`, each in a subprocess, in a temporary folder with its own JOURNEY_HOME (MLflow
store). Reads every run's report.json and writes benchmarks/results/real_data.json with the test
metrics, 95% intervals, baselines, test row counts, cutoffs, the commands and their wall times.

    python benchmarks/bench_real_data.py [--data data/real]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

RUNS = {
    "cdnow": {
        "task": "churn",
        "convert": ["convert", "cdnow", "{data}/cdnow/CDNOW_master.txt", "--out", "cdnow.parquet"],
        "train": ["train", "--events", "cdnow.parquet", "--horizon", "churn=91", "--test-from", "1998-04-01", "--report", "cdnow-report"],
        "report": "cdnow-report",
        "reference": "data/real/README.md: recency 0.828, BG/NBD 0.833, LightGBM on 8 RFM features 0.837 (ROC-AUC)",
    },
    "olist_funnel": {
        "task": "conversion",
        "convert": ["convert", "olist-funnel", "{data}/olist_marketing_funnel", "--out", "olist.parquet"],
        "train": ["train", "--events", "olist.parquet", "--horizon", "conversion=90", "--test-from", "2018-02-01", "--report", "olist-report"],
        "report": "olist-report",
        "reference": "data/real/README.md (per lead at first contact, another protocol): channel rate 0.606, LightGBM 0.658 (ROC-AUC)",
    },
}


def journey_exe() -> list[str]:
    exe = shutil.which("journey", path=str(Path(sys.executable).parent)) or shutil.which("journey")
    return [exe] if exe else [sys.executable, "-m", "journey.cli"]


def run(cmd: list[str], cwd: Path, env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return {"command": "journey " + " ".join(cmd[len(journey_exe()):]), "seconds": round(took, 1)}


def summarise(report: dict, task: str) -> dict:
    out = {"dataset": report["dataset"], "settings": report["settings"]["all"], "tasks": {}}
    for name, res in report["tasks"].items():
        if "skipped" in res:
            out["tasks"][name] = {"skipped": res["skipped"]}
            continue
        keep = ("n_test", "positive_rate", "model", "baselines", "ci95", "test_cutoffs", "train_rows", "validation_rows", "best_iteration", "calibration")
        out["tasks"][name] = {k: res[k] for k in keep if k in res}
    out["cutoffs"] = report["cutoffs"]["tasks"].get(task)
    out["headline"] = {
        "task": task,
        "model_roc_auc": report["tasks"][task]["model"]["roc_auc"],
        "model_roc_auc_ci95": report["tasks"][task]["ci95"]["model.roc_auc"],
        "baseline_roc_auc": {b: m["roc_auc"] for b, m in report["tasks"][task]["baselines"].items()},
        "n_test": report["tasks"][task]["n_test"],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "real")
    ap.add_argument("--only", choices=sorted(RUNS), action="append")
    args = ap.parse_args()
    data = args.data.resolve()
    results: dict = {"benchmark": "real_data", "runs": {}}
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = dict(os.environ, JOURNEY_HOME=str(work / "home"))
        env.pop("MLFLOW_TRACKING_URI", None)
        for name, spec in RUNS.items():
            if args.only and name not in args.only:
                continue
            cmds = []
            for step in ("convert", "train"):
                argv = [a.replace("{data}", str(data)) for a in spec[step]]
                cmds.append(run(journey_exe() + argv, work, env))
            report = json.loads((work / spec["report"] / "report.json").read_text())
            results["runs"][name] = {"commands": cmds, "reference": spec["reference"]} | summarise(report, spec["task"])
            h = results["runs"][name]["headline"]
            print(f"{name}: {h['task']} ROC-AUC {h['model_roc_auc']:.4f} {h['model_roc_auc_ci95']} baselines {h['baseline_roc_auc']} n_test {h['n_test']}")
    results["machine"] = {
        "cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": platform.platform(),
        "loadavg_at_start": load0, "loadavg_at_end": os.getloadavg(),
    }
    results["data_folder"] = os.path.relpath(data, ROOT) if data.is_relative_to(ROOT) else str(data)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "real_data.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'real_data.json'}")


if __name__ == "__main__":
    main()

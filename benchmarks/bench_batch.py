"""Benchmark of batch scoring (``journey score``, :func:`serving.batch.score_file`).

Each phase runs in its own subprocess; the parent samples the resident memory of the phase's whole
process tree (the scoring process, its worker processes, Spark's JVM and Python workers) every
0.1 s, so ``peak_rss`` is the peak of the sum over the tree. Phases:

* ``model``: a model trained with the product's default settings (400 trees at most, early
  stopping; bootstrap off) on ``--train-customers`` synthetic customers, registered and promoted in
  a private MLflow store; scoring loads it by URI like ``journey score`` does.
* ``generate``: ``journey_stage.synthetic.generate.generate_events(--customers)`` written to Parquet, plus a random
  subset of customers (``crc32(id)`` buckets) for the Spark fallback run.
* ``floor``: the least any batch scorer must do, measured in the same run: read the Parquet input
  and write one row per customer (pyarrow: read + ``group_by(customer_id)`` + write Parquet; and the
  same with pandas). Ratios of the scoring wall time to both floors are reported.
* ``local``: ``score_file`` end to end without reasons (validation, partitioning, features, four
  models, next best action, atomic Parquet write). Targets: <= 60 s and <= 6 GB peak.
* ``reasons``: the same full input scored with ``reasons=True`` (target <= 180 s), beside the run
  without reasons.
* ``spark``: ``score_file(engine="spark")`` in local mode on the full input with a time limit
  (``--spark-timeout``, default 600 s); if it does not finish, the Spark engine is measured on the
  subset instead and that is what the JSON reports (with the timeout noted).

    python benchmarks/bench_batch.py                      # 1,000,000 customers (~20 M events)
    python benchmarks/bench_batch.py --customers 50000    # quick run
    python benchmarks/bench_batch.py --workdir /data/bench --keep   # reuse the generated input
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
TARGET_WALL_S = 60.0  # issue 17: 1,000,000 customers locally in at most a minute
TARGET_REASONS_S = 180.0  # ... and with reasons in at most 3 minutes
TARGET_PEAK_GB = 6.0
MODEL_NAME = "journey-stage"


# ------------------------------------------------------------------------------------------------
# phases (each in a fresh subprocess: `bench_batch.py --phase NAME --workdir DIR ...`)
# ------------------------------------------------------------------------------------------------

def _self_rss() -> dict:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "ru_maxrss_self_bytes": me.ru_maxrss * 1024,
        "ru_maxrss_children_bytes": kids.ru_maxrss * 1024,
        # CPU seconds of the phase and its finished child processes (workers; not Spark's JVM, which outlives the phase)
        "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
    }


def phase_model(a) -> dict:
    from journey_stage.core.events import canonical_events
    from journey_stage.synthetic.generate import generate_events
    from journey_stage.core.settings import Settings
    from journey_stage.core.taxonomy import load_taxonomy
    from journey_stage.training import tracking
    from journey_stage.training.pipeline import train_and_evaluate
    from journey_stage.training.report import write_report

    t0 = time.perf_counter()
    tax = load_taxonomy("five_stage")
    events = canonical_events(generate_events(a.train_customers, seed=a.seed + 100), "train", tax).events
    settings = Settings(bootstrap_rounds=0, n_jobs=2)
    outcome = train_and_evaluate(events, tax, settings)
    report = Path(a.workdir) / "report"
    plots = write_report(outcome, report)
    tracking.log_training_run(outcome, events, settings, report, plots, MODEL_NAME)
    tracking.promote(MODEL_NAME)
    p = outcome.predictor
    return {
        "train_customers": a.train_customers,
        "train_events": int(len(events)),
        "settings": {"n_estimators": settings.n_estimators, "learning_rate": settings.learning_rate, "num_leaves": settings.num_leaves},
        "trees_per_task": {t: m.best_iteration for t, m in p.models.items()},
        "stage_classes": len(p.models["stage"].classes) if "stage" in p.models else 0,
        "n_features": len(p.feature_names),
        "wall_s": time.perf_counter() - t0,
    }


def phase_generate(a) -> dict:
    import zlib

    import numpy as np
    import pyarrow.parquet as pq

    from journey_stage.synthetic.generate import generate_events
    from journey_stage.core.io import write_table

    wd = Path(a.workdir)
    t0 = time.perf_counter()
    df = generate_events(a.customers, seed=a.seed)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_table(df.drop(columns=["true_stage"]), wd / "events.parquet", taxonomy="five_stage")
    write_s = time.perf_counter() - t0
    ids = df["customer_id"].unique()
    n_customers = len(ids)
    out = {"customers": int(n_customers), "events": int(len(df)), "generate_s": gen_s, "write_parquet_s": write_s,
           "parquet_bytes": (wd / "events.parquet").stat().st_size,
           "row_groups": pq.ParquetFile(wd / "events.parquet").metadata.num_row_groups,
           "time_span": [str(df["timestamp"].min()), str(df["timestamp"].max())]}
    buckets = np.array([zlib.crc32(c.encode()) % 1000 for c in ids])
    keep = set(ids[buckets < max(1, round(1000 * min(a.spark_customers, n_customers) / n_customers))])
    sub = df[df["customer_id"].isin(keep)]
    write_table(sub.drop(columns=["true_stage"]), wd / "spark_subset.parquet", taxonomy="five_stage")
    out["spark_subset"] = {"customers": int(sub["customer_id"].nunique()), "events": int(len(sub))}
    return out


def phase_floor(a) -> dict:
    import pyarrow.parquet as pq

    wd = Path(a.workdir)
    src = wd / (a.input or "events.parquet")
    t0 = time.perf_counter()
    table = pq.read_table(src)
    read_s = time.perf_counter() - t0
    per = table.group_by("customer_id").aggregate([("timestamp", "max"), ("timestamp", "count")])
    pq.write_table(per, wd / "floor_arrow.parquet")
    arrow_s = time.perf_counter() - t0
    rows = per.num_rows
    del table, per
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_parquet(src)
    per = df.groupby("customer_id", sort=False)["timestamp"].agg(["max", "size"]).reset_index()
    per.to_parquet(wd / "floor_pandas.parquet", index=False)
    pandas_s = time.perf_counter() - t0
    return {"arrow_wall_s": arrow_s, "arrow_read_s": read_s, "pandas_wall_s": pandas_s, "rows_out": int(rows),
            "measured": "read the Parquet input, one row per customer (last timestamp, event count), write Parquet"}


def phase_score(a) -> dict:
    from journey_stage.serving.batch import score_file

    wd = Path(a.workdir)
    out = wd / f"scores-{a.tag}.parquet"
    t0 = time.perf_counter()
    counts = score_file(wd / (a.input or "events.parquet"), out, model_uri=f"models:/{MODEL_NAME}@champion",
                        engine=a.engine, reasons=a.reasons, workers=a.workers, progress=None)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "counts": counts, "output_bytes": out.stat().st_size} | _self_rss()


PHASES = {"model": phase_model, "generate": phase_generate, "floor": phase_floor, "score": phase_score}


# ------------------------------------------------------------------------------------------------
# the parent: run a phase in a subprocess, sample the tree's memory
# ------------------------------------------------------------------------------------------------

def run_phase(name: str, args, extra: list[str], timeout: float | None = None) -> dict:
    import psutil

    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--workdir", args.workdir,
           "--customers", str(args.customers), "--seed", str(args.seed), "--train-customers", str(args.train_customers),
           "--spark-customers", str(args.spark_customers), *extra]
    env = dict(os.environ, JOURNEY_HOME=str(Path(args.workdir) / "mlflow"), PYTHONPATH=str(ROOT))
    env.pop("MLFLOW_TRACKING_URI", None)
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    out_file = Path(args.workdir) / f"phase-{name}-{os.getpid()}-{time.time_ns()}.json"
    cmd += ["--result", str(out_file)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    peak = {"bytes": 0}
    stop = threading.Event()

    def sample():
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            total = 0
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            peak["bytes"] = max(peak["bytes"], total)
            stop.wait(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    timed_out = False
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, 9)  # our own phase's process group (scorer, workers, JVM)
        rc = proc.wait()
    finally:
        stop.set()
        th.join()
    wall = time.perf_counter() - t0
    res = json.loads(out_file.read_text()) if out_file.exists() and not timed_out else {}
    out_file.unlink(missing_ok=True)
    res.update({"subprocess_wall_s": wall, "peak_rss_tree_bytes": peak["bytes"], "peak_rss_tree_gb": peak["bytes"] / 1e9,
                "exit_code": rc, "timed_out": timed_out, "load_average_after": os.getloadavg()})
    if rc != 0 and not timed_out:
        res["error"] = f"phase {name} exited with {rc}"
    return res


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-customers", type=int, default=5_000)
    ap.add_argument("--spark-customers", type=int, default=100_000, help="subset for Spark if the full run does not finish in time")
    ap.add_argument("--spark-timeout", type=float, default=600.0)
    ap.add_argument("--reasons-timeout", type=float, default=900.0, help="time limit of the full run with reasons")
    ap.add_argument("--skip-spark", action="store_true")
    ap.add_argument("--workdir", default=None, help="keep data here (reused when it exists)")
    ap.add_argument("--keep", action="store_true", help="do not delete the workdir")
    ap.add_argument("--out", default=str(RESULTS / "batch.json"))
    # internal (phase subprocesses)
    ap.add_argument("--phase", default=None)
    ap.add_argument("--result", default=None)
    ap.add_argument("--input", default=None)
    ap.add_argument("--engine", default="local")
    ap.add_argument("--reasons", action="store_true")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--tag", default="x")
    args = ap.parse_args()

    if args.phase:
        res = PHASES[args.phase](args)
        Path(args.result).write_text(json.dumps(res, default=str))
        return

    tmp = None
    if args.workdir is None:
        tmp = tempfile.mkdtemp(prefix="bench-batch-", dir=os.environ.get("BENCH_TMP"))
        args.workdir = tmp
    wd = Path(args.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    meta_file = wd / f"data-{args.customers}-{args.seed}.json"
    t_all = time.perf_counter()
    results: dict = {
        "benchmark": "batch",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": os.getloadavg()},
        "targets": {"local_no_reasons_wall_s_max": TARGET_WALL_S, "local_no_reasons_peak_rss_gb_max": TARGET_PEAK_GB,
                    "cores": 2, "customers": 1_000_000},
        "notes": [],
    }
    print(f"[bench_batch] workdir {wd}", flush=True)
    if not (wd / "mlflow" / "mlflow.db").exists():
        print("[bench_batch] training the model ...", flush=True)
        results["model"] = run_phase("model", args, [])
        (wd / "model.json").write_text(json.dumps(results["model"]))
    else:  # a model store already in the workdir (e.g. copied from an earlier run): training is not benchmarked here
        saved = json.loads((wd / "model.json").read_text()) if (wd / "model.json").exists() else {}
        results["model"] = saved | {"reused": str(wd / "mlflow")}
    if meta_file.exists() and (wd / "events.parquet").exists():
        results["data"] = json.loads(meta_file.read_text()) | {"reused": True}
    else:
        print(f"[bench_batch] generating {args.customers:,} customers ...", flush=True)
        results["data"] = run_phase("generate", args, [])
        meta_file.write_text(json.dumps(results["data"]))
    data = results["data"]
    print(f"[bench_batch] {data['events']:,} events, {data['customers']:,} customers", flush=True)

    print("[bench_batch] floor ...", flush=True)
    results["floor"] = floor = run_phase("floor", args, [])
    print("[bench_batch] local engine, no reasons ...", flush=True)
    results["local"] = local = run_phase("score", args, ["--tag", "local"])
    print(f"[bench_batch]   {local.get('wall_s', 0):.1f} s, peak {local['peak_rss_tree_gb']:.2f} GB", flush=True)
    results["local"]["ratio_to_floor_arrow"] = _ratio(local.get("wall_s"), floor.get("arrow_wall_s"))
    results["local"]["ratio_to_floor_pandas"] = _ratio(local.get("wall_s"), floor.get("pandas_wall_s"))
    results["local"]["events_per_s"] = data["events"] / local["wall_s"] if local.get("wall_s") else None
    results["local"]["meets_wall_target"] = bool(local.get("wall_s") and local["wall_s"] <= TARGET_WALL_S)
    results["local"]["meets_memory_target"] = local["peak_rss_tree_gb"] <= TARGET_PEAK_GB
    results["local"]["peak_rss_measured"] = "sum of RSS over the scoring process and its worker processes, sampled every 0.1 s"

    print("[bench_batch] local engine, with reasons, full input ...", flush=True)
    rr = run_phase("score", args, ["--tag", "local-reasons", "--reasons"], timeout=args.reasons_timeout)
    results["reasons"] = {
        "full": rr, "target_wall_s": TARGET_REASONS_S, "ratio_to_no_reasons": _ratio(rr.get("wall_s"), local.get("wall_s")),
        "meets_target": bool(rr.get("wall_s") and not rr.get("timed_out") and rr["wall_s"] <= TARGET_REASONS_S),
    }
    print(f"[bench_batch]   {rr.get('wall_s', 0):.1f} s with reasons", flush=True)

    if not args.skip_spark:
        print(f"[bench_batch] Spark engine on the full input (limit {args.spark_timeout:.0f} s) ...", flush=True)
        s_full = run_phase("score", args, ["--engine", "spark", "--tag", "spark"], timeout=args.spark_timeout)
        results["spark"] = {"full": s_full}
        if s_full.get("timed_out") or s_full.get("error"):
            note = (f"Spark local mode did not finish the full input in {args.spark_timeout:.0f} s on this machine; "
                    f"measured on a random subset of {data['spark_subset']['customers']:,} customers instead")
            results["notes"].append(note)
            print(f"[bench_batch]   {note}", flush=True)
            s_sub = run_phase("score", args, ["--engine", "spark", "--input", "spark_subset.parquet", "--tag", "spark-sub"])
            l_sub = run_phase("score", args, ["--input", "spark_subset.parquet", "--tag", "local-sub"])
            results["spark"]["subset"] = {"data": data["spark_subset"], "spark": s_sub, "local": l_sub,
                                          "spark_over_local": _ratio(s_sub.get("wall_s"), l_sub.get("wall_s"))}
        else:
            results["spark"]["spark_over_local"] = _ratio(s_full.get("wall_s"), local.get("wall_s"))
            results["spark"]["ratio_to_floor_arrow"] = _ratio(s_full.get("wall_s"), floor.get("arrow_wall_s"))
        results["spark"]["peak_rss_measured"] = "sum of RSS over the driver, the JVM and Spark's Python workers"

    results["total_bench_s"] = time.perf_counter() - t_all
    results["machine"]["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print(f"[bench_batch] written {args.out}", flush=True)
    print(json.dumps({k: results[k] for k in ("local",)}, indent=1, default=str)[:2000])
    if tmp and not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark of the synthetic journey generator (synthetic/generate.py).

Measures, in one process, the wall time and peak memory (ru_maxrss) of generating the events of
N customers (default 1,000,000, ~20 million events) and writing them to Parquet with pyarrow in a
temporary directory, and a *floor* for the same number of rows: numpy drawing random columns of
the same schema and writing them the same way. Writes benchmarks/results/generate.json.

    /work/venv/bin/python benchmarks/bench_generate.py [--customers N] [--seed S] [--out PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from journey_stage.synthetic.generate import CHANNELS, EVENT_TYPES, STAGES, generate_events  # noqa: E402

TARGETS = {"seconds": 180.0, "peak_rss_mb": 6144.0, "events_per_customer": [15.0, 30.0]}


def _peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes)
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def _write(table: pa.Table, path: Path) -> int:
    pq.write_table(table, path, compression="zstd")
    return path.stat().st_size


def _floor(rows: int, customers: int, seed: int, path: Path) -> float:
    """numpy draws `rows` random rows of the events schema; pyarrow writes them."""
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    width = max(7, len(str(customers)))
    ids = pa.array([f"c{i:0{width}d}" for i in range(1, customers + 1)], pa.large_string())
    cust = np.sort(rng.integers(0, customers, rows))
    ts = rng.integers(1_735_689_600, 1_767_225_600, rows) * 1_000_000
    etype = rng.integers(0, len(EVENT_TYPES), rows, dtype=np.int8)
    chan = rng.integers(0, len(CHANNELS), rows, dtype=np.int8)
    stage = rng.integers(0, 5, rows, dtype=np.int8)
    value = np.where(rng.random(rows) < 0.01, rng.lognormal(4.2, 0.6, rows).round(2), np.nan)
    camp = rng.integers(0, 400, rows)
    camp_names = pa.array([f"camp_{i}" for i in range(400)], pa.large_string())

    def s(codes, names, mask=None):
        dictionary = names if isinstance(names, pa.Array) else pa.array(names, pa.large_string())
        return pa.DictionaryArray.from_arrays(pa.array(codes, mask=mask), dictionary).cast(pa.large_string())

    table = pa.table(
        {
            "customer_id": s(cust, ids),
            "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "event_type": s(etype, list(EVENT_TYPES)),
            "channel": s(chan, list(CHANNELS)),
            "value": pa.array(value),
            "campaign": s(camp, camp_names, rng.random(rows) < 0.7),
            "true_stage": s(stage, list(STAGES)),
        }
    )
    _write(table, path)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generate.json")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        tmpdir = Path(tmp)
        rss_before = _peak_rss_mb()
        t0 = time.perf_counter()
        events = generate_events(args.customers, seed=args.seed)
        t_gen = time.perf_counter() - t0
        table = pa.Table.from_pandas(events, preserve_index=False)
        size = _write(table, tmpdir / "events.parquet")
        seconds = time.perf_counter() - t0
        peak = _peak_rss_mb()
        rows = len(events)
        n_customers = int(events["customer_id"].nunique())
        purchases = events["event_type"] == "purchase"
        summary = {
            "buyers_share": round(events.loc[purchases, "customer_id"].nunique() / max(n_customers, 1), 4),
            "purchases": int(purchases.sum()),
            "revenue": round(float(events.loc[purchases, "value"].sum()), 2),
        }
        del events, table, purchases
        gc.collect()

        floor_seconds = _floor(rows, args.customers, args.seed, tmpdir / "floor.parquet")

    result = {
        "customers": args.customers,
        "events": rows,
        "events_per_customer": round(rows / max(args.customers, 1), 2),
        "seconds": round(seconds, 2),
        "generate_seconds": round(t_gen, 2),
        "write_seconds": round(seconds - t_gen, 2),
        "parquet_mb": round(size / 2**20, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_before_mb": round(rss_before, 1),
        "floor_seconds": round(floor_seconds, 2),
        "ratio_to_floor": round(seconds / floor_seconds, 2) if floor_seconds > 0 else None,
        "summary": summary,
        "targets": TARGETS,
        "meets_targets": bool(seconds <= TARGETS["seconds"] and peak <= TARGETS["peak_rss_mb"]),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "pyarrow": pa.__version__,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

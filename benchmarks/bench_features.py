"""Benchmark of the point-in-time feature engine (SPEC section 5).

1. Batch: all customers' features at one cutoff. Events are generated (``journey_stage.synthetic.generate`` when
   it works, else a simple numpy generator of canonical events defined below), written to Parquet,
   in canonical order (``--order generator`` keeps the generator's row order, whose same-time
   events are not in event_type order, which makes ``encode`` re-sort the whole frame), and then,
   each phase in its own subprocess so that peak RSS values do not mix:
     * ``features``: read Parquet straight to Arrow (the columns features use, string columns
       dictionary-encoded by the reader), ``features.encode.encode`` on the Table (no pandas round
       trip; the Table is dropped after encoding), ``features.build.build_features``;
     * ``features_pandas`` (for comparison): read every column to pandas, ``encode(DataFrame)``, build;
     * ``floor``: read Parquet with pyarrow and one group-by count per customer (the least any
       feature engine must do), ``floor_same_read`` (the same with the features phase's read), and
       ``floor_pandas`` (read to pandas + ``groupby().size()``).
   Reported: wall times, events/second, peak RSS (``ru_maxrss``), ratio to the floor.
2. Single customer: encode + build_features on one 200-event history, >= 500 calls in-process:
   median and p99 (the HTTP service path).

Targets (in the JSON): >= 1,000,000 events/s on 2 cores, <= 6 GB peak RSS (reported both in GiB
and decimal GB), single-customer median <= 2 ms.

    python benchmarks/bench_features.py                   # 1,000,000 customers (~17-20 M events)
    python benchmarks/bench_features.py --customers 20000 # quick run
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
TARGET_EVENTS_PER_S = 1_000_000
TARGET_PEAK_GB = 6.0
TARGET_SINGLE_MEDIAN_MS = 2.0
SINGLE_EVENTS = 200


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return 0


# ------------------------------------------------------------------------------------------------
# event generation
# ------------------------------------------------------------------------------------------------


def numpy_events(customers: int, seed: int):
    """Fallback: canonical five_stage events, ~20 per customer, over 365 days, numpy-vectorised.

    Funnel-ish type mix, channels from the SPEC vocabulary (plus a few unknown and missing),
    purchase values. Sorted by (customer_id, timestamp, event_type)."""
    import numpy as np
    import pandas as pd

    from journey_stage.core.taxonomy import load_taxonomy

    tax = load_taxonomy("five_stage")
    types = np.array(tax.event_types, dtype=object)
    role_w = {"awareness": 0.35, "consideration": 0.3, "decision": 0.15, "retention": 0.15, "advocacy": 0.05}
    w = np.array([role_w[tax.event_role[e]] / sum(1 for x in tax.event_types if tax.event_role[x] == tax.event_role[e]) for e in types])
    w /= w.sum()
    rng = np.random.default_rng(seed)
    per = rng.geometric(1 / 20, size=customers)
    n = int(per.sum())
    cust = np.repeat(np.arange(customers, dtype=np.int64), per)
    start = np.datetime64("2025-01-01T00:00:00", "s").astype(np.int64)
    first = rng.integers(0, 300 * 86400, size=customers)
    ts = start + first[cust] + rng.integers(0, 65 * 86400, size=n)
    et = rng.choice(len(types), size=n, p=w)
    order = np.lexsort((et, ts, cust))
    cust, ts, et = cust[order], ts[order], et[order]
    chans = np.array(["facebook", "instagram", "tiktok", "youtube", "influencer", "email", "search", "display",
                      "referral", "direct", "store", "support", "podcast", None], dtype=object)
    ch = chans[rng.integers(0, len(chans), size=n)]
    etypes = types[et]
    value = np.where(etypes == "purchase", np.round(rng.lognormal(4, 0.7, size=n), 2), np.nan)
    ids = np.char.add("c", np.char.zfill(np.arange(customers).astype(str), 7)).astype(object)
    return pd.DataFrame({
        "customer_id": ids[cust],
        "timestamp": pd.to_datetime(ts, unit="s", utc=True).astype("datetime64[us, UTC]"),
        "event_type": etypes,
        "channel": ch,
        "value": value,
        "campaign": None,
    })


def phase_generate(args) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    generator = "numpy fallback (benchmarks/bench_features.py:numpy_events)"
    note = ""
    df = None
    if args.generator in ("auto", "journey"):
        try:
            from journey_stage.synthetic.generate import generate_events

            df = generate_events(args.customers, args.seed)
            generator = "journey_stage.synthetic.generate.generate_events"
        except Exception as exc:  # another engineer's module may still be in progress
            if args.generator == "journey":
                raise
            note = f"journey_stage.synthetic.generate failed: {type(exc).__name__}: {exc}"
            df = None
    if df is None:
        df = numpy_events(args.customers, args.seed)
    gen_s = time.perf_counter() - t0
    df = df[[c for c in ("customer_id", "timestamp", "event_type", "channel", "value", "campaign") if c in df.columns]]
    unsorted_ties = _unsorted_ties(df)
    t_sort = time.perf_counter()
    if args.order == "canonical":  # a canonical events file: (customer_id, timestamp, event_type) order
        from journey_stage.core.events import sort_events

        df = sort_events(df)
    sort_s = time.perf_counter() - t_sort
    n_events, n_customers = len(df), int(df["customer_id"].nunique())
    ts = df["timestamp"]
    cutoff = ts.max()
    # a 200-event history for the single-customer benchmark: the longest history, padded if short
    sizes = df.groupby("customer_id", sort=False).size()
    cid = sizes.idxmax()
    one = df[df["customer_id"] == cid].tail(SINGLE_EVENTS)
    if len(one) < SINGLE_EVENTS:
        one = numpy_events(200, args.seed + 1)
        counts = one.groupby("customer_id").size()
        one = one[one["customer_id"] == counts.idxmax()]
        while len(one) < SINGLE_EVENTS:  # concatenate histories under one id until 200 events
            extra = numpy_events(50, int(len(one)) + args.seed)
            extra["customer_id"] = one["customer_id"].iloc[0]
            one = pd_concat_sorted(one, extra)
        one = one.tail(SINGLE_EVENTS)
    t1 = time.perf_counter()
    table = pa.Table.from_pandas(df, preserve_index=False)
    del df
    pq.write_table(table, args.parquet, row_group_size=2_000_000)
    write_s = time.perf_counter() - t1
    one.to_parquet(args.single_parquet, index=False)
    return {
        "generator": generator,
        "generator_note": note,
        "events": n_events,
        "customers": n_customers,
        "events_per_customer": n_events / max(n_customers, 1),
        "cutoff": cutoff.isoformat(),
        "time_span": [str(ts.min()), str(cutoff)],
        "generate_s": gen_s,
        "file_order": args.order,
        "generator_unsorted_same_time_pairs": unsorted_ties,
        "sort_to_canonical_s": sort_s if args.order == "canonical" else None,
        "write_parquet_s": write_s,
        "parquet_bytes": os.path.getsize(args.parquet),
        "single_customer_id": str(one["customer_id"].iloc[0]),
        "single_events": int(len(one)),
        "single_as_of": one["timestamp"].max().isoformat(),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _unsorted_ties(df) -> int:
    """Adjacent same-customer same-time rows not in event_type order (non-canonical order)."""
    import numpy as np

    c, t, e = (df[k].to_numpy() for k in ("customer_id", "timestamp", "event_type"))
    tie = (c[1:] == c[:-1]) & (t[1:] == t[:-1])
    return int(np.count_nonzero(tie & (e[1:] < e[:-1])))


def pd_concat_sorted(a, b):
    import pandas as pd

    from journey_stage.core.events import sort_events

    return sort_events(pd.concat([a, b], ignore_index=True))


# ------------------------------------------------------------------------------------------------
# phases (each run in a fresh subprocess)
# ------------------------------------------------------------------------------------------------


# what the feature engine reads: the columns it uses, string columns dictionary-encoded by the reader
FEATURE_COLUMNS = ["customer_id", "timestamp", "event_type", "channel", "value"]
DICTIONARY_COLUMNS = ["customer_id", "event_type", "channel"]


def read_events_arrow(path: str):
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=FEATURE_COLUMNS, read_dictionary=DICTIONARY_COLUMNS)


def phase_features(args) -> dict:
    """Read Parquet straight to Arrow, ``encode`` the Table, drop it, ``build_features``."""
    import numpy as np

    from journey_stage.features.build import THREADS, build_features, eligible
    from journey_stage.features.encode import encode, to_us
    from journey_stage.core.settings import Settings
    from journey_stage.core.taxonomy import load_taxonomy

    tax, settings = load_taxonomy("five_stage"), Settings()
    base_rss = current_rss_bytes()
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    events = read_events_arrow(args.parquet)
    t1 = time.perf_counter()
    enc = encode(events, tax)
    del events  # the encoding is all the feature engine needs
    t2 = time.perf_counter()
    rss_after_encode = current_rss_bytes()
    ff = build_features(enc, to_us(args.cutoff), settings)
    t3 = time.perf_counter()
    cpu = cpu_seconds() - c0
    el = eligible(ff, settings)
    return {
        "read": f"pyarrow.parquet.read_table(columns={FEATURE_COLUMNS}, read_dictionary={DICTIONARY_COLUMNS})",
        "build_threads": THREADS,
        "read_parquet_to_arrow_s": t1 - t0,
        "encode_s": t2 - t1,
        "build_features_s": t3 - t2,
        "total_s": t3 - t0,
        "cpu_s": cpu,
        "events": int(enc.n_events),
        "customers_out": int(len(ff.customer_ids)),
        "eligible": int(el.sum()),
        "n_features": len(ff.names),
        "feature_matrix_bytes": int(ff.X.nbytes),
        "all_finite_or_nan": bool(not np.isinf(ff.X).any()),
        "rss_after_imports_bytes": base_rss,
        "rss_after_encode_bytes": rss_after_encode,
        "peak_rss_bytes": peak_rss_bytes(),
    }


def phase_features_pandas(args) -> dict:
    """For comparison: the pandas route (read every column to pandas, ``encode(DataFrame)``)."""
    import pyarrow.parquet as pq

    from journey_stage.features.build import build_features
    from journey_stage.features.encode import encode, to_us
    from journey_stage.core.settings import Settings
    from journey_stage.core.taxonomy import load_taxonomy

    tax, settings = load_taxonomy("five_stage"), Settings()
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    events = pq.read_table(args.parquet).to_pandas()
    t1 = time.perf_counter()
    enc = encode(events, tax)
    del events
    t2 = time.perf_counter()
    ff = build_features(enc, to_us(args.cutoff), settings)
    t3 = time.perf_counter()
    return {
        "what": "pyarrow.parquet.read_table(all columns).to_pandas() + encode(DataFrame) + build_features",
        "read_parquet_to_pandas_s": t1 - t0,
        "encode_s": t2 - t1,
        "build_features_s": t3 - t2,
        "total_s": t3 - t0,
        "cpu_s": cpu_seconds() - c0,
        "customers_out": int(len(ff.customer_ids)),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _floor(what: str, read, count, read_key: str = "read_parquet_s") -> dict:
    """Time ``read()`` then ``count(read())`` (number of customers): one floor phase's result."""
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    data = read()
    t1 = time.perf_counter()
    customers = count(data)
    t2 = time.perf_counter()
    return {
        "cpu_s": cpu_seconds() - c0,
        "what": what,
        read_key: t1 - t0,
        "group_by_count_s": t2 - t1,
        "total_s": t2 - t0,
        "customers": int(customers),
        "peak_rss_bytes": peak_rss_bytes(),
    }


def _arrow_count(table) -> int:
    return table.group_by("customer_id").aggregate([("customer_id", "count")]).num_rows


def phase_floor_same_read(args) -> dict:
    """The pyarrow floor with the feature phase's own read (same columns, same dictionary reads)."""
    # row groups carry their own dictionaries: unify them so that Acero can group on the column
    return _floor("read_events_arrow (as the features phase) + unify_dictionaries + Table.group_by(customer_id).count",
                  lambda: read_events_arrow(args.parquet), lambda t: _arrow_count(t.unify_dictionaries()))


def phase_floor(args) -> dict:
    import pyarrow.parquet as pq

    return _floor("pyarrow.parquet.read_table + Table.group_by(customer_id).count",
                  lambda: pq.read_table(args.parquet), _arrow_count)


def phase_floor_pandas(args) -> dict:
    import pyarrow.parquet as pq

    return _floor("read Parquet to pandas + DataFrame.groupby(customer_id).size()",
                  lambda: pq.read_table(args.parquet).to_pandas(), lambda df: len(df.groupby("customer_id", sort=False).size()),
                  read_key="read_parquet_to_pandas_s")


def phase_single(args) -> dict:
    import numpy as np
    import pandas as pd

    from journey_stage.features.build import build_features
    from journey_stage.features.encode import encode, to_us
    from journey_stage.core.events import canonical_events
    from journey_stage.core.settings import Settings
    from journey_stage.core.taxonomy import load_taxonomy

    tax, settings = load_taxonomy("five_stage"), Settings()
    one = pd.read_parquet(args.single_parquet)
    t_us = to_us(pd.Timestamp(args.single_as_of))
    for _ in range(20):  # warm-up (feature-name cache, numpy dispatch)
        build_features(encode(one, tax), t_us, settings)
    times = []
    for _ in range(args.single_calls):
        s = time.perf_counter()
        ff = build_features(encode(one, tax), t_us, settings)
        times.append(time.perf_counter() - s)
    assert ff.X.shape[0] == 1
    ms = np.array(times) * 1e3
    enc_t, build_t = [], []  # the two halves, for information
    for _ in range(max(200, args.single_calls // 2)):
        s = time.perf_counter()
        enc = encode(one, tax)
        m = time.perf_counter()
        build_features(enc, t_us, settings)
        enc_t.append(m - s)
        build_t.append(time.perf_counter() - m)
    # for information: the HTTP path also validates the raw events first
    raw = one.copy()
    raw["timestamp"] = raw["timestamp"].astype(str)
    vt = []
    for _ in range(max(50, args.single_calls // 5)):
        s = time.perf_counter()
        build_features(encode(canonical_events(raw, "<bench>", tax).events, tax), t_us, settings)
        vt.append(time.perf_counter() - s)
    vms = np.array(vt) * 1e3
    return {
        "what": "encode + build_features on one 200-event history, in-process",
        "events": int(len(one)),
        "calls": len(times),
        "median_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "encode_median_ms": float(np.median(enc_t) * 1e3),
        "build_features_median_ms": float(np.median(build_t) * 1e3),
        "with_validation": {
            "what": "canonical_events (validation from string timestamps) + encode + build_features",
            "calls": len(vt),
            "median_ms": float(np.median(vms)),
            "p99_ms": float(np.percentile(vms, 99)),
        },
        "peak_rss_bytes": peak_rss_bytes(),
    }


PHASES = {
    "generate": phase_generate,
    "features": phase_features,
    "features_pandas": phase_features_pandas,
    "floor": phase_floor,
    "floor_same_read": phase_floor_same_read,
    "floor_pandas": phase_floor_pandas,
    "single": phase_single,
}


def run_phase(name: str, args, extra: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--parquet", args.parquet,
           "--single-parquet", args.single_parquet, "--customers", str(args.customers), "--seed", str(args.seed),
           "--generator", args.generator, "--single-calls", str(args.single_calls), "--order", args.order, *extra]
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"phase {name} failed (exit {proc.returncode})")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["subprocess_wall_s"] = wall
    out["loadavg_1min_before_after"] = [load_before, os.getloadavg()[0]]
    print(f"  {name}: {json.dumps({k: v for k, v in out.items() if not isinstance(v, dict)})[:400]}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--generator", choices=["auto", "journey", "numpy"], default="auto")
    ap.add_argument("--single-calls", type=int, default=1000)
    ap.add_argument("--order", choices=["canonical", "generator"], default="canonical",
                    help="row order of the Parquet file: canonical (customer_id, timestamp, event_type), as "
                         "journey_stage.core.events.sort_events writes it, or the generator's own order")
    ap.add_argument("--out", default=str(RESULTS / "features.json"))
    ap.add_argument("--workdir", default=None, help="where the Parquet file goes (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated Parquet files")
    ap.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--parquet", help=argparse.SUPPRESS)
    ap.add_argument("--single-parquet", help=argparse.SUPPRESS)
    ap.add_argument("--cutoff", help=argparse.SUPPRESS)
    ap.add_argument("--single-as-of", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.phase:  # child process: one phase, JSON on the last stdout line
        print(json.dumps(PHASES[args.phase](args)))
        return

    if args.single_calls < 500:
        ap.error("--single-calls must be >= 500")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_features_"))
    workdir.mkdir(parents=True, exist_ok=True)
    args.parquet = str(workdir / f"events_{args.customers}.parquet")
    args.single_parquet = str(workdir / "single_customer.parquet")
    print(f"bench_features: {args.customers:,} customers, workdir {workdir}", flush=True)
    try:
        gen = run_phase("generate", args, [])
        cut = ["--cutoff", gen["cutoff"], "--single-as-of", gen["single_as_of"]]
        feat = run_phase("features", args, cut)
        floor = run_phase("floor", args, cut)
        floor_same = run_phase("floor_same_read", args, cut)
        floor_pd = run_phase("floor_pandas", args, cut)
        feat_pd = run_phase("features_pandas", args, cut)
        single = run_phase("single", args, cut)
    finally:
        if not args.keep:
            for p in (args.parquet, args.single_parquet):
                Path(p).unlink(missing_ok=True)
            if not args.workdir:
                workdir.rmdir()

    gb = 1024 ** 3
    eps = feat["events"] / feat["total_s"]
    result = {
        "benchmark": "features",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "loadavg_at_end": list(os.getloadavg()),
                    "note": "shared machine: other processes may run; see loadavg_1min_before_after per phase "
                            "and cpu_s (less sensitive to contention than wall time)"},
        "targets": {
            "events_per_second_min": TARGET_EVENTS_PER_S, "cores": 2,
            "peak_rss_gb_max": TARGET_PEAK_GB, "single_customer_median_ms_max": TARGET_SINGLE_MEDIAN_MS,
        },
        "data": gen,
        "batch": {
            "cutoff": gen["cutoff"],
            "events": feat["events"],
            "customers": feat["customers_out"],
            "measured": "read Parquet straight to Arrow (the 5 columns features use; customer_id, event_type, "
                        "channel dictionary-encoded by the reader) + features.encode.encode(Table) + "
                        "journey_stage.features.build.build_features (customer blocks on 2 threads)",
            "wall_s": feat["total_s"],
            "phases_s": {k: feat[k] for k in ("read_parquet_to_arrow_s", "encode_s", "build_features_s")},
            "events_per_second": eps,
            "cpu_s": feat["cpu_s"],
            "events_per_cpu_second": feat["events"] / feat["cpu_s"],
            "peak_rss_bytes": feat["peak_rss_bytes"],
            "peak_rss_gib": feat["peak_rss_bytes"] / gb,
            "peak_rss_gb_decimal": feat["peak_rss_bytes"] / 1e9,
            "details": feat,
            "pandas_route": feat_pd | {"events_per_second": feat["events"] / feat_pd["total_s"]},
            "floor": {
                "pyarrow": floor,
                "pyarrow_same_read": floor_same,
                "pandas": floor_pd,
                "ratio_to_pyarrow_floor": feat["total_s"] / floor["total_s"],
                "ratio_to_pyarrow_same_read_floor": feat["total_s"] / floor_same["total_s"],
                "cpu_ratio_to_pyarrow_floor": feat["cpu_s"] / floor["cpu_s"],
                "ratio_to_pandas_floor": feat["total_s"] / floor_pd["total_s"],
                "best_floor_s": min(floor["total_s"], floor_pd["total_s"]),
                "ratio_to_best_floor": feat["total_s"] / min(floor["total_s"], floor_pd["total_s"]),
                "floor_peak_rss_gb": floor["peak_rss_bytes"] / gb,
            },
        },
        "single_customer": single,
        "pass": {
            "events_per_second": eps >= TARGET_EVENTS_PER_S,
            "peak_rss_gib": feat["peak_rss_bytes"] / gb <= TARGET_PEAK_GB,
            "peak_rss_gb_decimal": feat["peak_rss_bytes"] / 1e9 <= TARGET_PEAK_GB,
            "single_customer_median": single["median_ms"] <= TARGET_SINGLE_MEDIAN_MS,
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"events": feat["events"], "wall_s": round(feat["total_s"], 2), "events_per_s": round(eps),
                      "peak_rss_gib": round(feat["peak_rss_bytes"] / gb, 2),
                      "floor_s": round(floor["total_s"], 2), "ratio_to_floor": round(feat["total_s"] / floor["total_s"], 2),
                      "same_read_floor_s": round(floor_same["total_s"], 2),
                      "ratio_to_same_read_floor": round(feat["total_s"] / floor_same["total_s"], 2),
                      "pandas_route_s": round(feat_pd["total_s"], 2),
                      "pandas_floor_s": round(floor_pd["total_s"], 2),
                      "ratio_to_pandas_floor": round(feat["total_s"] / floor_pd["total_s"], 2),
                      "single_median_ms": round(single["median_ms"], 3), "single_p99_ms": round(single["p99_ms"], 3),
                      "pass": result["pass"]}, indent=None))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

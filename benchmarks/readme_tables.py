"""Render the README's "Results on real data" and "Benchmarks" tables from the JSON results.

The tables live between marker comments in README.md and are never edited by hand:

    <!-- results:begin -->     ...     <!-- results:end -->
    <!-- benchmarks:begin -->  ...     <!-- benchmarks:end -->

    python benchmarks/readme_tables.py          # rewrite the README between the markers
    python benchmarks/readme_tables.py --check  # exit 1 (and show a diff) if the README differs

Sources (``benchmarks/results/``):

* ``real_data.json`` (written by ``benchmarks/bench_real_data.py``, which runs the README's
  real-data commands)::

      {"runs": [{"dataset": "cdnow", "command": "journey train --events cdnow.parquet ...",
                 "tasks": {"churn": {"metric": "roc_auc", "value": 0.838, "ci": [0.831, 0.845],
                                     "n_test": 23570, "horizon_days": 91,
                                     "other": {"pr_auc": 0.959, "ece": 0.021},
                                     "baselines": {"recency": {"value": 0.828, "ci": [0.82, 0.835]},
                                                   "logistic_regression": 0.839}},
                           "advocacy": {"skipped": "no advocacy events"}}}]}

  ``ci``, ``n_test``, ``horizon_days``, ``other``, ``protocol``, ``served`` (``"model"`` or
  ``"baseline:<rule>"``, with ``served_metrics``) and a baseline's ``ci`` are optional; a baseline
  is a number or ``{"value", "ci"}``; a task is either measured or ``{"skipped": reason}``. The
  rows follow the ``journey train`` commands of the README's results block: a command with no
  run in the JSON (or no JSON at all) gives a row that says "not measured".
* ``generate.json``, ``features.json``, ``train.json``, ``service.json``, ``batch.json``: one
  result per benchmark script; each has its own keys, so each is rendered by its own function
  below. A missing file gives a "not measured" row.
* ``service_overload.json`` (``bench_service.py --sweep``): the HTTP overload sweep, a table of its
  own under the benchmarks table (one row per rate); missing: one "not measured" line.
* ``profiles.json`` (``bench_profiles.py``): the live profile stores, a table of its own (one row
  per store, rendered by ``readme_profiles.py``); missing: one "not measured" line.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_profiles import profiles_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"

NOT_MEASURED = "not measured"

# ---- helpers ------------------------------------------------------------------------------------


def load(results: Path, name: str) -> dict | None:
    path = results / name
    if not path.exists():
        return None
    return json.loads(path.read_text())


def yes_no(ok: bool | None, why: str = "") -> str:
    if ok is None:
        return "—"
    return "yes" if ok else "**no**" + (f" ({why})" if why else "")


def num(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def ci_text(ci) -> str:
    return f" [{num(ci[0])}, {num(ci[1])}]" if ci else ""


def load_range(values) -> str:
    vals = [v for v in values if v is not None]
    lo, hi = round(min(vals)), round(max(vals))
    return f"~{lo}" if lo == hi else f"{lo}-{hi}"


def ms_or_s(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


# ---- results on real data ------------------------------------------------------------------------

METRIC = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "macro_f1": "macro-F1", "accuracy": "accuracy",
          "ece": "ECE", "brier": "Brier", "log_loss": "log loss", "lift_top_decile": "top-decile lift"}
DATASET = {"cdnow": "CDNOW", "olist-funnel": "Olist funnel", "olist_funnel": "Olist funnel", "rees46": "REES46"}
TASK_TEXT = {  # what each label means (SPEC section 4), with the horizon filled in
    "stage": "stage in {h} d",
    "churn": "churn, no activity in {h} d",
    "advocacy": "advocacy event in {h} d",
    "conversion": "conversion in {h} d",
}
# Reference figures quoted from data/real/README.md (published or measured on the raw data with
# that README's own protocol, not by this product); keyed by (dataset, task).
REFERENCE = {
    ("cdnow", "churn"): "recency 0.828, BG/NBD 0.833, LightGBM on 8 RFM features 0.837",
    ("olist-funnel", "conversion"): "per-channel rate 0.606, LightGBM 0.658 (one score per lead at first contact)",
}


def results_commands(readme_text: str) -> list[dict]:
    """The `journey train` commands of the README's results block, each with its dataset."""
    section = readme_text.split("## Results on real data", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    if block is None:
        raise SystemExit("README: no ```bash block in 'Results on real data'")
    produced: dict[str, str] = {}  # events file -> dataset of the `journey convert` that wrote it
    runs = []
    for line in block.group(1).splitlines():
        cmd = line.split(" #", 1)[0].strip()
        if not cmd:
            continue
        argv = shlex.split(cmd)
        if argv[:2] == ["journey", "convert"]:
            produced[argv[argv.index("--out") + 1]] = argv[2]
        elif argv[:2] == ["journey", "train"]:
            events = argv[argv.index("--events") + 1]
            test_from = argv[argv.index("--test-from") + 1] if "--test-from" in argv else None
            horizons = {argv[i + 1].split("=")[0]: int(argv[i + 1].split("=")[1]) for i, a in enumerate(argv) if a == "--horizon"}
            runs.append({"command": cmd, "dataset": produced.get(events, Path(events).stem), "test_from": test_from, "horizons": horizons})
    return runs


def task_cell(task: str, res: dict, horizon: int | None) -> str:
    h = res.get("horizon_days", horizon)
    text = TASK_TEXT.get(task, task).format(h=h) if h else task
    n = res.get("n_test")
    return f"{text} ({n:,})" if n is not None else text


def model_cell(res: dict) -> str:
    out = f"{METRIC.get(res['metric'], res['metric'])} {num(res['value'])}{ci_text(res.get('ci'))}"
    for k, v in (res.get("other") or {}).items():
        out += f", {METRIC.get(k, k)} {num(v)}"
    if res.get("protocol") not in (None, "temporal"):
        out += f" (protocol {res['protocol']})"
    served = res.get("served", "model")
    if served != "model":  # the model lost to a rule on validation: the predictor serves the rule
        rule = served.split(":", 1)[1].replace("_", " ")
        value = (res.get("served_metrics") or {}).get(res["metric"])
        out += f"; **serves the {rule} rule**" + (f" ({METRIC.get(res['metric'], res['metric'])} {num(value)})" if value is not None else "")
    return out


def baselines_cell(res: dict) -> str:
    parts = []
    for name, b in (res.get("baselines") or {}).items():
        value, ci = (b.get("value"), b.get("ci")) if isinstance(b, dict) else (b, None)
        if value is None:
            continue
        parts.append(f"{name.replace('_', ' ')} {num(value)}{ci_text(ci)}")
    return "; ".join(parts) or "—"


def render_results(readme_text: str, results: Path) -> str:
    data = load(results, "real_data.json")
    measured = {r.get("command", "").strip(): r for r in (data or {}).get("runs", [])}
    rows = []
    for expected in results_commands(readme_text):
        ds = expected["dataset"]
        label = DATASET.get(ds, ds)
        if expected["test_from"]:
            label += f", test from {expected['test_from']}"
        run = measured.get(expected["command"])
        if run is None:
            why = "no benchmarks/results/real_data.json yet" if data is None else "real_data.json has no run of this command"
            rows.append([label, "all", f"{NOT_MEASURED}: {why}", "", ""])
            continue
        default_h = expected["horizons"]
        for task, res in run.get("tasks", {}).items():
            if "skipped" in res:
                rows.append([label, task, f"skipped: {res['skipped']}", "", ""])
            else:
                ref = res.get("reference") or REFERENCE.get((ds.replace("_", "-"), task), "—")
                rows.append([label, task_cell(task, res, default_h.get(task, res.get("horizon_days"))),
                             model_cell(res), baselines_cell(res), ref])
            label = DATASET.get(ds, ds)  # the run's cutoff once, on its first row
    header = ["data", "task (test rows)", "model", "baselines (same rows)", "reference figure (data/real/README.md)"]
    return table(header, rows)


# ---- benchmarks ----------------------------------------------------------------------------------


def generate_rows(r: dict | None) -> list[list[str]]:
    if r is None:
        return [["generate 1,000,000 customers + write Parquet (`bench_generate.py`)", NOT_MEASURED, "<= 3 min, <= 6 GB", "—"]]
    t = r["targets"]
    return [[
        f"generate {r['customers']:,} customers ({r['events'] / 1e6:.1f}M events) + write Parquet",
        f"{r['seconds']:.1f} s, peak {r['peak_rss_mb'] / 1024:.1f} GB; {r['ratio_to_floor']:.2f}x a floor of generating "
        f"and writing the same number of random rows ({r['floor_seconds']:.1f} s)",
        f"<= {t['seconds'] / 60:.0f} min, <= {t['peak_rss_mb'] / 1024:.0f} GB",
        yes_no(r["meets_targets"]),
    ]]


def features_rows(r: dict | None) -> list[list[str]]:
    if r is None:
        return [["features, 1,000,000 customers, one cutoff (`bench_features.py`)", NOT_MEASURED, ">= 1M events/s on 2 cores, <= 6 GB", "—"],
                ["features, one customer with 200 events, in-process", NOT_MEASURED, "median <= 2 ms", "—"]]
    t, b, s, p = r["targets"], r["batch"], r["single_customer"], r["pass"]
    misses = [w for w, ok in (("wall rate", p["events_per_second"]), ("memory", p["peak_rss_gib"])) if not ok]
    single_load = load_range(s.get("loadavg_1min_before_after", []) or [0])
    return [
        [
            f"features, {b['customers']:,} customers / {b['events'] / 1e6:.1f}M events, one cutoff (read Parquet + encode + build)",
            f"{b['wall_s']:.1f} s wall = {b['events_per_second'] / 1e3:.0f}k events/s ({b['cpu_s']:.1f} CPU-s = "
            f"{b['events_per_cpu_second'] / 1e6:.2f}M events per CPU-second); {b['floor']['ratio_to_pyarrow_floor']:.1f}x the floor "
            f"(pyarrow read + group-by count); peak {b['peak_rss_gib']:.2f} GiB (load {load_range(b['details']['loadavg_1min_before_after'])})",
            f">= {t['events_per_second_min'] / 1e6:.0f}M events/s on {t['cores']} cores, <= {t['peak_rss_gb_max']:.0f} GB",
            yes_no(not misses, " and ".join(misses)),
        ],
        [
            f"features, one customer with {s['events']} events, in-process",
            f"median {s['median_ms']:.1f} ms, p99 {s['p99_ms']:.0f} ms ({s['calls']:,} calls, load {single_load})",
            f"median <= {t['single_customer_median_ms_max']:.0f} ms",
            yes_no(p["single_customer_median"]),
        ],
    ]


def train_rows(r: dict | None) -> list[list[str]]:
    if r is None:
        return [["training, 200,000 customers (`bench_train.py`)", f"{NOT_MEASURED} (no benchmarks/results/train.json)", "<= 10 min", "—"]]
    t, sample = r["targets"], r.get("sample") or {}
    sampled = f"; trained and evaluated on {sample['customers']:,} sampled customers" if sample.get("applied") else ""
    memory = f", <= {t['peak_rss_gb_max']:g} GB" if "peak_rss_gb_max" in t else ""
    return [[
        f"training, {r['customers']:,} customers / {r['events'] / 1e6:.1f}M events ({r['snapshot_rows']:,} snapshot rows{sampled})",
        f"{r['total_s_excluding_generation'] / 60:.1f} min (read + validate {r['read_validate_s']:.0f} s, train + evaluate "
        f"{r['train_evaluate_s']:.0f} s), peak {r['peak_rss_gb']:.1f} GB",
        f"<= {t['total_s_max'] / 60:.0f} min{memory}" if "total_s_max" in t else f"peak{memory}",
        yes_no(r["pass"]),
    ]]


def service_rows(r: dict | None) -> list[list[str]]:
    if r is None:
        return [["HTTP, one customer with 200 events per request (`bench_service.py`)", NOT_MEASURED, "p99 <= 50 ms, 0 errors, <= 1.5 GB", "—"]]
    c, h, seq, ip, checks = r["config"], r["http"], r["http_sequential"], r["in_process"], r["checks"]
    kinds = ", ".join(f"{v:,} {k.replace('http_', 'HTTP ')}" for k, v in h["errors_by_kind"].items())
    ratio = r["http_overhead"]["sequential_p50_ratio_to_predict"]
    workers = f"{c['workers']} worker" + ("s" if c["workers"] != 1 else "")
    passed = [k for k, v in checks.items() if v["pass"]]
    failed = [k for k, v in checks.items() if not v["pass"]]
    names = {"p99_ms": "p99", "errors": "errors", "peak_rss_gb": "memory"}
    why = ", ".join(f"{names.get(k, k)} yes" for k in passed) if failed else ""
    return [[
        f"HTTP, one customer with {c['events_per_request']} events per request, {c['rate']:.0f} req/s for {c['seconds']:.0f} s ({workers})",
        f"{h['ok']:,} of {h['requests']:,} answered ({h['achieved_rate']} req/s), {h['errors']:,} errors ({kinds or 'none'}), "
        f"p99 {ms_or_s(h['latency']['p99_ms'])}; peak memory {h['peak_rss_gb']:.2f} GB. One request at a time: "
        f"{seq['p50_ms']:.1f} ms over HTTP vs {ip['predict']['p50_ms']:.1f} ms in-process (the API method's body: validation + scoring) = "
        f"{ratio:.2f}x; scoring alone {ip['score']['p50_ms']:.1f} ms (medians)",
        f"p99 <= {checks['p99_ms']['target']:.0f} ms, {checks['errors']['target']} errors, <= {checks['peak_rss_gb']['target']} GB",
        yes_no(not failed, why),
    ]]


def in_process_rows(r: dict | None) -> list[list[str]]:
    """``bench_service.py --in-process-only``: one prediction's handling in process, beside the four-model floor."""
    if r is None:
        return []
    ip = r["in_process"]
    p50, floor = ip["predict"]["p50_ms"], ip["floor"]["p50_ms"]
    return [[
        "one prediction in process, one customer with 200 events, reasons included (`bench_service.py --in-process-only`)",
        f"median {p50:.2f} ms = {ip['p50_ratio_to_floor']['predict']:.1f}x the four models alone ({floor:.2f} ms, same run); "
        f"with validation and JSON {ip['answer']['p50_ms']:.2f} ms ({ip['calls']:,} calls, load {load_range(ip['load_average_before'][:1])})",
        "median <= 2.0 ms", yes_no(p50 <= 2.0),
    ]]


def http_cpu_rows(now: dict | None, before: dict | None) -> list[list[str]]:
    """``bench_http_cpu.py``: server CPU per request over HTTP beside the in-process answer."""
    if now is None:
        return []
    was = (f"; at {before['commit']} (BentoML's router on the path): {before['server_cpu_ms_per_request']:.2f} ms, "
           f"plumbing {before['plumbing_ms']:.2f} ms") if before else ""
    return [[
        "server CPU per `POST /predict`, one worker, one request at a time (`bench_http_cpu.py`)",
        f"{now['server_cpu_ms_per_request']:.2f} ms at {now['commit']} (in-process answer {now['floor_in_process_answer_cpu_ms']:.2f} ms, "
        f"plumbing {now['plumbing_ms']:.2f} ms; load {load_range(now['load_average_before'][:1])}){was}",
        "reported", "—",
    ]]


def batch_rows(r: dict | None) -> list[list[str]]:
    if r is None:
        return [["batch scoring, 1,000,000 customers (`bench_batch.py`)", NOT_MEASURED, "<= 3 min, <= 6 GB", "—"]]
    t, d, loc, fl = r["targets"], r["data"], r["local"], r["floor"]
    loads = [r["machine"]["load_average_at_start"][0], loc["load_average_after"][0]]
    rows = [[
        f"batch scoring {d['customers']:,} customers / {d['events'] / 1e6:.1f}M events, local engine, no reasons",
        f"{loc['wall_s']:.1f} s, peak {loc['peak_rss_tree_gb']:.2f} GB (process tree, load {load_range(loads)}); "
        f"{loc['ratio_to_floor_arrow']:.0f}x the pyarrow floor (read input, one row per customer, write: {fl['arrow_wall_s']:.1f} s)",
        f"<= {t['local_no_reasons_wall_s_max'] / 60:.0f} min, <= {t['local_no_reasons_peak_rss_gb_max']:.0f} GB",
        yes_no(loc["meets_wall_target"] and loc["meets_memory_target"],
               " and ".join(w for w, ok in (("time", loc["meets_wall_target"]), ("memory", loc["meets_memory_target"])) if not ok)),
    ]]
    rs = r.get("reasons")
    if rs and "full" in rs:
        full = rs["full"]
        rows.append([
            f"batch scoring with `--reasons`, same {d['customers']:,} customers",
            (f"timed out after {full.get('wall_s', 0):.0f} s" if full.get("timed_out") else
             f"{full['wall_s']:.1f} s ({rs['ratio_to_no_reasons']:.1f}x without reasons), peak {full['peak_rss_tree_gb']:.2f} GB "
             f"(load {load_range([full['load_average_after'][0]])})"),
            f"<= {rs['target_wall_s'] / 60:.0f} min", yes_no(rs["meets_target"]),
        ])
    sp = r.get("spark")
    if sp:
        run, scope = (sp["full"], f"same {d['customers']:,} customers") if "full" in sp else (sp.get("subset"), "subset")
        if run:
            n = run["counts"]["customers"]
            rows.append([
                f"batch scoring, Spark engine (local[*]), {scope if 'full' in sp else f'{n:,}-customer subset'}",
                f"{run['wall_s']:.0f} s" + (f" ({sp['spark_over_local']:.2f}x local)" if "spark_over_local" in sp else "")
                + f", peak {run['peak_rss_tree_gb']:.1f} GB (driver, JVM and Python workers)" + (f"; {sp['note']}" if sp.get("note") else ""),
                "reported", "—",
            ])
    return rows


def overload_table(r: dict | None) -> str:
    """The HTTP overload sweep of ``bench_service.py --sweep``: one row per rate."""
    if r is None:
        return f"HTTP overload sweep (`bench_service.py --sweep 100,200,300,400`): {NOT_MEASURED}."
    c, t = r["config"], r["targets"]
    loads = [x for run in r["runs"] for x in (run["load_average_before"][0], run["load_average_after"][0])]
    rates = ",".join(f"{x:g}" for x in c["rates"])
    head = (f"HTTP overload sweep (`bench_service.py --sweep {rates} --sweep-seconds {c['seconds']:g}`: one customer with "
            f"{c['events_per_request']} events per request, open loop, {c['workers']} workers, default admission settings: queue "
            f"{c['queue_length']}, wait {c['queue_wait_ms']} ms, {c['max_concurrency']} in progress; load {load_range(loads)}). Targets: "
            f"shed answers within {t['shed_p99_ms']:.0f} ms (p99), {t['timeouts']} timeouts, {t['server_errors']} 5xx, accepted p99 <= "
            f"{t['accepted_p99_ms']:.0f} ms.")
    rows = []
    for run in r["runs"]:
        acc, shed = run["accepted_latency"], run["shed_latency"]
        shed_cell = f"{run['shed']:,}" + (f" (p50 {ms_or_s(shed['p50_ms'])}, p99 {ms_or_s(shed['p99_ms'])})" if run["shed"] else "")
        accepted = f"{ms_or_s(acc['p50_ms'])} / {ms_or_s(acc['p99_ms'])}" if acc.get("n") else "—"
        rows.append([f"{run['rate']:g}", f"{run['answered']:,} of {run['requests']:,}", shed_cell, f"{run['timeouts']:,}",
                     f"{run['server_errors']:,}", accepted, yes_no(run["meets_targets"])])
    best = r.get("highest_clean_rate")
    tail = (f"Highest swept rate with p99 <= {t['clean_p99_ms']:.0f} ms and nothing shed: "
            + (f"{best:g} requests/s." if best is not None else "none of the swept rates."))
    header = ["requests/s", "answered (200)", "shed (429/503)", "timeouts", "5xx", "accepted p50 / p99", "met?"]
    return f"{head}\n\n{table(header, rows)}\n\n{tail}"


def render_benchmarks(results: Path) -> str:
    rows = []
    rows += generate_rows(load(results, "generate.json"))
    rows += features_rows(load(results, "features.json"))
    rows += train_rows(load(results, "train.json"))
    for big in ("train_1000000.json", "train_3000000.json"):  # bench_train.py --customers N (N > 200,000), when run
        rows += train_rows(load(results, big)) if load(results, big) else []
    rows += in_process_rows(load(results, "service_in_process.json"))
    rows += service_rows(load(results, "service.json"))
    rows += http_cpu_rows(load(results, "http_cpu.json"), load(results, "http_cpu_before.json"))
    rows += batch_rows(load(results, "batch.json"))
    return (table(["benchmark", "result", "target", "met?"], rows) + "\n\n" + overload_table(load(results, "service_overload.json"))
            + "\n\n" + profiles_table(load(results, "profiles.json"), NOT_MEASURED, table))


# ---- README rewriting ----------------------------------------------------------------------------


def replace_between(text: str, name: str, body: str) -> str:
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise SystemExit(f"README: expected one '{begin}' followed by one '{end}'")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    note = "<!-- generated by benchmarks/readme_tables.py from benchmarks/results/*.json; do not edit by hand -->"
    return f"{head}{begin}\n{note}\n{body}\n{end}{tail}"


def render(readme_text: str, results: Path = RESULTS) -> str:
    text = replace_between(readme_text, "results", render_results(readme_text, results))
    return replace_between(text, "benchmarks", render_benchmarks(results))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if the README's tables differ from the JSONs")
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    current = args.readme.read_text()
    new = render(current, args.results)
    if args.check:
        if new != current:
            diff = difflib.unified_diff(current.splitlines(), new.splitlines(), "README.md", "rendered", lineterm="")
            print("\n".join(diff))
            print(f"\n{args.readme} differs from the tables rendered from {args.results}; run `python benchmarks/readme_tables.py`", file=sys.stderr)
            return 1
        print(f"{args.readme}: tables match {args.results}")
        return 0
    if new != current:
        args.readme.write_text(new)
        print(f"rewrote the tables of {args.readme}")
    else:
        print(f"{args.readme}: already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

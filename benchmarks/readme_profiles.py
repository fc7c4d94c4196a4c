"""The README's live-profiles table, rendered from ``benchmarks/results/profiles.json``
(``bench_profiles.py``); used by ``readme_tables.py``."""

from __future__ import annotations

STORE = {"sqlite": "SQLite (one file, WAL)", "redis": "Redis (one sorted set per customer)"}


def _load_range(values) -> str:
    vals = [v for v in values if v is not None]
    lo, hi = round(min(vals), 1), round(max(vals), 1)
    return f"~{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def _ms(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _rate(x: float) -> str:
    return f"{x / 1000:,.0f}k" if x >= 10_000 else f"{x:,.0f}"


def _predict_cell(p: dict) -> str:
    lat = p["latency"]
    if not lat.get("n"):
        return f"nothing answered, {p['errors']:,} errors"
    shed = sum(v for k, v in p["errors_by_kind"].items() if k in ("http_429", "http_503"))
    other = p["errors"] - shed
    errors = f"{other:,} errors" + (f", {shed:,} shed (429/503)" if shed else "")
    return f"p50 {_ms(lat['p50_ms'])}, p99 {_ms(lat['p99_ms'])}, {errors} ({p['ok']:,} of {p['requests']:,} answered)"


def _store_loads(s: dict) -> list[float]:
    out = [s["bulk_load"]["load_average_before"][0], s["bulk_load"]["load_average_after"][0], s["ingest_http"]["load_average_before"][0]]
    return out + [s["predict"][k][w][0] for k in ("by_id", "events_in_body") for w in ("load_average_before", "load_average_after")]


def _loads(r: dict) -> list[float]:
    out = [r["machine"]["load_average_at_start"][0], r["machine"]["load_average_at_end"][0]]
    return out + [x for s in r["stores"].values() for x in _store_loads(s)]


def _met(kind: str, checks: dict) -> str:
    mine = {k: c for k, c in checks.items() if k.startswith(kind + "_")}
    failed = [k[len(kind) + 1:].replace("_", " ") for k, c in mine.items() if not c["pass"]]
    return "yes" if not failed else "**no** (" + ", ".join(failed) + ")"


def profiles_table(r: dict | None, not_measured: str, table) -> str:
    """One row per store: bulk load, HTTP ingestion, prediction by id beside events in the body."""
    if r is None:
        return f"Live profiles (`bench_profiles.py`: bulk load, HTTP ingestion, prediction by id): {not_measured}."
    c, t, v = r["config"], r["targets"], r["validate_only"]
    head = (f"Live profiles (`bench_profiles.py`: {c['customers']:,} customers / {c['bulk_events'] / 1e6:.1f}M stored events; "
            f"{c['workers']} workers on loopback, default admission settings; load {_load_range(_loads(r))}). Targets: HTTP ingestion "
            f">= {t['ingest_events_per_s']:,} events/s in batches of {c['batch']}, SQLite bulk load >= {t['sqlite_bulk_events_per_s']:,} "
            f"events/s, prediction by id at {c['rate']:g} requests/s for {c['seconds']:g} s with p99 <= {t['predict_by_id_p99_ms']:.0f} ms "
            f"and {t['predict_by_id_errors']} errors. Floors of the same run: the validate-only reading of the same files "
            f"({_rate(v['events_per_s'])} events/s), in-process `store.add` of the same batches, the same customers with their events "
            f"in the body.")
    rows = []
    for kind, s in r["stores"].items():
        b, h, f, p = s["bulk_load"], s["ingest_http"], s["ingest_in_process_add"], s["predict"]
        errors = f", {h['errors']:,} errors" if h["errors"] else ""
        rows.append([
            f"{STORE.get(kind, kind)}, load {_load_range(_store_loads(s))}",
            f"{_rate(b['events_per_s'])} events/s ({b['wall_s']:.0f} s; validate-only {b['ratio_to_validate_only']:.2f}x as fast)",
            f"{_rate(h['events_per_s'])} events/s, batch p99 {_ms(h['batch_latency']['p99_ms'])}{errors} "
            f"(in-process add {_rate(f['events_per_s'])} events/s = {h['ratio_to_in_process_add']:.1f}x)",
            _predict_cell(p["by_id"]), _predict_cell(p["events_in_body"]), _met(kind, r["checks"]),
        ])
    header = ["store", "bulk load", "HTTP ingestion", "prediction by id", "same customers, events in the body", "met?"]
    return f"{head}\n\n{table(header, rows)}"

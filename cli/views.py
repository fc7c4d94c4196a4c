"""What the ``journey`` commands print about training, data sufficiency and the promotion gate
(rich tables and plain lines built from report.json and the gate's decision)."""

from __future__ import annotations

from rich.table import Table


def summary_table(report: dict) -> Table:
    """Per task: protocol, test rows, the model and its baselines on the same rows, what is served, the data verdict."""
    table = Table(title="Test metrics (model vs baselines)")
    for col in ("task", "protocol", "n_test", "model", "baselines", "served", "data"):
        table.add_column(col)
    for task, res in report["tasks"].items():
        verdict = (res.get("sufficiency") or {}).get("verdict", "-")
        if "skipped" in res:
            table.add_row(task, "-", "-", "skipped", res["skipped"], "-", verdict)
            continue
        metric = "macro_f1" if task == "stage" else "roc_auc"
        base = ", ".join(f"{b} {m.get(metric, float('nan')):.3f}" for b, m in res["baselines"].items())
        served = res.get("served", "model")
        served = "model" if served == "model" else f"{served.split(':', 1)[1]} rule"
        table.add_row(task, str(res.get("protocol", "-")), str(res["n_test"]), f"{metric} {res['model'][metric]:.3f}", base, served, verdict)
    return table


def decision_lines(d: dict) -> list[str]:
    """The gate's decision: each primary metric's difference with its interval, then the verdict."""
    lines = []
    for key, c in d["comparisons"].items():
        other = f"champion v{d['champion']} {_num(c.get('champion'))}" if d["champion"] else f"{c.get('baseline')} rule {_num(c.get('baseline_value'))}"
        ci = c.get("ci")
        interval = f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else " (no interval: point values)"
        diff = f"{c['difference']:+.4f}" if c.get("difference") is not None else "n/a"
        verdict = "inconclusive (too few test rows of a class), ok" if c.get("inconclusive") else "ok" if c["passed"] else "significantly worse"
        lines.append(f"{key}: challenger {_num(c.get('challenger'))} vs {other}: difference {diff}{interval} -> {verdict}")
    verdict = "promoted to champion" if d["promoted"] else "not promoted"
    lines.append(f"v{d['challenger']}: {verdict} ({d['reason']}; tolerance {d.get('tolerance', 0):g})")
    return lines


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def sufficiency_lines(task: str, f: dict, horizon: float) -> list[str]:
    """``journey check``'s lines for one task (the facts of report.json ``tasks.<task>.sufficiency``)."""
    head = f"{task} ({horizon:g}-day horizon): {f['verdict'].upper()}"
    lines = [head + (f": {f['reason']}" if f["reason"] else "")]
    if f["verdict"] != "insufficient":
        lines.append(f"  protocol {f['protocol_detail']}")
    if f.get("history_days") is not None:
        lines.append(f"  history {f['history_days']:g} days before the first test cutoff {f['first_test_cutoff'][:10]} (log {f['log_days']:g} days)")
    if f.get("rows"):
        c, e = f["cutoffs"], f["eligible_per_cutoff"]
        elig = ", ".join(f"{p} {v[0]:,}" + (f"-{v[1]:,}" if v[1] != v[0] else "") for p, v in e.items() if v)
        lines.append(f"  cutoffs train {c['train']}, validation {c['validation']}, test {c['test']}; eligible customers per cutoff: {elig}")
        what = "positives" if "positives" in f else "rows outside the most frequent stage"
        counts = f.get("positives") or f["minority"]
        lines.append("  rows / " + what + ": " + ", ".join(f"{p} {f['rows'][p]:,} / {counts[p]:,}" for p in f["rows"])
                     + f" (minimum of the smaller class: train {f['minimums']['train']}, validation {f['minimums']['validation']}, test {f['minimums']['test']})")
    return lines

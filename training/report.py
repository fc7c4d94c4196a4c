"""report.json and a self-contained report.html (plots embedded as PNG data URIs, matplotlib)."""

from __future__ import annotations

import base64
import html
import io as _io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402

from journey_stage.core.io import write_json, write_text  # noqa: E402


def _png(fig) -> bytes:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def make_plots(outcome) -> dict[str, bytes]:
    plots: dict[str, bytes] = {}
    rep = outcome.report["tasks"]
    if "stage" in outcome.evals:
        cm = rep["stage"]["model"]["confusion_matrix"]
        m = np.array(cm["matrix"], dtype=float)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.imshow(m / np.maximum(m.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(cm["labels"])), cm["labels"], rotation=45, ha="right")
        ax.set_yticks(range(len(cm["labels"])), cm["labels"])
        for i in range(len(m)):
            for j in range(len(m)):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7)
        ax.set_xlabel("predicted stage")
        ax.set_ylabel("revealed stage")
        ax.set_title("Stage confusion matrix (test)")
        plots["confusion_matrix"] = _png(fig)
        ev = outcome.evals["stage"]
        labels = ev.classes
        fig, ax = plt.subplots(figsize=(5, 3))
        counts = [int(np.sum(ev.y == c)) for c in labels]
        ax.bar(labels, counts)
        ax.set_title("Revealed stage distribution (test)")
        ax.tick_params(axis="x", rotation=45)
        plots["stage_distribution"] = _png(fig)
        pers = ev.baselines["persistence"]
        t = np.array([[np.sum((pers == a) & (ev.y == b)) for b in labels] for a in labels], dtype=float)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.imshow(t / np.maximum(t.sum(1, keepdims=True), 1), cmap="Greens", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("stage revealed next")
        ax.set_ylabel("observed stage now")
        ax.set_title("Stage transition matrix (row-normalised)")
        plots["transition_matrix"] = _png(fig)
    binary = [t for t in ("churn", "advocacy", "conversion") if t in outcome.evals]
    if binary:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        for t in binary:
            ev = outcome.evals[t]
            frac, mean = calibration_curve(ev.y, ev.proba, n_bins=10, strategy="quantile")
            ax.plot(mean, frac, marker="o", label=t)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed rate")
        ax.legend()
        ax.set_title("Calibration (test)")
        plots["calibration"] = _png(fig)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        for t in binary:
            ev = outcome.evals[t]
            order = np.argsort(-ev.proba)
            gains = np.cumsum(ev.y[order]) / max(ev.y.sum(), 1)
            ax.plot(np.arange(1, len(order) + 1) / len(order), gains, label=t)
        ax.set_xlabel("fraction of customers targeted")
        ax.set_ylabel("fraction of positives captured")
        ax.legend()
        ax.set_title("Cumulative gains (test)")
        plots["gains"] = _png(fig)
    for t, ev in outcome.evals.items():
        top = sorted(ev.importance.items(), key=lambda kv: -kv[1])[:15]
        if not top:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.barh([k for k, _ in top][::-1], [v for _, v in top][::-1])
        ax.set_title(f"Feature importance (gain): {t}")
        plots[f"importance_{t}"] = _png(fig)
    return plots


def model_description(res: dict) -> str:
    """'LightGBM (400 trees), sigmoid calibration' or, for a blend, 'LightGBM x0.75 + logistic regression x0.25 ...'."""
    w = (res.get("blend") or {}).get("booster_weight", 1.0)
    what = "LightGBM" if w == 1.0 else f"LightGBM x{w:g} + logistic regression x{1 - w:g}"
    return f"{what} ({res.get('best_iteration', '?')} trees), {res.get('calibration', '?')} calibration"


def served_text(res: dict, metric: str) -> str:
    """What the predictor serves for a task, with the validation numbers behind the choice."""
    served = res.get("served", "model")
    v = res.get("validation") or {}
    where = "cross-fitted folds" if str(res.get("protocol")) == "crossfit" else "validation"
    if served == "model":
        best = v.get("best_baseline")
        return "model" + (f" (beat {best} on {where}: {v['model']:.3f} vs {v['baselines'][best]:.3f})" if best else "")
    rule = served.split(":", 1)[1]
    test = (res.get("served_metrics") or {}).get(metric)
    return (f"<b>{html.escape(rule)} rule</b>, calibrated: the model did not beat it on {where} ({v['model']:.3f} vs "
            f"{v['baselines'][rule]:.3f}); test {metric} {test:.3f}")


def sufficiency_rows(report: dict) -> str:
    rows = []
    for task, res in report["tasks"].items():
        f = res.get("sufficiency") or {}
        counts = f.get("positives") or f.get("minority") or {}
        rows.append(
            f"<tr><td>{task}</td><td>{html.escape(str(f.get('verdict')))}</td><td>{html.escape(str(f.get('protocol_detail', '')))}</td>"
            f"<td>{f.get('history_days')}</td><td>{html.escape(json.dumps(f.get('eligible_per_cutoff', {})))}</td>"
            f"<td>{html.escape(json.dumps(f.get('rows', {})))}</td><td>{html.escape(json.dumps(counts))}</td>"
            f"<td>{html.escape(str(f.get('reason', '')))}</td></tr>"
        )
    head = ("<tr><th>task</th><th>verdict</th><th>protocol</th><th>history days</th><th>eligible per cutoff</th><th>rows</th>"
            "<th>positives (stage: outside the most frequent stage)</th><th>reason</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def render_html(report: dict, plots: dict[str, bytes]) -> str:
    rows = []
    for task, res in report["tasks"].items():
        if "skipped" in res:
            rows.append(f"<tr><td>{task}</td><td colspan=7>skipped: {html.escape(res['skipped'])}</td></tr>")
            continue
        metric = "macro_f1" if task == "stage" else "roc_auc"
        ci = res.get("ci95", {}).get(f"model.{metric}")
        ci_txt = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        base = "<br>".join(f"{b}: {m.get(metric, float('nan')):.3f}" for b, m in res["baselines"].items())
        rows.append(
            f"<tr><td>{task}</td><td>{html.escape(str(res.get('protocol')))}</td><td>{res['n_test']}</td>"
            f"<td>{html.escape(model_description(res))}</td><td>{metric}</td>"
            f"<td>{res['model'][metric]:.3f}{ci_txt}</td><td>{base}</td><td>{served_text(res, metric)}</td></tr>"
        )
    imgs = "".join(
        f"<figure><img alt='{k}' src='data:image/png;base64,{base64.b64encode(v).decode()}'><figcaption>{k}</figcaption></figure>"
        for k, v in plots.items()
    )
    ds = report["dataset"]
    sm = report.get("sample") or {}
    sampled = (f" A sample of {sm['customers']:,} of {sm['customers_total']:,} customers ({sm['events']:,} of {sm['events_total']:,} events), "
               f"whole customers chosen by a hash of customer_id (eval_customers_cap {sm['customers_cap']:,}); every test figure and "
               f"interval is over the sample." if sm.get("applied") else "")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Journey model report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
figure{{display:inline-block;margin:8px}}pre{{background:#f6f6f6;padding:1em;overflow:auto;font-size:12px}}</style></head><body>
<h1>Journey stage model report</h1>
<p>Data: {ds['events']:,} events, {ds['customers']:,} customers, {ds['start']} .. {ds['end']} (fingerprint {ds['fingerprint']}).{html.escape(sampled)}
Taxonomy: {html.escape(report['settings']['taxonomy'])}; horizons (days): {html.escape(json.dumps(report['settings']['horizons_days']))}.</p>
<h2>Test metrics (model vs baselines, 95% bootstrap interval over customers)</h2>
<table><tr><th>task</th><th>protocol</th><th>n test</th><th>model</th><th>metric</th><th>value</th><th>baselines</th><th>served</th></tr>{''.join(rows)}</table>
<h2>Data sufficiency (protocol, history, customers and positives per task)</h2>{sufficiency_rows(report)}
<h2>Plots</h2>{imgs}
<h2>Full report.json</h2><pre>{html.escape(json.dumps(report, indent=2, default=str))}</pre></body></html>"""


def write_report(outcome, report_dir: Path) -> dict[str, Path]:
    """Write report.json, report.html and the plot PNGs atomically; return the plot paths."""
    report_dir = Path(report_dir)
    plots = make_plots(outcome)
    paths = {}
    for name, png in plots.items():
        p = report_dir / "plots" / f"{name}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(png)
        paths[name] = p
    write_json(outcome.report, report_dir / "report.json")
    write_text(render_html(outcome.report, plots), report_dir / "report.html")
    return paths

"""The ``journey`` command line (typer + rich). File reading and writing happen here, at the edge."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from journey_stage.cli_common import STATE, console, friendly, out, progress_bar, runtime, taxonomy_and_settings
from journey_stage.core.errors import JourneyError
from journey_stage.core.runtime import DEFAULT_MODEL_URI, RuntimeSettings
from journey_stage.views import decision_lines, sufficiency_lines, summary_table  # noqa: F401 - summary_table: demo and tests

app = typer.Typer(help="Customer journey stage prediction: train, evaluate, register, serve and score.", no_args_is_help=True, add_completion=False)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    STATE["debug"] = debug
    with friendly():  # the runtime settings, read once per command; a bad variable is one line
        STATE["runtime"] = RuntimeSettings.from_env()


def _read(events: Path, tax, rejects: Path | None, unknown_stage: str | None, settings=None):
    """Validated events (rejects written, duplicates said) and the taxonomy; with training
    ``settings``, a log over ``eval_customers_cap`` customers is read for the sampled customers only
    (:func:`journey_stage.training.sampling.read_training_events`): ``(result, tax, sample)``."""
    from journey_stage.core import io
    from journey_stage.core.events import Validated

    if rejects is not None:  # before any work: --rejects must not overwrite the events
        from journey_stage.serving.writing import check_output

        check_output(rejects, "--rejects", inputs=[events])
    if unknown_stage:
        from journey_stage.core.io import event_files, read_raw

        types = set()
        for f in event_files(events):
            types |= set(read_raw(f)["event_type"].dropna().astype(str).str.strip())
        tax = tax.with_unknown(sorted(t for t in types if t and t not in tax.event_role), unknown_stage)
    sample = None
    if settings is not None:
        from journey_stage.training.sampling import read_training_events

        result, sample = read_training_events(events, tax, settings, allow_rejects=rejects is not None)
    else:
        result: Validated = io.read_events(events, tax, allow_rejects=rejects is not None)
    if rejects is not None:
        io.write_table(result.rejects, rejects)
        console.print(f"{result.n_problems} problem(s) in {len(result.rejects)} row(s) written to {rejects}")
    if result.duplicates_removed:
        console.print(f"{result.duplicates_removed} exact duplicate event(s) removed")
    return (result, tax, sample) if settings is not None else (result, tax)


@app.command()
def generate(
    customers: int = typer.Option(..., "--customers", help="Number of customers to simulate."),
    out_path: Path = typer.Option(..., "--out", help="Output events file (.parquet, .csv, .jsonl)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same journeys."),
    days: int = typer.Option(365, "--days", help="Length of the simulated period in days."),
    start: str = typer.Option("2025-01-01", "--start", help="First day of the simulated period."),
) -> None:
    """Synthetic social-media customer journeys (with the true latent stage in column true_stage)."""
    with friendly():
        from journey_stage.synthetic.generate import generate_events
        from journey_stage.core.io import write_table

        t0 = time.time()
        df = generate_events(customers, seed=seed, start=start, days=days)
        write_table(df, out_path, taxonomy="five_stage")
        out.print(f"{len(df):,} events for {customers:,} customers written to {out_path} in {time.time() - t0:.1f}s")


@app.command()
def convert(
    dataset: str = typer.Argument(..., help="cdnow, olist-funnel or rees46"),
    src: Path = typer.Argument(..., help="Source file or folder (see data/real/README.md)."),
    out_path: Path = typer.Option(..., "--out", help="Output events file (.parquet keeps the taxonomy preset)."),
) -> None:
    """Convert a real public dataset to canonical events, with its taxonomy preset."""
    with friendly():
        from journey_stage.core.convert import CONVERTERS
        from journey_stage.core.io import write_table

        if dataset not in CONVERTERS:
            raise JourneyError(f"unknown dataset {dataset!r}.", f"use one of {sorted(CONVERTERS)}.")
        fn, preset = CONVERTERS[dataset]
        df = fn(src)
        write_table(df, out_path, taxonomy=preset)
        out.print(f"{len(df):,} events, {df['customer_id'].nunique():,} customers -> {out_path} (taxonomy preset '{preset}')")


@app.command()
def validate(
    events: Path = typer.Option(..., "--events", help="Events file or folder."),
    taxonomy: Optional[str] = typer.Option(None, "--taxonomy", help="Preset name or TOML file (default: the file's preset or five_stage)."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Write every invalid row with its reason here."),
) -> None:
    """Check an events file against the schema and taxonomy; report every problem (exit 1 if any)."""
    with friendly():
        from journey_stage.core import io
        from journey_stage.core.taxonomy import load_taxonomy

        if rejects is not None:  # before any work: --rejects must not overwrite the events
            from journey_stage.serving.writing import check_output

            check_output(rejects, "--rejects", inputs=[events])
        tax = load_taxonomy(taxonomy or io.taxonomy_hint(events) or "five_stage")
        result = io.read_events(events, tax, allow_rejects=True)
        if rejects is not None:
            io.write_table(result.rejects, rejects)
        for p in result.problems:
            out.print(p.message, highlight=False, soft_wrap=True)
        out.print(
            f"{len(result.events):,} valid events, {result.events['customer_id'].nunique():,} customers, "
            f"{len(result.rejects):,} invalid row(s) with {result.n_problems:,} problem(s), {result.duplicates_removed:,} duplicate(s) removed"
            + (f"; unknown event types: {result.unknown_event_types}" if result.unknown_event_types else "")
        )
        if result.n_problems:
            raise typer.Exit(1)


def run_training(events: Path, tax, settings, report_dir: Path, rejects: Path | None = None, unknown_stage: str | None = None, model_name: str | None = None) -> dict:
    """Train, evaluate, write the report, log to MLflow and register a challenger (shared by train and demo)."""
    from journey_stage.features.encode import encode
    from journey_stage.training import gate, tracking
    from journey_stage.model import registry
    from journey_stage.training.pipeline import train_and_evaluate
    from journey_stage.training.report import write_report

    result, tax, sample = _read(events, tax, rejects, unknown_stage, settings)
    with progress_bar() as bar:
        tasks = {}

        def progress(stage: str, i: int, n: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"building {stage}" if stage == "snapshots" else "training models", total=n)
            bar.update(tasks[stage], completed=i)

        enc = encode(result.events, tax)
        outcome = train_and_evaluate(result.events, tax, settings, progress=progress, encoded=enc, sample=sample)
    for m in outcome.messages:
        console.print(f"[yellow]note:[/] {m}", highlight=False)
    name = model_name or settings.model_name
    registry.configure()  # the environment as it is now (run_training is also called from Python)
    champion_version = tracking.current_champion(name)
    champ = None
    if champion_version is not None:
        try:
            champ = registry.load_predictor(f"models:/{name}/{champion_version}")
            record = gate.gate_record(outcome.evals, outcome.report, champ, champion_version, enc, settings)
        except JourneyError as exc:
            console.print(f"[yellow]note:[/] champion v{champion_version} could not be evaluated on this test data: {exc.message}")
            champ, champion_version = None, None
    if champ is None:
        record = gate.gate_record(outcome.evals, outcome.report, None, None, enc, settings)
    outcome.report["gate"] = record
    plots = write_report(outcome, report_dir)
    logged = tracking.log_training_run(outcome, result.events, settings, report_dir, plots, name)
    tracking.record_gate(logged["run_id"], record["challenger"], record["champion"], champion_version, record=record)
    return logged | {"outcome": outcome}


@app.command()
def train(
    events: Path = typer.Option(..., "--events", help="Events file or folder."),
    taxonomy: Optional[str] = typer.Option(None, "--taxonomy", help="Preset name or TOML file (default: the file's preset or five_stage)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Settings TOML file."),
    horizon: list[str] = typer.Option([], "--horizon", help="TASK=DAYS, e.g. churn=91 (repeatable)."),
    test_from: Optional[str] = typer.Option(None, "--test-from", help="First test cutoff (date)."),
    report: Path = typer.Option(Path("report"), "--report", help="Folder for report.json and report.html."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Divert invalid rows here instead of failing."),
    unknown_stage: Optional[str] = typer.Option(None, "--unknown-stage", help="Map unknown event types to this stage."),
    model_name: Optional[str] = typer.Option(None, "--name", help="Registered model name (default journey-stage)."),
) -> None:
    """Build snapshots, train one model per task, evaluate against baselines, log and register a challenger."""
    with friendly():
        if report.exists() and not report.is_dir():
            raise JourneyError(f"--report {report}: is a file; expected a folder for report.json and report.html.", "pass a folder path (it is created if missing).")
        tax, settings = taxonomy_and_settings(events, taxonomy, config, horizon, {"test_from": test_from})
        logged = run_training(events, tax, settings, report, rejects, unknown_stage, model_name)
        out.print(summary_table(logged["outcome"].report))
        out.print(f"report: {report / 'report.html'}  |  registered {logged['model_uri']} as challenger (run {logged['run_id']})")


@app.command()
def check(
    events: Path = typer.Option(..., "--events", help="Events file or folder."),
    taxonomy: Optional[str] = typer.Option(None, "--taxonomy", help="Preset name or TOML file (default: the file's preset or five_stage)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Settings TOML file."),
    horizon: list[str] = typer.Option([], "--horizon", help="TASK=DAYS, e.g. churn=91 (repeatable)."),
    test_from: Optional[str] = typer.Option(None, "--test-from", help="First test cutoff (date)."),
    unknown_stage: Optional[str] = typer.Option(None, "--unknown-stage", help="Map unknown event types to this stage."),
) -> None:
    """Data sufficiency per task, before training: the protocol it would use, the history, eligible customers per
    cutoff, rows and positives in train/validation/test, and a verdict (exit 1 when no task can train)."""
    with friendly():
        from journey_stage.features.encode import encode
        from journey_stage.features.snapshots import plan_cutoffs

        tax, settings = taxonomy_and_settings(events, taxonomy, config, horizon, {"test_from": test_from})
        result, tax = _read(events, tax, None, unknown_stage)
        plan = plan_cutoffs(encode(result.events, tax), settings)
        for task, f in plan.sufficiency.items():
            for line in sufficiency_lines(task, f, getattr(settings.horizons, task)):
                out.print(line, highlight=False, soft_wrap=True)
        can = [t for t, f in plan.sufficiency.items() if f["verdict"] != "insufficient"]
        out.print(f"{len(can)} of {len(plan.sufficiency)} task(s) can train" + (f": {', '.join(can)}" if can else ""), highlight=False)
        if not can:
            raise typer.Exit(1)


@app.command()
def evaluate(
    events: Path = typer.Option(..., "--events", help="Events file or folder."),
    model: str = typer.Option(DEFAULT_MODEL_URI, "--model", help="MLflow model URI."),
    report: Path = typer.Option(Path("evaluation"), "--report", help="Folder for report.json."),
) -> None:
    """Evaluate a registered model on new data (its own settings, latest test cutoffs)."""
    with friendly():
        from journey_stage.features.encode import encode
        from journey_stage.core import io
        from journey_stage.training import gate
        from journey_stage.model import registry

        predictor = registry.load_predictor(model)
        result = io.read_events(events, predictor.taxonomy)
        enc = encode(result.events, predictor.taxonomy)
        evaluation = gate.evaluate_predictor(predictor, enc)
        io.write_json(evaluation, report / "report.json")
        out.print_json(data=evaluation["tasks"])
        out.print(f"evaluation of {model} written to {report / 'report.json'}")


@app.command()
def promote(
    name: str = typer.Option("journey-stage", "--name", help="Registered model name."),
) -> None:
    """Champion/challenger gate: promote the challenger unless a primary metric is significantly worse (paired bootstrap)
    than the champion's, or, with no champion, than the best rule baseline's; prints the differences and intervals."""
    with friendly():
        from journey_stage.training import tracking

        d = tracking.promote(name)
        for line in decision_lines(d):
            out.print(line, highlight=False, soft_wrap=True)


@app.command()
def score(
    events: str = typer.Option(..., "--events", help="Events file or folder (--engine spark: also a table name, a glob or a URI Spark reads)."),
    out_path: str = typer.Option(..., "--out", help="Output .parquet or .csv, written atomically (--engine spark: a folder of Parquet part files, a local path or a URI, unless --single-file or .csv)."),
    model: str = typer.Option(DEFAULT_MODEL_URI, "--model", help="MLflow model URI."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Score as of this time (default: the latest event)."),
    engine: str = typer.Option("local", "--engine", help="local or spark."),
    rejects: Optional[Path] = typer.Option(None, "--rejects", help="Divert invalid rows here instead of failing."),
    reasons: bool = typer.Option(False, "--reasons", help="Add per-customer top reasons (slower)."),
    spark_master: str = typer.Option("local[*]", "--spark-master", help="Spark master URL for --engine spark."),
    single_file: bool = typer.Option(False, "--single-file", help="--engine spark: one file collected and written by the driver instead of a folder of part files."),
    partitions: int = typer.Option(16, "--partitions", help="Customer partitions, at least (more for big inputs; bounds memory)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Local engine processes (default: one per core for inputs of 2M+ rows)."),
) -> None:
    """Batch scoring: one output row per eligible customer (as of --as-of, default the latest event of the input)."""
    with friendly():
        from journey_stage.serving.batch import score_file

        if engine not in ("local", "spark"):
            raise JourneyError(f"--engine {engine!r}: expected local or spark.", "use --engine local or --engine spark.")
        # Spark writes a folder of Parquet part files, unless asked for one file; CSV is always one file (the local engine's text)
        folder = engine == "spark" and not single_file and not out_path.lower().endswith((".csv", ".csv.gz"))
        counts = score_file(events, out_path, model_uri=model, as_of=as_of, engine=engine, rejects=rejects, reasons=reasons,
                            spark_master=spark_master, partitions=partitions, progress=progress_bar, workers=workers, folder=folder)
        target = f"{out_path} (folder of Parquet part files)" if folder else out_path
        out.print(
            f"scored {counts['scored']:,} customers, {counts['ineligible']:,} skipped as ineligible, "
            f"{counts['rejected']:,} rows rejected -> {target}"
        )
        extra = f"as of {counts['as_of']}; {counts['duplicates']:,} exact duplicate event(s) removed; {counts['seconds']:.1f}s"
        if rejects is not None:
            extra += f"; rejected rows with reasons -> {rejects}"
        out.print(extra, highlight=False, soft_wrap=True)


@app.command()
def serve(
    model: str = typer.Option(DEFAULT_MODEL_URI, "--model", envvar="JOURNEY_MODEL_URI", help="MLflow model URI."),
    port: int = typer.Option(3000, "--port", help="HTTP port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind."),
) -> None:
    """Start the HTTP prediction service (BentoML). An alias (``@champion``) is resolved to one
    version now, and every worker serves that version; reload a new champion by restarting."""
    with friendly():
        import mlflow

        from journey_stage.model import registry

        pinned, alias = registry.pin(model, runtime())
        env = dict(os.environ, JOURNEY_MODEL_URI=pinned, BENTOML_DO_NOT_TRACK="true")
        if alias:
            env["JOURNEY_MODEL_ALIAS"] = alias
        env.setdefault("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())  # where pin() just pointed MLflow
        console.print(f"serving {pinned}" + (f" (resolved from {model})" if alias else ""), highlight=False)
        cmd = [sys.executable, "-m", "bentoml", "serve", "journey_stage.serving.service:JourneyService", "--host", host, "--port", str(port)]
        os.execvpe(cmd[0], cmd, env)


@app.command()
def demo(
    customers: int = typer.Option(6000, "--customers", help="Synthetic customers to generate."),
    workdir: Path = typer.Option(Path("journey-demo"), "--workdir", help="Where data, reports, scores and the MLflow store go."),
    seed: int = typer.Option(7, "--seed", help="Random seed of the synthetic journeys."),
    days: int = typer.Option(1095, "--days", help="Simulated days: three years, so that the purged 90-day churn task trains on a full year of seasons after the ramp-up year."),
) -> None:
    """The main job: generate, train, evaluate, register, promote, score; print where everything is."""
    with friendly():
        from journey_stage.synthetic.generate import generate_events
        from journey_stage.core.io import write_table
        from journey_stage.core.settings import build_settings
        from journey_stage.core.taxonomy import load_taxonomy
        from journey_stage.serving.batch import score_file
        from journey_stage.training import tracking
        from journey_stage.model import registry

        t0 = time.time()
        workdir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("JOURNEY_HOME", str((workdir / "mlflow").resolve()))  # child processes see it too
        STATE["runtime"] = rt = RuntimeSettings.from_env()
        events_path = workdir / "events.parquet"
        df = generate_events(customers, seed=seed, days=days)
        write_table(df, events_path, taxonomy="five_stage")
        console.print(f"generated {len(df):,} events for {customers:,} customers -> {events_path}")
        tax = load_taxonomy("five_stage")
        settings = build_settings(tax.settings, {"bootstrap_rounds": 100})
        logged = run_training(events_path, tax, settings, workdir / "report")
        d = tracking.promote(settings.model_name)
        # the champion, or the new version when the gate refused it and there is no champion yet
        served = f"models:/{settings.model_name}@champion" if d["promoted"] or d.get("champion") else logged["model_uri"]
        scores_path = workdir / "scores.parquet"
        counts = score_file(events_path, scores_path, model_uri=served, progress=progress_bar)
        out.print(summary_table(logged["outcome"].report))
        out.print(f"promotion: v{d['challenger']} {'promoted to champion' if d['promoted'] else 'not promoted'} ({d['reason']})")
        if served != f"models:/{settings.model_name}@champion":
            out.print(f"no champion: the scores and the service below use the new version as it is ({served})", highlight=False)
        out.print(f"report:       {workdir / 'report' / 'report.html'}  (and report.json)")
        out.print(f"scores:       {scores_path}  ({counts['scored']:,} customers)")
        store = registry.configure(rt)
        out.print(f"MLflow store: {store}")
        out.print(f"MLflow UI:    mlflow ui --backend-store-uri {store}")
        model_flag = "" if served.endswith("@champion") else f" --model {served}"
        out.print(f"HTTP service: JOURNEY_HOME={rt.home} journey serve --port 3000{model_flag}")
        out.print(f"done in {time.time() - t0:.0f}s")


@app.command()
def bento(
    model: str = typer.Option(DEFAULT_MODEL_URI, "--model", help="MLflow model URI (an alias is resolved to one version)."),
) -> None:
    """Build a Bento that carries the model: it serves without any registry access; its tag names the model version."""
    with friendly():
        from journey_stage.serving.bento import build_bento

        tag = build_bento(model, runtime())
        out.print(f"built Bento {tag}", highlight=False)
        out.print(f"serve it with `bentoml serve {tag}`, or containerize it with `bentoml containerize {tag}` (docs/bento.md)", highlight=False)


from journey_stage.cli_profiles import profiles_app  # noqa: E402 - the sub-command group

app.add_typer(profiles_app, name="profiles")

if __name__ == "__main__":  # pragma: no cover
    app()

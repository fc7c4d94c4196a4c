"""MLflow tracking of a training run (params, metrics, report, the pyfunc model), registration
and the champion/challenger gate. Where the store is and how a model is loaded:
:mod:`journey_stage.model.registry`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature, infer_signature
from mlflow.tracking import MlflowClient

from journey_stage.core.version import __version__
from journey_stage.core.errors import ModelError
from journey_stage.model import pyfunc
from journey_stage.model.registry import configure
from journey_stage.model.scoring import score_events


def log_training_run(outcome, events: pd.DataFrame, settings, report_dir: Path, plots: dict[str, Path], model_name: str) -> dict:
    """Log params, fingerprint, metrics, report and plots; log + register the model as challenger."""
    configure()
    predictor = outcome.predictor
    predictor.info["journey_stage_version"] = __version__  # which product version wrote the artifact
    with mlflow.start_run() as run:
        mlflow.log_params({k: str(v)[:500] for k, v in settings.loggable().items()})
        fp = outcome.report["dataset"]
        mlflow.set_tags({f"data.{k}": str(v) for k, v in fp.items()} | {"taxonomy": predictor.taxonomy.name, "feature_version": predictor.feature_version})
        mlflow.log_metrics({f"test.{k}": v for k, v in _flat_metrics(outcome.report).items()})
        mlflow.set_tags(task_tags(outcome.report))  # protocol, served, sufficiency verdict and counts per task
        mlflow.log_artifacts(str(report_dir), artifact_path="report")
        with tempfile.TemporaryDirectory() as tmp:
            info = _log_model(predictor, events, Path(tmp), model_name)
        client = MlflowClient()
        version = str(info.registered_model_version)
        client.set_registered_model_alias(model_name, "challenger", version)
        _finish_model(client, info, model_name, version)
        return {"run_id": run.info.run_id, "version": version, "model_uri": f"models:/{model_name}/{version}"}


def _log_model(predictor, events: pd.DataFrame, tmp: Path, model_name: str):
    """Log and register the pyfunc model: code, pinned requirements, digest, relaxed signature."""
    path = tmp / "predictor.joblib"
    joblib.dump(predictor, path)
    example = events[events["customer_id"].isin(events["customer_id"].drop_duplicates().head(3))].head(20).copy()
    example["timestamp"] = example["timestamp"].astype(str)
    out = score_events(predictor, events[events["customer_id"].isin(example["customer_id"])], None, eligible_only=False)
    inferred = infer_signature(example, out, params={"as_of": ""})
    code = pyfunc.package_code(tmp / "code")
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(code / "model" / "pyfunc_model.py"),  # models from code
        code_paths=[str(code)],  # the product travels with the model
        artifacts={"predictor": str(path)},
        signature=ModelSignature(inputs=pyfunc.input_schema(), outputs=inferred.outputs, params=inferred.params),
        input_example=example,
        registered_model_name=model_name,
        pip_requirements=pyfunc.pinned_requirements(),
        model_config={pyfunc.DIGEST_KEY: pyfunc.file_digest(path)},  # checked when the model loads
        metadata={"taxonomy": predictor.taxonomy.name, "feature_version": predictor.feature_version, "journey_stage_version": __version__},
    )


def _finish_model(client: MlflowClient, info, model_name: str, version: str) -> None:
    """After registration: the model learns its registered name and version (registry.json) and
    its MLmodel names the code file relatively (no path of this checkout)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=tmp))
        pyfunc.portable_mlmodel(local / "MLmodel")
        (local / pyfunc.REGISTRY_FILE).write_text(json.dumps({"name": model_name, "version": version}))
        client.log_model_artifact(info.model_id, str(local / "MLmodel"))
        client.log_model_artifact(info.model_id, str(local / pyfunc.REGISTRY_FILE))


def task_tags(report: dict) -> dict[str, str]:
    """Per task: the protocol, what is served and the data-sufficiency facts, as MLflow tags."""
    out = {}
    for task, res in report["tasks"].items():
        suff = res.get("sufficiency") or {}
        out[f"{task}.protocol"] = str(res.get("protocol"))
        out[f"{task}.served"] = str(res.get("served", "skipped" if "skipped" in res else "model"))
        out[f"{task}.sufficiency"] = str(suff.get("verdict"))
        out[f"{task}.sufficiency.reason"] = str(suff.get("reason", ""))[:5000]
        for part in ("rows", "minority", "positives"):
            for k, v in (suff.get(part) or {}).items():
                out[f"{task}.sufficiency.{part}.{k}"] = str(v)
    return out


def _flat_metrics(report: dict) -> dict[str, float]:
    out = {}
    for task, res in report["tasks"].items():
        served = [("served", res["served_metrics"])] if "served_metrics" in res else []
        for who, metrics in [("model", res.get("model", {}))] + served + list(res.get("baselines", {}).items()):
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not (isinstance(v, float) and np.isnan(v)):
                    out[f"{task}.{who}.{k}"] = float(v)
    return out


def promote(model_name: str) -> dict:
    """Champion/challenger gate (SPEC 6, :func:`journey_stage.training.gate.decide`): promote when
    no primary metric of the challenger is significantly worse (paired bootstrap over the same
    test customers) than the champion's, or, with no champion, than the best rule baseline's;
    the decision, the differences and their intervals are logged as a run of their own."""
    from journey_stage.training import gate as gates

    configure(create=False)
    client = MlflowClient()
    try:
        challenger = client.get_model_version_by_alias(model_name, "challenger")
    except Exception:  # noqa: BLE001
        raise ModelError(f"model {model_name!r} has no 'challenger' version.", "train one first with `journey train`.") from None
    try:
        champion = client.get_model_version_by_alias(model_name, "champion")
    except Exception:  # noqa: BLE001
        champion = None
    run = client.get_run(challenger.run_id)
    record = json.loads(run.data.tags.get("gate", "{}"))
    report = _run_report(challenger.run_id) if champion is None else None
    tolerance = float(record.get("tolerance", ((report or {}).get("settings", {}).get("all", {}) or {}).get("gate_tolerance", 0.0)))
    decision = gates.decide(str(challenger.version), str(champion.version) if champion else None, record,
                            gates.baseline_comparisons(report), tolerance)
    if decision["promoted"]:
        client.set_registered_model_alias(model_name, "champion", challenger.version)
    with mlflow.start_run(run_name=f"promote-{model_name}-v{challenger.version}"):
        mlflow.set_tags({"kind": "promotion", "decision": json.dumps(decision), "promoted": str(decision["promoted"]).lower(),
                         "against": decision["against"], "reason": decision["reason"][:5000]})
        mlflow.log_metrics(_decision_metrics(decision))
        mlflow.log_dict(decision, "decision.json")
    return decision


def _decision_metrics(decision: dict) -> dict[str, float]:
    out = {"promoted": float(decision["promoted"])}
    for key, c in decision["comparisons"].items():
        for who in ("challenger", "champion", "baseline_value", "difference"):
            if isinstance(c.get(who), (int, float)):
                out[f"{key}.{who}"] = float(c[who])
        if c.get("ci"):
            out[f"{key}.ci_low"], out[f"{key}.ci_high"] = float(c["ci"][0]), float(c["ci"][1])
    return out


def _run_report(run_id: str) -> dict | None:
    """report.json of a training run (its tasks' comparisons with the rule baselines), if logged."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return json.loads(Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="report/report.json", dst_path=tmp)).read_text())
    except Exception:  # noqa: BLE001 - a run logged without a report: no comparison with the baselines
        return None


def record_gate(run_id: str, challenger_scores: dict, champion_scores: dict | None = None, champion_version: str | None = None,
                record: dict | None = None) -> None:
    """Store, in the challenger's run, what ``promote`` compares: ``record`` from
    :func:`journey_stage.training.gate.gate_record` (paired comparisons with intervals), or, from
    older callers, both models' primary metrics on the challenger's test rows."""
    gate = record or {"champion_version": champion_version, "challenger": challenger_scores, "champion": champion_scores or {}}
    client = MlflowClient()
    client.set_tag(run_id, "gate", json.dumps(gate))
    for key, c in gate.get("comparisons", {}).items():
        if c.get("difference") is not None:
            client.log_metric(run_id, f"gate.{key}.difference", float(c["difference"]))
        if c.get("ci"):
            client.log_metric(run_id, f"gate.{key}.ci_low", float(c["ci"][0]))
            client.log_metric(run_id, f"gate.{key}.ci_high", float(c["ci"][1]))


def current_champion(model_name: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(model_name, "champion").version)
    except Exception:  # noqa: BLE001
        return None


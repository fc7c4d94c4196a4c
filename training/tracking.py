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


def _flat_metrics(report: dict) -> dict[str, float]:
    out = {}
    for task, res in report["tasks"].items():
        for who, metrics in [("model", res.get("model", {}))] + list(res.get("baselines", {}).items()):
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not (isinstance(v, float) and np.isnan(v)):
                    out[f"{task}.{who}.{k}"] = float(v)
    return out


def promote(model_name: str) -> dict:
    """Champion/challenger gate (SPEC 6): promote when the challenger is at least as good as the
    champion on the champion's primary metrics, both measured on the challenger's test data."""
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
    decision = {"challenger": challenger.version, "champion": champion.version if champion else None, "comparisons": {}}
    if champion is None:
        decision.update(promoted=True, reason="no champion yet")
    elif champion.version == challenger.version:
        decision.update(promoted=False, reason="challenger is already the champion")
    else:
        run = client.get_run(challenger.run_id)
        gate = json.loads(run.data.tags.get("gate", "{}"))
        if str(gate.get("champion_version")) != str(champion.version):
            decision.update(promoted=False, reason=f"the challenger was not compared with champion v{champion.version} on the same test data; retrain or pass --events to re-evaluate both")
        else:
            ok = True
            for key, champ in gate["champion"].items():
                chall = gate["challenger"].get(key)
                passed = chall is not None and (champ is None or chall >= champ)
                decision["comparisons"][key] = {"challenger": chall, "champion": champ, "passed": passed}
                ok &= passed
            decision.update(promoted=ok, reason="challenger at least as good on every primary metric" if ok else "challenger worse on a primary metric")
    if decision["promoted"]:
        client.set_registered_model_alias(model_name, "champion", challenger.version)
    with mlflow.start_run(run_name=f"promote-{model_name}-v{challenger.version}"):
        mlflow.set_tags({"kind": "promotion", "decision": json.dumps(decision)})
        mlflow.log_metrics({f"{k}.{who}": v[who] for k, v in decision["comparisons"].items() for who in ("challenger", "champion") if v[who] is not None} | {"promoted": float(decision["promoted"])})
    return decision


def record_gate(run_id: str, challenger_scores: dict, champion_scores: dict | None, champion_version: str | None) -> None:
    """Store, in the challenger's run, both models' primary metrics on the challenger's test rows."""
    client = MlflowClient()
    gate = {"champion_version": champion_version, "challenger": challenger_scores, "champion": champion_scores or {}}
    client.set_tag(run_id, "gate", json.dumps(gate))


def current_champion(model_name: str) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(model_name, "champion").version)
    except Exception:  # noqa: BLE001
        return None


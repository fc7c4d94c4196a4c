"""The MLflow pyfunc face of a predictor, self-contained: the inference layers of the product
(``journey_stage`` core, features and model) travel in the model's ``code/`` folder, the
requirements are pinned to the versions that trained it, the predictor artifact carries a
SHA-256 digest, and ``registry.json`` says which registered name and version it is.

Two input shapes (params: ``as_of``, ISO 8601; default the latest event of the input):

- **flat events**, one row per touchpoint (``customer_id``, ``timestamp`` as datetime or ISO
  text, ``event_type``, optional ``channel``, ``value``, ``campaign``) -> one row per *eligible*
  customer, the columns of :func:`journey_stage.model.scoring.output_columns` (batch scoring's);
- **nested customers**, one row per customer (``customer_id``, ``events``: a list of event
  records, the HTTP body's shape) -> exactly one row per input row, in input order (a customer
  without history gets a row of nulls with ``eligible`` false): what ``mlflow.pyfunc.spark_udf``
  needs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import joblib
import mlflow
import pandas as pd

from journey_stage.core.errors import ModelError
from journey_stage.model.predictor import JourneyPredictor

DIGEST_KEY = "predictor_sha256"
REGISTRY_FILE = "registry.json"  # {"name", "version"} of the registered model, written after registration
EVENT_FIELDS = ("timestamp", "event_type", "channel", "value", "campaign")
# what the predictor needs to load and predict, pinned to the versions that wrote it
RUNTIME_DISTRIBUTIONS = ("lightgbm", "scikit-learn", "scipy", "pandas", "numpy", "pyarrow", "joblib", "pydantic", "numba", "llvmlite")


def pinned_requirements() -> list[str]:
    """``name==version`` of the installed runtime distributions (the model's requirements.txt)."""
    out = []
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:  # pragma: no cover - every one is a dependency of the product
            out.append(name)
    return out


def file_digest(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def load_verified(path: str | Path, expected: str | None) -> JourneyPredictor:
    """The predictor artifact, after checking its SHA-256 against the digest recorded when it was
    logged (models written before digests were recorded have none to check)."""
    if expected is not None:
        found = file_digest(path)
        if found != expected:
            raise ModelError(
                f"model artifact {Path(path).name} does not match the digest recorded when it was logged "
                f"(sha256 {found[:12]}..., expected {expected[:12]}...): it was changed or is corrupt.",
                "re-register the model from its training run, or retrain it with `journey train`.",
            )
    predictor = joblib.load(path)
    if not isinstance(predictor, JourneyPredictor):
        raise ModelError(f"model artifact {Path(path).name} holds a {type(predictor).__name__}, not a journey predictor.",
                         "point --model at a model registered by `journey train`.")
    return predictor


class JourneyModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper: input = canonical events (one row per touchpoint), params: as_of;
    output = one row per eligible customer with the columns of ``journey_stage.model.scoring.output_columns``."""

    def load_context(self, context):
        expected = (context.model_config or {}).get(DIGEST_KEY)
        artifact = Path(context.artifacts["predictor"])
        self.predictor: JourneyPredictor = load_verified(artifact, expected)
        identity = artifact.parent.parent / REGISTRY_FILE  # <model>/artifacts/predictor.joblib
        if identity.exists():
            self.predictor.info.update({k: str(v) for k, v in json.loads(identity.read_text()).items() if k in ("name", "version")})

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        from journey_stage.core.events import canonical_events
        from journey_stage.model.scoring import score_events

        as_of = (params or {}).get("as_of") or None
        if "events" in model_input.columns:
            return self.predict_customers(model_input, as_of)
        events = canonical_events(model_input, "model input", self.predictor.taxonomy).events
        return score_events(self.predictor, events, as_of)

    def predict_customers(self, customers: pd.DataFrame, as_of) -> pd.DataFrame:
        """Nested input: one output row per input row, in input order."""
        from journey_stage.core.events import canonical_events
        from journey_stage.model.scoring import output_columns, score_events

        flat = flatten_customers(customers)
        cols = output_columns(self.predictor)
        if flat.empty:
            scored = pd.DataFrame(columns=cols)
        else:
            events = canonical_events(flat, "model input", self.predictor.taxonomy).events
            scored = score_events(self.predictor, events, as_of, eligible_only=False)
        out = scored.set_index("customer_id").reindex(customers["customer_id"].astype(str).str.strip())
        out["eligible"] = out["eligible"].astype("boolean").fillna(False).astype(bool)
        return out.reset_index()[cols]


def flatten_customers(customers: pd.DataFrame) -> pd.DataFrame:
    """Nested customers (``customer_id``, ``events``: records as dicts, Spark Rows or a JSON
    text) -> flat events, one row per event."""
    rows = []
    for cid, events in zip(customers["customer_id"], customers["events"]):
        if isinstance(events, str):
            events = json.loads(events)
        for e in [] if events is None else list(events):
            e = e.asDict() if hasattr(e, "asDict") else dict(e)
            rows.append({"customer_id": cid} | {k: e.get(k) for k in EVENT_FIELDS})
    return pd.DataFrame(rows, columns=["customer_id", *EVENT_FIELDS])


def input_schema():
    """The relaxed signature: every column but ``customer_id`` optional; timestamps datetime or
    text (``Any``); ``events`` for the nested shape."""
    from mlflow.types.schema import AnyType, ColSpec, Schema

    return Schema([
        ColSpec("string", "customer_id"),
        ColSpec(AnyType(), "timestamp", required=False),
        ColSpec("string", "event_type", required=False),
        ColSpec("string", "channel", required=False),
        ColSpec("double", "value", required=False),
        ColSpec("string", "campaign", required=False),
        ColSpec(AnyType(), "events", required=False),
    ])


# the inference layers a loaded model imports (training, serving and the CLI stay behind)
CODE_PACKAGES = ("core", "features", "model")


def package_code(dest: Path) -> Path:
    """A copy of the installed ``journey_stage`` package, inference layers only, under
    ``dest/journey_stage`` (for the model's ``code_paths``), with its version written in."""
    from journey_stage.core.version import __version__

    root = dest / "journey_stage"
    root.mkdir(parents=True)
    top = sys.modules["journey_stage"]  # the package root, imported with this module (no upward import)
    (root / "__init__.py").write_text(Path(top.__file__).read_text())
    for name in CODE_PACKAGES:
        src = Path(importlib.import_module(f"journey_stage.{name}").__path__[0])
        shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (root / "core" / "version.py").write_text(f'"""The version of the product that wrote this model."""\n\n__version__ = {__version__!r}\n')
    return root


def portable_mlmodel(mlmodel: Path) -> None:
    """No path of the training machine in an MLmodel file: ``model_code_path`` becomes the file's
    name (MLflow loads the copy inside the model folder by that name), each artifact's source
    ``uri`` its path inside the model, and the store location ``artifact_path`` is dropped (MLflow
    records it for information only; it is the store's, not the model's)."""
    import yaml

    conf = yaml.safe_load(mlmodel.read_text())
    conf.pop("artifact_path", None)
    pyfunc_conf = conf.get("flavors", {}).get("python_function", {})
    if pyfunc_conf.get("model_code_path"):
        pyfunc_conf["model_code_path"] = Path(pyfunc_conf["model_code_path"]).name
    for artifact in (pyfunc_conf.get("artifacts") or {}).values():
        artifact["uri"] = artifact.get("path", artifact.get("uri"))
    mlmodel.write_text(yaml.safe_dump(conf, default_flow_style=False, sort_keys=False))

"""The MLflow pyfunc face of a predictor: input = canonical events (one row per touchpoint),
params: ``as_of``; output = one row per eligible customer with the columns of
:func:`journey_stage.model.scoring.output_columns`."""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import joblib
import mlflow
import pandas as pd

from journey_stage.core.errors import ModelError
from journey_stage.model.predictor import JourneyPredictor

DIGEST_KEY = "predictor_sha256"
# what the predictor needs to load and predict, pinned to the versions that wrote it
RUNTIME_DISTRIBUTIONS = ("lightgbm", "scikit-learn", "scipy", "pandas", "numpy", "pyarrow", "joblib", "pydantic")


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
        self.predictor: JourneyPredictor = load_verified(context.artifacts["predictor"], expected)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        from journey_stage.core.events import canonical_events
        from journey_stage.model.scoring import score_events

        as_of = (params or {}).get("as_of") or None
        events = canonical_events(model_input, "model input", self.predictor.taxonomy).events
        return score_events(self.predictor, events, as_of)
